"""TLS data path: the same behaviour on asyncio's loop and on ferroloop,
whose per-record path (received records to the application, application
writes to the socket) is native (crates/ferroloop-py/src/tls.rs) while
states, timeouts and flow-control transitions stay asyncio's SSLProtocol."""

import asyncio
import logging

import pytest

from test_network_faults import HOST, port_of, server_context, tls_files, trusting_client_context  # noqa: F401


class Collect(asyncio.Protocol):
    def __init__(self):
        self.data = bytearray()
        self.eof = False
        self.lost = asyncio.get_running_loop().create_future()
        self.paused = 0
        self.resumed = 0

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.data += data

    def eof_received(self):
        self.eof = True

    def pause_writing(self):
        self.paused += 1

    def resume_writing(self):
        self.resumed += 1

    def connection_lost(self, exc):
        self.lost.set_result(exc)


class BufferedCollect(Collect, asyncio.BufferedProtocol):
    def get_buffer(self, sizehint):
        # An odd size: several reads per record. A memoryview: asyncio 3.11
        # reads into buf[offset:], a copy when buf is a bytearray.
        self._buf = bytearray(777)
        return memoryview(self._buf)

    def buffer_updated(self, nbytes):
        self.data += self._buf[:nbytes]


async def _pair(loop, tls_files, server_proto=Collect, client_proto=Collect):  # noqa: F811
    made = loop.create_future()

    def factory():
        p = server_proto()
        made.set_result(p)
        return p

    server = await loop.create_server(factory, HOST, 0, ssl=server_context(tls_files))
    tr, cp = await loop.create_connection(
        client_proto, HOST, port_of(server), ssl=trusting_client_context(tls_files),
        server_hostname="localhost",
    )
    sp = await made
    await _wait(lambda: hasattr(sp, "transport"))  # the server's handshake is done
    return server, tr, cp, sp


async def _wait(pred, timeout=10):
    for _ in range(int(timeout / 0.005)):
        if pred():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


@pytest.mark.parametrize("server_proto", [Collect, BufferedCollect], ids=["copied", "buffered"])
def test_bulk_both_ways_with_flow_control(loop, tls_files, server_proto):  # noqa: F811
    payload = bytes(range(256)) * 20_000  # ~5 MB: the writer pauses

    async def main():
        server, tr, cp, sp = await _pair(loop, tls_files, server_proto)
        sp.transport.pause_reading()
        for i in range(0, len(payload), 100_000):
            tr.write(payload[i:i + 100_000])
        tr.write(bytearray(b"mutable"))
        tr.write(memoryview(b"view"))
        tr.write(b"")
        await asyncio.sleep(0.05)
        assert cp.paused == 1  # the peer does not read
        sp.transport.resume_reading()
        want = payload + b"mutableview"
        await _wait(lambda: len(sp.data) >= len(want))
        assert bytes(sp.data) == want
        await _wait(lambda: cp.resumed == 1)
        sp.transport.write(b"back")
        await _wait(lambda: cp.data == b"back")
        tr.close()
        assert await cp.lost is None
        await _wait(lambda: sp.lost.done())
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())


def test_write_type_error_and_closed_writes(loop, tls_files):  # noqa: F811
    async def main():
        server, tr, cp, sp = await _pair(loop, tls_files)
        with pytest.raises(TypeError, match="data: expecting a bytes-like instance, got str"):
            tr.write("text")
        tr.close()
        await cp.lost
        tr.write(b"dropped")  # after close: counted, not sent, no error
        await _wait(lambda: sp.lost.done())
        assert sp.data == b""
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())


def test_peer_close_notify_gives_eof(loop, tls_files):  # noqa: F811
    async def main():
        server, tr, cp, sp = await _pair(loop, tls_files)
        sp.transport.write(b"last words")
        sp.transport.close()  # sends close_notify after the data
        assert await asyncio.wait_for(cp.lost, 10) is None
        assert cp.data == b"last words"
        assert cp.eof
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())


def test_protocol_error_is_fatal_for_the_connection(loop, tls_files, caplog):  # noqa: F811
    class Bad(Collect):
        def data_received(self, data):
            raise ZeroDivisionError("boom")

    async def main():
        errors = []
        loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
        server, tr, cp, sp = await _pair(loop, tls_files, server_proto=Bad)
        tr.write(b"x")
        exc = await asyncio.wait_for(sp.lost, 10)
        assert isinstance(exc, ZeroDivisionError)
        assert [c["message"] for c in errors] == ["Fatal error on SSL protocol"]
        await asyncio.wait_for(cp.lost, 10)
        server.close()
        await server.wait_closed()

    with caplog.at_level(logging.ERROR):
        loop.run_until_complete(main())


def test_start_tls_both_sides(loop, tls_files):  # noqa: F811
    """A plain connection upgraded with loop.start_tls() on both ends, then
    bulk data both ways; bad arguments fail as in asyncio."""
    payload = b"z" * 3_000_000

    async def main():
        accepted = loop.create_future()

        class Plain(Collect):
            def connection_made(self, transport):
                super().connection_made(transport)
                accepted.set_result(self)

        server = await loop.create_server(Plain, HOST, 0)
        ctr, cp = await loop.create_connection(Collect, HOST, port_of(server))
        sp = await accepted
        with pytest.raises(TypeError, match="sslcontext is expected"):
            await loop.start_tls(ctr, cp, object())
        server_tls = loop.create_task(
            loop.start_tls(sp.transport, sp, server_context(tls_files), server_side=True)
        )
        client_tr = await loop.start_tls(
            ctr, cp, trusting_client_context(tls_files), server_hostname="localhost"
        )
        server_tr = await server_tls
        client_tr.write(payload)
        await _wait(lambda: len(sp.data) >= len(payload))
        assert bytes(sp.data) == payload
        server_tr.write(b"ok")
        await _wait(lambda: cp.data == b"ok")
        assert client_tr.get_extra_info("ssl_object") is not None
        client_tr.close()
        await asyncio.wait_for(cp.lost, 10)
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())


def test_sslobject_class_methods_are_called(loop, tls_files):  # noqa: F811
    """A context's ``sslobject_class`` keeps its own ``read``/``write`` (the
    native record path calls the ``_ssl`` object of a plain ``SSLObject``
    directly, never a subclass's)."""
    import ssl

    calls = {"read": 0, "write": 0}

    class Counting(ssl.SSLObject):
        def read(self, *args, **kwargs):
            calls["read"] += 1
            return super().read(*args, **kwargs)

        def write(self, data):
            calls["write"] += 1
            return super().write(data)

    class Echo(Collect):
        def data_received(self, data):
            super().data_received(data)
            self.transport.write(data.upper())

    async def main():
        ctx = server_context(tls_files)
        ctx.sslobject_class = Counting
        made = loop.create_future()

        def factory():
            p = Echo()
            made.set_result(p)
            return p

        server = await loop.create_server(factory, HOST, 0, ssl=ctx)
        tr, cp = await loop.create_connection(
            Collect, HOST, port_of(server), ssl=trusting_client_context(tls_files),
            server_hostname="localhost",
        )
        sp = await made
        await _wait(lambda: hasattr(sp, "transport"))
        before = dict(calls)
        for i in range(5):
            tr.write(b"ping %d;" % i)
            await _wait(lambda: cp.data.endswith(b"PING %d;" % i))
        assert bytes(sp.data) == b"".join(b"ping %d;" % i for i in range(5))
        assert calls["read"] - before["read"] >= 5
        assert calls["write"] - before["write"] == 5
        tr.close()
        await asyncio.wait_for(cp.lost, 10)
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())
