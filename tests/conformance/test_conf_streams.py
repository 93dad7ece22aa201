"""CPython ``test.test_asyncio.test_streams`` against the target (group io).

* ``StreamTests``: re-exported unchanged; its loop comes from
  ``asyncio.new_event_loop()``, i.e. the default policy, which the conftest
  points at the target loop.
"""

from test.test_asyncio import test_streams as _cpy

StreamTests = _cpy.StreamTests
