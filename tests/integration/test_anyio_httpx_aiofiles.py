"""anyio on its asyncio backend with ferroloop as ``loop_factory``, httpx
against the aiohttp server and against a raw anyio server, and aiofiles."""

import asyncio
import os

import pytest

anyio = pytest.importorskip("anyio")
httpx = pytest.importorskip("httpx")
aiofiles = pytest.importorskip("aiofiles")
import aiofiles.os  # noqa: E402

from .support import aiohttp_server, client_tls, digest, pattern, server_tls  # noqa: E402
from .test_aiohttp import BIG, make_app  # noqa: E402


def test_anyio_httpx_against_aiohttp(run, tls_ca):
    async def scenario():
        # handler_cancellation: /slow's handler ends when httpx gives up on
        # it, instead of holding the server's cleanup for its 30 s.
        plain = aiohttp_server(make_app(), handler_cancellation=True)
        async with plain as base, aiohttp_server(make_app(), ssl_context=server_tls(tls_ca)) as tls:
            results = {}
            async with httpx.AsyncClient(base_url=base, timeout=10) as client:

                async def one(i):
                    r = await client.get("/echo", params={"n": i})
                    results[i] = (r.status_code, r.json()["square"])

                async with anyio.create_task_group() as tg:
                    for i in range(100):
                        tg.start_soon(one, i)
                h = []
                async with client.stream("GET", "/big") as r:
                    async for chunk in r.aiter_bytes():
                        h.append(chunk)
                big = digest(b"".join(h))
                with pytest.raises(httpx.ReadTimeout):
                    await client.get("/slow", timeout=0.3)
            async with httpx.AsyncClient(verify=client_tls(tls_ca)) as client:
                secure = (await client.get(f"{tls}/echo", params={"n": 3})).json()
            async with httpx.AsyncClient(verify=client_tls()) as client:
                with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                    await client.get(f"{tls}/echo", params={"n": 3})
            return type(asyncio.get_running_loop()).__module__, [results[i] for i in range(100)], big, secure

    loop_module, results, big, secure = run.anyio(scenario)
    assert loop_module == ("ferroloop._loop" if run.name == "ferroloop" else "asyncio.unix_events")
    assert results == [(200, i * i) for i in range(100)]
    assert big == digest(pattern(BIG))
    assert secure == {"n": 3, "square": 9, "secure": True}


def test_anyio_streams_threads_and_cancel_scopes(run):
    async def scenario():
        async def handle(stream):
            async with stream:
                async for data in stream:
                    await stream.send(data[::-1])

        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, handle)
            replies = []
            async with await anyio.connect_tcp("127.0.0.1", port) as conn:
                for word in (b"abc", b"ferroloop", b"x" * 1000):
                    await conn.send(word)
                    got = b""
                    while len(got) < len(word):
                        got += await conn.receive()
                    replies.append(got)
            in_thread = await anyio.to_thread.run_sync(lambda: sum(range(1000)))
            with anyio.move_on_after(0.2) as scope:
                await anyio.sleep(30)
            send, receive = anyio.create_memory_object_stream(10)
            async with send, receive:
                for i in range(5):
                    await send.send(i)
                queued = [await receive.receive() for _ in range(5)]
            tg.cancel_scope.cancel()
        await listener.aclose()
        with pytest.raises(TimeoutError):
            with anyio.fail_after(0.1):
                await anyio.sleep(30)
        return replies, in_thread, scope.cancelled_caught, queued

    replies, in_thread, timed_out, queued = run.anyio(scenario)
    assert replies == [b"cba", b"poolorref", b"x" * 1000]
    assert in_thread == 499500
    assert timed_out is True
    assert queued == [0, 1, 2, 3, 4]


def test_httpx_against_raw_server(run):
    """httpx parsing a hand-written chunked response from a bare asyncio
    server, keeping the connection alive across requests."""

    async def scenario():
        requests = []
        handlers = []

        async def handle(reader, writer):
            handlers.append(asyncio.current_task())
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    requests.append(head.split(b"\r\n", 1)[0])
                    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    for part in (b"hello ", b"from ", b"a raw server"):
                        writer.write(b"%x\r\n%s\r\n" % (len(part), part))
                    writer.write(b"0\r\n\r\n")
                    await writer.drain()
            except asyncio.IncompleteReadError:
                pass
            finally:
                writer.close()
                await writer.wait_closed()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            async with httpx.AsyncClient() as client:
                bodies = [(await client.get(f"http://127.0.0.1:{port}/{i}")).text for i in range(3)]
            # On 3.11 wait_closed() does not wait for the connection handlers.
            await asyncio.gather(*handlers)
        return bodies, requests

    bodies, requests = run(scenario)
    assert bodies == ["hello from a raw server"] * 3
    assert requests == [f"GET /{i} HTTP/1.1".encode() for i in range(3)]


def test_aiofiles(run, tmp_path):
    data = pattern(3 * 1024 * 1024 + 17)
    path = str(tmp_path / "blob.bin")
    text_path = str(tmp_path / "lines.txt")

    async def scenario():
        async with aiofiles.open(path, "wb") as f:
            for i in range(0, len(data), 100_000):
                await f.write(data[i:i + 100_000])
        async with aiofiles.open(text_path, "w") as f:
            await f.writelines(f"line {i}\n" for i in range(1000))

        async def read_back():
            async with aiofiles.open(path, "rb") as f:
                await f.seek(1000)
                head = await f.read(10)
                await f.seek(0)
                return head, digest(await f.read())

        async def lines():
            async with aiofiles.open(text_path) as f:
                return [line async for line in f]

        # File work in the executor overlaps with other tasks on the loop.
        (head, whole), got_lines, _ = await asyncio.gather(read_back(), lines(), asyncio.sleep(0.01))
        st = await aiofiles.os.stat(path)
        await aiofiles.os.rename(text_path, text_path + ".old")
        return head, whole, len(got_lines), got_lines[-1], st.st_size, await aiofiles.os.path.exists(text_path)

    head, whole, n, last, size, still_there = run(scenario)
    assert head == data[1000:1010]
    assert whole == digest(data)
    assert (n, last) == (1000, "line 999\n")
    assert size == len(data)
    assert still_there is False
    assert os.path.exists(text_path + ".old")
