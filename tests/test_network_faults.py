"""Network faults and resource exhaustion: EMFILE on accept, peer resets,
thousands of connections, slowloris, a reader that never reads, TLS failures,
writes after close, and leak checks (descriptors and ResourceWarnings).

Everything runs on loopback (127.0.0.1 or Unix sockets in a temporary
directory). Each test is parametrized over stdlib asyncio and ferroloop, so
the asyncio run proves that the expectation itself is right, and every case
runs through ``run_case`` which bounds it in time and checks afterwards that
no descriptor leaked and no ResourceWarning was emitted.
"""

import asyncio
import contextlib
import contextvars
import datetime
import errno
import faulthandler
import gc
import ipaddress
import logging
import os
import resource
import socket
import sys
import ssl
import struct
import tempfile
import time
import warnings

import pytest

import ferroloop

LOOPS = [
    pytest.param(asyncio.new_event_loop, id="asyncio"),
    pytest.param(ferroloop.new_event_loop, id="ferroloop"),
]

HOST = "127.0.0.1"
SEND_EXC_MSG = "socket.send() raised exception."
ACCEPT_EMFILE_MSG = "socket.accept() out of system resource"


@pytest.fixture(params=LOOPS)
def loop_factory(request):
    return request.param


@pytest.fixture(autouse=True)
def _watchdog():
    # Last resort against a hang inside the loop itself (where wait_for
    # cannot help): dump the stacks and end the process.
    faulthandler.dump_traceback_later(60, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


@pytest.fixture
def unix_path():
    """A Unix socket path in a fresh temporary directory (short: sun_path
    holds 108 bytes)."""
    d = tempfile.mkdtemp(prefix="flnf")
    path = os.path.join(d, "s.sock")
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.rmdir(d)


def fd_snapshot():
    """Open descriptors of this process: {fd: what it points to}."""
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass  # the descriptor of the listing itself, closed by now
    return out


def assert_fds_back_to(before):
    after = fd_snapshot()
    leaked = {fd: after[fd] for fd in after.keys() - before.keys()}
    closed = {fd: before[fd] for fd in before.keys() - after.keys()}
    assert not leaked and not closed, f"leaked descriptors {leaked}, closed foreign ones {closed}"


def resource_warnings(caught):
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


def run_case(loop_factory, main, *, timeout=10.0, debug=False, check_warnings=True):
    """Run ``main(loop)`` on a fresh loop, bounded by ``timeout``; then close
    the loop and check that descriptors are back to what they were before the
    loop existed and (unless told otherwise) that nothing emitted a
    ResourceWarning. Returns (main's result, the ResourceWarning messages)."""
    gc.collect()
    before = fd_snapshot()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        loop = loop_factory()
        try:
            loop.set_debug(debug)
            result = loop.run_until_complete(asyncio.wait_for(main(loop), timeout))
        finally:
            loop.close()
        del loop
        for _ in range(3):
            gc.collect()
    found = resource_warnings(caught)
    if check_warnings:
        assert found == [], found
    assert_fds_back_to(before)
    return result, found


@contextlib.contextmanager
def asyncio_log():
    """Every record of the 'asyncio' logger (at DEBUG and above)."""
    records = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record)

    lg = logging.getLogger("asyncio")
    handler = Collect(logging.DEBUG)
    old_level = lg.level
    lg.addHandler(handler)
    lg.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        lg.removeHandler(handler)
        lg.setLevel(old_level)


def collect_exception_contexts(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    return contexts


def port_of(server):
    return server.sockets[0].getsockname()[1]


async def wait_until(predicate, timeout, interval=0.005):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {timeout} s")
        await asyncio.sleep(interval)


class EchoServer(asyncio.Protocol):
    """Echoes everything; records its lifetime in the shared ``stats``."""

    def __init__(self, stats):
        self.stats = stats

    def connection_made(self, transport):
        self.transport = transport
        self.stats["made"] += 1
        self.stats["live"] += 1
        self.stats["peak"] = max(self.stats["peak"], self.stats["live"])

    def data_received(self, data):
        self.transport.write(data)

    def connection_lost(self, exc):
        self.stats["live"] -= 1
        self.stats["lost"] += 1
        self.stats["errors"].append(exc)


def new_stats():
    return {"made": 0, "live": 0, "peak": 0, "lost": 0, "errors": []}


@contextlib.contextmanager
def nofile_limit(soft):
    old_soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (old_soft, hard))


# --------------------------------------------------------------------------
# 1. EMFILE during accept
# --------------------------------------------------------------------------


