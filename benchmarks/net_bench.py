#!/usr/bin/env python3
"""Networking benchmarks: asyncio vs uvloop vs rloop vs ferroloop, loopback only.

Three families of cases, each run on every loop in one run:

* ``echo_{sock,streams,protocol}_{1k,100k}``: an echo server on the loop under
  test, written three ways (raw ``loop.sock_*`` calls, asyncio streams from
  ``asyncio.start_server``, a ``Protocol`` from ``loop.create_server``), driven
  by a client in a *separate* process (plain blocking sockets, one thread per
  connection, stdlib only; the same client for every server loop).  One request
  is one payload (1 KiB or 100 KiB) sent and fully echoed back; 10 connections
  each keep one request in flight.  Headline: the server process's CPU time
  (user+sys) per request; the client reports req/s and p50/p99 latency.
* ``http``: a minimal HTTP/1.1 keep-alive ``Protocol`` server (fixed small
  response) on the loop under test, driven by ``wrk --latency``.  Server CPU
  per request, req/s and wrk's p50/p99.  Skipped (with a note) without wrk.
* ``asyncio_tcp[_ssl]``: pyperformance's bm_asyncio_tcp (1 GB from a streams
  server to a streams client in one process, plain or TLS), imported at run
  time from the installed ``pyperformance`` package; its ``main(use_ssl)``
  coroutine is run on the loop under test.  Wall time (ms), process CPU too.

Beside the loops, a ``floor`` column: ``benchmarks/floor``, the echo and HTTP
servers written in Rust on mio with no Python at all (built on demand with
cargo), driven and measured exactly as the loops' servers.  It is the
syscall + copy cost of the same traffic, so each row shows how far every loop
is from that limit.  Cases it has no server for (TLS, asyncio_tcp) show "—".

Every measurement uses fresh processes; repeats are interleaved round-robin
with the loop order rotated, as in ``bench.py`` (whose helpers this script
imports: loop specs, probing, error summaries).  Each measurement is bounded
by a request count and by ``--timeout``; a hang becomes a ``timeout`` cell,
a failure an ``error`` cell with its reason under the tables.

Run ``python benchmarks/net_bench.py --help`` and see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import json
import math
import os
import platform
import queue
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as _bench  # noqa: E402  (sibling in-process harness: shared helpers)

THIS = os.path.abspath(__file__)
DEFAULT_LOOPS = _bench.DEFAULT_LOOPS
LoopSpec = _bench.LoopSpec

RESULT_MARK = "@@NETBENCH-RESULT@@ "
READY_MARK = "@@NETBENCH-READY@@ "
CPU_MARK = "@@NETBENCH-CPU@@ "
WARM_MARK = "@@NETBENCH-WARM@@"
ERROR_MARK = "@@NETBENCH-ERROR@@ "

HOST = "127.0.0.1"
RECV_SIZE = 256 * 1024  # bytes per recv/read in the echo servers (asyncio's transport max_size)
CLIENT_SOCK_TIMEOUT = 10.0  # a client socket that sees nothing for this long fails the run

HTTP_BODY = b"Hello, World!"
HTTP_RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: " + str(len(HTTP_BODY)).encode() + b"\r\n"
    b"\r\n" + HTTP_BODY
)
HTTP_REQUEST = b"GET / HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n\r\n"


FLOOR = "floor"
FLOOR_DIR = os.path.join(os.path.dirname(THIS), "floor")
FLOOR_BIN = os.path.join(FLOOR_DIR, "target", "release", "netbench-floor")
FLOOR_SPEC = LoopSpec(FLOOR, "benchmarks/floor", "netbench-floor")
# Server flavour -> the floor server's mode.  Every echo flavour has the same
# floor: the bytes on the wire and the client are the same, only the Python
# API the loop is driven through differs.
FLOOR_MODES = {"sock": "echo", "streams": "echo", "protocol": "echo", "http": "http"}


def is_floor(spec: LoopSpec) -> bool:
    return spec == FLOOR_SPEC


def floor_serves(case) -> bool:
    return case.kind in ("echo", "http") and case.flavour in FLOOR_MODES


def parse_spec(text: str) -> LoopSpec:
    """bench.py's loop spec, or the floor pseudo-loop for the word "floor"."""
    return FLOOR_SPEC if text.strip() == FLOOR else _bench.parse_loop_spec(text)


def build_floor(timeout: float) -> dict:
    """`cargo build --release` of benchmarks/floor (quick when up to date);
    a probe-like answer: ok + version, or why not."""
    cargo = shutil.which("cargo")
    if cargo is None:
        return {"ok": False, "why": "cargo not found on PATH (the floor is built from "
                "benchmarks/floor with cargo)"}
    cmd = [cargo, "build", "--release", "--quiet",
           "--manifest-path", os.path.join(FLOOR_DIR, "Cargo.toml"),
           "--target-dir", os.path.join(FLOOR_DIR, "target")]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "why": f"cargo build did not finish in {timeout:g} s"}
    if proc.returncode != 0 or not os.path.exists(FLOOR_BIN):
        tail = proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"]
        return {"ok": False, "why": f"cargo build failed: {tail[-1]}",
                "stderr": proc.stderr[-4000:]}
    mio = "?"
    try:
        with open(os.path.join(FLOOR_DIR, "Cargo.lock"), encoding="utf-8") as fh:
            m = re.search(r'name = "mio"\nversion = "([^"]+)"', fh.read())
        if m:
            mio = m.group(1)
    except OSError:
        pass
    return {"ok": True, "version": f"mio {mio}, no Python", "type": FLOOR_BIN}


class Timeout(Exception):
    pass


class MeasureError(Exception):
    """A measurement failed; args[0] is the one-line reason."""

    def __init__(self, msg: str, traceback: str = "") -> None:
        super().__init__(msg)
        self.traceback = traceback


def _emit(mark: str, payload) -> None:
    with _emit_lock:
        sys.stdout.write("\n" + mark + json.dumps(payload) + "\n")
        sys.stdout.flush()


_emit_lock = threading.Lock()


