"""CPython ``test.test_asyncio.test_pep492`` against the target.

Upstream ``BaseTest.setUp`` runs every test on a bare ``asyncio.BaseEventLoop``
with a mocked selector, which would never touch the target.  Here each class
(``LockTests``, ``StreamReaderTests``, ``CoroutineTests``) is subclassed with
a ``setUp`` that keeps ``test_utils.TestCase``'s bookkeeping but uses a real
loop from ``asyncio.new_event_loop()`` (the target loop); the test bodies are
unchanged.  This covers e.g. debug-mode coroutine origin tracking
(``loop.set_debug``) and ``Task.get_stack`` on the target.
"""

import asyncio

from test.test_asyncio import test_pep492 as _cpy
from test.test_asyncio import utils as _test_utils


class _TargetLoopMixin:
    def setUp(self):
        # Skip _cpy.BaseTest.setUp (mocked BaseEventLoop), keep the rest.
        _test_utils.TestCase.setUp(self)
        self.loop = asyncio.new_event_loop()
        self.set_event_loop(self.loop)


class LockTests(_TargetLoopMixin, _cpy.LockTests):
    pass


class StreamReaderTests(_TargetLoopMixin, _cpy.StreamReaderTests):
    pass


class CoroutineTests(_TargetLoopMixin, _cpy.CoroutineTests):
    pass