def test_emfile_on_accept_pauses_then_recovers(loop_factory):
    """With no descriptor left, accept() fails with EMFILE: asyncio reports
    it to the exception handler once, stops accepting and retries after
    ACCEPT_RETRY_DELAY. The connections that waited in the backlog meanwhile
    are accepted on the retry (no new connection is needed to wake the
    server) and served, and so are new ones."""
    n_pending = 3
    backlog = 10

    async def main(loop):
        contexts = collect_exception_contexts(loop)
        stats = new_stats()
        accepted_at = []

        class Echo(EchoServer):
            def connection_made(self, transport):
                accepted_at.append(time.monotonic())
                super().connection_made(transport)

        server = await loop.create_server(lambda: Echo(stats), HOST, 0, backlog=backlog)
        port = port_of(server)
        clients = []
        try:
            # Connections completed by the kernel, waiting in the backlog:
            # the loop has not run since, so none is accepted yet.
            for _ in range(n_pending):
                c = socket.create_connection((HOST, port), timeout=2)
                c.setblocking(False)
                clients.append(c)

            fillers = []
            old_soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(fd_snapshot()) + 1, hard))
            try:
                # Fill any hole below the limit: no descriptor can be made.
                while True:
                    try:
                        fillers.append(os.open(os.devnull, os.O_RDONLY))
                    except OSError as exc:
                        assert exc.errno == errno.EMFILE
                        break
                await wait_until(lambda: contexts, 3)
                failed_at = time.monotonic()
                # Nothing can be accepted while descriptors are exhausted.
                await asyncio.sleep(0.2)
                assert stats["made"] == 0
            finally:
                for fd in fillers:
                    os.close(fd)
                resource.setrlimit(resource.RLIMIT_NOFILE, (old_soft, hard))

            # asyncio's accept loop makes up to `backlog` attempts per
            # readiness report and does not stop at EMFILE: one report each.
            assert len(contexts) == backlog, contexts
            for ctx in contexts:
                assert ctx["message"] == ACCEPT_EMFILE_MSG
                assert isinstance(ctx["exception"], OSError)
                assert ctx["exception"].errno == errno.EMFILE
                assert "socket" in ctx

            # The retry, ACCEPT_RETRY_DELAY (1 s) after the failure, picks up
            # the pending connections without any new one arriving.
            await wait_until(lambda: stats["made"] == n_pending, 4)
            delay = accepted_at[0] - failed_at
            assert 0.6 <= delay <= 2.5, delay
            for i, c in enumerate(clients):
                msg = b"pending %d" % i
                await loop.sock_sendall(c, msg)
                got = b""
                while len(got) < len(msg):
                    chunk = await loop.sock_recv(c, 100)
                    assert chunk
                    got += chunk
                assert got == msg

            # And new connections are served.
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(b"fresh\n")
            assert await reader.readline() == b"fresh\n"
            writer.close()
            await writer.wait_closed()
        finally:
            for c in clients:
                c.close()
            server.close()
            await server.wait_closed()
        await wait_until(lambda: stats["lost"] == stats["made"], 3)
        assert stats["made"] == n_pending + 1
        assert len(contexts) == backlog

    run_case(loop_factory, main)


# --------------------------------------------------------------------------
# 2. Peer reset in the middle of a large write
# --------------------------------------------------------------------------

READ_ERR = "Fatal read error on socket transport"
WRITE_ERR = "Fatal write error on socket transport"

# (family, scenario, exception asyncio gives, its errno, asyncio's debug log)
RESET_CASES = [
    # TCP, SO_LINGER (1, 0): RST. The server notices it reading or writing.
    pytest.param("tcp", "mid-write", ConnectionResetError, errno.ECONNRESET, READ_ERR, id="tcp-mid-write"),
    pytest.param("tcp", "mid-write-not-reading", ConnectionResetError, errno.ECONNRESET, WRITE_ERR,
                 id="tcp-mid-write-not-reading"),
    pytest.param("tcp", "write-after-reset", ConnectionResetError, errno.ECONNRESET, WRITE_ERR,
                 id="tcp-write-after-reset"),
    # Unix: closing with unread data resets the peer's reads; its writes
    # get EPIPE.
    pytest.param("unix", "mid-write", ConnectionResetError, errno.ECONNRESET, READ_ERR, id="unix-mid-write"),
    pytest.param("unix", "mid-write-not-reading", BrokenPipeError, errno.EPIPE, WRITE_ERR,
                 id="unix-mid-write-not-reading"),
    pytest.param("unix", "write-after-reset", BrokenPipeError, errno.EPIPE, WRITE_ERR,
                 id="unix-write-after-reset"),
]


