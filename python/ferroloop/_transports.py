"""The Python face of ferroloop's native socket transport.

``SocketTransport`` derives from ``asyncio.Transport`` (so isinstance checks
hold for real) and owns a ``_ferroloop.TransportCore`` that keeps the hot
state and does the I/O: reading is driven by the reactor inside the core,
and the hot methods (``write``, ``writelines``, ``is_closing``,
``get_write_buffer_size``) are the core's own, bound onto the instance. What
remains here is cold: construction, ``connection_lost``, error reporting,
sendfile's empty-waiter handshake and the repr. Behaviour follows asyncio's
``_SelectorSocketTransport``.
"""

import sys
import warnings

from asyncio import base_events, constants, transports, trsock
from asyncio.futures import _set_result_unless_cancelled  # type: ignore[attr-defined]  # private helper (tests/test_asyncio_private_api.py)
from asyncio.log import logger

from . import _ferroloop

__all__ = ("SocketTransport", "DatagramTransport")

# asyncio 3.13's Server keeps its clients (for close_clients/abort_clients):
# _attach/_detach take the transport there and nothing before.
# tests/test_asyncio_private_api.py holds this to the running asyncio.
SERVER_TRACKS_CLIENTS = sys.version_info >= (3, 13)


class _NativeTransport:
    """What the native transports share: asyncio's ``_SelectorTransport``
    bookkeeping (extra info, the loop's transport table, the server), error
    reporting and the unclosed-transport warning."""

    def _init_socket(self, loop, sock, server):
        self._extra["socket"] = trsock.TransportSocket(sock)
        try:
            self._extra["sockname"] = sock.getsockname()
        except OSError:
            self._extra["sockname"] = None
        if "peername" not in self._extra:
            try:
                self._extra["peername"] = sock.getpeername()
            except OSError:
                self._extra["peername"] = None
        self._loop = loop
        self._sock = sock
        self._sock_fd = sock.fileno()
        self._server = server
        self._protocol_connected = True

    # --- protocol and flow control: the core holds the state ----------------

    @property
    def _protocol(self):
        return self._core.get_protocol()

    @property
    def _protocol_paused(self):
        return self._core._protocol_paused

    @_protocol_paused.setter
    def _protocol_paused(self, value):
        # _FlowControlMixin.__init__ initialises it; the core owns the state.
        pass

    def set_protocol(self, protocol):
        self._core.set_protocol(protocol)
        self._protocol_connected = True

    def get_protocol(self):
        return self._core.get_protocol()

    def get_write_buffer_limits(self):
        return self._core.get_write_buffer_limits()

    def set_write_buffer_limits(self, high=None, low=None):
        self._core.set_write_buffer_limits(high, low)

    # --- closing ------------------------------------------------------------

    def close(self):
        self._core.close()

    def abort(self):
        self._core._force_close(None)

    def _force_close(self, exc):
        self._core._force_close(exc)

    def _call_connection_lost(self, exc):
        protocol = self._core.get_protocol()
        try:
            if self._protocol_connected and protocol is not None:
                protocol.connection_lost(exc)
        finally:
            self._release()

    def _announce(self, protocol, waiter):
        # Every protocol callback of the transport runs in the context
        # current at its creation (captured by the core), as uvloop does.
        context = self._core._context
        self._loop.call_soon(protocol.connection_made, self, context=context)
        # Reading starts once connection_made() has run.
        self._loop.call_soon(self._core._start_reading, context=context)
        if waiter is not None:
            self._loop.call_soon(_set_result_unless_cancelled, waiter, None)

    def _fatal_error(self, exc, message="Fatal error on transport"):
        if isinstance(exc, OSError):
            if self._loop.get_debug():
                # Called from the core, not from an except block: pass the
                # exception itself.
                logger.debug("%r: %s", self, message, exc_info=exc)
        else:
            self._loop.call_exception_handler(
                {
                    "message": message,
                    "exception": exc,
                    "transport": self,
                    "protocol": self._core.get_protocol(),
                }
            )
        self._core._force_close(exc)

    def _release(self):
        """After connection_lost: leave the loop, close the socket."""
        self._core._detach()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._loop = None
        server = self._server
        if server is not None:
            if SERVER_TRACKS_CLIENTS:
                server._detach(self)
            else:
                server._detach()
            self._server = None

    def __del__(self, _warn=warnings.warn):
        if self._sock is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._sock.close()

    def __repr__(self):
        info = [self.__class__.__name__]
        if self._sock is None:
            info.append("closed")
        elif self._core.is_closing():
            info.append("closing")
        info.append(f"fd={self._sock_fd}")
        if self._loop is not None and not self._loop.is_closed():
            reading, writing = self._core._polling
            info.append("read=polling" if reading else "read=idle")
            state = "polling" if writing else "idle"
            info.append(f"write=<{state}, bufsize={self._core.get_write_buffer_size()}>")
        return "<{}>".format(" ".join(info))


