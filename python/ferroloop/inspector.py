"""Answering ``python -m ferroloop ps PID`` / ``pstree PID`` from inside a
process that runs ferroloop.

Off unless asked for: ``FERROLOOP_INSPECT=1`` in the environment (every
ferroloop loop the process creates is inspected), ``ferroloop.run(...,
inspect=True)``, or ``enable(loop)``. While at least one inspected loop is
open, a daemon thread listens on a Unix socket ``PID.sock`` in a directory
only the user can enter (``$XDG_RUNTIME_DIR/ferroloop`` or
``/tmp/ferroloop-UID``, mode 0700, checked before use), accepts connections
only from the same uid (``SO_PEERCRED``), reads one fixed command word, and
replies with a JSON snapshot of the pending tasks of the inspected loops and
who awaits them (``ferroloop.graph``'s derivation). Nothing a client sends is
ever run or evaluated: a word outside the fixed set gets an error reply.

The loop's hot path knows nothing of this: the thread sleeps in ``poll()``
with the GIL released and takes the GIL only while it answers a client. It
keeps answering while a callback hogs the loop, since a thread waiting for
the GIL gets it at the interpreter's switch interval. The socket file is
removed when the last inspected loop closes, at interpreter exit, and, for a
process that died without either (SIGKILL), by the next process that gets
its PID; the client reports such a leftover as "no inspector".
"""

import asyncio
import atexit
import json
import os
import select
import socket
import stat
import struct
import sys
import threading
import time
import weakref
from typing import Any

__all__ = ("enable", "disable", "socket_path", "COMMANDS")

# The command words a client may send (one line); every one is answered
# with the same snapshot, which the client formats.
COMMANDS = frozenset({"ps", "pstree"})
_MAX_REQUEST = 64  # bytes: a command word and its newline
_CLIENT_TIMEOUT = 2.0  # seconds a client gets to send its word / take the reply
_SNAPSHOT_VERSION = 1

# Reentrant: a collection inside a locked section can finalize an unclosed
# loop, whose close() comes back through disable() on the same thread.
_lock = threading.RLock()
_loops: "weakref.WeakSet[Any]" = weakref.WeakSet()
_server = None


def _runtime_dirs(environ=None):
    """Directories a process with ``environ`` puts its socket in, preferred first."""
    environ = os.environ if environ is None else environ
    dirs = []
    base = environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isabs(base):
        dirs.append(os.path.join(base, "ferroloop"))
    dirs.append(f"/tmp/ferroloop-{os.getuid()}")
    return dirs


