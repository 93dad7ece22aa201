"""ferroloop.inspector and ``python -m ferroloop ps/pstree PID``.

Most tests run a small task tree in a child process on ferroloop with
FERROLOOP_INSPECT=1 (CHILD below) and inspect it from outside, as a user
would. The child's XDG_RUNTIME_DIR is the test's tmp_path, so each test has
its own socket directory and the client must find it from the target's
environment.
"""

import json
import os
import signal
import socket
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings

import pytest

import ferroloop
from ferroloop import _tools, inspector

CHILD = textwrap.dedent(
    """
    import asyncio, os, sys, time
    import ferroloop
    from ferroloop import inspector

    def hog():
        # A callback that keeps the loop (and, but for the switch interval,
        # the GIL) for 2 s of pure Python.
        start = time.time()
        print("hogging", start, flush=True)
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            pass
        print("hogged", time.time(), flush=True)

    async def spin():
        # The same 2 s, inside a task: its coroutine is running, so only
        # the thread's live frames show where.
        print("hogging", time.time(), flush=True)
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            pass
        print("hogged", time.time(), flush=True)

    async def spinner():
        await spin()

    async def leaf(ev):
        await ev.wait()

    async def branch(ev):
        async with asyncio.TaskGroup() as tg:
            tg.create_task(leaf(ev), name="leaf-a")
            tg.create_task(leaf(ev), name="leaf-b")

    async def gatherer(ev):
        kids = [asyncio.ensure_future(leaf(ev)) for _ in range(2)]
        for i, k in enumerate(kids):
            k.set_name(f"gathered-{i}")
        await asyncio.gather(*kids)

    async def main():
        ev = asyncio.Event()
        loop = asyncio.get_running_loop()
        asyncio.current_task().set_name("main")

        def command():
            data = os.read(0, 100)
            if not data:
                loop.remove_reader(0)
                ev.set()
            elif data.strip() == b"hog":
                loop.call_soon(hog)
            elif data.strip() == b"hogtask":
                loop.create_task(spinner(), name="spinner")

        loop.add_reader(0, command)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(branch(ev), name="branch")
            tg.create_task(gatherer(ev), name="gatherer")
            await asyncio.sleep(0.05)
            print("ready", inspector.socket_path(), flush=True)

    ferroloop.run(main())
    print("done", inspector.socket_path(), flush=True)
    """
)


@pytest.fixture
def child(tmp_path):
    """Start CHILD (extra env from the test's call); yields (proc, socket path)."""
    procs = []

    def start(inspect="1", script=CHILD):
        env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path))
        env.pop("FERROLOOP_INSPECT", None)
        if inspect is not None:
            env["FERROLOOP_INSPECT"] = inspect
        proc = subprocess.Popen(
            [sys.executable, "-c", script],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
        )
        procs.append(proc)
        line = proc.stdout.readline().split()
        assert line and line[0] == "ready", (line, proc.stderr.read() if proc.poll() is not None else "")
        return proc, line[1]

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()


def run_tool(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "ferroloop", *map(str, args)], capture_output=True, text=True, timeout=timeout)


def finish(proc):
    """Close the child's stdin (its signal to finish) and wait for its exit."""
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err


def table_rows(text):
    lines = text.splitlines()
    assert lines[0].split() == ["tid", "task", "id", "task", "name", "coroutine", "stack", "awaiter", "chain", "awaiter", "name", "awaiter", "id"]
    assert set(lines[1]) == {"-"}
    return lines[2:]


def test_ps_of_a_live_process(child):
    proc, path = child()
    assert path.startswith(os.path.dirname(path)) and path.endswith(f"/{proc.pid}.sock")
    res = run_tool("ps", proc.pid)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    rows = table_rows(res.stdout)
    by_name = {}
    for row in rows:
        cells = row.split()
        by_name.setdefault(cells[2], []).append(row)
    assert set(by_name) == {"main", "branch", "gatherer", "leaf-a", "leaf-b", "gathered-0", "gathered-1"}
    tid = rows[0].split()[0]
    assert tid == str(proc.pid)  # the loop runs on the main thread: its native id is the PID
    # Who awaits whom, with the awaiter's stack (innermost first).
    (main,) = by_name["main"]
    assert "TaskGroup.__aexit__ -> main" in main and main.rstrip().endswith("0x0")
    for leaf in ("leaf-a", "leaf-b"):
        (row,) = by_name[leaf]
        assert "Event.wait -> leaf" in row and "TaskGroup.__aexit__ -> branch" in row and " branch " in row
    for leaf in ("gathered-0", "gathered-1"):
        (row,) = by_name[leaf]
        # Awaited through gather's outer future by the gatherer task, which
        # awaits gather() in its own frame.
        cells = row.split()
        assert cells[-3:-1] == ["gatherer", "gatherer"] and cells[-1].startswith("0x7")
    assert rc_ok(finish(proc))


