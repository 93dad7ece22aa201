"""loop.sock_recv / sock_recv_into / sock_sendall / sock_accept: the same
behaviour on asyncio's loop and on ferroloop (whose versions are native,
see crates/ferroloop-py/src/sockops.rs), including the paths the benchmark
never takes: waiting, cancellation, replaced waiters, socket subclasses,
odd buffers and errors."""

import array
import asyncio
import os
import socket

import pytest

import ferroloop


def _pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def _registered(loop, sock):
    try:
        key = loop._selector.get_key(sock.fileno())
    except KeyError:
        return (False, False)
    r, w = key.data
    return (r is not None, w is not None)


async def _cancel_waiting(loop, sock, coro):
    """Start `coro` (which must wait), cancel it: its reader is gone."""
    t = asyncio.ensure_future(coro)
    await asyncio.sleep(0.01)
    assert not t.done()
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    await asyncio.sleep(0)
    assert _registered(loop, sock) == (False, False)


class SubSocket(socket.socket):
    """A subclass: its methods are what the loop must call."""

    calls = 0

    def recv(self, *args):
        SubSocket.calls += 1
        return super().recv(*args)

    def send(self, *args):
        SubSocket.calls += 1
        return super().send(*args)


def test_recv_waits_then_unregisters(loop):
    async def main():
        a, b = _pair()
        with a, b:
            t = asyncio.ensure_future(loop.sock_recv(a, 100))
            await asyncio.sleep(0.01)
            assert not t.done()
            assert _registered(loop, a) == (True, False)
            b.send(b"ping")
            assert await t == b"ping"
            await asyncio.sleep(0)
            assert _registered(loop, a) == (False, False)
            assert loop.remove_reader(a) is False

    loop.run_until_complete(main())


def test_cancelled_recv_leaves_data_and_slot(loop):
    async def main():
        a, b = _pair()
        with a, b:
            await _cancel_waiting(loop, a, loop.sock_recv(a, 100))
            assert loop.remove_reader(a) is False
            b.send(b"later")
            await asyncio.sleep(0.01)
            assert await loop.sock_recv(a, 100) == b"later"

    loop.run_until_complete(main())


def test_sendall_large_to_slow_reader(loop):
    data = bytes(range(256)) * 40_000  # ~10 MiB: many EAGAINs

    async def main():
        a, b = _pair()
        with a, b:
            t = asyncio.ensure_future(loop.sock_sendall(b, data))
            await asyncio.sleep(0.01)
            assert not t.done()
            assert _registered(loop, b) == (False, True)
            got = bytearray()
            buf = bytearray(50_000)
            while len(got) < len(data):
                n = await loop.sock_recv_into(a, buf)
                got += buf[:n]
            assert await t is None
            assert bytes(got) == data

    loop.run_until_complete(main())


def test_sendall_cancelled_midway(loop):
    async def main():
        a, b = _pair()
        with a, b:
            t = asyncio.ensure_future(loop.sock_sendall(b, b"x" * 20_000_000))
            await asyncio.sleep(0.01)
            t.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t
            await asyncio.sleep(0)
            assert _registered(loop, b) == (False, False)

    loop.run_until_complete(main())


def test_sendall_accepts_any_buffer(loop):
    payload = array.array("b", range(100)) * 10  # itemsize 1: asyncio counts items, not bytes

    async def main():
        a, b = _pair()
        with a, b:
            await loop.sock_sendall(b, b"")
            await loop.sock_sendall(b, bytearray(b"ab"))
            with pytest.raises(BufferError):  # socket.send's own error
                await loop.sock_sendall(b, memoryview(b"0123456789")[::2])
            await loop.sock_sendall(b, payload)
            want = b"ab" + payload.tobytes()
            got = b""
            while len(got) < len(want):
                got += await loop.sock_recv(a, 100_000)
            assert got == want

    loop.run_until_complete(main())


def test_recv_into_buffers(loop):
    async def main():
        a, b = _pair()
        with a, b:
            b.send(b"0123456789")
            await asyncio.sleep(0.01)
            buf = bytearray(20)
            assert await loop.sock_recv_into(a, memoryview(buf)[5:9]) == 4
            assert buf[5:9] == b"0123"
            arr = array.array("b", [0] * 3)
            assert await loop.sock_recv_into(a, arr) == 3
            assert arr.tobytes() == b"456"
            with pytest.raises(TypeError):
                await loop.sock_recv_into(a, b"read-only")
            assert await loop.sock_recv(a, 0) == b""
            assert await loop.sock_recv(a, 10) == b"789"

    loop.run_until_complete(main())


