"""CPython ``test.test_asyncio.test_locks`` against the target.

Loop-level only: every class is an ``IsolatedAsyncioTestCase``, whose loop
comes from ``asyncio.Runner`` -> ``asyncio.new_event_loop()`` -> the default
policy, which the conformance conftest points at the target loop.  All
classes are re-exported unchanged.
``ConditionTests.test_ambiguous_loops`` also creates a second loop with
``asyncio.new_event_loop()``.
"""

from test.test_asyncio import test_locks as _cpy

LockTests = _cpy.LockTests
EventTests = _cpy.EventTests
ConditionTests = _cpy.ConditionTests
SemaphoreTests = _cpy.SemaphoreTests
BarrierTests = _cpy.BarrierTests
