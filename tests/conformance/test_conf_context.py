"""CPython ``test.test_asyncio.test_context`` against the target.

Loop-level: ``DecimalContextTest`` calls ``asyncio.run()``, whose loop comes
from the default policy (the target loop).  Re-exported unchanged.
"""

from test.test_asyncio import test_context as _cpy

DecimalContextTest = _cpy.DecimalContextTest