# ---------------------------------------------------------------------------
# Server child: `net_bench.py --_server SPEC FLAVOUR`
# Runs one server on the loop under test.  A control thread reads commands on
# stdin: `cpu` prints a CPU snapshot of the whole process (getrusage), `quit`
# stops the loop.  The thread is blocked in read() between commands, so it
# costs nothing while the client runs.
# ---------------------------------------------------------------------------

_STATS = {"requests": 0, "conns": 0}
_ERRORS: list[str] = []
_N_ERRORS = [0]


def _record_error(text: str) -> None:
    _N_ERRORS[0] += 1
    if len(_ERRORS) < 3:
        _ERRORS.append(text)


def _exception_handler(loop, context) -> None:
    exc = context.get("exception")
    text = str(context.get("message", "")).strip()
    if exc is not None:
        info = _bench.describe_error(exc)
        text = f"{text}: {info['error']}\n{info['traceback']}"
    _record_error(text)


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        _STATS["conns"] += 1

    def data_received(self, data):
        self.transport.write(data)

    def connection_lost(self, exc):
        self.transport = None


async def _echo_streams(reader, writer) -> None:
    _STATS["conns"] += 1
    try:
        while True:
            data = await reader.read(RECV_SIZE)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except Exception as exc:
        info = _bench.describe_error(exc)
        _record_error(f"streams handler: {info['error']}\n{info['traceback']}")
    finally:
        writer.close()


async def _echo_sock_conn(loop, conn) -> None:
    try:
        while True:
            data = await loop.sock_recv(conn, RECV_SIZE)
            if not data:
                break
            await loop.sock_sendall(conn, data)
    except Exception as exc:
        info = _bench.describe_error(exc)
        _record_error(f"sock handler: {info['error']}\n{info['traceback']}")
    finally:
        conn.close()


async def _sock_accept_loop(loop, lsock) -> None:
    try:
        while True:
            conn, _addr = await loop.sock_accept(lsock)
            _STATS["conns"] += 1
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            loop.create_task(_echo_sock_conn(loop, conn))
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        info = _bench.describe_error(exc)
        _record_error(f"sock_accept: {info['error']}\n{info['traceback']}")


class HttpProtocol(asyncio.Protocol):
    """Minimal HTTP/1.1: every request is a header block without a body
    (wrk's GET); each gets the same keep-alive response."""

    def connection_made(self, transport):
        self.transport = transport
        self.buf = b""
        _STATS["conns"] += 1

    def data_received(self, data):
        buf = self.buf + data if self.buf else data
        count = 0
        start = 0
        while True:
            end = buf.find(b"\r\n\r\n", start)
            if end < 0:
                break
            start = end + 4
            count += 1
        self.buf = buf[start:]
        if count:
            _STATS["requests"] += count
            self.transport.write(HTTP_RESPONSE * count if count > 1 else HTTP_RESPONSE)

    def connection_lost(self, exc):
        self.transport = None


_COLD_MALLOC_ENV = "FERROLOOP_NETBENCH_COLD_MALLOC"


def _malloc_warmup() -> None:
    """Free one large block so glibc raises its mmap threshold, as it does in
    any process that has ever freed a big buffer.

    Without this, whether e.g. asyncio's ``sock.recv(256 KiB)`` per read gets
    its buffer from the heap or from a fresh mmap + mremap + munmap (three
    extra syscalls, ~20 µs per read) depends on what the interpreter happened
    to free at start-up, which changes with PYTHONHASHSEED: the same server
    measured 10 or 36 µs/request from one seed to the next.  With the
    warm-up every loop runs with the steady-state threshold.
    ``--cold-malloc`` skips it."""
    if os.environ.get(_COLD_MALLOC_ENV):
        return
    block = bytearray(4 << 20)
    del block


def _cpu_snapshot() -> dict:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "user": ru.ru_utime,
        "sys": ru.ru_stime,
        "wall": time.perf_counter(),
        "requests": _STATS["requests"],
        "conns": _STATS["conns"],
        "errors": list(_ERRORS),
        "n_errors": _N_ERRORS[0],
    }


def server_main(argv: list[str]) -> int:
    spec_text, flavour, *flags = argv
    _malloc_warmup()
    try:
        spec = _bench.parse_loop_spec(spec_text)
        factory, _module = _bench.resolve_factory(spec)
        loop = _bench._new_loop(factory)
        loop.set_exception_handler(_exception_handler)
        if "debug" in flags:
            # Diagnostic re-run only: asyncio's accept path reports a failure
            # to set up a connection's transport only in debug mode.
            loop.set_debug(True)

        async def setup():
            if flavour == "sock":
                lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                lsock.bind((HOST, 0))
                lsock.listen(128)
                lsock.setblocking(False)
                loop.create_task(_sock_accept_loop(loop, lsock))
                return lsock.getsockname()[1], lsock
            if flavour == "streams":
                server = await asyncio.start_server(_echo_streams, HOST, 0, backlog=128)
            elif flavour == "protocol":
                server = await loop.create_server(EchoProtocol, HOST, 0, backlog=128)
            elif flavour == "tls":
                server = await loop.create_server(EchoProtocol, HOST, 0, backlog=128, ssl=tls_server_context())
            elif flavour == "http":
                server = await loop.create_server(HttpProtocol, HOST, 0, backlog=128)
            else:
                raise ValueError(f"unknown server flavour {flavour!r}")
            return server.sockets[0].getsockname()[1], server

        port, server = loop.run_until_complete(setup())
    except BaseException as exc:
        _emit(ERROR_MARK, _bench.describe_error(exc))
        return 0

    def control() -> None:
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == "cpu":
                _emit(CPU_MARK, _cpu_snapshot())
            elif cmd == "quit":
                break
        try:
            loop.call_soon_threadsafe(loop.stop)
        except Exception:
            os._exit(0)

    threading.Thread(target=control, daemon=True).start()
    _emit(READY_MARK, {"port": port, "pid": os.getpid()})
    try:
        loop.run_forever()
    finally:
        try:
            server.close()
        except Exception:
            pass
    # The parent has all it needs by now; don't let a slow teardown stall it.
    sys.stdout.flush()
    os._exit(0)