@pytest.mark.parametrize("n, exc", [(-1, ValueError), ("1", TypeError), (1.5, TypeError)])
def test_recv_bad_size(loop, n, exc):
    async def main():
        a, b = _pair()
        with a, b:
            with pytest.raises(exc):
                await loop.sock_recv(a, n)

    loop.run_until_complete(main())


def test_errors_of_the_syscall(loop):
    async def main():
        a, b = _pair()
        a.close()
        with pytest.raises(OSError) as ei:
            await loop.sock_recv(a, 1)
        closed_errno = ei.value.errno
        with pytest.raises(OSError):
            await loop.sock_sendall(a, b"x")
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            for _ in range(100):
                await loop.sock_sendall(b, b"x" * 100_000)
        b.close()
        return closed_errno

    assert loop.run_until_complete(main()) == 9  # EBADF, as socket.recv on fd -1


def test_peer_reset_while_waiting(loop):
    async def main():
        srv = socket.create_server(("127.0.0.1", 0))
        with srv:
            c = socket.create_connection(srv.getsockname())
            conn, _ = srv.accept()
            conn.setblocking(False)
            with conn:
                t = asyncio.ensure_future(loop.sock_recv(conn, 10))
                await asyncio.sleep(0.01)
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                c.close()  # RST
                with pytest.raises(ConnectionResetError):
                    await asyncio.wait_for(t, 5)

    loop.run_until_complete(main())


def test_socket_subclass_methods_are_used(loop):
    async def main():
        a = SubSocket(socket.AF_UNIX, socket.SOCK_STREAM)
        b = SubSocket(socket.AF_UNIX, socket.SOCK_STREAM)
        a.close(), b.close()
        x, y = socket.socketpair()
        a = SubSocket(fileno=x.detach())
        b = SubSocket(fileno=y.detach())
        a.setblocking(False), b.setblocking(False)
        with a, b:
            SubSocket.calls = 0
            t = asyncio.ensure_future(loop.sock_recv(a, 10))
            await asyncio.sleep(0.01)
            await loop.sock_sendall(b, b"sub")
            assert await t == b"sub"
            assert SubSocket.calls >= 3

    loop.run_until_complete(main())


def test_accept(loop):
    async def main():
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        srv.setblocking(False)
        with srv:
            t = asyncio.ensure_future(loop.sock_accept(srv))
            await asyncio.sleep(0.01)
            assert not t.done()
            c = socket.socket()
            c.setblocking(False)
            with c:
                await loop.sock_connect(c, srv.getsockname())
                conn, addr = await t
                with conn:
                    assert conn.gettimeout() == 0
                    assert addr == c.getsockname()

    loop.run_until_complete(main())


def test_second_recv_replaces_first(loop):
    """asyncio keeps one reader per descriptor: a second sock_recv on the
    same socket takes the slot, and the first one never completes."""

    async def main():
        a, b = _pair()
        with a, b:
            t1 = asyncio.ensure_future(loop.sock_recv(a, 100))
            await asyncio.sleep(0.01)
            t2 = asyncio.ensure_future(loop.sock_recv(a, 100))
            await asyncio.sleep(0.01)
            b.send(b"one")
            assert await asyncio.wait_for(t2, 5) == b"one"
            await asyncio.sleep(0.01)
            assert not t1.done()
            t1.cancel()

    loop.run_until_complete(main())


def test_fd_used_by_transport(loop):
    async def main():
        a, b = _pair()
        with b:
            tr, _ = await loop.connect_accepted_socket(asyncio.Protocol, a)
            with pytest.raises(RuntimeError, match="is used by transport"):
                await loop.sock_recv(a, 10)
            tr.close()
            await asyncio.sleep(0)

    loop.run_until_complete(main())


