"""aiohttp's server and client, in one process, on asyncio and on ferroloop."""

import asyncio
import hashlib
import ssl

import pytest

aiohttp = pytest.importorskip("aiohttp")
from aiohttp import web  # noqa: E402

from .support import aiohttp_server, client_tls, digest, pattern, server_tls  # noqa: E402

BIG = 8 * 1024 * 1024


def make_app(events=None, file_path=None):
    events = events if events is not None else {}

    async def echo(request):
        n = int(request.query["n"])
        await asyncio.sleep(0.001 * (n % 7))  # answers finish out of order
        return web.json_response({"n": n, "square": n * n, "secure": request.secure})

    async def big(request):
        resp = web.StreamResponse()
        resp.content_type = "application/octet-stream"
        await resp.prepare(request)
        data = pattern(BIG)
        for i in range(0, BIG, 256 * 1024):
            await resp.write(data[i:i + 256 * 1024])
        await resp.write_eof()
        return resp

    async def upload(request):
        h = hashlib.sha256()
        size = 0
        async for chunk in request.content.iter_chunked(64 * 1024):
            h.update(chunk)
            size += len(chunk)
        return web.json_response({"size": size, "sha256": h.hexdigest()})

    async def slow(request):
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            events.setdefault("slow_cancelled", asyncio.Event()).set()
            raise
        return web.Response(text="late")

    async def ws(request):
        sock = web.WebSocketResponse(max_msg_size=0)
        await sock.prepare(request)
        async for msg in sock:
            if msg.type == aiohttp.WSMsgType.TEXT:
                if msg.data == "close":
                    await sock.close(code=4001, message=b"asked to")
                else:
                    await sock.send_str(msg.data.upper())
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await sock.send_str(digest(msg.data))
        return sock

    app = web.Application(client_max_size=BIG * 2)
    app.router.add_get("/echo", echo)
    app.router.add_get("/big", big)
    app.router.add_post("/upload", upload)
    app.router.add_get("/slow", slow)
    app.router.add_get("/ws", ws)
    if file_path is not None:
        # FileResponse sends with loop.sendfile() over plain TCP and falls
        # back to reads and writes under TLS.
        async def file(request):
            return web.FileResponse(file_path)

        app.router.add_get("/file", file)
    return app


def test_concurrent_requests(run):
    n = 300

    async def scenario():
        async with aiohttp_server(make_app()) as base:
            conn = aiohttp.TCPConnector(limit=40)
            async with aiohttp.ClientSession(connector=conn) as s:

                async def one(i):
                    async with s.get(f"{base}/echo", params={"n": i}) as r:
                        return r.status, await r.json()

                return await asyncio.gather(*(one(i) for i in range(n)))

    assert run(scenario) == [(200, {"n": i, "square": i * i, "secure": False}) for i in range(n)]


def test_large_streaming_bodies(run):
    async def scenario():
        async with aiohttp_server(make_app()) as base, aiohttp.ClientSession() as s:
            async with s.get(f"{base}/big") as r:
                h = hashlib.sha256()
                size = 0
                async for chunk in r.content.iter_chunked(100_000):
                    h.update(chunk)
                    size += len(chunk)
                down = (r.status, size, h.hexdigest())

            async def body():
                data = pattern(BIG)
                for i in range(0, BIG, 300_000):
                    yield data[i:i + 300_000]

            async with s.post(f"{base}/upload", data=body()) as r:
                up = (r.status, await r.json())
            return down, up

    down, up = run(scenario)
    expected = digest(pattern(BIG))
    assert down == (200, BIG, expected)
    assert up == (200, {"size": BIG, "sha256": expected})


def test_websocket(run):
    async def scenario():
        async with aiohttp_server(make_app()) as base, aiohttp.ClientSession() as s:
            async with s.ws_connect(f"{base}/ws", max_msg_size=0, autoping=True) as ws:
                await ws.send_str("hello")
                text = await ws.receive_str()
                blob = pattern(3 * 1024 * 1024 + 5)
                await ws.send_bytes(blob)
                blob_digest = await ws.receive_str()
                await ws.send_str("close")
                closing = await ws.receive()
                return text, blob_digest, closing.type, ws.close_code

    text, blob_digest, closing, code = run(scenario)
    assert text == "HELLO"
    assert blob_digest == digest(pattern(3 * 1024 * 1024 + 5))
    assert closing == aiohttp.WSMsgType.CLOSE
    assert code == 4001


