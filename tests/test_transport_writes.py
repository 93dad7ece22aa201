"""Stream transport writes that have to wait for the peer: order, copy
semantics of mutable buffers, and write_eof after buffered data — the same
on asyncio's loop and ferroloop (whose buffer keeps large bytes objects by
reference and flushes with sendmsg; crates/ferroloop-py/src/wbuf.rs)."""

import asyncio
import socket
import sys

import pytest


def _expected_and_writes():
    writes = []
    for i in range(40):
        if i % 3 == 0:
            writes.append(bytes([i]) * 300_000)  # large: kept by reference
        elif i % 3 == 1:
            writes.append(bytes([i]) * 10)  # small: coalesced
        else:
            writes.append(bytearray([i]) * 70_000)  # mutable: copied
    return writes


def test_order_and_mutation_after_write(loop, request):
    if sys.version_info >= (3, 12) and request.node.callspec.id == "asyncio":
        # asyncio 3.12+ queues the caller's bytearray itself, so a later
        # mutation changes what is sent; ferroloop keeps the copy
        # (docs/DIFFERENCES.md). The control is only valid on 3.11.
        request.applymarker(pytest.mark.xfail(reason="asyncio 3.12+ queues mutable data by reference"))
    async def main():
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        with b:
            tr, _ = await loop.connect_accepted_socket(asyncio.Protocol, a)
            writes = _expected_and_writes()
            expected = b"".join(bytes(w) for w in writes)
            for w in writes:
                tr.write(w)
                if isinstance(w, bytearray):
                    w[:] = b"\xff" * len(w)  # must not change what was queued
            tr.writelines([b"tail-", memoryview(b"end")])
            expected += b"tail-end"
            assert tr.get_write_buffer_size() > 0  # the peer has not read yet
            tr.write_eof()
            got = bytearray()
            while True:
                chunk = await loop.sock_recv(b, 1 << 20)
                if not chunk:
                    break
                got += chunk
            if got != expected:
                # (Not a bare assert: pytest's diff of megabytes takes hours.)
                at = next((i for i, (x, y) in enumerate(zip(got, expected)) if x != y), min(len(got), len(expected)))
                pytest.fail(f"{len(got)} bytes received, {len(expected)} written; first difference at {at}")
            assert tr.get_write_buffer_size() == 0
            tr.close()
            await asyncio.sleep(0)

    loop.run_until_complete(main())


def test_abort_drops_buffer(loop):
    async def main():
        a, b = socket.socketpair()
        a.setblocking(False)
        with b:
            lost = loop.create_future()

            class P(asyncio.Protocol):
                def connection_lost(self, exc):
                    lost.set_result(exc)

            tr, _ = await loop.connect_accepted_socket(P, a)
            tr.write(b"x" * 5_000_000)
            assert tr.get_write_buffer_size() > 0
            tr.abort()
            assert tr.get_write_buffer_size() == 0
            assert await lost is None

    loop.run_until_complete(main())