def rc_ok(result):
    rc, out, err = result
    assert rc == 0, err
    assert "Traceback" not in err and "exception" not in err.lower(), err
    return True


def test_pstree_of_a_live_process(child):
    proc, _ = child()
    res = run_tool("pstree", proc.pid)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "└── (T) main"

    def find(text):
        (i,) = [n for n, line in enumerate(lines) if line.endswith(text) or f"{text} " in line]
        return i, len(lines[i]) - len(lines[i].lstrip(" │├└─"))

    i_main, d_main = find("(T) main")
    i_branch, d_branch = find("(T) branch")
    i_gatherer, d_gatherer = find("(T) gatherer")
    for leaf in ("leaf-a", "leaf-b"):
        i, d = find(f"(T) {leaf}")
        assert i > i_branch and d > d_branch
    for leaf in ("gathered-0", "gathered-1"):
        i, d = find(f"(T) {leaf}")
        assert i > i_gatherer and d > d_gatherer
    assert d_branch > d_main and d_gatherer > d_main
    # A task's frames hang under it, outermost first: main's own frame, then
    # TaskGroup.__aexit__, under which the tasks it awaits hang.
    assert lines[1].strip().startswith("└──  main ") and lines[2].strip().startswith("└──  TaskGroup.__aexit__ ")
    assert rc_ok(finish(proc))


def test_socket_is_private_and_gone_after_exit(child, tmp_path):
    proc, path = child()
    directory = os.path.dirname(path)
    assert directory == str(tmp_path / "ferroloop")
    st_dir, st_sock = os.lstat(directory), os.lstat(path)
    assert stat.S_IMODE(st_dir.st_mode) == 0o700 and st_dir.st_uid == os.getuid()
    assert stat.S_ISSOCK(st_sock.st_mode) and stat.S_IMODE(st_sock.st_mode) == 0o600
    rc, out, err = finish(proc)
    assert rc == 0, err
    # The loop closed (end of ferroloop.run): the file went with it.
    assert out.split() == ["done", "None"]
    assert not os.path.exists(path)
    res = run_tool("ps", proc.pid)
    assert res.returncode == 1 and len(res.stderr.splitlines()) == 1


def test_socket_gone_after_sigint(child):
    proc, path = child()
    proc.send_signal(signal.SIGINT)
    proc.wait(30)
    assert proc.returncode != 0  # KeyboardInterrupt out of ferroloop.run
    assert not os.path.exists(path)


def test_killed_process_leaves_a_file_the_next_one_sweeps(child):
    proc, path = child()
    proc.kill()
    proc.wait(10)
    assert os.path.exists(path)  # SIGKILL: nothing ran
    res = run_tool("ps", proc.pid)
    assert res.returncode == 1 and res.stderr.count("\n") == 1 and f"no process with PID {proc.pid}" in res.stderr
    proc2, path2 = child()
    assert path2 != path and not os.path.exists(path)
    assert rc_ok(finish(proc2))


def test_garbage_and_silent_clients_do_not_disturb_the_loop(child):
    proc, path = child()
    # Bytes that are no command word, more than the server reads.
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(os.urandom(4096))
        reply = b""
        try:
            while chunk := s.recv(65536):
                reply += chunk
        except ConnectionResetError:
            reply = b""  # closed with our unread bytes pending: also fine
    assert reply == b"" or json.loads(reply) == {"version": 1, "error": "unknown command"}
    # A word outside the fixed set is refused, whatever it asks for.
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(b"__import__('os').system('touch /tmp/pwned')\n")
        reply = s.makefile("rb").read()
    assert json.loads(reply)["error"] == "unknown command"
    # A client that connects and says nothing: dropped after the timeout;
    # a client behind it is answered once it is.
    silent = socket.socket(socket.AF_UNIX)
    silent.connect(path)
    try:
        start = time.monotonic()
        res = run_tool("ps", proc.pid)
        assert res.returncode == 0, res.stderr
        assert len(table_rows(res.stdout)) == 7
        assert time.monotonic() - start < 9
        assert silent.recv(10) == b""  # closed by the server, no reply
    finally:
        silent.close()
    # One that connects and closes at once.
    for _ in range(20):
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(path)
    assert run_tool("ps", proc.pid).returncode == 0
    assert rc_ok(finish(proc))


