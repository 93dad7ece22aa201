"""redis.asyncio against a real Redis, on asyncio and on ferroloop."""

import asyncio
import errno

import pytest

redis = pytest.importorskip("redis")
import redis.asyncio as aioredis  # noqa: E402


def _client(srv, **kw):
    return aioredis.Redis(host=srv.host, port=srv.port, **kw)


def test_pipeline_transaction(run, redis_server):
    async def scenario():
        r = _client(redis_server)
        try:
            await r.delete("pipe:n", "pipe:l")
            async with r.pipeline(transaction=True) as pipe:
                pipe.set("pipe:n", 10).incrby("pipe:n", 5).rpush("pipe:l", *range(100)).lrange("pipe:l", 95, -1)
                pipe.get("pipe:n")
                return await pipe.execute()
        finally:
            await r.aclose()

    assert run(scenario) == [True, 15, 100, [b"95", b"96", b"97", b"98", b"99"], b"15"]


def test_pubsub(run, redis_server):
    async def scenario():
        r = _client(redis_server)
        ps = r.pubsub()
        try:
            await ps.subscribe("news", "sport")
            await ps.psubscribe("w*")
            got = []
            for ch, payload in [("news", "a"), ("sport", "b"), ("weather", "c"), ("other", "d"), ("news", "e")]:
                await r.publish(ch, payload)
            while len(got) < 4:
                msg = await ps.get_message(ignore_subscribe_messages=True, timeout=5.0)
                if msg is not None:
                    got.append((msg["type"], msg["channel"], msg["data"]))
            # Nothing published on a channel nobody subscribed to arrives.
            extra = await ps.get_message(ignore_subscribe_messages=True, timeout=0.2)
            await ps.unsubscribe()
            await ps.punsubscribe()
            return got, extra
        finally:
            await ps.aclose()
            await r.aclose()

    got, extra = run(scenario)
    assert got == [
        ("message", b"news", b"a"),
        ("message", b"sport", b"b"),
        ("pmessage", b"weather", b"c"),
        ("message", b"news", b"e"),
    ]
    assert extra is None


def test_unix_socket(run, redis_server):
    async def scenario():
        pool = aioredis.BlockingConnectionPool(
            connection_class=aioredis.UnixDomainSocketConnection, path=redis_server.unix_socket, max_connections=8
        )
        r = aioredis.Redis(connection_pool=pool)
        try:
            await r.set("unix:key", "over a unix socket")
            got = await asyncio.gather(*(r.get("unix:key") for _ in range(200)))
            return set(got), (await r.client_info())["addr"]
        finally:
            await r.aclose()
            await pool.aclose()

    values, addr = run(scenario)
    assert values == {b"over a unix socket"}
    assert addr.startswith("/")  # the server saw a unix-socket client


def test_blpop_timeout_and_wakeup(run, redis_server):
    async def scenario():
        r = _client(redis_server)
        pusher = _client(redis_server)
        try:
            await r.delete("q")
            t0 = asyncio.get_running_loop().time()
            empty = await r.blpop(["q"], timeout=0.3)
            waited = asyncio.get_running_loop().time() - t0

            async def push_later():
                await asyncio.sleep(0.1)
                await pusher.rpush("q", "job")

            pushing = asyncio.create_task(push_later())
            got = await r.blpop(["q"], timeout=5)
            await pushing
            return empty, waited, got
        finally:
            await r.aclose()
            await pusher.aclose()

    empty, waited, got = run(scenario)
    assert empty is None
    assert 0.25 <= waited < 3.0
    assert got == (b"q", b"job") or got == [b"q", b"job"]


def test_thousands_of_concurrent_commands(run, redis_server):
    n = 5000

    async def scenario():
        # Callers beyond the pool size wait for a connection instead of failing.
        pool = aioredis.BlockingConnectionPool(
            host=redis_server.host, port=redis_server.port, max_connections=64, timeout=30
        )
        r = aioredis.Redis(connection_pool=pool)
        try:
            await r.delete("counter")
            await asyncio.gather(*(r.incr("counter") for _ in range(n)))
            await asyncio.gather(*(r.set(f"k:{i}", i * i) for i in range(n)))
            values = await asyncio.gather(*(r.get(f"k:{i}") for i in range(n)))
            await r.delete(*(f"k:{i}" for i in range(n)))
            return int(await r.get("counter")), values
        finally:
            await r.aclose()
            await pool.aclose()

    counter, values = run(scenario)
    assert counter == n
    assert values == [str(i * i).encode() for i in range(n)]


def test_server_killed_during_blpop(run, private_redis):
    """The server dies while a BLPOP waits: ConnectionError, not a hang."""

    async def scenario():
        r = _client(private_redis, retry_on_error=[], retry=None)
        try:
            await r.ping()
            waiting = asyncio.create_task(r.blpop(["never"], timeout=0))
            await asyncio.sleep(0.2)
            assert not waiting.done()
            private_redis.proc.kill()
            with pytest.raises(redis.exceptions.ConnectionError):
                await waiting
            return True
        finally:
            await r.aclose()

    assert run(scenario, timeout=20)


def test_refused_connection(run):
    from .servers import free_port

    port = free_port()  # nothing listens there once it is released

    async def scenario():
        r = aioredis.Redis(host="127.0.0.1", port=port, retry=None, retry_on_error=[])
        try:
            with pytest.raises(redis.exceptions.ConnectionError) as info:
                await r.ping()
            return info.value.__context__
        finally:
            await r.aclose()

    cause = run(scenario, timeout=20)
    assert isinstance(cause, ConnectionRefusedError)
    assert cause.errno == errno.ECONNREFUSED
