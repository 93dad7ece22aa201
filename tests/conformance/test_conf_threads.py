"""CPython ``test.test_asyncio.test_threads`` against the target.

Loop-level only: every class is an ``IsolatedAsyncioTestCase``, whose loop
comes from ``asyncio.Runner`` -> ``asyncio.new_event_loop()`` -> the default
policy, which the conformance conftest points at the target loop.  All
classes are re-exported unchanged.
``asyncio.to_thread`` exercises the loop's default executor.
"""

from test.test_asyncio import test_threads as _cpy

ToThreadTests = _cpy.ToThreadTests