# ---------------------------------------------------------------------------
# Echo client child: `net_bench.py --_client PORT CONNS SIZE N WARMUP MAXSEC`
# Blocking sockets, one thread per connection, stdlib only.  Prints WARM after
# the warm-up requests, waits for `GO` on stdin, runs N requests per
# connection (or until MAXSEC seconds have passed) and prints the result.
# ---------------------------------------------------------------------------


def tls_files() -> tuple[str, str]:
    """The certificate and key pyperformance's bm_asyncio_tcp uses."""
    d = os.path.dirname(find_asyncio_tcp_file())
    return os.path.join(d, "ssl_cert.pem"), os.path.join(d, "ssl_key.pem")


def tls_server_context():
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*tls_files())
    return ctx


def client_main(argv: list[str]) -> int:
    port, conns, size, n, warmup = (int(a) for a in argv[:5])
    max_seconds = float(argv[5])
    wrap = None
    if argv[6:] == ["tls"]:
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # a self-signed benchmark certificate
        wrap = ctx.wrap_socket
    pattern = b"0123456789abcdefghijklmnopqrstuv"
    payload = (pattern * (size // len(pattern) + 1))[:size]
    try:
        socks = []
        for _ in range(conns):
            s = socket.create_connection((HOST, port), timeout=CLIENT_SOCK_TIMEOUT)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            socks.append(wrap(s) if wrap else s)
    except BaseException as exc:
        _emit(ERROR_MARK, _bench.describe_error(exc))
        return 0

    warm = threading.Barrier(conns + 1)
    go = threading.Event()
    errors: list[dict] = []
    latencies: list[list[int]] = [[] for _ in range(conns)]
    stop_ns = [0]
    limited = [False]

    def worker(i: int) -> None:
        s = socks[i]
        buf = bytearray(size)
        view = memoryview(buf)
        sendall, recv_into = s.sendall, s.recv_into

        def one() -> None:
            sendall(payload)
            got = 0
            while got < size:
                k = recv_into(view[got:], size - got)
                if not k:
                    raise ConnectionError("server closed the connection mid-request")
                got += k
            if buf != payload:
                raise ValueError("echoed bytes differ from the request")

        try:
            for _ in range(warmup):
                one()
        except BaseException as exc:
            errors.append(_bench.describe_error(exc))
        try:
            warm.wait()
        except threading.BrokenBarrierError:
            return
        go.wait()
        if errors:
            return
        rec = latencies[i].append
        clock = time.perf_counter_ns
        try:
            for _ in range(n):
                t0 = clock()
                one()
                t1 = clock()
                rec(t1 - t0)
                if t1 > stop_ns[0]:
                    limited[0] = True
                    break
        except BaseException as exc:
            errors.append(_bench.describe_error(exc))

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(conns)]
    for t in threads:
        t.start()
    try:
        warm.wait(timeout=max_seconds + CLIENT_SOCK_TIMEOUT)
    except threading.BrokenBarrierError:
        _emit(ERROR_MARK, {"error": "client warm-up did not finish in time"})
        return 0
    if errors:
        _emit(ERROR_MARK, errors[0])
        return 0
    with _emit_lock:
        sys.stdout.write("\n" + WARM_MARK + "\n")
        sys.stdout.flush()
    if sys.stdin.readline().strip() != "GO":
        return 0
    cpu0 = time.process_time()
    t0 = time.perf_counter_ns()
    stop_ns[0] = t0 + int(max_seconds * 1e9)
    go.set()
    for t in threads:
        t.join(max_seconds + 2 * CLIENT_SOCK_TIMEOUT)
    wall = (time.perf_counter_ns() - t0) / 1e9
    cpu = time.process_time() - cpu0
    if errors:
        _emit(ERROR_MARK, errors[0])
        return 0
    if any(t.is_alive() for t in threads):
        _emit(ERROR_MARK, {"error": "client threads did not finish"})
        return 0
    for s in socks:
        s.close()
    lat = sorted(x for per in latencies for x in per)
    count = len(lat)

    def pct(q: float) -> float:
        return lat[max(0, math.ceil(q * count) - 1)] / 1e3

    _emit(
        RESULT_MARK,
        {
            "requests": count,
            "wall": wall,
            "client_cpu": cpu,
            "p50_us": pct(0.50),
            "p99_us": pct(0.99),
            "mean_us": sum(lat) / count / 1e3,
            "time_limited": limited[0],
        },
    )
    return 0


# ---------------------------------------------------------------------------
# pyperformance bm_asyncio_tcp child: `net_bench.py --_tcp SPEC plain|ssl`
# ---------------------------------------------------------------------------

_TCP_ENV = "FERROLOOP_BENCH_ASYNCIO_TCP"


def find_asyncio_tcp_file() -> str:
    """Path of pyperformance's bm_asyncio_tcp/run_benchmark.py."""
    return _bench.find_pyperformance_benchmark("asyncio_tcp", _TCP_ENV)


def load_asyncio_tcp():
    """Import bm_asyncio_tcp (not as __main__: its pyperf Runner never starts)."""
    path = find_asyncio_tcp_file()
    spec = importlib.util.spec_from_file_location("_pyperformance_bm_asyncio_tcp", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tcp_main(argv: list[str]) -> int:
    spec_text, mode = argv
    use_ssl = mode == "ssl"
    _malloc_warmup()
    try:
        spec = _bench.parse_loop_spec(spec_text)
        factory, _module = _bench.resolve_factory(spec)
        module = load_asyncio_tcp()
        chunk = module.CHUNK_SIZE  # 10 MiB; the server writes it 100 times
        # Warm-up: the same benchmark with 1/10 of the data, on a throwaway loop.
        module.CHUNK_SIZE = max(1, chunk // 10)
        loop = _bench._new_loop(factory)
        try:
            loop.run_until_complete(module.main(use_ssl))
        finally:
            _bench._close_loop(loop)
        module.CHUNK_SIZE = chunk
        loop = _bench._new_loop(factory)
        try:
            gc.collect()
            wall0 = time.perf_counter()
            cpu0 = time.process_time()
            loop.run_until_complete(module.main(use_ssl))
            cpu = time.process_time() - cpu0
            wall = time.perf_counter() - wall0
        finally:
            _bench._close_loop(loop)
        result = {"ok": True, "wall_ms": wall * 1e3, "cpu_ms": cpu * 1e3,
                  "bytes": chunk * 100}
    except BaseException as exc:
        result = {"ok": False, **_bench.describe_error(exc)}
    sys.stdout.flush()
    sys.stdout.write("\n" + RESULT_MARK + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


# ---------------------------------------------------------------------------
# Parent side: child process plumbing
# ---------------------------------------------------------------------------


_COLD_MALLOC = [False]


def _child_env() -> dict:
    env = _bench._child_env()  # no asyncio debug/dev mode, PYTHONHASHSEED=0
    env.pop(_COLD_MALLOC_ENV, None)
    if _COLD_MALLOC[0]:
        env[_COLD_MALLOC_ENV] = "1"
    return env


class Child:
    """A child `net_bench.py` process with line-oriented stdin/stdout and a
    deadline on every wait."""

    def __init__(self, args: list[str], name: str, cmd: list[str] | None = None) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            cmd or [sys.executable, THIS, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=_child_env(),
        )
        self.lines: queue.Queue = queue.Queue()
        self.err: list[str] = []
        self._out_t = threading.Thread(target=self._pump_out, daemon=True)
        self._err_t = threading.Thread(target=self._pump_err, daemon=True)
        self._out_t.start()
        self._err_t.start()

    def _pump_out(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _pump_err(self) -> None:
        for line in self.proc.stderr:
            self.err.append(line)
            if len(self.err) > 400:
                del self.err[:200]

    def stderr_tail(self) -> str:
        self._err_t.join(2)
        return "".join(self.err)[-4000:]

    def expect(self, mark: str, deadline: float, what: str) -> str:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Timeout(f"{self.name}: timed out waiting for {what}")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                raise Timeout(f"{self.name}: timed out waiting for {what}") from None
            if line is None:
                try:
                    code = self.proc.wait(2)
                except subprocess.TimeoutExpired:
                    code = "?"
                tail = self.stderr_tail().strip().splitlines()
                raise MeasureError(
                    f"{self.name} died (exit {code}) before {what}"
                    + (f": {tail[-1]}" if tail else ""),
                    "\n".join(tail[-30:]) + "\n" if tail else "",
                )
            if line.startswith(ERROR_MARK):
                info = json.loads(line[len(ERROR_MARK):])
                raise MeasureError(f"{self.name}: {info.get('error')}", info.get("traceback", ""))
            if line.startswith(mark):
                return line[len(mark):]

    def send(self, text: str) -> None:
        try:
            self.proc.stdin.write(text + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass  # the next expect() reports the death

    def stop(self, grace: float = 3.0) -> None:
        if self.proc.poll() is None:
            self.send("quit")
            try:
                self.proc.stdin.close()
            except (BrokenPipeError, OSError, ValueError):
                pass
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except Exception:
                pass


def _server_cpu(server: Child, deadline: float) -> dict:
    server.send("cpu")
    return json.loads(server.expect(CPU_MARK, deadline, "a CPU snapshot"))


def _server_errors(snap: dict) -> None:
    found = _first_server_error(snap)
    if found is not None:
        raise MeasureError(*found)


def _first_server_error(snap: dict) -> tuple[str, str] | None:
    if not snap.get("n_errors"):
        return None
    first = snap["errors"][0] if snap.get("errors") else "?"
    head, _, tb = first.partition("\n")
    return f"server reported {snap['n_errors']} error(s), first: {head}", tb


def _debug_rerun(spec: LoopSpec, flavour: str) -> tuple[str, str] | None:
    """Start the same server with loop.set_debug(True), send it one request
    from a blocking socket and return the first error its loop reported."""
    if flavour == "tls" or is_floor(spec):
        return None  # a plain request would only show a TLS error; the floor has no debug mode
    deadline = time.monotonic() + 10.0
    try:
        server, port = _start_server(spec, flavour, deadline, debug=True)
    except (MeasureError, Timeout):
        return None
    try:
        try:
            with socket.create_connection((HOST, port), timeout=3.0) as s:
                s.sendall(HTTP_REQUEST if flavour == "http" else b"x" * 1024)
                s.recv(65536)
        except OSError:
            pass
        time.sleep(0.2)
        try:
            return _first_server_error(_server_cpu(server, deadline))
        except (MeasureError, Timeout):
            return None
    finally:
        server.stop()


def _diagnose(server: Child, exc: BaseException, spec: LoopSpec, flavour: str) -> BaseException:
    """A client-side failure is often only the symptom (a reset connection):
    ask the server for the errors its loop reported and put the first one,
    with its traceback, into the failure.  If it has none, re-run the server
    once in debug mode, which is when asyncio's accept path reports a
    transport that could not be set up."""
    if isinstance(exc, (MeasureError, Timeout)):
        what = str(exc)
    else:
        what = _bench.describe_error(exc)["error"]
    try:
        snap = _server_cpu(server, time.monotonic() + 3.0)
    except MeasureError as died:
        return MeasureError(f"{what}; {died}", died.traceback or getattr(exc, "traceback", ""))
    except Timeout:
        return exc
    found = _first_server_error(snap)
    if found is None and not isinstance(exc, Timeout):
        server.stop()
        found = _debug_rerun(spec, flavour)
        if found is not None:
            found = (found[0].replace("server reported", "server in debug mode reported", 1),
                     found[1])
    if found is not None:
        return MeasureError(f"{what}; {found[0]}", found[1])
    if not isinstance(exc, (MeasureError, Timeout)):
        info = _bench.describe_error(exc)
        return MeasureError(info["error"], info["traceback"])
    return exc


def _start_server(spec: LoopSpec, flavour: str, deadline: float,
                  debug: bool = False) -> tuple[Child, int]:
    if is_floor(spec):
        server = Child([], "floor server", [FLOOR_BIN, FLOOR_MODES[flavour], str(RECV_SIZE)])
    else:
        server = Child(["--_server", spec.spec, flavour] + (["debug"] if debug else []),
                       "server")
    try:
        ready = json.loads(server.expect(READY_MARK, deadline, "the server to listen"))
    except BaseException:
        server.stop(0)
        raise
    return server, ready["port"]


# ---------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    kind: str  # echo | http | tcp
    flavour: str = ""  # echo: sock | streams | protocol | tls; tcp: plain | ssl
    size: int = 0  # echo payload bytes
    n: int = 0  # echo: requests per connection
    n_quick: int = 0
    doc: str = ""

    @property
    def unit(self) -> str:
        return "wall ms" if self.kind == "tcp" else "server CPU µs/req"

    @property
    def metric(self) -> str:
        return "wall_ms" if self.kind == "tcp" else "server_cpu_us"


_FLAVOUR_DOC = {
    "sock": "loop.sock_accept / sock_recv / sock_sendall",
    "streams": "asyncio.start_server, reader.read + writer.write + drain",
    "protocol": "loop.create_server, Protocol.data_received -> transport.write",
    "tls": "the protocol server over TLS (create_server(ssl=...))",
}


def _build_cases() -> list[Case]:
    cases = []
    for flavour in ("sock", "streams", "protocol"):
        for label, size, n, nq in (("1k", 1024, 5000, 500), ("100k", 100 * 1024, 800, 80)):
            cases.append(
                Case(
                    f"echo_{flavour}_{label}", "echo", flavour, size, n, nq,
                    f"echo server ({_FLAVOUR_DOC[flavour]}), {label[:-1]} KiB "
                    "payloads, external blocking client",
                )
            )
    cases.append(Case("echo_tls_1k", "echo", "tls", 1024, 5000, 500,
                      f"echo server ({_FLAVOUR_DOC['tls']}), 1 KiB payloads, external blocking TLS client"))
    cases.append(Case("http", "http", "http",
                      doc="HTTP/1.1 keep-alive Protocol server, fixed response, driven by wrk"))
    cases.append(Case("asyncio_tcp", "tcp", "plain",
                      doc="pyperformance bm_asyncio_tcp: 1 GB over streams in one process"))
    cases.append(Case("asyncio_tcp_ssl", "tcp", "ssl",
                      doc="pyperformance bm_asyncio_tcp --ssl: the same over TLS"))
    return cases


CASES = _build_cases()


@dataclass
class Settings:
    conns: int
    quick: bool
    timeout: float
    wrk: str | None
    wrk_threads: int
    wrk_conns: int
    wrk_duration: int


def measure_echo(case: Case, spec: LoopSpec, st: Settings) -> dict:
    deadline = time.monotonic() + st.timeout
    n = case.n_quick if st.quick else case.n
    warmup = max(10, n // 10)
    # The client stops early (and says so) when its share of the budget is
    # spent; the parent's deadline is the hard limit.
    client_budget = max(1.0, st.timeout * 0.5)
    server, port = _start_server(spec, case.flavour, deadline)
    client = None
    try:
        client = Child(
            ["--_client", str(port), str(st.conns), str(case.size), str(n),
             str(warmup), f"{client_budget:g}"] + (["tls"] if case.flavour == "tls" else []),
            "client",
        )
        try:
            client.expect(WARM_MARK, deadline, "the client warm-up")
            before = _server_cpu(server, deadline)
            _server_errors(before)
            client.send("GO")
            res = json.loads(client.expect(RESULT_MARK, deadline, "the client result"))
            after = _server_cpu(server, deadline)
            _server_errors(after)
        except Exception as exc:
            raise _diagnose(server, exc, spec, case.flavour) from exc
    finally:
        if client is not None:
            client.stop(1.0)
        server.stop()
    user = after["user"] - before["user"]
    sys_ = after["sys"] - before["sys"]
    reqs = res["requests"]
    if reqs <= 0:
        raise MeasureError("no request completed")
    return {
        "server_cpu_us": (user + sys_) / reqs * 1e6,
        "server_user_s": user,
        "server_sys_s": sys_,
        "requests": reqs,
        "wall_s": res["wall"],
        "rps": reqs / res["wall"],
        "p50_us": res["p50_us"],
        "p99_us": res["p99_us"],
        "client_cpu_s": res["client_cpu"],
        "time_limited": res["time_limited"],
    }


def _http_warmup(port: int, conns: int = 2, requests: int = 300) -> None:
    """Keep-alive requests from blocking sockets; also checks the response."""
    for _ in range(conns):
        with socket.create_connection((HOST, port), timeout=CLIENT_SOCK_TIMEOUT) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for _ in range(requests):
                s.sendall(HTTP_REQUEST)
                got = b""
                while len(got) < len(HTTP_RESPONSE):
                    chunk = s.recv(len(HTTP_RESPONSE) - len(got))
                    if not chunk:
                        raise MeasureError("HTTP server closed a keep-alive connection")
                    got += chunk
                if got != HTTP_RESPONSE:
                    raise MeasureError(f"unexpected HTTP response {got[:60]!r}")


_WRK_UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}


def _wrk_time_us(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(f"cannot parse wrk time {text!r}")
    return float(m.group(1)) * _WRK_UNITS[m.group(2)]


def parse_wrk(out: str) -> dict:
    res: dict = {}
    m = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m)", out, re.M)
    if m:
        res["requests"] = int(m.group(1))
    m = re.search(r"^Requests/sec:\s*([\d.]+)", out, re.M)
    if m:
        res["rps"] = float(m.group(1))
    for pct, key in (("50", "p50_us"), ("99", "p99_us")):
        m = re.search(rf"^\s*{pct}(?:\.0+)?%\s+(\S+)", out, re.M)
        if m:
            res[key] = _wrk_time_us(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non_2xx"] = int(m.group(1)) if m else 0
    return res


def measure_http(case: Case, spec: LoopSpec, st: Settings) -> dict:
    if not st.wrk:
        raise Skip("wrk not found (apt-get install wrk, or --wrk PATH)")
    duration = 1 if st.quick else st.wrk_duration
    deadline = time.monotonic() + st.timeout
    server, port = _start_server(spec, "http", deadline)
    try:
        try:
            _http_warmup(port)
            before = _server_cpu(server, deadline)
            _server_errors(before)
            cmd = [st.wrk, f"-t{st.wrk_threads}", f"-c{st.wrk_conns}", f"-d{duration}s",
                   "--latency", f"http://{HOST}:{port}/"]
            remaining = deadline - time.monotonic()
            if remaining < duration + 2:
                raise Timeout("no time left for wrk")
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=remaining)
            except subprocess.TimeoutExpired:
                raise Timeout(f"wrk did not finish within {remaining:.0f} s") from None
            after = _server_cpu(server, deadline)
            _server_errors(after)
        except Exception as exc:
            raise _diagnose(server, exc, spec, case.flavour) from exc
    finally:
        server.stop()
    if proc.returncode != 0:
        raise MeasureError(f"wrk exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
    wrk = parse_wrk(proc.stdout)
    if "rps" not in wrk or "p99_us" not in wrk:
        raise MeasureError(f"cannot parse wrk output: {proc.stdout[-300:]!r}")
    user = after["user"] - before["user"]
    sys_ = after["sys"] - before["sys"]
    reqs = after["requests"] - before["requests"]  # served while measuring
    if reqs <= 0:
        raise MeasureError("the server answered no request")
    if wrk["socket_errors"] or wrk["non_2xx"]:
        raise MeasureError(
            f"wrk saw {wrk['socket_errors']} socket errors, {wrk['non_2xx']} non-2xx responses"
        )
    return {
        "server_cpu_us": (user + sys_) / reqs * 1e6,
        "server_user_s": user,
        "server_sys_s": sys_,
        "requests": reqs,
        "wrk_requests": wrk.get("requests"),
        "wall_s": duration,
        "rps": wrk["rps"],
        "p50_us": wrk.get("p50_us"),
        "p99_us": wrk["p99_us"],
    }


class Skip(Exception):
    pass


def measure_tcp(case: Case, spec: LoopSpec, st: Settings) -> dict:
    cmd = [sys.executable, THIS, "--_tcp", spec.spec, case.flavour]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              timeout=st.timeout, env=_child_env())
    except subprocess.TimeoutExpired:
        raise Timeout(f"no result within {st.timeout:g} s (hang?)") from None
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            res = json.loads(line[len(RESULT_MARK):])
            if not res.get("ok"):
                raise MeasureError(res.get("error", "?"), res.get("traceback", ""))
            return {"wall_ms": res["wall_ms"], "cpu_ms": res["cpu_ms"],
                    "mb_per_s": res["bytes"] / 1e6 / (res["wall_ms"] / 1e3)}
    tail = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])
    raise MeasureError(f"child died (exit {proc.returncode}): {tail[-1]}",
                       "\n".join(tail[-30:]) + "\n")


MEASURE = {"echo": measure_echo, "http": measure_http, "tcp": measure_tcp}


# ---------------------------------------------------------------------------
# Parent: run, summarise, print
# ---------------------------------------------------------------------------


def select_cases(filters: list[str] | None) -> list[Case]:
    if not filters:
        return list(CASES)
    words = [w.strip() for f in filters for w in f.split(",") if w.strip()]
    return [
        c for c in CASES
        if any((w[1:] == c.name) if w.startswith("=") else (w in c.name) for w in words)
    ]


_fmt = _bench._fmt_value


FLOOR_HEADER = "floor (no Python)"


def _cell_text(cell: dict, key: str) -> str:
    if cell.get("status") in ("error", "timeout", "skipped"):
        return cell["status"]
    value = cell.get("summary", {}).get(key)
    return "—" if value is None else _fmt(value)


def headline_table(results: dict, cases: list[Case], loops: list[str], baseline: str) -> str:
    header = ["case", "unit"]
    for name in loops:
        # The floor's distance from each loop has its own table (floor_table).
        header.append(FLOOR_HEADER if name == FLOOR and name != baseline else name)
        if name != baseline and name != FLOOR:
            header.append(f"{name} ×")
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|"]
    for case in cases:
        row = [case.name, case.unit]
        base = results[case.name].get(baseline, {})
        base_v = base.get("summary", {}).get(case.metric) if base.get("status") == "ok" else None
        for name in loops:
            cell = results[case.name].get(name, {})
            row.append(_cell_text(cell, case.metric))
            if name != baseline and name != FLOOR:
                v = cell.get("summary", {}).get(case.metric) if cell.get("status") == "ok" else None
                row.append(f"{base_v / v:.2f}" if (v and base_v) else "—")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _ok_value(cell: dict, key: str) -> float | None:
    return cell.get("summary", {}).get(key) if cell.get("status") == "ok" else None


def floor_table(results: dict, cases: list[Case], loops: list[str]) -> str:
    """Each loop's server CPU per request over the floor's, for the cases the
    floor measured; empty without a floor column."""
    if FLOOR not in loops:
        return ""
    others = [n for n in loops if n != FLOOR]
    rows = []
    for case in cases:
        floor_v = _ok_value(results[case.name].get(FLOOR, {}), case.metric)
        if not floor_v:
            continue
        row = [case.name, _fmt(floor_v)]
        for name in others:
            v = _ok_value(results[case.name].get(name, {}), case.metric)
            row.append(f"{v / floor_v:.2f}" if v else "—")
        rows.append("| " + " | ".join(row) + " |")
    if not rows:
        return ""
    header = ["case", "floor µs/req"] + [f"{n} / floor" for n in others]
    return "\n".join(["| " + " | ".join(header) + " |",
                      "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"] + rows)


def detail_tables(results: dict, cases: list[Case], loops: list[str]) -> str:
    out = []
    net = [c for c in cases if c.kind in ("echo", "http")]
    if net:
        out.append("| case | loop | server CPU µs/req | sys % | req/s | p50 µs | p99 µs | requests |")
        out.append("|---|---|---:|---:|---:|---:|---:|---:|")
        for case in net:
            for name in loops:
                cell = results[case.name].get(name, {})
                if cell.get("status") == "n/a":
                    continue
                if cell.get("status") != "ok":
                    status = cell.get("status", "—")
                    out.append(f"| {case.name} | {name} | {status} | | | | | |")
                    continue
                s = cell["summary"]
                tot = s["server_user_s"] + s["server_sys_s"]
                sys_pct = 100 * s["server_sys_s"] / tot if tot else 0.0
                out.append(
                    f"| {case.name} | {name} | {_fmt(s['server_cpu_us'])} | {sys_pct:.0f} "
                    f"| {s['rps']:.0f} | {_fmt(s['p50_us'])} | {_fmt(s['p99_us'])} "
                    f"| {s['requests']:.0f} |"
                )
    tcp = [c for c in cases if c.kind == "tcp"]
    if tcp:
        if out:
            out.append("")
        out.append("| case | loop | wall ms | process CPU ms | MB/s |")
        out.append("|---|---|---:|---:|---:|")
        for case in tcp:
            for name in loops:
                cell = results[case.name].get(name, {})
                if cell.get("status") == "n/a":
                    continue
                if cell.get("status") != "ok":
                    out.append(f"| {case.name} | {name} | {cell.get('status', '—')} | | |")
                    continue
                s = cell["summary"]
                out.append(f"| {case.name} | {name} | {_fmt(s['wall_ms'])} | "
                           f"{_fmt(s['cpu_ms'])} | {s['mb_per_s']:.0f} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Networking benchmarks (loopback): echo servers, HTTP via wrk, "
        "pyperformance asyncio_tcp; several event loops side by side.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Cases:\n" + "\n".join(f"  {c.name:19s} {c.doc}" for c in CASES),
    )
    parser.add_argument("--loops", nargs="+", metavar="SPEC", default=None,
                        help="event loops as name=module:factory (space or comma "
                        f"separated; '{FLOOR}' for the Rust floor server); default: "
                        + " ".join(DEFAULT_LOOPS) + f" {FLOOR}")
    parser.add_argument("--no-floor", action="store_true",
                        help="leave out the floor (benchmarks/floor: mio, no Python; "
                        "built with cargo, skipped with a note without it)")
    parser.add_argument("-k", dest="filters", action="append", metavar="PATTERN",
                        help="only cases whose name contains PATTERN (comma separated, "
                        "repeatable; '=name' for an exact name)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="measurements per case and loop (default 3, 1 with --quick)")
    parser.add_argument("--stat", choices=("median", "min"), default="median",
                        help="how repeats are summarised (default: median)")
    parser.add_argument("--quick", action="store_true",
                        help="CI smoke run: 10x fewer echo requests, wrk -d1s, 1 repeat")
    parser.add_argument("--conns", type=int, default=10,
                        help="echo client connections (default 10)")
    parser.add_argument("--wrk", default=shutil.which("wrk"),
                        help="path of wrk (default: from PATH)")
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk -t (default 1)")
    parser.add_argument("--wrk-conns", type=int, default=10, help="wrk -c (default 10)")
    parser.add_argument("--wrk-duration", type=int, default=3,
                        help="wrk -d in seconds (default 3; 1 with --quick)")
    parser.add_argument("--cold-malloc", action="store_true",
                        help="skip the glibc malloc warm-up in the server and "
                        "asyncio_tcp processes (diagnostic, see README)")
    parser.add_argument("--baseline", default=None,
                        help="loop the ratios are computed against (default: asyncio)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds before one measurement is abandoned (default 30)")
    parser.add_argument("--json", metavar="FILE", help="also write all samples to FILE")
    parser.add_argument("--fail-on-error", action="store_true",
                        help="exit 1 if any cell is error/timeout (default: exit 0)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    args = parser.parse_args(argv)

    if args.list:
        for c in CASES:
            n = f"{c.n}x{args.conns} req (quick {c.n_quick}x{args.conns})" if c.kind == "echo" else ""
            print(f"{c.name:19s} {n:34s} {c.doc}")
        return 0
    cases = select_cases(args.filters)
    if not cases:
        parser.error("no case matches -k " + ",".join(args.filters or []))
    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 3)
    if repeat < 1:
        parser.error("--repeat must be >= 1")
    _COLD_MALLOC[0] = args.cold_malloc
    if args.wrk and not shutil.which(args.wrk):
        args.wrk = None

    specs = [parse_spec(s) for item in (args.loops or DEFAULT_LOOPS + [FLOOR])
             for s in item.split(",") if s.strip()]
    if args.no_floor:
        specs = [s for s in specs if not is_floor(s)]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        parser.error(f"duplicate loop names in {names}")

    notes: list[str] = []
    loops: list[LoopSpec] = []
    versions: dict[str, str] = {}
    for spec in specs:
        if is_floor(spec):
            probe = build_floor(max(300.0, args.timeout))
            if not probe.get("ok") and probe.get("stderr"):
                print(probe["stderr"], file=sys.stderr, end="")
        else:
            probe = _run_probe(spec, min(60.0, args.timeout))
        if probe.get("ok"):
            loops.append(spec)
            versions[spec.name] = probe["version"]
            print(f"# {spec.name}: {spec.module}:{spec.factory} -> {probe['type']} "
                  f"({probe['version']})", file=sys.stderr)
        else:
            notes.append(f"{spec.name} skipped ({spec.spec}): {probe.get('why')}")
            print(f"# {spec.name}: SKIPPED: {probe.get('why')}", file=sys.stderr)
    if not loops:
        print("no event loop could be imported", file=sys.stderr)
        return 1
    loop_names = [s.name for s in loops]
    real_loops = [n for n in loop_names if n != FLOOR] or loop_names
    baseline = args.baseline or ("asyncio" if "asyncio" in loop_names else real_loops[0])
    if baseline not in loop_names:
        parser.error(f"baseline {baseline!r} is not among the loops that run: {loop_names}")

    st = Settings(args.conns, args.quick, args.timeout, args.wrk, args.wrk_threads,
                  args.wrk_conns, args.wrk_duration)
    skipped: dict[str, str] = {}
    if any(c.kind == "http" for c in cases) and not st.wrk:
        skipped["http"] = "wrk not found: apt-get install wrk (or --wrk PATH); http skipped"
    tcp_source = None
    if any(c.kind == "tcp" for c in cases):
        try:
            tcp_source = find_asyncio_tcp_file()
        except ImportError as exc:
            for c in cases:
                if c.kind == "tcp":
                    skipped[c.name] = f"{exc}; {c.name} skipped"
    for why in dict.fromkeys(skipped.values()):
        notes.append(why)
        print(f"# {why}", file=sys.stderr)

    samples: dict = {c.name: {n: [] for n in loop_names} for c in cases}
    failures: dict = {c.name: {} for c in cases}
    started = time.perf_counter()
    total = repeat * len(cases) * len(loops)
    done = 0
    for r in range(repeat):
        order = loops[r % len(loops):] + loops[: r % len(loops)]
        for case in cases:
            for spec in order:
                done += 1
                if case.name in skipped or spec.name in failures[case.name]:
                    continue
                if is_floor(spec) and not floor_serves(case):
                    continue
                try:
                    res = MEASURE[case.kind](case, spec, st)
                except Timeout as exc:
                    failures[case.name][spec.name] = ("timeout", f"timeout: {exc}", "")
                    shown = f"timeout: {exc}"
                except MeasureError as exc:
                    failures[case.name][spec.name] = ("error", str(exc), exc.traceback)
                    shown = f"error: {exc}"
                    if exc.traceback:
                        print(exc.traceback, file=sys.stderr, end="")
                except Exception as exc:  # the harness itself, or a socket in the parent
                    info = _bench.describe_error(exc)
                    failures[case.name][spec.name] = ("error", info["error"], info["traceback"])
                    shown = f"error: {info['error']}"
                    print(info["traceback"], file=sys.stderr, end="")
                else:
                    samples[case.name][spec.name].append(res)
                    shown = f"{_fmt(res[case.metric])} {case.unit}"
                    if case.kind != "tcp":
                        shown += (f", {res['rps']:.0f} req/s, p50 {_fmt(res['p50_us'])} µs"
                                  f", p99 {_fmt(res['p99_us'])} µs")
                        if res.get("time_limited"):
                            shown += " (time-limited)"
                    else:
                        shown += f", CPU {_fmt(res['cpu_ms'])} ms"
                print(f"[{done}/{total} {time.perf_counter() - started:6.1f}s] "
                      f"{case.name} on {spec.name}: {shown}", file=sys.stderr, flush=True)

    pick = statistics.median if args.stat == "median" else min
    results: dict = {}
    for case in cases:
        results[case.name] = {}
        for name in loop_names:
            cell: dict = {"samples": samples[case.name][name]}
            if name == FLOOR and not floor_serves(case):
                cell["status"] = "n/a"  # no floor server for this case
            elif case.name in skipped:
                cell["status"] = "skipped"
            elif name in failures[case.name]:
                status, msg, tb = failures[case.name][name]
                cell.update(status=status, error=msg, traceback=tb)
                notes.append(f"{case.name} on {name}: {msg}")
            elif cell["samples"]:
                cell["status"] = "ok"
                keys = [k for k, v in cell["samples"][0].items()
                        if isinstance(v, (int, float)) and not isinstance(v, bool)]
                # The headline follows --stat; the detail columns are medians.
                cell["summary"] = {
                    k: statistics.median(s[k] for s in cell["samples"] if s.get(k) is not None)
                    for k in keys
                }
                vals = [s[case.metric] for s in cell["samples"]]
                cell["summary"][case.metric] = pick(vals)
                cell["min"], cell["max"] = min(vals), max(vals)
                if any(s.get("time_limited") for s in cell["samples"]):
                    notes.append(f"{case.name} on {name}: hit the client's time budget "
                                 "(fewer requests than asked)")
            results[case.name][name] = cell

    elapsed = time.perf_counter() - started
    try:
        load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    print()
    print(f"Python {platform.python_version()} on {platform.machine()}, "
          f"{os.cpu_count()} CPUs (load avg {load} at the end), "
          + ", ".join(f"{n} {versions[n]}" for n in loop_names))
    print(f"{args.stat} of {repeat} run(s) per cell, fresh processes per run"
          f"{' (--quick sizes)' if args.quick else ''}; echo: {args.conns} connections, "
          f"external blocking client; http: wrk -t{st.wrk_threads} -c{st.wrk_conns} "
          f"-d{1 if args.quick else st.wrk_duration}s; "
          f"'{baseline}' / loop in the × columns (>1 = less CPU / faster than "
          f"{baseline}); {elapsed:.0f} s in all")
    print()
    print(headline_table(results, cases, loop_names, baseline))
    ftable = floor_table(results, cases, loop_names)
    if FLOOR in loop_names:
        print()
        print(f"'{FLOOR_HEADER}': benchmarks/floor, the same echo/HTTP server in Rust on "
              "mio, one thread, no Python: the syscall + copy cost of this traffic with "
              "this client and measurement; — where it has no server (TLS, asyncio_tcp).")
    if ftable:
        print("Distance from the floor: a loop's server CPU per request / the floor's "
              "(1.00 = at the floor).")
        print()
        print(ftable)
    print()
    print(detail_tables(results, cases, loop_names))
    if notes:
        print()
        for note in notes:
            print(f"- {note}")

    if args.json:
        payload = {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "stat": args.stat,
            "repeat": repeat,
            "quick": args.quick,
            "conns": args.conns,
            "wrk": {"path": st.wrk, "threads": st.wrk_threads, "conns": st.wrk_conns,
                    "duration_s": 1 if args.quick else st.wrk_duration},
            "baseline": baseline,
            "loops": {s.name: {"spec": s.spec, "version": versions[s.name]} for s in loops},
            "asyncio_tcp_source": tcp_source,
            "notes": notes,
            "cases": {
                c.name: {"unit": c.unit, "metric": c.metric, "description": c.doc,
                         "results": results[c.name]}
                for c in cases
            },
            "elapsed_s": elapsed,
        }
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2, ensure_ascii=False)
            fh.write("\n")
    if args.fail_on_error and any(failures[c.name] for c in cases):
        return 1
    return 0


def _run_probe(spec: LoopSpec, timeout: float) -> dict:
    """bench.py's probe (import the loop, run a coroutine) in a child."""
    return _bench._run_child(["--_probe", spec.spec], _bench.PROBE_MARK, timeout)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--_server":
        sys.exit(server_main(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == "--_client":
        sys.exit(client_main(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == "--_tcp":
        sys.exit(tcp_main(sys.argv[2:]))
    sys.exit(main())
