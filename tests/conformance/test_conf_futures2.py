"""CPython ``test.test_asyncio.test_futures2`` against the target.

* ``CFutureTests`` (``cls = tasks._CTask``) -> ``NativeFutureTests`` with
  ``cls = Task``; runs in ``IsolatedAsyncioTestCase``, i.e. on a loop from the
  default policy (the target loop).
* ``FutureReprTests``: re-exported unchanged (loop-level, target loop).
* ``PyFutureTests``: not collected (pure-Python Task).
"""

from test.test_asyncio import test_futures2 as _cpy

from conformance_target import Task


class NativeFutureTests(_cpy.CFutureTests):
    cls = Task


FutureReprTests = _cpy.FutureReprTests