def test_hogging_callback_does_not_stop_the_answers(child):
    proc, path = child()
    proc.stdin.write("hog\n")
    proc.stdin.flush()
    words = proc.stdout.readline().split()
    assert words[0] == "hogging"
    reply = _tools.fetch(proc.pid, "ps")
    answered = time.time()
    assert {t["name"] for loop in reply["loops"] for t in loop["tasks"]} >= {"main", "leaf-a"}
    words = proc.stdout.readline().split()
    assert words[0] == "hogged"
    # The reply came while the callback was still spinning.
    assert answered < float(words[1])
    assert rc_ok(finish(proc))


def test_a_task_hogging_the_loop_is_shown_where_it_runs(child):
    proc, _ = child()
    proc.stdin.write("hogtask\n")
    proc.stdin.flush()
    assert proc.stdout.readline().split()[0] == "hogging"
    res = run_tool("ps", proc.pid)
    assert res.returncode == 0, res.stderr
    (row,) = [r for r in table_rows(res.stdout) if r.split()[2] == "spinner"]
    # spin() is running (no cr_await to follow): its frame comes from the
    # thread's live stack.
    assert row.split()[3:6] == ["spin", "->", "spinner"]
    assert proc.stdout.readline().split()[0] == "hogged"
    assert rc_ok(finish(proc))


def test_tool_errors_are_one_line_and_status_1(child, tmp_path):
    not_ferroloop = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        res = run_tool("ps", not_ferroloop.pid)
        assert res.returncode == 1 and res.stdout == ""
        assert res.stderr == f"python -m ferroloop ps: error: process {not_ferroloop.pid} does not run ferroloop\n"
    finally:
        not_ferroloop.kill()
        not_ferroloop.wait()
    proc, _ = child(inspect=None, script=CHILD.replace('print("ready", inspector.socket_path()', 'print("ready", None'))
    res = run_tool("pstree", proc.pid)
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr == (
        f"python -m ferroloop pstree: error: process {proc.pid} has no ferroloop inspector "
        "(start it with FERROLOOP_INSPECT=1)\n"
    )
    for bad in ("abc", "-5", "0"):
        res = run_tool("ps", bad)
        assert res.returncode == 1 and res.stderr == f"python -m ferroloop ps: error: invalid PID: {bad!r}\n"
    res = run_tool("ps", 2**22 + 12345)  # above Linux's largest PID
    assert res.returncode == 1 and res.stderr.endswith("no process with PID 4206649\n")
    assert run_tool("ps").returncode == 2 and run_tool("ps", "1", "2").returncode == 2


def test_another_users_process_is_refused():
    if os.getuid() == 0:
        other = subprocess.Popen(["sleep", "60"], user=65534)
        pid = other.pid
    else:
        other, pid = None, 1
        if os.stat("/proc/1").st_uid == os.getuid():
            pytest.skip("no process of another user to point at")
    try:
        res = run_tool("ps", pid)
        assert res.returncode == 1 and res.stderr.count("\n") == 1
        assert f"process {pid} belongs to another user" in res.stderr
    finally:
        if other is not None:
            other.kill()
            other.wait()


def test_server_refuses_another_uid(monkeypatch):
    # SO_PEERCRED is checked: a peer whose uid is not ours gets nothing,
    # even where the file modes would let it in.
    if os.getuid() == 0:
        other_uid = 65534
    else:
        pytest.skip("needs root to connect as another uid")
    base = tempfile.mkdtemp(prefix="hg-insp-")
    os.chmod(base, 0o755)
    monkeypatch.setenv("XDG_RUNTIME_DIR", base)
    loop = ferroloop.new_event_loop()
    try:
        path = inspector.enable(loop)
        os.chmod(os.path.dirname(path), 0o755)
        os.chmod(path, 0o777)
        r, w = os.pipe()
        with warnings.catch_warnings():
            # The child makes a few socket calls and _exits: nothing of the
            # threads' state (the inspector's included) is touched.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the other user: connect, ask, report what came back
            try:
                os.setuid(other_uid)
                with socket.socket(socket.AF_UNIX) as s:
                    s.settimeout(10)
                    s.connect(path)
                    s.sendall(b"ps\n")
                    got = s.recv(100)
                os.write(w, b"reply:" + got)
            except (ConnectionResetError, BrokenPipeError):
                # Closed before our request was sent, or with it unread.
                os.write(w, b"reply:")
            except BaseException as exc:
                os.write(w, repr(exc).encode())
            finally:
                os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            result = f.read()
        os.waitpid(pid, 0)
        assert result == b"reply:"
        # The owner is answered on the same socket (once the directory is
        # private again: the client trusts no other).
        with pytest.raises(_tools.ToolError, match="has no ferroloop inspector"):
            _tools.fetch(os.getpid(), "ps")
        os.chmod(os.path.dirname(path), 0o700)
        assert _tools.fetch(os.getpid(), "ps")["pid"] == os.getpid()
    finally:
        loop.close()
        shutil.rmtree(base, ignore_errors=True)
    assert not os.path.exists(path)


