"""ferroloop's TLS: asyncio's SSLProtocol with the per-record data path
native (``crates/ferroloop-py/src/net/tls.rs``) and the application's
callbacks in one context. The state machine, timeouts and flow-control
transitions stay asyncio's methods."""

from asyncio import sslproto

from . import _ferroloop

__all__ = ("_SSLProtocol",)


class _SSLProtocol(sslproto.SSLProtocol):
    """asyncio's SSLProtocol, with the application protocol's callbacks in
    one context: the one the TLS transport was created in, as for every
    other callback of ferroloop's transports (docs/DIFFERENCES.md).

    Reads, the handshake and connection_lost already reach the application
    from the socket transport, in that context; the two paths that start in
    application code are moved into it: flow control triggered by
    ``write()`` (pause_writing/resume_writing) and the read resumed by
    ``resume_reading()`` (data_received).

    The steady-state data path (received records to the application, the
    application's writes to the socket) runs natively; states, timeouts and
    flow-control transitions are asyncio's methods."""

    _creation_context = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # asyncio's application transport, with write() on the native path
        # (a subclass adding no state, so the class can be switched).
        self._app_transport.__class__ = _SSLAppTransport

    # The per-record data path, native (crates/ferroloop-py/src/tls.rs).
    # Thin methods rather than instance attributes bound with partial(),
    # which would make every connection a reference cycle.

    def get_buffer(self, n):
        return _tls_get_buffer(self, n)

    def buffer_updated(self, nbytes):
        _tls_buffer_updated(self, nbytes)

    def _control_app_writing(self):
        ctx = self._creation_context
        if ctx is None:
            return super()._control_app_writing()
        return _ferroloop._run_in_context(ctx, super()._control_app_writing)

    def _resume_reading(self):
        ctx = self._creation_context
        if ctx is None:
            return super()._resume_reading()
        return _ferroloop._run_in_context(ctx, super()._resume_reading)


class _SSLAppTransport(sslproto._SSLProtocolTransport):
    """The application side of a TLS connection: asyncio's, with write()
    native."""

    __slots__ = ()

    def write(self, data):
        _tls_write(self._ssl_protocol, data)


# The native transport calls the two functions directly for this class.
_ferroloop._register_tls_protocol(_SSLProtocol)
_tls_get_buffer = _ferroloop._tls_get_buffer
_tls_buffer_updated = _ferroloop._tls_buffer_updated
_tls_write = _ferroloop._tls_write
