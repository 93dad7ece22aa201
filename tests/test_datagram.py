"""Datagram transports (create_datagram_endpoint): the same behaviour on
asyncio's loop and on ferroloop, whose transport is native
(crates/ferroloop-py/src/datagram.rs)."""

import asyncio
import contextvars
import socket
import sys

import pytest


class Proto(asyncio.DatagramProtocol):
    def __init__(self):
        self.transport = None
        self.got = asyncio.Queue()
        self.errors = asyncio.Queue()
        self.lost = asyncio.get_running_loop().create_future()
        self.events = []

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def datagram_received(self, data, addr):
        self.got.put_nowait((data, addr))

    def error_received(self, exc):
        self.errors.put_nowait(exc)

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost.set_result(exc)


async def _endpoint(loop, **kw):
    return await loop.create_datagram_endpoint(Proto, **kw)


def test_echo_and_extra_info(loop):
    async def main():
        srv, sp = await _endpoint(loop, local_addr=("127.0.0.1", 0))
        addr = srv.get_extra_info("sockname")
        cli, cp = await _endpoint(loop, remote_addr=addr)
        assert isinstance(srv, asyncio.BaseTransport)
        assert isinstance(cli, asyncio.Transport)  # as asyncio's own
        assert cli.get_extra_info("peername") == addr
        assert cli.get_extra_info("socket").family == socket.AF_INET
        for i in range(50):
            cli.sendto(b"ping %d" % i)
        for i in range(50):
            data, caddr = await asyncio.wait_for(sp.got.get(), 5)
            assert data == b"ping %d" % i
            srv.sendto(data.upper(), caddr)
        for i in range(50):
            data, _ = await asyncio.wait_for(cp.got.get(), 5)
            assert data == b"PING %d" % i
        assert cli.get_write_buffer_size() == 0
        srv.close()
        cli.close()
        assert srv.is_closing()
        assert await sp.lost is None
        assert await cp.lost is None
        assert sp.events == ["made", "lost"]

    loop.run_until_complete(main())


def test_sendto_argument_checks(loop):
    async def main():
        srv, sp = await _endpoint(loop, local_addr=("127.0.0.1", 0))
        addr = srv.get_extra_info("sockname")
        cli, cp = await _endpoint(loop, remote_addr=addr)
        with pytest.raises(TypeError, match="bytes-like object"):
            cli.sendto("text")
        with pytest.raises(ValueError, match="Invalid address"):
            cli.sendto(b"x", ("127.0.0.1", 1))
        cli.sendto(b"", addr)  # dropped before 3.13; sent from 3.13 on, as asyncio
        cli.sendto(bytearray(b"ba"), addr)
        cli.sendto(memoryview(b"mv"))
        if sys.version_info >= (3, 13):
            assert (await asyncio.wait_for(sp.got.get(), 5))[0] == b""
        assert (await asyncio.wait_for(sp.got.get(), 5))[0] == b"ba"
        assert (await asyncio.wait_for(sp.got.get(), 5))[0] == b"mv"
        assert sp.got.empty()
        srv.close()
        cli.close()
        await cp.lost

    loop.run_until_complete(main())


def test_error_received_on_refused_port(loop):
    async def main():
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()
        probe.close()  # nobody listens there: ICMP port unreachable
        cli, cp = await _endpoint(loop, remote_addr=dead)
        cli.sendto(b"anyone?")
        exc = await asyncio.wait_for(cp.errors.get(), 5)
        assert isinstance(exc, ConnectionRefusedError)
        assert not cli.is_closing()  # an error_received does not close
        cli.close()
        await cp.lost

    loop.run_until_complete(main())


def test_writes_after_close_are_dropped(loop):
    async def main():
        srv, sp = await _endpoint(loop, local_addr=("127.0.0.1", 0))
        cli, cp = await _endpoint(loop, remote_addr=srv.get_extra_info("sockname"))
        cli.abort()
        await cp.lost
        for _ in range(10):
            cli.sendto(b"late")  # counted, logged after a few; no error
        srv.close()
        await sp.lost

    loop.run_until_complete(main())


def test_unix_socketpair(loop):
    async def main():
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        with b:
            tr, pr = await loop.create_datagram_endpoint(Proto, sock=a)
            b.send(b"hello")
            data, addr = await asyncio.wait_for(pr.got.get(), 5)
            assert data == b"hello"
            assert addr is None
            tr.close()
            await pr.lost

    loop.run_until_complete(main())


def test_protocol_error_goes_to_handler(loop):
    class Bad(Proto):
        def datagram_received(self, data, addr):
            raise ZeroDivisionError("boom")

    async def main():
        errors = []
        loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
        srv, sp = await loop.create_datagram_endpoint(Bad, local_addr=("127.0.0.1", 0))
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with s:
            s.sendto(b"1", srv.get_extra_info("sockname"))
            s.sendto(b"2", srv.get_extra_info("sockname"))
            for _ in range(100):
                if len(errors) == 2:
                    break
                await asyncio.sleep(0.01)
        assert [type(c["exception"]) for c in errors] == [ZeroDivisionError] * 2
        assert not srv.is_closing()  # the transport carries on
        srv.close()
        await sp.lost

    loop.run_until_complete(main())


def test_many_queued_datagrams_all_arrive(loop):
    async def main():
        srv, sp = await _endpoint(loop, local_addr=("127.0.0.1", 0))
        addr = srv.get_extra_info("sockname")
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with s:
            # queued before the loop looks: one readiness edge, 200 datagrams
            for i in range(200):
                s.sendto(b"%d" % i, addr)
            got = [(await asyncio.wait_for(sp.got.get(), 5))[0] for _ in range(200)]
        assert got == [b"%d" % i for i in range(200)]
        srv.close()
        await sp.lost

    loop.run_until_complete(main())


def test_ferroloop_callbacks_run_in_creation_context(ferro_loop):
    """A deliberate difference (docs/DIFFERENCES.md, as uvloop): every
    protocol callback runs in the context the transport was made in."""
    loop = ferro_loop
    cvar = contextvars.ContextVar("cvar", default="outer")
    seen = {}

    class P(Proto):
        def datagram_received(self, data, addr):
            seen["data"] = cvar.get()
            super().datagram_received(data, addr)

        def connection_lost(self, exc):
            seen["lost"] = cvar.get()
            super().connection_lost(exc)

    async def main():
        cvar.set("inner")
        srv, sp = await loop.create_datagram_endpoint(P, local_addr=("127.0.0.1", 0))
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with s:
            s.sendto(b"x", srv.get_extra_info("sockname"))
            await asyncio.wait_for(sp.got.get(), 5)

        def close():
            cvar.set("closer")
            srv.close()

        contextvars.copy_context().run(close)
        await sp.lost

    loop.run_until_complete(main())
    assert seen == {"data": "inner", "lost": "inner"}


def test_sendto_without_address_on_unconnected_socket(loop):
    """asyncio calls sock.sendto(data, None): a TypeError, fatal for the
    transport; ferroloop does the same there (only a connected, nameless
    peer gets send())."""

    async def main():
        errors = []
        loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
        tr, pr = await _endpoint(loop, local_addr=("127.0.0.1", 0))
        tr.sendto(b"where to?")
        exc = await asyncio.wait_for(pr.lost, 5)
        assert isinstance(exc, TypeError)
        assert [c["message"] for c in errors] == ["Fatal write error on datagram transport"]

    loop.run_until_complete(main())