def test_enable_and_close_in_process(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    import asyncio

    with pytest.raises(TypeError):
        inspector.enable(asyncio.new_event_loop())
    a, b = ferroloop.new_event_loop(), ferroloop.new_event_loop()
    try:
        path = inspector.enable(a)
        assert inspector.enable(b) == path == inspector.socket_path()
        assert path == str(tmp_path / "ferroloop" / f"{os.getpid()}.sock")

        async def sleeper():
            await asyncio.sleep(3600)

        t = a.create_task(sleeper(), name="sleeper")
        a.run_until_complete(asyncio.sleep(0))
        snap = inspector.snapshot()
        assert sorted(entry["loop"] for entry in snap["loops"]) == sorted([id(a), id(b)])
        (entry,) = [e for e in snap["loops"] if e["loop"] == id(a)]
        assert [e["tasks"] for e in snap["loops"] if e["loop"] == id(b)] == [[]]
        assert [task["name"] for task in entry["tasks"]] == ["sleeper"]
        assert entry["tasks"][0]["stack"][-1][0] == sleeper.__qualname__
        assert entry["running"] is False and entry["thread_id"] is None
        t.cancel()
        a.run_until_complete(asyncio.sleep(0))
        a.close()
        assert os.path.exists(path)  # b is still inspected
    finally:
        a.close()
        b.close()
    assert not os.path.exists(path) and inspector.socket_path() is None


def test_env_variable_and_run_inspect(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setenv("FERROLOOP_INSPECT", "1")
    loop = ferroloop.new_event_loop()
    assert inspector.socket_path() is not None
    loop.close()
    assert inspector.socket_path() is None
    monkeypatch.setenv("FERROLOOP_INSPECT", "0")
    ferroloop.new_event_loop().close()
    assert not os.path.exists(tmp_path / "ferroloop" / f"{os.getpid()}.sock")
    monkeypatch.delenv("FERROLOOP_INSPECT")

    async def main():
        return inspector.socket_path()

    assert ferroloop.run(main(), inspect=True) is not None
    assert ferroloop.run(main()) is None and inspector.socket_path() is None


def test_a_directory_others_can_enter_is_not_used(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    (tmp_path / "ferroloop").mkdir(mode=0o755)
    os.chmod(tmp_path / "ferroloop", 0o755)
    loop = ferroloop.new_event_loop()
    try:
        path = inspector.enable(loop)
    finally:
        loop.close()
    # Not under the widened directory: the /tmp fallback (or nothing).
    assert path is None or not path.startswith(str(tmp_path))


def test_close_with_a_client_connected_is_prompt(tmp_path, monkeypatch):
    # The loop's close() neither waits for the inspector's thread nor for a
    # client; the file is gone at once and the thread ends by itself.
    import threading

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    loop = ferroloop.new_event_loop()
    path = inspector.enable(loop)
    silent = socket.socket(socket.AF_UNIX)
    silent.connect(path)
    try:
        time.sleep(0.1)  # let the thread take the connection
        start = time.monotonic()
        loop.close()
        assert time.monotonic() - start < 0.5
        assert not os.path.exists(path)
        deadline = time.monotonic() + 10
        while any(t.name == "ferroloop-inspector" for t in threading.enumerate()):
            assert time.monotonic() < deadline, "inspector thread still alive"
            time.sleep(0.05)
    finally:
        silent.close()


def test_socket_gone_at_interpreter_exit_without_close(tmp_path):
    # A loop never closed: the atexit hook removes the file.
    script = textwrap.dedent(
        """
        import ferroloop
        from ferroloop import inspector
        loop = ferroloop.new_event_loop()
        print(inspector.enable(loop), flush=True)
        """
    )
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path))
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 0, res.stderr
    path = res.stdout.strip()
    assert path.endswith(".sock") and path.startswith(str(tmp_path))
    assert not os.path.exists(path)
    assert "Traceback" not in res.stderr and "Exception ignored" not in res.stderr, res.stderr


def test_a_failing_snapshot_is_reported_not_dropped(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))

    def broken(loop):
        raise ValueError("a task misbehaved")

    monkeypatch.setattr(inspector, "_loop_snapshot", broken)
    loop = ferroloop.new_event_loop()
    try:
        inspector.enable(loop)
        with pytest.raises(_tools.ToolError, match=r"refused: snapshot failed: ValueError: a task misbehaved"):
            _tools.fetch(os.getpid(), "ps")
    finally:
        loop.close()
