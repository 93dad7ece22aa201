"""Helpers shared by the in-process server scenarios."""

import contextlib
import hashlib
import ssl


def pattern(size):
    """``size`` bytes that are not all alike, so a reordered or dropped chunk
    changes the digest."""
    block = bytes(range(256)) * 256  # 64 KiB
    reps, rest = divmod(size, len(block))
    return block * reps + block[:rest]


def digest(data):
    return hashlib.sha256(data).hexdigest()


def server_tls(ca, *hosts):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*(hosts or ("127.0.0.1", "localhost"))).configure_cert(ctx)
    return ctx


def client_tls(ca=None):
    """A client context trusting ``ca``; without it, only the system store
    (which does not hold a test CA)."""
    ctx = ssl.create_default_context()
    if ca is not None:
        ca.configure_trust(ctx)
    return ctx


@contextlib.asynccontextmanager
async def aiohttp_server(app, ssl_context=None, **runner_kw):
    """Serves ``app`` on a free loopback port; yields the base URL."""
    from aiohttp import web

    runner = web.AppRunner(app, **runner_kw)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"{'https' if ssl_context else 'http'}://{host}:{port}"
    finally:
        await runner.cleanup()
