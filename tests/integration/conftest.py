"""Fixtures of the integration suite: the real servers, and ``run``, which
runs a scenario once on stdlib asyncio and once on ferroloop.

A server this machine cannot start skips the scenarios that need it, with
the reason; under CI (``CI`` set, as ``.ci/run`` does) it fails them
instead, so a CI run cannot pass by skipping its servers.
"""

import asyncio
import contextlib
import faulthandler
import gc
import os
import sys
import time

import pytest

import ferroloop

from . import servers

LOOPS = {"asyncio": asyncio.new_event_loop, "ferroloop": ferroloop.new_event_loop}


def _unavailable(what, reason):
    if os.environ.get("CI"):
        pytest.fail(f"{what} could not be started under CI: {reason}", pytrace=False)
    pytest.skip(f"{what} unavailable: {reason}")


class _Lazy:
    """Starts a server on first use and keeps it (or the reason it could not
    start) for the rest of the package's tests."""

    def __init__(self, what, start):
        self.what = what
        self.start = start
        self.server = None
        self.error = None

    def get(self):
        if self.server is None and self.error is None:
            try:
                self.server = self.start()
            except servers.Unavailable as e:
                self.error = str(e)
        if self.error is not None:
            _unavailable(self.what, self.error)
        return self.server

    def stop(self):
        if self.server is not None:
            self.server.stop()
            self.server = None


# Package scope: the servers stop once this directory's tests are done, so
# the rest of a default run (process and fd tests among them) does not run
# beside them.
@pytest.fixture(scope="package")
def tls_ca():
    trustme = pytest.importorskip("trustme")
    return trustme.CA()


@pytest.fixture(scope="package")
def _servers(tls_ca):
    lazy = {
        "postgres": _Lazy("PostgreSQL", lambda: servers.start_postgres(ca=tls_ca)),
        "redis": _Lazy("Redis", servers.start_redis),
        "mariadb": _Lazy("MariaDB", servers.start_mariadb),
    }
    try:
        yield lazy
    finally:
        for s in lazy.values():
            s.stop()


@pytest.fixture
def postgres(_servers):
    return _servers["postgres"].get()


@pytest.fixture
def redis_server(_servers):
    return _servers["redis"].get()


@pytest.fixture
def mariadb(_servers):
    return _servers["mariadb"].get()


@pytest.fixture
def private_redis():
    """A Redis of the test's own, for scenarios that kill their server."""
    try:
        srv = servers.start_redis()
    except servers.Unavailable as e:
        _unavailable("Redis", str(e))
    try:
        yield srv
    finally:
        srv.stop()


def open_fds():
    """The process's open descriptors and what they point at."""
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # the listing's own descriptor, closed since
            pass
    return fds


def leaked_fds(before):
    """Descriptors opened since ``before`` and still open. A transport's
    socket may be released by the collector one cycle later; asyncio's
    ``close()`` is synchronous for the loop but a library may drop its last
    reference in a callback, so the collector gets a few chances."""
    for _ in range(10):
        gc.collect()
        now = open_fds()
        leaked = {fd: t for fd, t in now.items() if before.get(fd) != t}
        if not leaked:
            return {}
        time.sleep(0.05)
    return leaked


@contextlib.contextmanager
def hard_deadline(seconds):
    """asyncio.timeout needs a loop that still runs callbacks; a loop stuck
    in native code would hang the run, so past ``seconds`` the process dumps
    its threads' stacks and ends. The dump goes to the real stderr: pytest's
    captured output dies with the process."""
    faulthandler.dump_traceback_later(seconds, exit=True, file=sys.__stderr__)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


class Runner:
    """``run(coro_fn, *args)`` runs ``coro_fn(*args)`` on a fresh loop of the
    parametrized kind and returns its result, after checking that it
    finished within ``timeout`` seconds, left no task behind, reported no
    error to the loop's exception handler ("Exception in callback ...") and
    left no descriptor open. ``run.anyio(...)`` does the same through
    ``anyio.run`` with the loop as its ``loop_factory``."""

    def __init__(self, name):
        self.name = name
        self.factory = LOOPS[name]

    def __call__(self, coro_fn, *args, timeout=60.0):
        def drive(main):
            with asyncio.Runner(loop_factory=self.factory) as r:
                return r.run(main())

        return self._checked(drive, coro_fn, args, timeout)

    def anyio(self, coro_fn, *args, timeout=60.0):
        import anyio

        def drive(main):
            return anyio.run(main, backend="asyncio", backend_options={"loop_factory": self.factory})

        return self._checked(drive, coro_fn, args, timeout)

    def _checked(self, drive, coro_fn, args, timeout):
        before = open_fds()
        reported = []

        async def main():
            loop = asyncio.get_running_loop()
            loop.set_exception_handler(lambda _loop, context: reported.append(context))
            async with asyncio.timeout(timeout):
                result = await coro_fn(*args)
            # Callbacks scheduled by the scenario's last awaits (a transport's
            # connection_lost, a reader task's exit) run before the check.
            for _ in range(3):
                await asyncio.sleep(0)
            left = asyncio.all_tasks() - {asyncio.current_task()}
            assert not left, f"tasks left behind on {self.name}: {left}"
            return result

        with hard_deadline(timeout + 60):
            result = drive(main)
        assert not reported, f"errors reported to the loop's exception handler on {self.name}: {reported}"
        leaked = leaked_fds(before)
        assert not leaked, f"descriptors left open on {self.name}: {leaked}"
        return result


def pytest_collection_modifyitems(config, items):
    # An unclosed socket or transport that only the collector finds shows as
    # a ResourceWarning (often raised in __del__, hence unraisable): either
    # is a leak on that loop, so it fails the scenario.
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.path).startswith(here + os.sep):
            item.add_marker(pytest.mark.filterwarnings("error::ResourceWarning"))
            item.add_marker(pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning"))


@pytest.fixture(params=list(LOOPS))
def run(request):
    return Runner(request.param)


try:
    from pytest_asyncio.plugin import PytestAsyncioSpecs
except ImportError:
    PytestAsyncioSpecs = None

# pytest rejects an implementation of a hook nobody declared, so the hook is
# only defined where the installed pytest-asyncio (1.4+) declares it.
if hasattr(PytestAsyncioSpecs, "pytest_asyncio_loop_factories"):

    def pytest_asyncio_loop_factories(config, item):
        """Every ``mark.asyncio`` test of this directory runs once on each loop."""
        return LOOPS