def test_debug_rejects_blocking_socket(loop):
    loop.set_debug(True)

    async def main():
        a, b = socket.socketpair()
        with a, b:
            for coro in (loop.sock_recv(a, 1), loop.sock_recv_into(a, bytearray(1)),
                         loop.sock_sendall(a, b"x"), loop.sock_accept(a)):
                with pytest.raises(ValueError, match="non-blocking"):
                    await coro

    loop.run_until_complete(main())


def test_coroutines_not_plain_calls(loop):
    """The methods are coroutine functions: errors come at await time, and
    the result can be wrapped in a Task."""
    a, b = _pair()
    with a, b:
        coro = loop.sock_recv(a, -1)  # no error yet
        assert asyncio.iscoroutine(coro)

        async def main():
            with pytest.raises(ValueError):
                await coro
            b.send(b"x")
            return await asyncio.create_task(loop.sock_recv(a, 1))

        assert loop.run_until_complete(main()) == b"x"


def test_connect_ok_refused_and_resolved(loop):
    async def main():
        srv = socket.create_server(("127.0.0.1", 0))
        port = srv.getsockname()[1]
        with srv:
            c = socket.socket()
            c.setblocking(False)
            with c:
                assert await loop.sock_connect(c, ("localhost", port)) is None
                assert c.getpeername()[1] == port
        dead = socket.socket()
        dead.setblocking(False)
        with dead:
            with pytest.raises(ConnectionRefusedError) as ei:
                await loop.sock_connect(dead, ("127.0.0.1", port))  # closed now
            assert "Connect call failed" in str(ei.value)
            assert _registered(loop, dead) == (False, False)

    loop.run_until_complete(main())


def test_datagram_sock_methods(loop):
    async def main():
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for s in (a, b):
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
        with a, b:
            t = asyncio.ensure_future(loop.sock_recvfrom(a, 100))
            await asyncio.sleep(0.01)
            assert not t.done()
            assert await loop.sock_sendto(b, b"one", a.getsockname()) == 3
            data, addr = await t
            assert (data, addr) == (b"one", b.getsockname())
            buf = bytearray(10)
            t = asyncio.ensure_future(loop.sock_recvfrom_into(a, buf, 2))
            await asyncio.sleep(0.01)
            await loop.sock_sendto(b, b"two", a.getsockname())
            assert await t == (2, b.getsockname())
            assert buf[:2] == b"tw"
            await _cancel_waiting(loop, a, loop.sock_recvfrom(a, 100))
            with pytest.raises(TypeError):
                await loop.sock_sendto(b, "text", a.getsockname())

    loop.run_until_complete(main())


def _ssl_socket():
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return ctx.wrap_socket(socket.socket(), server_hostname="example.org", do_handshake_on_connect=False)


class _DgramWithSibling(socket.socket):
    """A datagram socket carrying an SSLSocket for the cases that need one
    (closed with it)."""

    ssl_sibling = None


BAD_CALLS = {
    "recv_ssl_socket": lambda lp, s, d: lp.sock_recv(d.ssl_sibling, 1),
    "recv_not_a_socket": lambda lp, s, d: lp.sock_recv(None, 1),
    "sendall_str": lambda lp, s, d: lp.sock_sendall(s, "text"),
    "sendall_none": lambda lp, s, d: lp.sock_sendall(s, None),
    "recv_into_int": lambda lp, s, d: lp.sock_recv_into(s, 5),
    "sendto_bad_address": lambda lp, s, d: lp.sock_sendto(d, b"x", "not an address"),
    "sendto_str": lambda lp, s, d: lp.sock_sendto(d, "x", ("127.0.0.1", 9)),
    "recvfrom_negative": lambda lp, s, d: lp.sock_recvfrom(d, -1),
    "recvfrom_into_too_many": lambda lp, s, d: lp.sock_recvfrom_into(d, bytearray(2), 10),
    "accept_not_listening": lambda lp, s, d: lp.sock_accept(s),
    "connect_unix_path_missing": lambda lp, s, d: lp.sock_connect(s, "/nonexistent/ferroloop.sock"),
}


