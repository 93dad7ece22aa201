"""CPython ``test.test_asyncio.test_server`` against the target (group io).

* ``SelectorStartServerTests`` -> ``TargetStartServerTests``: subclass whose
  ``new_loop`` returns the target loop (upstream: ``SelectorEventLoop()``).
* ``ProactorStartServerTests``: Windows only, not collected.
"""

import sys

from test.test_asyncio import test_server as _cpy

import conformance_target


class TargetStartServerTests(_cpy.SelectorStartServerTests):

    def new_loop(self):
        return conformance_target.new_loop()


# Loop-level (IsolatedAsyncioTestCase: the loop comes from the policy).
if sys.version_info >= (3, 12):
    TestServer2 = _cpy.TestServer2
if sys.version_info >= (3, 13):
    # create_unix_server(cleanup_socket=...) and Server.close_clients().
    UnixServerCleanupTests = _cpy.UnixServerCleanupTests
