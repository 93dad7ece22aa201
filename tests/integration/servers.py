"""Real database servers for the integration suite, each private to the run.

Every server listens on loopback on a free port of its own, keeps its data in
a temporary directory of its own and is stopped (directory removed) when the
run ends, so the suite neither needs nor disturbs a system-wide instance.
``start_*`` raise :class:`Unavailable` with the reason when this machine
cannot run that server; the fixtures decide whether that is a skip or a
failure.
"""

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time


class Unavailable(Exception):
    """The server cannot be started here (binary missing, start failed)."""


def free_port():
    # The port is released before the server binds it; another process could
    # take it in between, but on a test machine that race is rare, and a
    # server that fails to bind reports it as a start failure, not a hang.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise Unavailable(f"{what} exited with status {proc.returncode} while starting")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise Unavailable(f"{what} did not accept connections on port {port} within {timeout:.0f} s")


def _tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def _run(cmd, what, log, **kw):
    try:
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120, **kw)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise Unavailable(f"{what}: {e}") from None
    with open(log, "a") as f:
        f.write(done.stdout)
    if done.returncode != 0:
        raise Unavailable(f"{what} failed (status {done.returncode}):\n{done.stdout[-2000:]}")


def _stop_process(proc, timeout=15.0):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Server:
    """A started server: where to connect, and how to stop it."""

    def __init__(self, name, port, tmpdir):
        self.name = name
        self.host = "127.0.0.1"
        self.port = port
        self.tmpdir = tmpdir
        self.proc = None
        self.database = None  # created at start, where the server needs one named
        self.unix_socket = None  # a path (Redis) or directory (PostgreSQL) it also listens on
        self.ssl_ca = None  # a trustme.CA whose certificate the server presents, if TLS is on
        self._stopper = None

    def stop(self):
        try:
            if self._stopper is not None:
                self._stopper()
            if self.proc is not None:
                _stop_process(self.proc)
        finally:
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    def __repr__(self):
        return f"<{self.name} on {self.host}:{self.port}>"


@contextlib.contextmanager
def _starting(srv, log):
    """A start that fails stops what it started and says why (with the tail
    of the server's log, which is about to be deleted with its directory)."""
    try:
        yield
    except BaseException as e:
        detail = _tail(log)
        srv.stop()
        if isinstance(e, Unavailable):
            raise Unavailable(f"{e}\n{detail}") from None
        raise


def _reachable_by_all(path):
    """Every directory on the way to ``path`` can be traversed by any user."""
    path = os.path.abspath(path)
    while True:
        try:
            if not os.stat(path).st_mode & 0o001:
                return False
        except OSError:
            return False
        parent = os.path.dirname(path)
        if parent == path:
            return True
        path = parent


def _tmpdir(name, other_user=False):
    """A fresh directory; with ``other_user``, in a place another account can
    reach (a TMPDIR under root's home is not)."""
    base = tempfile.gettempdir()
    if other_user and not _reachable_by_all(base):
        base = "/tmp"
    return tempfile.mkdtemp(prefix=f"ferroloop-it-{name}-", dir=base)


# --- Redis -----------------------------------------------------------------


