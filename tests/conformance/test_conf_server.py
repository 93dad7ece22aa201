"""CPython ``test.test_asyncio.test_server`` against the target (group io).

* ``SelectorStartServerTests`` -> ``TargetStartServerTests``: subclass whose
  ``new_loop`` returns the target loop (upstream: ``SelectorEventLoop()``).
* ``ProactorStartServerTests``: Windows only, not collected.
"""

from test.test_asyncio import test_server as _cpy

import conformance_target


class TargetStartServerTests(_cpy.SelectorStartServerTests):

    def new_loop(self):
        return conformance_target.new_loop()
