"""aiomysql against a real MariaDB, on asyncio and on ferroloop."""

import asyncio
import errno

import pytest

aiomysql = pytest.importorskip("aiomysql")
import pymysql  # noqa: E402

from .servers import free_port  # noqa: E402


def _pool(db, **kw):
    return aiomysql.create_pool(
        host=db.host, port=db.port, user="root", password="", db=db.database, autocommit=False, **kw
    )


def test_pool_concurrent_queries(run, mariadb):
    n = 300

    async def scenario():
        async with _pool(mariadb, minsize=2, maxsize=12) as pool:

            async def one(i):
                async with pool.acquire() as conn, conn.cursor() as cur:
                    await cur.execute("SELECT %s * 3, CONNECTION_ID()", (i,))
                    return await cur.fetchone()

            rows = await asyncio.gather(*(one(i) for i in range(n)))
            return [r[0] for r in rows], len({r[1] for r in rows}), pool.size <= 12

    values, connections, bounded = run(scenario)
    assert values == [3 * i for i in range(n)]
    assert 1 < connections <= 12
    assert bounded


def test_transactions(run, mariadb):
    async def scenario():
        async with _pool(mariadb, minsize=1, maxsize=2) as pool:
            async with pool.acquire() as conn, conn.cursor() as cur:
                await cur.execute("CREATE TEMPORARY TABLE t (v INT) ENGINE=InnoDB")
                await conn.begin()
                await cur.executemany("INSERT INTO t VALUES (%s)", [(1,), (2,), (3,)])
                await conn.commit()
                await conn.begin()
                await cur.execute("INSERT INTO t VALUES (99)")
                await cur.execute("SELECT COUNT(*) FROM t")
                inside = (await cur.fetchone())[0]
                await conn.rollback()
                await cur.execute("SELECT v FROM t ORDER BY v")
                after = [r[0] for r in await cur.fetchall()]
                with pytest.raises(pymysql.err.ProgrammingError):
                    await cur.execute("SELECT * FROM no_such_table")
                return inside, after

    assert run(scenario) == (4, [1, 2, 3])


def test_cancelled_query(run, mariadb):
    """A query cut off by a timeout ends in TimeoutError; the pool drops the
    connection it was on and goes on serving."""

    async def scenario():
        loop = asyncio.get_running_loop()
        async with _pool(mariadb, minsize=1, maxsize=2) as pool:
            t0 = loop.time()
            async with pool.acquire() as conn:
                with pytest.raises(TimeoutError):
                    async with conn.cursor() as cur:
                        await asyncio.wait_for(cur.execute("SELECT SLEEP(10)"), 0.3)
                broken = conn.closed
            async with pool.acquire() as conn, conn.cursor() as cur:
                await cur.execute("SELECT 6 * 7")
                value = (await cur.fetchone())[0]
            return broken, value, loop.time() - t0

    broken, value, elapsed = run(scenario, timeout=30)
    assert broken is True
    assert value == 42
    assert elapsed < 8


def test_refused_connection(run):
    port = free_port()

    async def scenario():
        with pytest.raises(pymysql.err.OperationalError) as info:
            await aiomysql.connect(host="127.0.0.1", port=port, user="root", connect_timeout=10)
        return info.value.args[0], info.value.__cause__

    code, cause = run(scenario, timeout=20)
    assert code == 2003  # CR_CONN_HOST_ERROR: "Can't connect to MySQL server"
    assert isinstance(cause, ConnectionRefusedError) and cause.errno == errno.ECONNREFUSED


def test_connection_killed_mid_query(run, mariadb):
    """The server kills the connection under a running query: the library's
    OperationalError, not a hang, and the connection is closed."""

    async def scenario():
        victim = await aiomysql.connect(host=mariadb.host, port=mariadb.port, user="root", db=mariadb.database)
        admin = await aiomysql.connect(host=mariadb.host, port=mariadb.port, user="root", db=mariadb.database)
        try:
            cur = await victim.cursor()
            await cur.execute("SELECT CONNECTION_ID()")
            (victim_id,) = await cur.fetchone()
            query = asyncio.create_task(cur.execute("SELECT SLEEP(10)"))
            await asyncio.sleep(0.2)
            async with admin.cursor() as acur:
                await acur.execute(f"KILL {int(victim_id)}")
            with pytest.raises(pymysql.err.OperationalError) as info:
                await query
            return info.value.args[0], victim.closed
        finally:
            victim.close()
            admin.close()

    code, closed = run(scenario, timeout=30)
    assert code == 2013  # CR_SERVER_LOST: "Lost connection to MySQL server during query"
    assert closed is True