def test_tls(run, tls_ca):
    async def scenario():
        app = make_app()
        async with aiohttp_server(app, ssl_context=server_tls(tls_ca)) as base:
            async with aiohttp.ClientSession() as s:
                results = []
                for i in range(20):
                    async with s.get(f"{base}/echo", params={"n": i}, ssl=client_tls(tls_ca)) as r:
                        results.append(await r.json())
                async with s.get(f"{base}/big", ssl=client_tls(tls_ca)) as r:
                    body = await r.read()
                return results, digest(body), base.startswith("https://")

    results, body_digest, https = run(scenario)
    assert results == [{"n": i, "square": i * i, "secure": True} for i in range(20)]
    assert body_digest == digest(pattern(BIG))
    assert https


def test_file_response(run, tls_ca, tmp_path):
    size = 5 * 1024 * 1024 + 11
    path = tmp_path / "blob.bin"
    path.write_bytes(pattern(size))

    async def scenario():
        got = []
        tls_server = aiohttp_server(make_app(file_path=path), ssl_context=server_tls(tls_ca))
        async with aiohttp_server(make_app(file_path=path)) as plain, tls_server as tls:
            async with aiohttp.ClientSession() as s:
                for base in (plain, tls):
                    async with s.get(f"{base}/file", ssl=client_tls(tls_ca)) as r:
                        got.append((r.status, digest(await r.read())))
                    ranged = {"Range": "bytes=70000-70999"}
                    async with s.get(f"{base}/file", headers=ranged, ssl=client_tls(tls_ca)) as r:
                        got.append((r.status, await r.read()))
        return got

    whole = digest(pattern(size))
    part = pattern(size)[70000:71000]
    assert run(scenario) == [(200, whole), (206, part), (200, whole), (206, part)]


def test_unix_socket(run, tmp_path):
    path = str(tmp_path / "http.sock")

    async def scenario():
        runner = web.AppRunner(make_app())
        await runner.setup()
        try:
            await web.UnixSite(runner, path).start()
            async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path)) as s:

                async def one(i):
                    async with s.get("http://localhost/echo", params={"n": i}) as r:
                        return (await r.json())["square"]

                return await asyncio.gather(*(one(i) for i in range(100)))
        finally:
            await runner.cleanup()

    assert run(scenario) == [i * i for i in range(100)]


def test_tls_untrusted_certificate(run, tls_ca):
    async def scenario():
        async with aiohttp_server(make_app(), ssl_context=server_tls(tls_ca)) as base:
            async with aiohttp.ClientSession() as s:
                with pytest.raises(aiohttp.ClientConnectorCertificateError) as info:
                    await s.get(f"{base}/echo", params={"n": 1}, ssl=client_tls())
                return info.value.certificate_error

    err = run(scenario, timeout=30)
    assert isinstance(err, ssl.SSLCertVerificationError)
    assert err.verify_message == "unable to get local issuer certificate"


def test_client_timeout_cancels_handler(run):
    async def scenario():
        events = {"slow_cancelled": asyncio.Event()}
        loop = asyncio.get_running_loop()
        async with aiohttp_server(make_app(events), handler_cancellation=True) as base:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.3)) as s:
                t0 = loop.time()
                with pytest.raises(TimeoutError):
                    async with s.get(f"{base}/slow") as r:
                        await r.read()
                elapsed = loop.time() - t0
            # The client hung up; the server's handler sees its cancellation.
            await asyncio.wait_for(events["slow_cancelled"].wait(), 5)
            return elapsed

    assert 0.25 <= run(scenario, timeout=30) < 3


def test_refused_connection(run):
    from .servers import free_port

    port = free_port()

    async def scenario():
        async with aiohttp.ClientSession() as s:
            with pytest.raises(aiohttp.ClientConnectorError) as info:
                await s.get(f"http://127.0.0.1:{port}/")
            return info.value.os_error

    err = run(scenario, timeout=20)
    assert isinstance(err, ConnectionRefusedError)
