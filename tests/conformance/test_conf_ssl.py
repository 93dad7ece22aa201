"""CPython ``test.test_asyncio.test_ssl`` against the target (group io).

* ``TestSSL``: re-exported unchanged; its loops come from
  ``asyncio.new_event_loop()`` (``setUp`` and ``new_loop``), i.e. the
  default policy, which the conftest points at the target loop.
"""

from test.test_asyncio import test_ssl as _cpy

TestSSL = _cpy.TestSSL
