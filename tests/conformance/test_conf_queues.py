"""CPython ``test.test_asyncio.test_queues`` against the target.

Loop-level only: every class is an ``IsolatedAsyncioTestCase``, whose loop
comes from ``asyncio.Runner`` -> ``asyncio.new_event_loop()`` -> the default
policy, which the conformance conftest points at the target loop.  All
classes are re-exported unchanged.
"""

import sys

from test.test_asyncio import test_queues as _cpy

QueueBasicTests = _cpy.QueueBasicTests
QueueGetTests = _cpy.QueueGetTests
QueuePutTests = _cpy.QueuePutTests
LifoQueueTests = _cpy.LifoQueueTests
PriorityQueueTests = _cpy.PriorityQueueTests
QueueJoinTests = _cpy.QueueJoinTests
LifoQueueJoinTests = _cpy.LifoQueueJoinTests
PriorityQueueJoinTests = _cpy.PriorityQueueJoinTests

if sys.version_info >= (3, 13):
    # Queue.shutdown() is new in 3.13.
    QueueShutdownTests = _cpy.QueueShutdownTests
    LifoQueueShutdownTests = _cpy.LifoQueueShutdownTests
    PriorityQueueShutdownTests = _cpy.PriorityQueueShutdownTests