@pytest.mark.parametrize("debug", [False, True], ids=["nodebug", "debug"])
@pytest.mark.parametrize("family,scenario,exc_type,exc_errno,log_msg", RESET_CASES)
def test_peer_reset(loop_factory, unix_path, family, scenario, exc_type, exc_errno, log_msg, debug):
    """The peer goes away abruptly (TCP: SO_LINGER (1, 0) then close, i.e.
    RST; Unix: close with unread data) while the server writes a large
    amount, or before it writes: connection_lost() gets the same exception
    (type, errno, args) as on asyncio, which logs it in debug mode with the
    exception attached; nothing leaks."""

    async def main(loop):
        contexts = collect_exception_contexts(loop)
        lost = loop.create_future()
        paused = loop.create_future()
        state = {}

        class Server(asyncio.Protocol):
            def connection_made(self, transport):
                state["transport"] = transport
                if scenario != "mid-write":
                    transport.pause_reading()
                if scenario != "write-after-reset":
                    transport.write(b"x" * (32 * 1024 * 1024))

            def pause_writing(self):
                if not paused.done():
                    paused.set_result(None)

            def connection_lost(self, exc):
                lost.set_result(exc)

        if family == "tcp":
            server = await loop.create_server(Server, HOST, 0)
            client = socket.create_connection((HOST, port_of(server)), timeout=2)
        else:
            server = await loop.create_unix_server(Server, unix_path)
            client = socket.socket(socket.AF_UNIX)
            client.settimeout(2)
            client.connect(unix_path)
        try:
            with asyncio_log() as records:
                try:
                    client.setblocking(False)
                    if scenario == "write-after-reset":
                        await wait_until(lambda: "transport" in state, 2)
                    else:
                        await asyncio.wait_for(paused, 3)
                        # Take some of the data: the transfer is under way.
                        got = await loop.sock_recv(client, 65536)
                        assert got and set(got) == {ord("x")}
                        assert state["transport"].get_write_buffer_size() > 0
                    if family == "tcp":
                        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                finally:
                    client.close()
                if scenario == "write-after-reset":
                    await asyncio.sleep(0.1)
                    assert not lost.done()  # not reading: nothing noticed yet
                    state["transport"].write(b"too late")
                exc = await asyncio.wait_for(lost, 3)
            assert isinstance(exc, exc_type), repr(exc)
            fatal = [r for r in records if "Fatal" in r.getMessage()]
            if debug:
                assert len(fatal) == 1, [r.getMessage() for r in fatal]
                assert fatal[0].levelno == logging.DEBUG
                assert fatal[0].getMessage().endswith(": " + log_msg), fatal[0].getMessage()
                # The record carries the exception (logged with exc_info=True).
                assert fatal[0].exc_info is not None and fatal[0].exc_info[1] is exc, fatal[0].exc_info
            else:
                assert fatal == []
            # The exception itself, as asyncio makes it (socket.send/recv raise
            # it): type, errno, args, message.
            assert type(exc) is exc_type, repr(exc)
            assert exc.errno == exc_errno, repr(exc)
            assert exc.args == (exc_errno, os.strerror(exc_errno)), exc.args
            assert str(exc) == str(exc_type(exc_errno, os.strerror(exc_errno)))
            transport = state["transport"]
            assert transport.is_closing()
            assert transport.get_write_buffer_size() == 0
            # An OSError is not reported to the exception handler.
            assert contexts == []
        finally:
            server.close()
            await server.wait_closed()

    run_case(loop_factory, main, debug=debug)


# --------------------------------------------------------------------------
# 3. 5,000 concurrent connections on one loop
# --------------------------------------------------------------------------

N_CONNECTIONS = 5000


def test_5000_concurrent_connections(loop_factory):
    # Each connection costs two descriptors here (client and server side).
    needed = 2 * N_CONNECTIONS + 200
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {needed} descriptors needed")
        new_soft = needed if hard == resource.RLIM_INFINITY else hard
    else:
        new_soft = soft

    async def main(loop):
        contexts = collect_exception_contexts(loop)
        stats = new_stats()
        server = await loop.create_server(lambda: EchoServer(stats), HOST, 0, backlog=4096)
        port = port_of(server)
        all_connected = loop.create_future()
        counts = {"connected": 0, "client_peak": 0, "client_live": 0}
        # Connects are paced so the listen backlog never overflows (a dropped
        # SYN costs a 1 s retransmission); all connections then stay open
        # together until every one of them is established.
        connect_gate = asyncio.Semaphore(500)

        class Client(asyncio.Protocol):
            def __init__(self, msg):
                self.msg = msg
                self.received = b""
                self.done = loop.create_future()

            def connection_made(self, transport):
                self.transport = transport
                counts["client_live"] += 1
                counts["client_peak"] = max(counts["client_peak"], counts["client_live"])

            def data_received(self, data):
                self.received += data
                if len(self.received) >= len(self.msg):
                    self.transport.close()

            def connection_lost(self, exc):
                counts["client_live"] -= 1
                self.done.set_result(exc)

        async def one(i):
            msg = b"message %d" % i
            async with connect_gate:
                transport, proto = await loop.create_connection(lambda: Client(msg), HOST, port)
            counts["connected"] += 1
            if counts["connected"] == N_CONNECTIONS:
                all_connected.set_result(None)
            try:
                await all_connected
                transport.write(msg)
                exc = await proto.done
            finally:
                transport.close()
            assert exc is None
            assert proto.received == msg
            return True

        try:
            results = await asyncio.gather(*(one(i) for i in range(N_CONNECTIONS)))
        finally:
            server.close()
            await server.wait_closed()
        assert results == [True] * N_CONNECTIONS
        assert counts["client_peak"] == N_CONNECTIONS
        await wait_until(lambda: stats["lost"] == N_CONNECTIONS, 5)
        assert stats["made"] == N_CONNECTIONS
        assert all(e is None for e in stats["errors"])
        assert contexts == []

    with nofile_limit(new_soft):
        run_case(loop_factory, main, timeout=30)


