"""Subprocesses, pipes and signal handlers on ferroloop, compared with asyncio
where the behaviour must be identical.

Everything here is bounded to a few seconds and only spawns local programs.
"""

import asyncio
import gc
import os
import signal
import sys
import threading
import time

import pytest

import ferroloop

LOOPS = [
    pytest.param(asyncio.new_event_loop, id="asyncio"),
    pytest.param(ferroloop.new_event_loop, id="ferroloop"),
]


def run(factory, coro_fn, timeout=20):
    loop = factory()
    try:
        return loop.run_until_complete(asyncio.wait_for(coro_fn(loop), timeout))
    finally:
        loop.close()


def open_fds():
    return set(os.listdir("/proc/self/fd"))


def zombies_of_self():
    me = str(os.getpid())
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, ppid = fields[0], fields[1]
        if ppid == me and state == "Z":
            found.append(int(pid))
    return found


@pytest.mark.parametrize("factory", LOOPS)
def test_communicate_and_returncode(factory):
    async def main(loop):
        p = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import sys; d=sys.stdin.read(); print(d.upper()); sys.stderr.write('e'); sys.exit(3)",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await p.communicate(b"hello")
        return out, err, p.returncode

    assert run(factory, main) == (b"HELLO\n", b"e", 3)


def test_communicate_one_mebibyte_through_cat():
    data = os.urandom(1 << 20)

    async def main(loop):
        p = await asyncio.create_subprocess_exec(
            "cat", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await p.communicate(data)
        return out, p.returncode

    out, rc = run(ferroloop.new_event_loop, main)
    assert rc == 0
    assert out == data


@pytest.mark.parametrize("factory", LOOPS)
def test_nonexistent_program_raises_file_not_found(factory):
    async def main(loop):
        with pytest.raises(FileNotFoundError):
            await asyncio.create_subprocess_exec("/nonexistent/program-ferroloop")
        with pytest.raises(FileNotFoundError):
            await loop.subprocess_exec(asyncio.SubprocessProtocol, "/nonexistent/program-ferroloop")
        return True

    assert run(factory, main)


@pytest.mark.parametrize("factory", LOOPS)
def test_killed_child_reports_negative_returncode(factory):
    async def main(loop):
        p = await asyncio.create_subprocess_exec("sleep", "30")
        p.send_signal(signal.SIGTERM)
        rc1 = await p.wait()
        q = await asyncio.create_subprocess_shell("sleep 30")
        q.kill()
        return rc1, await q.wait()

    assert run(factory, main) == (-signal.SIGTERM, -signal.SIGKILL)


@pytest.mark.parametrize("factory", LOOPS)
def test_subprocess_argument_validation_matches_asyncio(factory):
    async def main(loop):
        errors = []
        for call in (
            lambda: loop.subprocess_shell(asyncio.SubprocessProtocol, ["ls"]),
            lambda: loop.subprocess_exec(asyncio.SubprocessProtocol, "true", universal_newlines=True),
            lambda: loop.subprocess_exec(asyncio.SubprocessProtocol, "true", text=True),
            lambda: loop.subprocess_exec(asyncio.SubprocessProtocol, "true", encoding="utf-8"),
            lambda: loop.subprocess_exec(asyncio.SubprocessProtocol, "true", bufsize=1),
            lambda: loop.subprocess_shell(asyncio.SubprocessProtocol, "true", shell=False),
        ):
            try:
                await call()
            except BaseException as e:  # noqa: BLE001 - compared below
                errors.append((type(e), str(e)))
            else:
                errors.append("ok")
        return errors

    std = run(asyncio.new_event_loop, main)
    assert all(e != "ok" for e in std)
    assert run(factory, main) == std


def test_transport_api_and_extra_info():
    async def main(loop):
        transport, protocol = await loop.subprocess_exec(
            asyncio.SubprocessProtocol, "sleep", "30", stdin=asyncio.subprocess.PIPE
        )
        pid = transport.get_pid()
        proc = transport.get_extra_info("subprocess")
        stdin = transport.get_pipe_transport(0)
        assert transport.get_returncode() is None
        transport.terminate()
        while transport.get_returncode() is None:
            await asyncio.sleep(0.01)
        rc = transport.get_returncode()
        transport.close()
        return pid, proc.pid, stdin is not None, rc

    pid, proc_pid, has_stdin, rc = run(ferroloop.new_event_loop, main)
    assert pid == proc_pid and has_stdin
    assert rc == -signal.SIGTERM


def test_two_hundred_concurrent_subprocesses_close_every_pipe():
    before = open_fds()

    async def main(loop):
        async def one(i):
            p = await asyncio.create_subprocess_exec(
                "sh", "-c", f"echo {i}", stdout=asyncio.subprocess.PIPE
            )
            out, _ = await p.communicate()
            return int(out), p.returncode

        return await asyncio.gather(*(one(i) for i in range(200)))

    results = run(ferroloop.new_event_loop, main, timeout=60)
    assert results == [(i, 0) for i in range(200)]
    gc.collect()
    assert open_fds() <= before
    assert zombies_of_self() == []


def test_no_thread_per_child():
    async def main(loop):
        procs = [await asyncio.create_subprocess_exec("sleep", "0.3") for _ in range(20)]
        during = threading.active_count()
        await asyncio.gather(*(p.wait() for p in procs))
        return during

    before = threading.active_count()
    assert run(ferroloop.new_event_loop, main) == before


# The child's transport, collected after its loop closed, reports "Event loop
# is closed" from asyncio's own BaseSubprocessTransport.__del__, on asyncio's
# loop exactly as here.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_close_loop_with_running_children_leaks_nothing():
    before = open_fds()
    loop = ferroloop.new_event_loop()

    async def spawn():
        return await asyncio.create_subprocess_exec("sleep", "0.2", stdout=asyncio.subprocess.PIPE)

    proc = loop.run_until_complete(spawn())
    loop.close()
    # The child was not killed by closing the loop: it finishes on its own.
    assert proc.returncode is None
    os.kill(proc.pid, 0)
    time.sleep(0.5)
    del proc
    gc.collect()
    assert open_fds() <= before
    deadline = time.monotonic() + 5
    while zombies_of_self() and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.05)
    assert zombies_of_self() == []