def start_redis():
    exe = shutil.which("redis-server")
    if exe is None:
        raise Unavailable("redis-server is not installed")
    tmp = _tmpdir("redis")
    srv = Server("redis", free_port(), tmp)
    srv.unix_socket = os.path.join(tmp, "redis.sock")
    log = os.path.join(tmp, "redis.log")
    with _starting(srv, log):
        srv.proc = subprocess.Popen(
            [exe, "--port", str(srv.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", tmp, "--logfile", log, "--daemonize", "no", "--unixsocket", srv.unix_socket],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_port(srv.port, srv.proc, "redis-server")
    return srv


# --- PostgreSQL -------------------------------------------------------------


def _pg_bindir():
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0,
    )
    for d in reversed(candidates):
        if os.access(os.path.join(d, "initdb"), os.X_OK):
            return d
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


def _pg_runner():
    """The command prefix that runs PostgreSQL's tools, and the uid owning
    its files: PostgreSQL refuses to run as root, so under root (CI) it runs
    as the ``postgres`` account the Debian package creates."""
    if os.geteuid() != 0:
        return [], None
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        raise Unavailable("running as root and there is no 'postgres' account to run PostgreSQL as") from None
    runuser = shutil.which("runuser")
    if runuser is None:
        raise Unavailable("running as root and runuser is missing")
    return [runuser, "-u", "postgres", "--"], pw


def start_postgres(ca=None):
    """An initdb'd cluster with trust authentication on loopback; with
    ``ca`` (a trustme.CA), TLS on, presenting a certificate it issued."""
    bindir = _pg_bindir()
    if bindir is None:
        raise Unavailable("PostgreSQL (initdb) is not installed")
    prefix, owner = _pg_runner()
    tmp = _tmpdir("postgres", other_user=owner is not None)
    srv = Server("postgres", free_port(), tmp)
    srv.unix_socket = tmp
    data = os.path.join(tmp, "data")
    log = os.path.join(tmp, "postgres.log")
    pg_ctl = prefix + [os.path.join(bindir, "pg_ctl"), "-D", data, "-w", "-s", "-t", "60"]
    with _starting(srv, log):
        if owner is not None:
            os.chown(tmp, owner.pw_uid, owner.pw_gid)
        open(log, "w").close()
        if owner is not None:
            os.chown(log, owner.pw_uid, owner.pw_gid)
        _run(prefix + [os.path.join(bindir, "initdb"), "-D", data, "-U", "postgres", "--auth=trust",
                       "-E", "UTF8", "--no-sync"], "initdb", log, cwd=tmp)
        conf = [
            "listen_addresses = '127.0.0.1'",
            f"port = {srv.port}",
            f"unix_socket_directories = '{tmp}'",
            "max_connections = 200",
            "fsync = off",
            "synchronous_commit = off",
            "full_page_writes = off",
        ]
        if ca is not None:
            cert = ca.issue_cert("127.0.0.1", "localhost")
            cert.cert_chain_pems[0].write_to_path(os.path.join(data, "server.crt"))
            cert.private_key_pem.write_to_path(os.path.join(data, "server.key"))
            for f in ("server.crt", "server.key"):
                p = os.path.join(data, f)
                os.chmod(p, 0o600)
                if owner is not None:
                    os.chown(p, owner.pw_uid, owner.pw_gid)
            conf += ["ssl = on", "ssl_cert_file = 'server.crt'", "ssl_key_file = 'server.key'"]
            srv.ssl_ca = ca
        with open(os.path.join(data, "postgresql.conf"), "a") as f:
            f.write("\n".join(conf) + "\n")
        _run(pg_ctl + ["-l", log, "start"], "pg_ctl start", log, cwd=tmp)
        srv._stopper = lambda: subprocess.run(
            pg_ctl + ["-m", "immediate", "stop"], cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            timeout=60,
        )
        wait_port(srv.port, None, "postgres")
    return srv


# --- MariaDB ----------------------------------------------------------------


def start_mariadb():
    server = shutil.which("mariadbd") or shutil.which("mysqld") or (
        "/usr/sbin/mariadbd" if os.access("/usr/sbin/mariadbd", os.X_OK) else None
    )
    install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    if server is None or install is None:
        raise Unavailable("MariaDB (mariadbd, mariadb-install-db) is not installed")
    tmp = _tmpdir("mariadb")
    srv = Server("mariadb", free_port(), tmp)
    srv.database = "integration"
    data = os.path.join(tmp, "data")
    log = os.path.join(tmp, "mariadb.log")
    user = ["--user=root"] if os.geteuid() == 0 else []
    with _starting(srv, log):
        # auth 'normal': root@127.0.0.1 with an empty password over TCP, the
        # account the tests log in with (no unix_socket plugin involved).
        _run([install, "--no-defaults", f"--datadir={data}", "--skip-test-db",
              "--auth-root-authentication-method=normal", *user], "mariadb-install-db", log, cwd=tmp)
        init = os.path.join(tmp, "init.sql")
        with open(init, "w") as f:
            f.write(f"CREATE DATABASE IF NOT EXISTS {srv.database};\n")
        srv.proc = subprocess.Popen(
            [server, "--no-defaults", f"--datadir={data}", f"--socket={tmp}/mysqld.sock", f"--port={srv.port}",
             "--bind-address=127.0.0.1", f"--pid-file={tmp}/mysqld.pid", f"--log-error={log}",
             f"--init-file={init}", "--innodb-buffer-pool-size=32M", "--skip-log-bin", "--max-connections=200",
             *user],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp,
        )
        wait_port(srv.port, srv.proc, "mariadbd")
    return srv