# --------------------------------------------------------------------------
# 4. Slowloris does not delay other clients
# --------------------------------------------------------------------------


def test_slowloris_does_not_delay_others(loop_factory):
    slow_bytes = 12  # one every 0.2 s: ~2.4 s of trickling

    async def main(loop):
        conns = []

        class LineServer(asyncio.Protocol):
            def connection_made(self, transport):
                self.transport = transport
                self.buf = b""
                self.nbytes = 0
                self.responses = 0
                conns.append(self)

            def data_received(self, data):
                self.nbytes += len(data)
                self.buf += data
                while b"\n" in self.buf:
                    line, self.buf = self.buf.split(b"\n", 1)
                    self.transport.write(b"ok " + line + b"\n")
                    self.responses += 1

        server = await loop.create_server(LineServer, HOST, 0)
        port = port_of(server)
        slow_reader, slow_writer = await asyncio.open_connection(HOST, port)

        async def slowloris():
            for _ in range(slow_bytes):
                slow_writer.write(b"G")
                await asyncio.sleep(0.2)

        latencies = []
        slow_task = asyncio.ensure_future(slowloris())

        async def fast_client(k):
            reader, writer = await asyncio.open_connection(HOST, port)
            try:
                i = 0
                while not slow_task.done():
                    t0 = time.perf_counter()
                    writer.write(b"req %d %d\n" % (k, i))
                    line = await reader.readline()
                    latencies.append(time.perf_counter() - t0)
                    assert line == b"ok req %d %d\n" % (k, i)
                    i += 1
                    await asyncio.sleep(0.005)
            finally:
                writer.close()
                await writer.wait_closed()

        try:
            await asyncio.gather(slow_task, *(fast_client(k) for k in range(4)))
            # The slow client got no response: its request never finished.
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(slow_reader.read(1), 0.05)
        finally:
            slow_writer.close()
            await slow_writer.wait_closed()
            server.close()
            await server.wait_closed()

        slow = [c for c in conns if c.responses == 0]
        assert len(slow) == 1 and slow[0].nbytes == slow_bytes, [(c.nbytes, c.responses) for c in conns]
        assert len(latencies) >= 200, len(latencies)
        latencies.sort()
        p99 = latencies[int(len(latencies) * 0.99)]
        assert p99 < 0.1, f"p99 {p99:.3f} s"
        assert latencies[-1] < 0.5, f"max {latencies[-1]:.3f} s"
        await wait_until(lambda: all(c.transport.is_closing() for c in conns), 2)
        for c in conns:
            c.transport.close()
        await asyncio.sleep(0.05)

    run_case(loop_factory, main)


# --------------------------------------------------------------------------
# 5. A reader that never reads: flow control
# --------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["tcp", "unix"])
def test_reader_that_never_reads_pauses_and_resumes_writer(loop_factory, unix_path, family):
    chunk_size = 64 * 1024
    fail_safe = 256 * 1024 * 1024

    def chunk(i):
        return bytes([i % 251]) * chunk_size

    async def main(loop):
        paused = loop.create_future()
        resumed = loop.create_future()
        lost = loop.create_future()
        st = {"writes": 0, "pause_calls": 0, "resume_calls": 0, "paused": False}

        class Flooder(asyncio.Protocol):
            def connection_made(self, transport):
                self.transport = transport
                st["transport"] = transport
                st["low"], st["high"] = transport.get_write_buffer_limits()
                loop.call_soon(self.pump)

            def pump(self):
                # Writes continuously, one chunk per loop iteration, until
                # told to pause.
                if st["paused"] or self.transport.is_closing():
                    return
                if st["writes"] * chunk_size >= fail_safe:
                    paused.set_exception(AssertionError("pause_writing() never called"))
                    return
                self.transport.write(chunk(st["writes"]))
                st["writes"] += 1
                loop.call_soon(self.pump)

            def pause_writing(self):
                st["paused"] = True
                st["pause_calls"] += 1
                st["size_at_pause"] = self.transport.get_write_buffer_size()
                if not paused.done():
                    paused.set_result(None)

            def resume_writing(self):
                st["paused"] = False
                st["resume_calls"] += 1
                st["size_at_resume"] = self.transport.get_write_buffer_size()
                if not resumed.done():
                    resumed.set_result(None)
                    # Done: flush what is buffered and close.
                    self.transport.close()

            def connection_lost(self, exc):
                lost.set_result(exc)

        if family == "tcp":
            server = await loop.create_server(Flooder, HOST, 0)
            address = (HOST, port_of(server))
            client = socket.socket()
        else:
            server = await loop.create_unix_server(Flooder, unix_path)
            address = unix_path
            client = socket.socket(socket.AF_UNIX)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            client.settimeout(2)
            client.connect(address)
            client.setblocking(False)

            await asyncio.wait_for(paused, 5)
            transport = st["transport"]
            assert st["high"] < st["size_at_pause"] <= st["high"] + chunk_size, st
            writes_at_pause = st["writes"]
            size = transport.get_write_buffer_size()
            await asyncio.sleep(0.3)
            # Nothing moves while the peer does not read: no more writes, the
            # buffer neither grows nor drains, no spurious resume.
            assert st["writes"] == writes_at_pause
            assert transport.get_write_buffer_size() == size
            assert size < 4 * 1024 * 1024
            assert st["pause_calls"] == 1 and st["resume_calls"] == 0

            # The peer starts reading: the writer is resumed and everything
            # written arrives, in order.
            received = bytearray()
            while True:
                data = await loop.sock_recv(client, 256 * 1024)
                if not data:
                    break
                received += data
            await asyncio.wait_for(resumed, 1)
            assert st["resume_calls"] == 1
            assert st["size_at_resume"] <= st["low"], st
            assert await asyncio.wait_for(lost, 2) is None
            expected_len = st["writes"] * chunk_size
            assert len(received) == expected_len
            assert bytes(received) == b"".join(chunk(i) for i in range(st["writes"]))
        finally:
            client.close()
            server.close()
            await server.wait_closed()

    run_case(loop_factory, main)