class SocketTransport(_NativeTransport, transports._FlowControlMixin, transports.Transport):
    """A TCP or Unix stream socket transport with its I/O in Rust.

    It derives from asyncio's ``_FlowControlMixin`` because asyncio's
    sendfile fallback requires that; the flow-control state itself lives in
    the core (``_protocol_paused`` reads it from there)."""

    _start_tls_compatible = True
    _sendfile_compatible = constants._SendfileMode.TRY_NATIVE
    max_size = 256 * 1024  # bytes per recv, as asyncio's

    def __init__(self, loop, sock, protocol, waiter=None, extra=None, server=None):
        super().__init__(extra, loop)
        self._init_socket(loop, sock, server)
        self._empty_waiter = None
        core = self._core = _ferroloop.TransportCore(loop, self, sock, protocol)
        # Hot methods straight from the core: no Python frame per call.
        self.write = core.write
        self.writelines = core.writelines
        self.is_closing = core.is_closing
        self.get_write_buffer_size = core.get_write_buffer_size
        base_events._set_nodelay(sock)
        if server is not None:
            if SERVER_TRACKS_CLIENTS:
                server._attach(self)
            else:
                server._attach()
        loop._transports[self._sock_fd] = self
        core._register()
        self._announce(protocol, waiter)

    # --- reading ----------------------------------------------------------

    def is_reading(self):
        return self._core.is_reading()

    def pause_reading(self):
        if self._core.pause_reading() and self._loop.get_debug():
            logger.debug("%r pauses reading", self)

    def resume_reading(self):
        if self._core.resume_reading() and self._loop.get_debug():
            logger.debug("%r resumes reading", self)

    def _log_eof(self):
        logger.debug("%r received EOF", self)

    # --- writing ----------------------------------------------------------

    def write_eof(self):
        self._core.write_eof()

    def can_write_eof(self):
        return True

    # --- closing ----------------------------------------------------------

    def _call_connection_lost(self, exc):
        super()._call_connection_lost(exc)
        if self._empty_waiter is not None:
            self._empty_waiter.set_exception(ConnectionError("Connection is closed by peer"))

    # --- sendfile support (BaseSelectorEventLoop._sendfile_native) ----------

    def _make_empty_waiter(self):
        if self._empty_waiter is not None:
            raise RuntimeError("Empty waiter is already set")
        self._empty_waiter = self._loop.create_future()
        if not self._core.get_write_buffer_size():
            self._empty_waiter.set_result(None)
        self._core._set_empty_waiter(self._empty_waiter)
        return self._empty_waiter

    def _reset_empty_waiter(self):
        self._empty_waiter = None
        self._core._set_empty_waiter(None)


class DatagramTransport(_NativeTransport, transports._FlowControlMixin, transports.Transport, transports.DatagramTransport):
    """A UDP or Unix datagram transport with its I/O loop in Rust
    (``_ferroloop.DatagramCore``). Behaviour follows asyncio's
    ``_SelectorDatagramTransport``; it is an ``asyncio.Transport`` as
    asyncio's is, and an ``asyncio.DatagramTransport`` as well."""

    max_size = 256 * 1024  # bytes per recvfrom, as asyncio's

    def __init__(self, loop, sock, protocol, address=None, waiter=None, extra=None):
        super().__init__(extra, loop)
        self._init_socket(loop, sock, None)
        self._address = address
        peer = self._extra["peername"]
        core = self._core = _ferroloop.DatagramCore(
            loop, self, sock, protocol, address, bool(peer), peer is not None and not peer,
        )
        self.sendto = core.sendto
        self.is_closing = core.is_closing
        self.get_write_buffer_size = core.get_write_buffer_size
        loop._transports[self._sock_fd] = self
        self._announce(protocol, waiter)

    @property
    def _conn_lost(self):
        return self._core._conn_lost

