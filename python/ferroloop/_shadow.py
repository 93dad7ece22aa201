"""Stand-in classes reported by ``__class__`` of native futures and tasks.

``isinstance(obj, cls)`` falls back to ``obj.__class__`` when ``type(obj)``
is not a subclass of ``cls``. Instances of the exact native types
``ferroloop.Future``, ``ferroloop.Task``, ``ferroloop.Handle`` and
``ferroloop.TimerHandle`` report these classes, which derive from the
asyncio classes of the same name, so that third-party checks like
``isinstance(fut, asyncio.Future)`` hold. ``type(obj)`` is unchanged and
the classes are never instantiated. See docs/DIFFERENCES.md.
"""

import asyncio


class Future(asyncio.Future):
    __slots__ = ()
    __module__ = "ferroloop"


class Task(asyncio.Task):
    __slots__ = ()
    __module__ = "ferroloop"


class Handle(asyncio.Handle):
    __slots__ = ()
    __module__ = "ferroloop"


class TimerHandle(asyncio.TimerHandle):
    __slots__ = ()
    __module__ = "ferroloop"