# --------------------------------------------------------------------------
# 6. TLS failures
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A self-signed certificate for localhost / 127.0.0.1 and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    d = tmp_path_factory.mktemp("tls")
    certfile = d / "cert.pem"
    keyfile = d / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return str(certfile), str(keyfile)


def server_context(tls_files):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*tls_files)
    return ctx


def trusting_client_context(tls_files):
    return ssl.create_default_context(cafile=tls_files[0])


def untrusting_client_context():
    # Verifies certificates (PROTOCOL_TLS_CLIENT's default) but trusts nothing.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    return ctx


async def tls_round_trip(loop, port, tls_files, payload=b"ping\n"):
    reader, writer = await asyncio.open_connection(
        HOST, port, ssl=trusting_client_context(tls_files), server_hostname="localhost"
    )
    try:
        writer.write(payload)
        assert await asyncio.wait_for(reader.readline(), 2) == payload
    finally:
        writer.close()
        await writer.wait_closed()


async def start_tls_echo(loop, tls_files, **kwargs):
    handlers = []

    async def handle(reader, writer):
        handlers.append(asyncio.current_task())
        try:
            while line := await reader.readline():
                writer.write(line)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, HOST, 0, ssl=server_context(tls_files), **kwargs)
    return server, handlers


def creation_errors(contexts):
    return [c for c in contexts if c.get("message") == "Error on transport creation for incoming connection"]


@pytest.mark.parametrize("debug", [False, True], ids=["nodebug", "debug"])
def test_tls_handshake_failure_untrusted_cert(loop_factory, tls_files, debug):
    async def main(loop):
        contexts = collect_exception_contexts(loop)
        server, handlers = await start_tls_echo(loop, tls_files)
        port = port_of(server)
        try:
            with pytest.raises(ssl.SSLCertVerificationError):
                await asyncio.open_connection(
                    HOST, port, ssl=untrusting_client_context(), server_hostname="localhost"
                )
            # The server side learns of the failure and cleans up...
            if debug:
                await wait_until(lambda: creation_errors(contexts), 3)
                [ctx] = creation_errors(contexts)
                # The client closes right after its alert; the server's
                # SSLProtocol reports EOF during the handshake as a bare
                # ConnectionResetError().
                assert type(ctx["exception"]) is ConnectionResetError, repr(ctx["exception"])
                assert ctx["exception"].args == (), repr(ctx["exception"])
            # ...and keeps serving.
            await tls_round_trip(loop, port, tls_files)
            await asyncio.sleep(0.1)
            # The failed connection never reached the application.
            assert len(handlers) == 1
            if not debug:
                assert contexts == []
            else:
                assert len(creation_errors(contexts)) == 1
        finally:
            server.close()
            await server.wait_closed()
        await asyncio.wait_for(asyncio.gather(*handlers), 2)

    run_case(loop_factory, main, debug=debug)


@pytest.mark.parametrize("debug", [False, True], ids=["nodebug", "debug"])
def test_tls_handshake_timeout(loop_factory, tls_files, debug):
    hs_timeout = 0.5

    async def main(loop):
        contexts = collect_exception_contexts(loop)
        server, handlers = await start_tls_echo(loop, tls_files, ssl_handshake_timeout=hs_timeout)
        port = port_of(server)
        raw = socket.create_connection((HOST, port), timeout=2)
        try:
            raw.setblocking(False)
            t0 = time.monotonic()
            # Sends nothing; the server aborts the connection once the
            # handshake timeout expires.
            data = await asyncio.wait_for(loop.sock_recv(raw, 1024), 3)
            elapsed = time.monotonic() - t0
            assert data == b""
            assert hs_timeout * 0.8 <= elapsed <= hs_timeout + 1.0, elapsed
            # The server keeps serving.
            await tls_round_trip(loop, port, tls_files)
            if debug:
                [ctx] = creation_errors(contexts)
                exc = ctx["exception"]
                assert type(exc) is ConnectionAbortedError, repr(exc)
                assert "SSL handshake is taking longer than" in str(exc)
            else:
                assert contexts == []
            assert len(handlers) == 1
        finally:
            raw.close()
            server.close()
            await server.wait_closed()
        await asyncio.wait_for(asyncio.gather(*handlers), 2)

    run_case(loop_factory, main, debug=debug)


