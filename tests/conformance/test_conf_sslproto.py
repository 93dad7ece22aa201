"""CPython ``test.test_asyncio.test_sslproto`` against the target (group io).

* ``SslProtoHandshakeTests``: re-exported unchanged.  Its loop comes from
  ``asyncio.new_event_loop()`` (the target loop); it drives asyncio's
  ``SSLProtocol`` on that loop with a mocked transport.
* ``SelectorStartTLSTests`` (``BaseStartTLS``) -> ``TargetStartTLSTests``:
  subclass whose ``new_loop`` returns the target loop (upstream:
  ``SelectorEventLoop()``).
* ``ProactorStartTLSTests``: Windows only, not collected.
"""

from test.test_asyncio import test_sslproto as _cpy

import conformance_target

SslProtoHandshakeTests = _cpy.SslProtoHandshakeTests


class TargetStartTLSTests(_cpy.SelectorStartTLSTests):

    def new_loop(self):
        return conformance_target.new_loop()
