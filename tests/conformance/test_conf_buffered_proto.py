"""CPython ``test.test_asyncio.test_buffered_proto`` against the target
(group io).

* ``BufferedProtocolSelectorTests`` -> ``TargetBufferedProtocolTests``:
  subclass whose ``new_loop`` returns the target loop (upstream:
  ``SelectorEventLoop()``).
* ``BufferedProtocolProactorTests``: Windows only, not collected.
"""

from test.test_asyncio import test_buffered_proto as _cpy

import conformance_target


class TargetBufferedProtocolTests(_cpy.BufferedProtocolSelectorTests):

    def new_loop(self):
        return conformance_target.new_loop()