@pytest.mark.parametrize("debug", [False, True], ids=["nodebug", "debug"])
def test_tls_server_gets_garbage(loop_factory, tls_files, debug):
    async def main(loop):
        contexts = collect_exception_contexts(loop)
        # A long handshake timeout: the error must come from the garbage.
        server, handlers = await start_tls_echo(loop, tls_files, ssl_handshake_timeout=10)
        port = port_of(server)
        raw = socket.create_connection((HOST, port), timeout=2)
        try:
            raw.setblocking(False)
            t0 = time.monotonic()
            await loop.sock_sendall(raw, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            got = b""
            while True:
                data = await asyncio.wait_for(loop.sock_recv(raw, 1024), 3)
                if not data:
                    break
                got += data
            assert time.monotonic() - t0 < 2
            # No HTTP answer, nothing but (possibly) a TLS alert record.
            assert got == b"" or got[:1] == b"\x15", got
            await tls_round_trip(loop, port, tls_files)
            if debug:
                [ctx] = creation_errors(contexts)
                assert isinstance(ctx["exception"], ssl.SSLError), repr(ctx["exception"])
            else:
                assert contexts == []
            assert len(handlers) == 1
        finally:
            raw.close()
            server.close()
            await server.wait_closed()
        await asyncio.wait_for(asyncio.gather(*handlers), 2)

    run_case(loop_factory, main, debug=debug)


def test_tls_client_gets_garbage(loop_factory, tls_files):
    async def main(loop):
        contexts = collect_exception_contexts(loop)
        lost = []

        class Garbage(asyncio.Protocol):
            def connection_made(self, transport):
                self.transport = transport
                transport.write(b"HTTP/1.0 400 Bad Request\r\n\r\n" * 4)

            def data_received(self, data):
                pass

            def connection_lost(self, exc):
                lost.append(exc)

        server = await loop.create_server(Garbage, HOST, 0)
        try:
            t0 = time.monotonic()
            with pytest.raises(ssl.SSLError):
                await asyncio.open_connection(
                    HOST, port_of(server), ssl=trusting_client_context(tls_files),
                    server_hostname="localhost", ssl_handshake_timeout=10,
                )
            assert time.monotonic() - t0 < 2
            await wait_until(lambda: lost, 2)
            assert contexts == []
        finally:
            server.close()
            await server.wait_closed()

    run_case(loop_factory, main)


def test_tls_app_callbacks_run_in_creation_context(ferro_loop, tls_files):
    """ferroloop only (a deliberate difference, docs/DIFFERENCES.md, as
    uvloop): the TLS application protocol's pause_writing (triggered by a
    write from another context) and the data_received resumed by
    resume_reading() (called from another context) run in the context the
    connection was made in. asyncio runs them in the caller's context."""
    loop = ferro_loop
    cvar = contextvars.ContextVar("cvar", default="outer")
    seen = {}

    class Sink(asyncio.Protocol):
        def connection_made(self, transport):
            transport.pause_reading()  # never reads: the client must pause
            transport.write(b"hello")
            self.transport = transport

    class Client(asyncio.Protocol):
        def connection_made(self, transport):
            transport.pause_reading()
            self.transport = transport

        def pause_writing(self):
            seen.setdefault("pause_writing", cvar.get())

        def data_received(self, data):
            seen.setdefault("data_received", cvar.get())

    async def main():
        server = await loop.create_server(Sink, HOST, 0, ssl=server_context(tls_files))
        try:
            cvar.set("inner")
            tr, _ = await loop.create_connection(
                Client, HOST, port_of(server), ssl=trusting_client_context(tls_files),
                server_hostname="localhost",
            )
            await asyncio.sleep(0.1)  # b"hello" waits in the TLS layer

            def flood():
                cvar.set("writer")
                tr.set_write_buffer_limits(high=256, low=128)
                for _ in range(1000):  # until the TLS layer's buffer passes `high`
                    if "pause_writing" in seen:
                        break
                    tr.write(b"q" * 16384)

            def resume():
                cvar.set("resumer")
                tr.resume_reading()

            contextvars.copy_context().run(flood)
            contextvars.copy_context().run(resume)
            await wait_until(lambda: len(seen) == 2, 5)
            tr.abort()
        finally:
            server.close()

    loop.run_until_complete(main())
    assert seen == {"pause_writing": "inner", "data_received": "inner"}


# --------------------------------------------------------------------------
# 7. Writing after close
# --------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["close", "abort", "peer_reset"])
def test_writes_after_close_are_dropped_and_logged(loop_factory, how):
    """After the transport is closed, writes are dropped; from the 5th such
    write on (LOG_THRESHOLD_FOR_CONNLOST_WRITES) each one logs
    'socket.send() raised exception.' on the asyncio logger."""

    async def main(loop):
        contexts = collect_exception_contexts(loop)
        received = []
        server_lost = loop.create_future()

        class Sink(asyncio.Protocol):
            def connection_made(self, transport):
                self.transport = transport
                if how == "peer_reset":
                    sock = transport.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    transport.abort()

            def data_received(self, data):
                received.append(data)

            def connection_lost(self, exc):
                server_lost.set_result(exc)

        client_lost = loop.create_future()

        class Client(asyncio.Protocol):
            def connection_lost(self, exc):
                client_lost.set_result(exc)

        server = await loop.create_server(Sink, HOST, 0)
        try:
            transport, _ = await loop.create_connection(Client, HOST, port_of(server))
            if how == "peer_reset":
                exc = await asyncio.wait_for(client_lost, 2)
                assert type(exc) is ConnectionResetError, repr(exc)
                assert exc.errno == errno.ECONNRESET, repr(exc)
            else:
                transport.write(b"before")
                getattr(transport, how)()
            assert transport.is_closing()

            with asyncio_log() as records:
                pattern = []
                for i in range(10):
                    n = len(records)
                    transport.write(b"after %d" % i)
                    pattern.append(len(records) - n)
                if how != "peer_reset":
                    await asyncio.wait_for(client_lost, 2)
                # Also once connection_lost() has run.
                for i in range(3):
                    n = len(records)
                    transport.write(b"later %d" % i)
                    pattern.append(len(records) - n)
                # Empty data is ignored outright.
                transport.write(b"")
                await asyncio.sleep(0.05)
            assert pattern == [0, 0, 0, 0] + [1] * 9, pattern
            assert [(r.levelno, r.getMessage()) for r in records] == [(logging.WARNING, SEND_EXC_MSG)] * 9
            assert transport.get_write_buffer_size() == 0
            await asyncio.wait_for(server_lost, 2)
            data = b"".join(received)
            assert data == (b"" if how == "peer_reset" else b"before"), data
            assert contexts == []
        finally:
            server.close()
            await server.wait_closed()

    run_case(loop_factory, main)


# --------------------------------------------------------------------------
# 8. Every transport and socket closed
# --------------------------------------------------------------------------


def test_connect_serve_close_cycles_leave_nothing_open(loop_factory, tls_files):
    """Several connect/serve/close cycles (TCP, Unix, TLS, streams, protocols
    and sock_* calls), each on a fresh loop: no ResourceWarning at all, and
    the descriptors are back to the baseline after every cycle."""
    sockdir = tempfile.mkdtemp(prefix="flnf")
    path = os.path.join(sockdir, "s.sock")

    async def main(loop):
        contexts = collect_exception_contexts(loop)
        handlers = []

        async def handle(reader, writer):
            handlers.append(asyncio.current_task())
            try:
                while line := await reader.readline():
                    writer.write(line)
                    await writer.drain()
            finally:
                writer.close()
                await writer.wait_closed()

        tcp = await asyncio.start_server(handle, HOST, 0)
        unix = await asyncio.start_unix_server(handle, path)
        tls = await asyncio.start_server(handle, HOST, 0, ssl=server_context(tls_files))
        stats = new_stats()
        proto_server = await loop.create_server(lambda: EchoServer(stats), HOST, 0)
        try:
            async def stream_round_trip(reader, writer, payload):
                writer.write(payload)
                assert await reader.readline() == payload
                writer.close()
                await writer.wait_closed()

            for i in range(3):
                await stream_round_trip(*await asyncio.open_connection(HOST, port_of(tcp)), b"tcp %d\n" % i)
                await stream_round_trip(*await asyncio.open_unix_connection(path), b"unix %d\n" % i)
            await stream_round_trip(
                *await asyncio.open_connection(
                    HOST, port_of(tls), ssl=trusting_client_context(tls_files), server_hostname="localhost"
                ),
                b"tls\n",
            )

            class Client(asyncio.Protocol):
                def __init__(self):
                    self.data = b""
                    self.lost = loop.create_future()

                def data_received(self, data):
                    self.data += data

                def connection_lost(self, exc):
                    self.lost.set_result(exc)

            for how in ("close", "abort", "write_eof"):
                transport, proto = await loop.create_connection(Client, HOST, port_of(proto_server))
                transport.write(b"proto")
                await wait_until(lambda: proto.data == b"proto", 2)
                if how == "write_eof":
                    transport.write_eof()  # the server closes on EOF
                else:
                    getattr(transport, how)()
                assert await asyncio.wait_for(proto.lost, 2) is None

            # sock_* on a raw socket
            with socket.socket() as s:
                s.setblocking(False)
                await loop.sock_connect(s, (HOST, port_of(tcp)))
                await loop.sock_sendall(s, b"raw\n")
                got = b""
                while not got.endswith(b"\n"):
                    chunk = await loop.sock_recv(s, 100)
                    assert chunk
                    got += chunk
                assert got == b"raw\n"
        finally:
            for srv in (tcp, unix, tls, proto_server):
                srv.close()
                await srv.wait_closed()
        await asyncio.wait_for(asyncio.gather(*handlers), 2)
        assert len(handlers) == 8
        await wait_until(lambda: stats["lost"] == 3, 2)
        assert contexts == []

    try:
        for _ in range(3):
            run_case(loop_factory, main)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.rmdir(sockdir)


def test_unclosed_transport_is_reported(loop_factory):
    """Control for the leak checks above: a transport dropped without being
    closed emits ResourceWarning('unclosed transport ...') once it is
    collected after the loop closed, and its socket is closed then (the
    descriptors still return to the baseline)."""

    async def main(loop):
        stats = new_stats()
        server = await loop.create_server(lambda: EchoServer(stats), HOST, 0)
        done = loop.create_future()

        class Client(asyncio.Protocol):
            def data_received(self, data):
                done.set_result(data)

        transport, _ = await loop.create_connection(Client, HOST, port_of(server))
        transport.write(b"hello")
        assert await asyncio.wait_for(done, 2) == b"hello"
        server.close()
        if sys.version_info < (3, 12):
            # From 3.12 on wait_closed() also waits for the connections,
            # which stay open here on purpose.
            await server.wait_closed()
        # Neither the client's nor the server's transport is closed.

    _, found = run_case(loop_factory, main, check_warnings=False)
    unclosed = [m for m in found if m.startswith("unclosed transport")]
    assert len(unclosed) == 2, found


async def _collect_dropped(fd):
    """Collect garbage a few times; return whether ``fd`` got closed and the
    ResourceWarnings emitted meanwhile."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            gc.collect()
            await asyncio.sleep(0.01)
    try:
        os.fstat(fd)
        closed = False
    except OSError:
        closed = True
    return closed, [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


def test_dropped_transport_kept_open_after_eof_is_collected(loop):
    # eof_received() returning True keeps the transport open for writing;
    # dropped without close(), asyncio's loop no longer references it (its
    # reader is gone), so it is collected: ResourceWarning, socket closed.
    async def main():
        eof = loop.create_future()

        class KeepOpen(asyncio.Protocol):
            def connection_made(self, tr):
                self.tr = tr

            def eof_received(self):
                eof.set_result(None)
                return True

        a, b = socket.socketpair()
        fd = a.fileno()
        tr, proto = await loop.connect_accepted_socket(KeepOpen, a)
        del a
        b.shutdown(socket.SHUT_WR)
        await asyncio.wait_for(eof, 5)
        tr.write(b"still writable")  # goes out at once: no backlog
        assert b.recv(100) == b"still writable"
        b.close()
        del tr, proto
        return await _collect_dropped(fd)

    closed, warned = loop.run_until_complete(main())
    assert closed
    assert any(m.startswith("unclosed transport") for m in warned), warned


def test_dropped_paused_transport_is_collected(loop):
    # A transport whose reading is paused is not referenced by asyncio's loop
    # (pause_reading removes its reader): dropped without close(), it is
    # collected, with the ResourceWarning, and its socket is closed.
    async def main():
        made = loop.create_future()

        class Pauser(asyncio.Protocol):
            def connection_made(self, tr):
                self.tr = tr
                tr.pause_reading()
                made.set_result(None)

        a, b = socket.socketpair()
        fd = a.fileno()
        tr, proto = await loop.connect_accepted_socket(Pauser, a)
        del a
        await asyncio.wait_for(made, 5)
        b.send(b"unread")  # arrives while paused
        await asyncio.sleep(0.01)
        del tr, proto
        result = await _collect_dropped(fd)
        b.close()
        return result

    closed, warned = loop.run_until_complete(main())
    assert closed
    assert any(m.startswith("unclosed transport") for m in warned), warned


def test_resumed_transport_reads_what_arrived_while_paused(loop):
    async def main():
        got = []
        done = loop.create_future()

        class P(asyncio.Protocol):
            def connection_made(self, tr):
                tr.pause_reading()

            def data_received(self, data):
                got.append(data)
                if b"".join(got) == b"abcdef":
                    done.set_result(None)

        a, b = socket.socketpair()
        tr, _ = await loop.connect_accepted_socket(P, a)
        b.send(b"abc")
        await asyncio.sleep(0.02)
        assert got == []
        b.send(b"def")
        await asyncio.sleep(0.01)
        tr.resume_reading()
        await asyncio.wait_for(done, 5)
        tr.close()
        b.close()
        return b"".join(got)

    assert loop.run_until_complete(main()) == b"abcdef"
