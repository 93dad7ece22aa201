"""The websockets library, server and client in one process, on asyncio and
on ferroloop."""

import asyncio

import pytest

websockets = pytest.importorskip("websockets")
from websockets.asyncio.client import connect  # noqa: E402
from websockets.asyncio.server import serve  # noqa: E402
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK  # noqa: E402

from .support import digest, pattern  # noqa: E402


async def handler(ws):
    async for msg in ws:
        if isinstance(msg, bytes):
            await ws.send(digest(msg))
        elif msg == "bye":
            await ws.close(code=1000, reason="bye to you")
            return
        elif msg.startswith("fail "):
            await ws.close(code=int(msg.split()[1]), reason="failed")
            return
        else:
            # Sent back in fragments; the client sees one message.
            await ws.send([msg[i:i + 1000] for i in range(0, len(msg), 1000)])


def _serve():
    return serve(handler, "127.0.0.1", 0, max_size=None, compression=None)


def _url(server):
    host, port = server.sockets[0].getsockname()[:2]
    return f"ws://{host}:{port}"


def test_large_and_fragmented_messages(run):
    async def scenario():
        async with _serve() as server, connect(_url(server), max_size=None, compression=None) as ws:
            blob = pattern(5 * 1024 * 1024 + 3)
            await ws.send(blob)
            got_digest = await ws.recv()
            text = "ferroloop " * 20_000
            # Fragmented on the way out too: a generator of frames.
            await ws.send(text[i:i + 4096] for i in range(0, len(text), 4096))
            echoed = await ws.recv()
            return got_digest, echoed == text, len(echoed)

    assert run(scenario) == (digest(pattern(5 * 1024 * 1024 + 3)), True, 200_000)


def test_ping_pong(run):
    async def scenario():
        async with _serve() as server, connect(_url(server), ping_interval=None) as ws:
            latencies = []
            for payload in (b"", b"abc", b"x" * 125):
                pong = await ws.ping(payload)
                latencies.append(await asyncio.wait_for(pong, 5))
            return [isinstance(lat, float) and lat >= 0 for lat in latencies], ws.latency > 0

    assert run(scenario) == ([True, True, True], True)


def test_close_codes(run):
    async def scenario():
        codes = []
        async with _serve() as server:
            async with connect(_url(server)) as ws:
                await ws.send("bye")
                with pytest.raises(ConnectionClosedOK) as ok:
                    await ws.recv()
                codes.append((ok.value.rcvd.code, ok.value.rcvd.reason))
            for code in (1011, 4000):
                async with connect(_url(server)) as ws:
                    await ws.send(f"fail {code}")
                    with pytest.raises(ConnectionClosedError) as err:
                        await ws.recv()
                    codes.append((err.value.rcvd.code, err.value.rcvd.reason))
            ws = await connect(_url(server))
            await ws.close(code=1001, reason="going away")
            codes.append((ws.close_code, ws.close_reason))
        return codes

    assert run(scenario) == [(1000, "bye to you"), (1011, "failed"), (4000, "failed"), (1001, "going away")]


def test_server_gone(run):
    """Server shut down under an open connection: the client's recv ends
    with ConnectionClosed (close code 1001, going away)."""

    async def scenario():
        server = await _serve()
        ws = await connect(_url(server))
        server.close()
        with pytest.raises(websockets.ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 10)
        await server.wait_closed()
        await ws.close()
        return info.value.rcvd.code if info.value.rcvd else None

    assert run(scenario, timeout=30) == 1001
