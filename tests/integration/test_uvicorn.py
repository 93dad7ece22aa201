"""uvicorn serving an ASGI app in a subprocess, with ``--loop asyncio`` and
with ``--loop ferroloop:new_event_loop`` (one worker and ``--workers 2``),
driven by httpx on the same kind of loop."""

import asyncio
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from .servers import Unavailable, wait_port, free_port  # noqa: E402

TESTS_DIR = pathlib.Path(__file__).resolve().parent.parent
LOOP_OPTION = {"asyncio": "asyncio", "ferroloop": "ferroloop:new_event_loop"}
EXPECTED_LOOP = {"asyncio": "asyncio.unix_events._UnixSelectorEventLoop", "ferroloop": "ferroloop._loop.Loop"}


class Uvicorn:
    def __init__(self, loop, workers):
        self.port = free_port()
        self.log = tempfile.TemporaryFile()
        cmd = [sys.executable, "-m", "uvicorn", "integration.asgi_app:app", "--app-dir", str(TESTS_DIR),
               "--host", "127.0.0.1", "--port", str(self.port), "--loop", LOOP_OPTION[loop],
               "--lifespan", "on", "--http", "h11", "--no-access-log"]
        if workers > 1:
            cmd += ["--workers", str(workers)]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_port(self.port, self.proc, "uvicorn")
        except Unavailable as e:
            _, out = self.stop()
            pytest.fail(f"{e}:\n{out}")

    def output(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self):
        """SIGINT, as a user's Ctrl-C: uvicorn shuts down gracefully. Returns
        the exit status and what uvicorn printed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"uvicorn ignored SIGINT:\n{self.output()}") from None
        out = self.output()
        self.log.close()
        return self.proc.returncode, out


def _gone(pid, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not os.path.exists(f"/proc/{pid}"):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("workers", [1, 2])
def test_uvicorn(run, workers):
    server = Uvicorn(run.name, workers)
    try:

        async def scenario():
            seen = []
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=10) as client:
                deadline = asyncio.get_running_loop().time() + 20
                # Fresh connections, many at once, until every worker answered
                # (the kernel decides which worker accepts).
                while True:
                    batch = await asyncio.gather(*(
                        client.post(f"/r/{i}", content=b"x" * i, headers={"connection": "close"}) for i in range(40)
                    ))
                    seen += [(r.status_code, r.json()) for r in batch]
                    pids = {body["pid"] for _, body in seen}
                    if len(pids) >= workers or asyncio.get_running_loop().time() > deadline:
                        return seen

        seen = run(scenario)
    finally:
        code, out = server.stop()
    assert code == 0, out
    assert "Application startup complete" in out and "Application shutdown complete" in out, out
    assert all(status == 200 for status, _ in seen)
    assert {body["loop"] for _, body in seen} == {EXPECTED_LOOP[run.name]}
    assert all(body["lifespan"] for _, body in seen)
    assert [(b["path"], b["received"]) for _, b in seen[:40]] == [(f"/r/{i}", i) for i in range(40)]
    pids = {body["pid"] for _, body in seen}
    assert len(pids) == workers
    if workers == 1:
        assert pids == {server.proc.pid}
    else:
        assert server.proc.pid not in pids  # the supervisor serves nothing itself
    assert all(_gone(pid) for pid in pids), "a uvicorn worker outlived the server"
