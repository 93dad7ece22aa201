"""The implementation under test ("target") for the conformance layer.

Selected with the environment variable ``FERROLOOP_CONFORMANCE_TARGET``:

``ferroloop`` (default)
    ``ferroloop.Future`` / ``ferroloop.Task`` are the native classes, and the
    default event loop policy produces loops from ``ferroloop.new_event_loop``.

``asyncio``
    The baseline: the stdlib ``_asyncio`` C classes (``futures._CFuture``,
    ``tasks._CTask``) and the stdlib selector event loop, i.e. exactly what
    CPython's own "C" test classes exercise.  Nothing is patched.

Every ``test_conf_*.py`` module builds its classes from the attributes of this
module only (``Future``, ``Task``, ``Loop``), so both targets run identical
test classes and produce identical test ids.
"""

import asyncio
import os
from asyncio import futures, tasks
from unittest import mock

ENV_VAR = "FERROLOOP_CONFORMANCE_TARGET"
TARGETS = ("ferroloop", "asyncio")

NAME = os.environ.get(ENV_VAR, "").strip().lower() or "ferroloop"
if NAME not in TARGETS:
    raise RuntimeError(
        f"{ENV_VAR}={NAME!r} is not one of {', '.join(TARGETS)}")

if NAME == "asyncio":
    Future = futures._CFuture
    Task = tasks._CTask
    Loop = asyncio.DefaultEventLoopPolicy._loop_factory
    #: Callable installed as the default policy's loop factory (None: keep).
    loop_factory = None
else:
    try:
        import ferroloop as _impl
    except ImportError as exc:
        raise ImportError(
            f"cannot import ferroloop ({exc}); build/install it first "
            f"(e.g. `maturin develop`), or run the stdlib baseline with "
            f"{ENV_VAR}=asyncio") from exc
    _missing = [n for n in ("Future", "Task", "Loop", "new_event_loop")
                if not hasattr(_impl, n)]
    if _missing:
        raise ImportError(
            f"ferroloop ({_impl.__file__}) does not provide "
            f"{', '.join(_missing)} yet; run the stdlib baseline with "
            f"{ENV_VAR}=asyncio")
    Future = _impl.Future
    Task = _impl.Task
    Loop = _impl.Loop
    loop_factory = _impl.new_event_loop

#: Pure-Python Future, used by the mixed "native Task + Python Future" classes.
PyFuture = futures._PyFuture


def new_loop():
    """A fresh target loop, without going through the current policy."""
    return (loop_factory or Loop)()


class SelectorEventLoopIsTarget:
    """Test-case mixin for upstream classes whose ``setUp`` hard-codes
    ``asyncio.SelectorEventLoop()``: while the upstream ``setUp`` runs,
    ``asyncio.SelectorEventLoop`` is :func:`new_loop`, so the test's loop is
    the target's.  With the ``asyncio`` target this changes nothing
    (``Loop`` is ``asyncio.SelectorEventLoop`` there).  Only ``setUp`` is
    affected; the test bodies see the real ``asyncio.SelectorEventLoop``.
    """

    def setUp(self):
        with mock.patch.object(asyncio, "SelectorEventLoop", new_loop):
            super().setUp()


def describe():
    def qual(obj):
        return f"{obj.__module__}.{obj.__qualname__}"
    return (f"{NAME} (Future={qual(Future)}, Task={qual(Task)}, "
            f"Loop={qual(Loop)})")


_MISSING = object()
_saved_factory = _MISSING


def install():
    """Make the default event loop policy produce target loops.

    CPython's test modules obtain their loops through
    ``asyncio.new_event_loop()``, ``asyncio.run()``, ``asyncio.Runner`` and
    ``IsolatedAsyncioTestCase`` -- all of which go through the *default*
    policy class -- and their ``tearDownModule`` resets the policy with
    ``asyncio.set_event_loop_policy(None)``.  Patching the default policy
    class (rather than installing a policy instance) survives those resets.
    """
    global _saved_factory
    if loop_factory is not None and _saved_factory is _MISSING:
        policy_cls = asyncio.DefaultEventLoopPolicy
        _saved_factory = policy_cls.__dict__.get("_loop_factory", _MISSING)
        policy_cls._loop_factory = staticmethod(loop_factory)
    asyncio.set_event_loop_policy(None)


def uninstall():
    global _saved_factory
    if _saved_factory is not _MISSING:
        policy_cls = asyncio.DefaultEventLoopPolicy
        policy_cls._loop_factory = _saved_factory
        _saved_factory = _MISSING
    asyncio.set_event_loop_policy(None)


def check_installed():
    """Raise if the default policy does not produce target loops."""
    loop = asyncio.new_event_loop()
    try:
        if not isinstance(loop, Loop):
            raise RuntimeError(
                f"asyncio.new_event_loop() returned {type(loop)!r}, "
                f"expected an instance of {Loop!r}")
    finally:
        loop.close()