def test_child_exiting_before_the_loop_looks_is_not_missed():
    async def main(loop):
        p = await asyncio.create_subprocess_exec("true")
        time.sleep(0.2)  # the child is long gone before the loop polls
        return await asyncio.wait_for(p.wait(), 5)

    assert run(ferroloop.new_event_loop, main) == 0


@pytest.mark.parametrize("factory", LOOPS)
def test_signal_handler_runs_in_loop_with_context(factory):
    import contextvars

    var = contextvars.ContextVar("var", default="unset")

    async def main(loop):
        got = loop.create_future()
        var.set("registered")

        def handler(tag):
            got.set_result((tag, var.get(), threading.current_thread() is threading.main_thread()))

        loop.add_signal_handler(signal.SIGUSR1, handler, "usr1")
        var.set("later")
        os.kill(os.getpid(), signal.SIGUSR1)
        result = await asyncio.wait_for(got, 5)
        assert loop.remove_signal_handler(signal.SIGUSR1) is True
        assert loop.remove_signal_handler(signal.SIGUSR1) is False
        return result

    tag, value, main_thread = run(factory, main)
    assert tag == "usr1" and main_thread
    # asyncio's signal Handle gets context=None: it runs in a copy of the
    # context current when the signal arrives.
    std_value = run(asyncio.new_event_loop, main)[1]
    assert value == std_value


@pytest.mark.parametrize("factory", LOOPS)
def test_signal_handler_errors_match_asyncio(factory):
    def attempts(loop):
        out = []
        for sig, cb in ((signal.SIGKILL, print), (signal.NSIG + 1, print), (signal.SIGSTOP, print), (signal.SIGUSR1, asyncio.sleep(0))):
            try:
                loop.add_signal_handler(sig, cb)
            except BaseException as e:  # noqa: BLE001
                out.append((type(e), str(e)))
                if asyncio.iscoroutine(cb):
                    cb.close()
            else:
                out.append("ok")
        out.append(loop.remove_signal_handler(signal.SIGUSR2))
        return out

    std_loop, loop = asyncio.new_event_loop(), factory()
    try:
        assert attempts(loop) == attempts(std_loop)
    finally:
        loop.close()
        std_loop.close()


@pytest.mark.parametrize("factory", LOOPS)
def test_add_signal_handler_off_main_thread_raises_runtime_error(factory):
    result = []

    def worker():
        loop = factory()
        try:
            loop.add_signal_handler(signal.SIGUSR1, print)
        except RuntimeError as e:
            result.append(type(e))
        else:
            result.append("ok")
        finally:
            loop.close()

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert result == [RuntimeError]


def test_signal_handler_that_raises_goes_to_exception_handler():
    async def main(loop):
        seen = []
        loop.set_exception_handler(lambda _l, ctx: seen.append(ctx))

        def bad():
            raise ValueError("boom")

        loop.add_signal_handler(signal.SIGUSR2, bad)
        os.kill(os.getpid(), signal.SIGUSR2)
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
        loop.remove_signal_handler(signal.SIGUSR2)
        return seen

    seen = run(ferroloop.new_event_loop, main)
    assert len(seen) == 1
    assert isinstance(seen[0]["exception"], ValueError)


def test_signal_wakes_a_blocked_loop_promptly():
    async def main(loop):
        got = loop.create_future()
        loop.add_signal_handler(signal.SIGUSR1, lambda: got.set_result(time.perf_counter()))
        sent = []
        threading.Timer(0.1, lambda: (sent.append(time.perf_counter()), os.kill(os.getpid(), signal.SIGUSR1))).start()
        received = await asyncio.wait_for(got, 5)  # the loop is idle in poll
        loop.remove_signal_handler(signal.SIGUSR1)
        return received - sent[0]

    assert run(ferroloop.new_event_loop, main) < 0.05