@pytest.mark.parametrize("case", sorted(BAD_CALLS))
def test_bad_input_parity(case):
    """Each bad call raises the same exception type and message on both
    loops (the expected text is whatever asyncio gives on this Python)."""
    import ferroloop

    def run(make_loop):
        lp = make_loop()
        s, _peer = socket.socketpair()
        d = _DgramWithSibling(socket.AF_INET, socket.SOCK_DGRAM)
        d.ssl_sibling = _ssl_socket()
        for x in (s, d):
            x.setblocking(False)
        try:
            lp.run_until_complete(BAD_CALLS[case](lp, s, d))
        except Exception as e:  # noqa: BLE001 - compared below
            return type(e), str(e)
        finally:
            for x in (s, _peer, d, d.ssl_sibling):
                x.close()
            lp.close()
        return "ok", None

    ours, theirs = run(ferroloop.new_event_loop), run(asyncio.new_event_loop)
    assert theirs[0] != "ok", "the case must be an error on asyncio"
    assert ours == theirs


def test_large_recv_sizes(loop):
    """sock_recv(n) with a large n: a stream socket returns what is there
    (in pieces as it arrives), a datagram comes whole."""

    async def main():
        a, b = _pair()
        with a, b:
            t = asyncio.ensure_future(loop.sock_recv(a, 1 << 20))
            await asyncio.sleep(0.01)
            b.send(b"s" * 5000)
            assert await t == b"s" * 5000
            b.send(b"t" * 150_000)
            got = b""
            while len(got) < 150_000:
                got += await loop.sock_recv(a, 1 << 20)
            assert got == b"t" * 150_000
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        v = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with u, v:
            u.bind(("127.0.0.1", 0))
            u.setblocking(False)
            t = asyncio.ensure_future(loop.sock_recv(u, 65536))
            await asyncio.sleep(0.01)
            v.sendto(b"d" * 40_000, u.getsockname())  # arrives after the wait began
            assert await t == b"d" * 40_000

    loop.run_until_complete(main())


@pytest.mark.parametrize("op", ["reader", "writer"])
def test_remove_io_of_a_socket_closed_since(loop, op):
    # The registration is found by the socket object itself (asyncio's
    # selector keeps it), although its fileno() is now -1: anyio closes a
    # UNIX stream's socket and then removes its reader.
    a, b = socket.socketpair()
    try:
        getattr(loop, f"add_{op}")(a, lambda: None)
        a.close()
        assert getattr(loop, f"remove_{op}")(a) is True
        # Once removed, nothing knows the object any more: asyncio's error.
        with pytest.raises(ValueError, match="Invalid file descriptor: -1"):
            getattr(loop, f"remove_{op}")(a)
    finally:
        b.close()


def test_remove_reader_of_an_unknown_closed_socket(loop):
    a, b = socket.socketpair()
    a.close()
    b.close()
    with pytest.raises(ValueError, match="Invalid file descriptor: -1"):
        loop.remove_reader(a)


@pytest.mark.parametrize("op", ["sock_connect", "sock_sendall"])
def test_failed_sock_op_leaves_no_reference_cycle(ferro_loop, op):
    # The exception's traceback keeps the sock_* coroutine's frame; that
    # frame must not also keep the future holding the exception (a cycle
    # through every failure, which asyncio removed in gh-124859 and anyio's
    # test_happy_eyeballs_refcycles checks). asyncio 3.11.7-3.13.0 still has
    # it, so this is ferroloop's own test.
    async def main():
        if op == "sock_connect":
            probe = socket.socket()
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
            probe.close()
            s = socket.socket()
            s.setblocking(False)
            try:
                await ferro_loop.sock_connect(s, ("127.0.0.1", port))
            except OSError as e:
                return e
            finally:
                s.close()
        else:
            a, b = socket.socketpair()
            a.setblocking(False)
            task = asyncio.ensure_future(ferro_loop.sock_sendall(a, b"x" * 10_000_000))
            await asyncio.sleep(0.01)
            b.close()  # the pending send then fails (EPIPE)
            try:
                await task
            except OSError as e:
                return e
            finally:
                a.close()
        raise AssertionError("the operation did not fail")

    exc = ferro_loop.run_until_complete(main())
    tb = exc.__traceback__
    frames = 0
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.startswith(os.path.dirname(ferroloop.__file__)):
            frames += 1
            held = [v for v in tb.tb_frame.f_locals.values() if isinstance(v, asyncio.Future)]
            assert held == [], (tb.tb_frame.f_code.co_name, held)
        tb = tb.tb_next
    assert frames  # the sock_* coroutine's frame was looked at