def _private_dir(path):
    """True if ``path`` is a real directory of ours that nobody else can enter."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077


def _make_private_dir():
    for path in _runtime_dirs():
        parent = os.path.dirname(path)
        if not os.path.isdir(parent):
            continue
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError:
            continue
        # A directory someone else created (or widened) is not used: they
        # could swap the socket for their own.
        if _private_dir(path):
            return path
    return None


def socket_path(pid: "int | None" = None) -> "str | None":
    """Where process ``pid`` (this one by default) listens, if it does."""
    pid = os.getpid() if pid is None else pid
    environ = None
    if pid != os.getpid():
        environ = _read_environ(pid)
    for d in _runtime_dirs(environ) + ([] if environ is None else _runtime_dirs()):
        path = os.path.join(d, f"{pid}.sock")
        if _private_dir(d) and os.path.exists(path):
            return path
    return None


def _read_environ(pid):
    # The target's XDG_RUNTIME_DIR says where it put its socket; readable for
    # the user's own processes only.
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            raw = f.read(1 << 20)
    except OSError:
        return {}
    env = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep and key == b"XDG_RUNTIME_DIR":
            env["XDG_RUNTIME_DIR"] = os.fsdecode(value)
    return env


# --- the snapshot ---------------------------------------------------------


def _frame_info(frame):
    code = frame.f_code
    return [code.co_qualname, code.co_filename, frame.f_lineno]


def _running_stack(task, thread_ident):
    """The coroutine frames of the task running right now on its loop's
    thread (its coroutine's cr_await is None while it runs), innermost first."""
    from . import graph

    coro = task.get_coro()
    top = getattr(coro, "cr_frame", None)
    frame = sys._current_frames().get(thread_ident) if thread_ident else None
    stack = []
    while frame is not None:
        if frame.f_code.co_flags & graph._GENERATOR_FLAGS:
            stack.append(_frame_info(frame))
        if frame is top:
            return stack
        frame = frame.f_back
    return None  # not found: the thread moved on meanwhile


def _task_stack(task, running, thread_ident):
    from . import graph

    if running:
        stack = _running_stack(task, thread_ident)
        if stack is not None:
            return stack
    get_coro = getattr(task, "get_coro", None)
    entries = graph._coroutine_frames(get_coro() if get_coro is not None else None)
    return [_frame_info(e.frame) for e in reversed(entries)]


def _awaiting_tasks(future, seen):
    """The tasks awaiting ``future``, through the plain futures between them
    (gather's outer future, shield's, wait()'s waiter)."""
    from . import graph

    found = []
    for waiter in graph._awaiters(future):
        if id(waiter) in seen:
            continue
        seen.add(id(waiter))
        if isinstance(waiter, asyncio.Task):
            found.append(waiter)
        else:
            found.extend(_awaiting_tasks(waiter, seen))
    return found


def _thread_native_id(ident):
    if not ident:
        return None
    thread = threading._active.get(ident)  # the threading module's own map
    return getattr(thread, "native_id", None) if thread is not None else None


def _loop_snapshot(loop):
    ident = loop._thread_id
    current = asyncio.tasks._current_tasks.get(loop)
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    stacks = {}

    def stack_of(task):
        key = id(task)
        if key not in stacks:
            stacks[key] = _task_stack(task, task is current, ident)
        return stacks[key]

    entries = []
    for task in sorted(pending, key=id):
        entries.append(
            {
                "id": id(task),
                "name": str(task.get_name()),
                "stack": stack_of(task),
                "awaited_by": [
                    {"id": id(parent), "name": str(parent.get_name()), "stack": stack_of(parent)}
                    for parent in _awaiting_tasks(task, {id(task)})
                ],
            }
        )
    return {"loop": id(loop), "thread_id": _thread_native_id(ident), "running": loop.is_running(), "tasks": entries}


def snapshot() -> "dict[str, Any]":
    """The reply to a command: every inspected loop's pending tasks."""
    loops = []
    with _lock:
        inspected = list(_loops)
    for loop in inspected:
        if loop.is_closed():
            continue
        for _ in range(3):
            try:
                loops.append(_loop_snapshot(loop))
                break
            except RuntimeError:
                # A set or dict changed size under us: the loop's thread ran
                # between two of our bytecodes. Look again.
                continue
    return {"version": _SNAPSHOT_VERSION, "pid": os.getpid(), "loops": loops}


# --- the server -----------------------------------------------------------


class _Server:
    def __init__(self, path):
        self.path = path
        self._closed = False
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            try:
                # Left by a dead process that had our PID (it cannot be a live
                # one: the PID is ours).
                os.unlink(path)
            except FileNotFoundError:
                pass
            self._sock.bind(path)
            os.chmod(path, 0o600)
            self._sock.listen(8)
            self._sock.setblocking(False)
            self._wake_r, self._wake_w = socket.socketpair()
        except BaseException:
            self._sock.close()
            self._unlink()
            raise
        self._inode = os.stat(path).st_ino
        self._thread = threading.Thread(target=self._serve, name="ferroloop-inspector", daemon=True)
        self._thread.start()

    def _unlink(self):
        try:
            if os.stat(self.path).st_ino == getattr(self, "_inode", None):
                os.unlink(self.path)
        except OSError:
            pass

    def close(self):
        """Remove the socket file now; the thread sees the wake-up and ends."""
        if self._closed:
            return
        self._closed = True
        self._unlink()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _serve(self):
        poller = select.poll()
        poller.register(self._sock.fileno(), select.POLLIN)
        poller.register(self._wake_r.fileno(), select.POLLIN)
        try:
            while not self._closed:
                ready = {fd for fd, _ in poller.poll()}
                if self._wake_r.fileno() in ready or self._closed:
                    break
                try:
                    conn, _ = self._sock.accept()
                except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                    continue
                except OSError:
                    # Out of descriptors, say: the connection stays queued;
                    # try again shortly rather than spin or give up.
                    time.sleep(0.1)
                    continue
                with conn:
                    try:
                        self._answer(conn)
                    except Exception:
                        # A client that misbehaves (or vanishes) loses its
                        # answer; nothing of it reaches the loop.
                        pass
        finally:
            self._sock.close()
            self._wake_r.close()
            self._wake_w.close()

    def _answer(self, conn):
        conn.setblocking(True)
        conn.settimeout(_CLIENT_TIMEOUT)
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        if uid != os.getuid():
            return
        request = b""
        while b"\n" not in request and len(request) < _MAX_REQUEST:
            chunk = conn.recv(_MAX_REQUEST - len(request))
            if not chunk:
                break
            request += chunk
        word = request.split(b"\n", 1)[0].strip().decode("ascii", "replace")
        if word not in COMMANDS:
            reply = {"version": _SNAPSHOT_VERSION, "error": "unknown command"}
        else:
            try:
                reply = snapshot()
            except Exception as exc:
                # A task whose name or coroutine misbehaves: say so rather
                # than leave the client with an empty reply.
                reply = {"version": _SNAPSHOT_VERSION, "error": f"snapshot failed: {type(exc).__name__}: {exc}"}
        conn.sendall(json.dumps(reply).encode())


def _sweep(directory):
    """Remove the sockets of the user's processes that died without closing
    theirs (SIGKILL, a default SIGTERM): nobody answers on them."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        pid, dot, ext = name.partition(".")
        if dot and ext == "sock" and pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass


def enable(loop: "asyncio.AbstractEventLoop") -> "str | None":
    """Answer ``python -m ferroloop ps/pstree`` for ``loop`` (a ferroloop
    loop) until it closes. Returns the socket's path, or None if no private
    directory could be made for it."""
    # The native core every ferroloop loop is built on: _loop imports this
    # module (to enable it from the environment), so it is not imported back.
    from ._ferroloop import LoopCore

    global _server
    if not isinstance(loop, LoopCore):
        raise TypeError(f"the inspector needs a ferroloop loop, not {type(loop).__name__}")
    if loop.is_closed():
        raise RuntimeError("Event loop is closed")
    with _lock:
        _loops.add(loop)
        if _server is None:
            directory = _make_private_dir()
            if directory is None:
                return None
            _sweep(directory)
            _server = _Server(os.path.join(directory, f"{os.getpid()}.sock"))
        return _server.path


def disable(loop: "asyncio.AbstractEventLoop") -> None:
    """Stop inspecting ``loop``; the socket goes with the last inspected loop."""
    global _server
    with _lock:
        if loop not in _loops:
            return
        _loops.discard(loop)
        if not any(not l.is_closed() for l in _loops) and _server is not None:
            _server.close()
            _server = None


def _shutdown():
    global _server
    with _lock:
        if _server is not None:
            _server.close()
            _server = None


atexit.register(_shutdown)

