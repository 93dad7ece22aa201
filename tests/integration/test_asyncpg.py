"""asyncpg against a real PostgreSQL, on asyncio and on ferroloop."""

import asyncio
import errno
import io
import ssl

import pytest

asyncpg = pytest.importorskip("asyncpg")

from .servers import free_port  # noqa: E402


def _connect(pg, **kw):
    kw.setdefault("ssl", False)
    return asyncpg.connect(host=pg.host, port=pg.port, user="postgres", database="postgres", **kw)


def test_pool_hundreds_of_concurrent_queries(run, postgres):
    n = 400

    async def scenario():
        async with asyncpg.create_pool(
            host=postgres.host, port=postgres.port, user="postgres", database="postgres", ssl=False,
            min_size=4, max_size=20,
        ) as pool:
            results = await asyncio.gather(
                *(pool.fetchval("SELECT $1::int * 2", i) for i in range(n))
            )
            # Many queries at once must really have spread over the pool.
            pids = await asyncio.gather(*(pool.fetchval("SELECT pg_backend_pid(), pg_sleep(0.05)") for _ in range(40)))
            return results, len(set(pids))

    results, backends = run(scenario)
    assert results == [2 * i for i in range(n)]
    assert backends > 1


def test_transactions_commit_rollback_savepoint(run, postgres):
    async def scenario():
        conn = await _connect(postgres)
        try:
            await conn.execute("CREATE TEMP TABLE t (v int PRIMARY KEY)")
            async with conn.transaction():
                await conn.execute("INSERT INTO t VALUES (1), (2)")
            with pytest.raises(ZeroDivisionError):
                async with conn.transaction():
                    await conn.execute("INSERT INTO t VALUES (3)")
                    1 / 0
            async with conn.transaction():
                await conn.execute("INSERT INTO t VALUES (4)")
                with pytest.raises(asyncpg.UniqueViolationError):
                    async with conn.transaction():  # a savepoint
                        await conn.execute("INSERT INTO t VALUES (5)")
                        await conn.execute("INSERT INTO t VALUES (4)")
            in_tx = conn.is_in_transaction()
            return [r["v"] for r in await conn.fetch("SELECT v FROM t ORDER BY v")], in_tx
        finally:
            await conn.close()

    assert run(scenario) == ([1, 2, 4], False)


def test_copy_in_and_out(run, postgres):
    n = 20000

    async def scenario():
        conn = await _connect(postgres)
        try:
            await conn.execute("CREATE TEMP TABLE c (id int, name text)")
            status = await conn.copy_records_to_table("c", records=((i, f"n{i}") for i in range(n)))
            total = await conn.fetchval("SELECT sum(id) FROM c")
            out = io.BytesIO()
            query = "SELECT id, name FROM c WHERE id % 1000 = 0 ORDER BY id"
            await conn.copy_from_query(query, output=out, format="csv")
            return status, total, out.getvalue()
        finally:
            await conn.close()

    status, total, csv = run(scenario)
    assert status == f"COPY {n}"
    assert total == n * (n - 1) // 2
    assert csv.splitlines() == [f"{i},n{i}".encode() for i in range(0, n, 1000)]


def test_listen_notify(run, postgres):
    async def scenario():
        listener = await _connect(postgres)
        sender = await _connect(postgres)
        got = asyncio.Queue()
        try:
            def on_notify(_conn, _pid, channel, payload):
                got.put_nowait((channel, payload))

            await listener.add_listener("jobs", on_notify)
            for i in range(50):
                await sender.execute("SELECT pg_notify('jobs', $1)", f"job-{i}")
            received = [await got.get() for _ in range(50)]
            await listener.remove_listener("jobs", on_notify)
            await sender.execute("NOTIFY jobs, 'after removal'")
            await sender.execute("SELECT pg_sleep(0.1)")
            received.append(got.qsize())
            return received
        finally:
            await listener.close()
            await sender.close()

    assert run(scenario) == [("jobs", f"job-{i}") for i in range(50)] + [0]


def test_query_cancelled_by_timeout(run, postgres):
    """The query is cancelled on the server, and the connection stays usable."""

    async def scenario():
        conn = await _connect(postgres)
        loop = asyncio.get_running_loop()
        try:
            t0 = loop.time()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(conn.fetch("SELECT pg_sleep(10)"), 0.3)
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await conn.execute("SELECT pg_sleep(10)")
            with pytest.raises(TimeoutError):
                await conn.fetchval("SELECT pg_sleep(10)", timeout=0.3)
            after = await conn.fetchval("SELECT 41 + 1")
            return after, loop.time() - t0
        finally:
            await conn.close()

    after, elapsed = run(scenario, timeout=30)
    assert after == 42
    assert elapsed < 8  # the three sleeps were cancelled, not waited out


def test_backend_terminated_mid_query(run, postgres):
    async def scenario():
        victim = await _connect(postgres)
        admin = await _connect(postgres)
        try:
            pid = victim.get_server_pid()
            query = asyncio.create_task(victim.fetch("SELECT pg_sleep(10)"))
            await asyncio.sleep(0.2)
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
            with pytest.raises((asyncpg.AdminShutdownError, asyncpg.ConnectionDoesNotExistError)):
                await query
            return victim.is_closed()
        finally:
            await victim.close()
            await admin.close()

    assert run(scenario, timeout=30) is True


def test_unix_socket(run, postgres):
    async def scenario():
        async with asyncpg.create_pool(
            host=postgres.unix_socket, port=postgres.port, user="postgres", database="postgres", min_size=1, max_size=5,
        ) as pool:
            # inet_client_addr() is NULL for a unix-socket client.
            sql = "SELECT inet_client_addr() IS NULL AS unix, $1::int AS i"
            rows = await asyncio.gather(*(pool.fetchrow(sql, i) for i in range(50)))
            return [tuple(r) for r in rows]

    assert run(scenario) == [(True, i) for i in range(50)]


def test_tls(run, postgres):
    if postgres.ssl_ca is None:
        pytest.skip("PostgreSQL was started without TLS")

    async def scenario():
        ctx = ssl.create_default_context()
        postgres.ssl_ca.configure_trust(ctx)
        conn = await _connect(postgres, ssl=ctx)
        try:
            on_tls = await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            rows = await conn.fetch("SELECT g, repeat('x', 1000) FROM generate_series(1, 2000) g")
        finally:
            await conn.close()
        plain = await _connect(postgres, ssl=False)
        try:
            on_plain = await plain.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        finally:
            await plain.close()
        # The server's certificate is signed by a CA the default store does not hold.
        with pytest.raises(ssl.SSLCertVerificationError):
            await _connect(postgres, ssl=ssl.create_default_context())
        return on_tls, len(rows), on_plain

    assert run(scenario) == (True, 2000, False)


def test_refused_connection(run):
    port = free_port()

    async def scenario():
        with pytest.raises(OSError) as info:
            await asyncpg.connect(host="127.0.0.1", port=port, user="postgres", ssl=False, timeout=10)
        return info.value

    err = run(scenario, timeout=20)
    assert isinstance(err, ConnectionRefusedError)
    assert err.errno == errno.ECONNREFUSED
