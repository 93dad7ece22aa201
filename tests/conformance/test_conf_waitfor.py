"""CPython ``test.test_asyncio.test_waitfor`` against the target.

Loop-level only: every class is an ``IsolatedAsyncioTestCase``, whose loop
comes from ``asyncio.Runner`` -> ``asyncio.new_event_loop()`` -> the default
policy, which the conformance conftest points at the target loop.  All
classes are re-exported unchanged.
"""

import sys

from test.test_asyncio import test_waitfor as _cpy

AsyncioWaitForTest = _cpy.AsyncioWaitForTest

if sys.version_info >= (3, 12):
    WaitForShieldTests = _cpy.WaitForShieldTests
