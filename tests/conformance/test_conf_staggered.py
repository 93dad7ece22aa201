"""CPython ``test.test_asyncio.test_staggered`` (3.13+) against the target.

``StaggeredTests`` is an ``IsolatedAsyncioTestCase`` (its loop comes from the
policy, i.e. the target loop): re-exported unchanged.
"""

import sys

import pytest

if sys.version_info < (3, 13):
    pytest.skip("test.test_asyncio.test_staggered is new in Python 3.13",
                allow_module_level=True)

from test.test_asyncio import test_staggered as _cpy

StaggeredTests = _cpy.StaggeredTests
