"""CPython ``test.test_asyncio.test_futures`` against the target.

Mapping (CPython class -> class here):

* ``CFutureTests`` -> ``NativeFutureTests``: subclass with ``cls = Future``
  (keeps the C-only ``test_future_del_segfault``).
* ``CSubFutureTests`` -> ``NativeSubFutureTests``: ``cls`` is a trivial
  Python subclass of the target Future.
* ``CFutureDoneCallbackTests`` / ``CSubFutureDoneCallbackTests`` ->
  ``NativeFutureDoneCallbackTests`` / ``NativeSubFutureDoneCallbackTests``:
  ``_new_future`` builds the target Future (or a subclass of it).
* ``CFutureInheritanceTests`` -> ``NativeFutureInheritanceTests``.
* ``DuckTests``: re-exported unchanged (duck-typed futures; target-independent).
* ``PyFuture*Tests``: not collected (they test asyncio's pure-Python Future).

All of these run on ``test_utils.TestLoop`` (pure-Python loop), as upstream.
"""

from test.test_asyncio import test_futures as _cpy

from conformance_target import Future


class _NativeSubFuture(Future):
    pass


class NativeFutureTests(_cpy.CFutureTests):
    cls = Future


class NativeSubFutureTests(_cpy.CSubFutureTests):
    cls = _NativeSubFuture


class NativeFutureDoneCallbackTests(_cpy.CFutureDoneCallbackTests):
    def _new_future(self):
        return Future(loop=self.loop)


class NativeSubFutureDoneCallbackTests(_cpy.CSubFutureDoneCallbackTests):
    def _new_future(self):
        return _NativeSubFuture(loop=self.loop)


class NativeFutureInheritanceTests(_cpy.CFutureInheritanceTests):
    def _get_future_cls(self):
        return Future


DuckTests = _cpy.DuckTests