def test_close_restores_signal_disposition():
    loop = ferroloop.new_event_loop()
    loop.add_signal_handler(signal.SIGUSR1, print)
    assert signal.getsignal(signal.SIGUSR1) not in (signal.SIG_DFL, print)
    loop.close()
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    assert signal.set_wakeup_fd(-1) == -1


def test_connect_read_and_write_pipe():
    async def main(loop):
        rfd, wfd = os.pipe()
        reader = asyncio.StreamReader()
        rtransport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(rfd, "rb", 0)
        )
        wtransport, wproto = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(wfd, "wb", 0))
        wtransport.write(b"x" * 100_000)
        wtransport.write_eof()
        data = await reader.read()
        rtransport.close()
        return len(data)

    assert run(ferroloop.new_event_loop, main) == 100_000


SIGINT_SCRIPT = r"""
import asyncio, sys
import ferroloop

async def main():
    print("ready", flush=True)
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        print("main task cancelled", flush=True)
        raise

runner = ferroloop.run if sys.argv[1] == "ferroloop" else asyncio.run
runner(main())
"""


@pytest.mark.parametrize("which", ["asyncio", "ferroloop"])
def test_sigint_during_run_cancels_main_task_and_raises_keyboard_interrupt(which):
    import subprocess

    proc = subprocess.Popen(
        [sys.executable, "-c", SIGINT_SCRIPT, which],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout.readline() == "ready\n"
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert time.monotonic() - started < 5  # the blocked loop woke at once
    assert out == "main task cancelled\n"
    assert err.strip().splitlines()[-1] == "KeyboardInterrupt"
    assert proc.returncode == -signal.SIGINT  # Python exits by re-raising SIGINT


def test_sighup_ends_a_sleeping_child(loop):
    # uvloop's test_send_signal, bounded: a child that ignores SIGHUP (as it
    # does when the run was started with SIGHUP ignored) would have made its
    # wait() hang until the suite's watchdog.
    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", 'import time; print("sleeping", flush=True); time.sleep(60)',
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert await asyncio.wait_for(proc.stdout.readline(), 10) == b"sleeping\n"
            proc.send_signal(signal.SIGHUP)
            return await asyncio.wait_for(proc.wait(), 10)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    assert loop.run_until_complete(main()) == -signal.SIGHUP


def test_run_started_with_signals_ignored_still_signals_its_children():
    # The test run itself under nohup (SIGHUP ignored) and as a background
    # job of a shell without job control (SIGINT ignored): what tests/conftest.py
    # restores. Without it the inner test times out on both loops.
    import subprocess

    here = os.path.dirname(os.path.abspath(__file__))
    inner = f"{os.path.join(here, 'test_processes.py')}::test_sighup_ends_a_sleeping_child"
    cmd = f"trap '' HUP INT; exec \"$0\" -m pytest -q -p no:cacheprovider {inner}"
    proc = subprocess.run(
        ["sh", "-c", cmd, sys.executable], cwd=os.path.dirname(here),
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "2 passed" in proc.stdout


def test_sigchld_fallback_without_pidfd(monkeypatch):
    import errno

    def no_pidfd(pid, flags=0):
        raise OSError(errno.ENOSYS, "pidfd_open not available")

    monkeypatch.setattr(os, "pidfd_open", no_pidfd)

    async def main(loop):
        quick = await asyncio.create_subprocess_exec("true")   # may exit before the handler exists
        slow = await asyncio.create_subprocess_exec(
            "sh", "-c", "sleep 0.2; exit 7", stdout=asyncio.subprocess.PIPE
        )
        threads = threading.active_count()
        rcs = (await quick.wait(), (await slow.communicate())[0], slow.returncode)
        return rcs, threads, signal.SIGCHLD in loop._signal_handlers

    before = threading.active_count()
    (rcs, threads, still_handling) = run(ferroloop.new_event_loop, main)
    assert rcs == (0, b"", 7)
    assert threads == before          # no watcher thread
    assert not still_handling         # SIGCHLD handler removed with the last child
    assert signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL
    assert zombies_of_self() == []


def test_a_stale_readiness_on_the_pidfd_number_does_not_block_the_loop(ferro_loop):
    # A descriptor closed while still registered leaves its epoll entry
    # behind as long as its open file lives on elsewhere (here a dup; a
    # forked child's copy does the same). The pidfd that reuses the number
    # then gets that file's readiness under its own token: the loop must
    # check that the child exited, not block until it does.
    loop = ferro_loop

    async def main():
        r, w = os.pipe()
        keep = os.dup(r)
        loop.add_reader(r, lambda: None)
        os.close(r)
        proc = await asyncio.create_subprocess_exec("sleep", "3")
        try:
            if loop._children[proc.pid][0] != r:
                pytest.skip("the pidfd did not get the closed descriptor's number")
            os.write(w, b"x")
            started = time.monotonic()
            await asyncio.sleep(0.1)
            stalled = time.monotonic() - started
            proc.kill()
            return stalled, await asyncio.wait_for(proc.wait(), 5)
        finally:
            for fd in (keep, w):
                os.close(fd)

    stalled, returncode = ferro_loop.run_until_complete(asyncio.wait_for(main(), 20))
    assert stalled < 1
    assert returncode == -signal.SIGKILL
