"""ferroloop.Loop: the Rust scheduling core plus asyncio's cold paths.

Everything on the hot path (call_soon & co, timers, the iteration, Future and
Task) is implemented by ``_ferroloop.LoopCore``. Methods that run rarely and
whose exact behaviour matters more than their speed — the exception handler,
executors, async generator bookkeeping, ``run_until_complete``, DNS — are the
functions of asyncio's own ``BaseEventLoop``, bound to this class. They only
rely on the public loop API and on a handful of attributes that ``__init__``
sets up, so ferroloop behaves exactly like asyncio there by construction.
"""

import asyncio
import logging
import sys
import threading
import weakref
from asyncio import base_events, coroutines, events

from . import _ferroloop

__all__ = ("Loop", "new_event_loop")

logger = logging.getLogger("asyncio")

_BaseEventLoop = base_events.BaseEventLoop

# asyncio functions reused verbatim (by reference, not by copy).
_BORROWED = (
    "run_until_complete",
    "_check_running",
    "_check_callback",
    "_set_coroutine_origin_tracking",
    "_asyncgen_finalizer_hook",
    "_asyncgen_firstiter_hook",
    "shutdown_asyncgens",
    "shutdown_default_executor",
    "_do_shutdown",
    "_check_default_executor",
    "run_in_executor",
    "set_default_executor",
    "_getaddrinfo_debug",
    "getaddrinfo",
    "getnameinfo",
    "set_exception_handler",
    "get_exception_handler",
    "default_exception_handler",
    "call_exception_handler",
    "__del__",
)


class Loop(_ferroloop.LoopCore, asyncio.AbstractEventLoop):
    """An asyncio event loop whose core runs in Rust."""

    def __init__(self):
        self._default_executor = None
        self._executor_shutdown_called = False
        self._exception_handler = None
        self._current_handle = None
        self._asyncgens = weakref.WeakSet()
        self._asyncgens_shutdown_called = False
        self._coroutine_origin_tracking_enabled = False
        self._coroutine_origin_tracking_saved_depth = None
        self.set_debug(coroutines._is_debug_mode())

    for _name in _BORROWED:
        locals()[_name] = getattr(_BaseEventLoop, _name)
    del _name

    @property
    def _debug(self):
        return self.get_debug()

    def __repr__(self):
        return (
            f"<{self.__class__.__name__} running={self.is_running()} "
            f"closed={self.is_closed()} debug={self.get_debug()}>"
        )

    def set_debug(self, enabled):
        super().set_debug(enabled)
        if self.is_running():
            self.call_soon_threadsafe(self._set_coroutine_origin_tracking, enabled)

    def run_forever(self):
        """Run until stop() is called."""
        self._check_closed()
        self._check_running()
        self._set_coroutine_origin_tracking(self.get_debug())
        old_agen_hooks = sys.get_asyncgen_hooks()
        try:
            self._set_running(True)
            sys.set_asyncgen_hooks(
                firstiter=self._asyncgen_firstiter_hook,
                finalizer=self._asyncgen_finalizer_hook,
            )
            events._set_running_loop(self)
            self._run_forever_core()
        finally:
            self._set_running(False)
            events._set_running_loop(None)
            self._set_coroutine_origin_tracking(False)
            sys.set_asyncgen_hooks(*old_agen_hooks)

    def close(self):
        """Close the loop: drop pending callbacks, shut the default executor."""
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        if self.get_debug():
            logger.debug("Close %r", self)
        self._close_core()
        self._executor_shutdown_called = True
        executor = self._default_executor
        if executor is not None:
            self._default_executor = None
            executor.shutdown(wait=False)

    def _log_slow_callback(self, description, seconds):
        logger.warning("Executing %s took %.3f seconds", description, seconds)

    def _timer_handle_cancelled(self, handle):
        # Handles created by this loop report cancellation natively; this
        # exists for code that calls it on asyncio handles it made itself.
        pass


def new_event_loop():
    """Return a new ferroloop event loop."""
    return Loop()
