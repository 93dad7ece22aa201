"""The ASGI application uvicorn serves in test_uvicorn.py: it reports which
loop and which process answered, so the test can tell that uvicorn really
ran ferroloop, in every worker."""

import asyncio
import json
import os

started = False


async def app(scope, receive, send):
    global started
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                started = True
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            break
    # A short wait keeps connections open long enough to spread over workers.
    await asyncio.sleep(0.01)
    loop = asyncio.get_running_loop()
    payload = json.dumps({
        "loop": f"{type(loop).__module__}.{type(loop).__qualname__}",
        "pid": os.getpid(),
        "path": scope["path"],
        "received": len(body),
        "lifespan": started,
    }).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})
