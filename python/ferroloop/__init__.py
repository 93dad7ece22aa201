"""ferroloop: asyncio's event loop, Future and Task, implemented in Rust.

Use it like uvloop::

    import ferroloop
    ferroloop.run(main())            # or: asyncio.run(main(), loop_factory=ferroloop.new_event_loop)

or run an unmodified program on it with ``python -m ferroloop script.py``.
"""

import asyncio as _asyncio
from asyncio import events as _asyncio_events
import sys as _sys
import warnings as _warnings
from collections.abc import Callable as _Callable, Coroutine as _Coroutine
from typing import Any as _Any, TypeVar as _TypeVar

from ._ferroloop import Future, Handle, Task, TimerHandle
from ._loop import Loop, new_event_loop
from ._metrics import Histogram, LoopMetrics, SlowCallback

__all__ = (
    "Future",
    "Task",
    "Handle",
    "TimerHandle",
    "Loop",
    "new_event_loop",
    "run",
    "install",
    "EventLoopPolicy",
    "eager_task_factory",
    "create_eager_task_factory",
    "metrics",
    "LoopMetrics",
    "Histogram",
    "SlowCallback",
)

__version__ = "0.1.0"


_T = _TypeVar("_T")


def run(
    main: _Coroutine[_Any, _Any, _T],
    *,
    debug: "bool | None" = None,
    loop_factory: "_Callable[[], _asyncio.AbstractEventLoop] | None" = new_event_loop,
    inspect: bool = False,
    **run_kwargs: _Any,
) -> _T:
    """Run coroutine ``main`` on a new ferroloop loop and return its result.

    Same contract as ``asyncio.run`` (``asyncio.Runner`` on 3.11). With
    ``inspect=True`` the loop answers ``python -m ferroloop ps/pstree PID``
    while it runs (``ferroloop.inspector``; ``loop_factory`` must then make
    ferroloop loops).
    """
    if _asyncio_events._get_running_loop() is not None:
        # Checked before a Runner (and its loop) exists, as asyncio.run does.
        raise RuntimeError("asyncio.run() cannot be called from a running event loop")
    if inspect:
        loop_factory = _inspected_factory(loop_factory or new_event_loop)
    if _sys.version_info >= (3, 12):
        # (mypy does not follow the aliased version check: on 3.11 typeshed's
        # asyncio.run has no loop_factory.)
        return _asyncio.run(main, debug=debug, loop_factory=loop_factory, **run_kwargs)  # type: ignore[call-arg,unused-ignore]
    if run_kwargs:
        raise TypeError(f"unexpected keyword arguments: {sorted(run_kwargs)}")
    with _asyncio.Runner(debug=debug, loop_factory=loop_factory) as runner:
        return runner.run(main)


def _inspected_factory(
    factory: "_Callable[[], _asyncio.AbstractEventLoop]",
) -> "_Callable[[], _asyncio.AbstractEventLoop]":
    def make() -> _asyncio.AbstractEventLoop:
        from . import inspector

        loop = factory()
        try:
            inspector.enable(loop)
        except BaseException:
            loop.close()
            raise
        return loop

    return make


def metrics(loop: "_asyncio.AbstractEventLoop | None" = None) -> LoopMetrics:
    """``loop.metrics()`` of a ferroloop loop (default: the running loop)."""
    if loop is None:
        loop = _asyncio.get_running_loop()
    if not isinstance(loop, Loop):
        # Other loops keep no such counters; an empty snapshot would read as
        # "nothing happened".
        raise TypeError(f"metrics() needs a ferroloop loop, got {type(loop).__name__}")
    return loop.metrics()


# asyncio.DefaultEventLoopPolicy under the name that does not warn: from
# 3.14 on, reading the public alias is deprecated (policies are), and that
# would make importing ferroloop itself warn.
from asyncio.unix_events import _UnixDefaultEventLoopPolicy as _DefaultPolicy  # noqa: E402


class EventLoopPolicy(_DefaultPolicy):
    """An event loop policy whose loops are ferroloop loops.

    Deprecated from Python 3.14 on, as asyncio's policies are; prefer
    ``ferroloop.run()`` or ``asyncio.run(..., loop_factory=ferroloop.new_event_loop)``.
    """

    def __init__(self) -> None:
        if _sys.version_info >= (3, 14):
            _warnings.warn(
                "ferroloop.EventLoopPolicy is deprecated and slated for removal "
                "with asyncio's policies (Python 3.16); use ferroloop.run() or "
                "asyncio.run(..., loop_factory=ferroloop.new_event_loop)",
                DeprecationWarning,
                stacklevel=2,
            )
        super().__init__()

    def _loop_factory(self) -> Loop:
        return new_event_loop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


def install() -> None:
    """Make ferroloop the loop of ``asyncio.new_event_loop()``/``asyncio.run()``.

    Deprecated on Python 3.12+ (as the policy system is); prefer
    ``ferroloop.run()`` or ``asyncio.run(..., loop_factory=ferroloop.new_event_loop)``.
    """
    if _sys.version_info >= (3, 12):
        _warnings.warn(
            "ferroloop.install() is deprecated in favor of ferroloop.run() "
            "starting with Python 3.12.",
            DeprecationWarning,
            stacklevel=2,
        )
    _asyncio.set_event_loop_policy(EventLoopPolicy())


# What asyncio's set_task_factory() takes: ferroloop's Task is an
# asyncio.Future at run time (isinstance holds), which the stubs of the
# native class cannot say.
_TaskFactory = _Callable[..., "_asyncio.Future[_Any]"]


def create_eager_task_factory(custom_task_constructor: _Callable[..., _Any]) -> _TaskFactory:
    """Like ``asyncio.create_eager_task_factory`` (3.12), on every Python."""

    def factory(
        loop: _asyncio.AbstractEventLoop,
        coro: _Coroutine[_Any, _Any, _Any],
        *,
        name: "str | None" = None,
        context: _Any = None,
        eager_start: bool = True,
    ) -> "_asyncio.Future[_Any]":
        task: _asyncio.Future[_Any] = custom_task_constructor(
            coro, loop=loop, name=name, context=context, eager_start=eager_start
        )
        return task

    return factory


eager_task_factory: _TaskFactory = create_eager_task_factory(Task)
