"""CPython ``test.test_asyncio.test_taskgroups`` against the target.

Loop-level only: every class is an ``IsolatedAsyncioTestCase``, whose loop
comes from ``asyncio.Runner`` -> ``asyncio.new_event_loop()`` -> the default
policy, which the conformance conftest points at the target loop.  All
classes are re-exported unchanged.
"""

from test.test_asyncio import test_taskgroups as _cpy

TestTaskGroup = _cpy.TestTaskGroup
