"""Debug mode's slow-callback warning: asyncio's message, unchanged, and on
ferroloop the task, coroutine and line that were slow."""

import asyncio
import inspect
import logging
import os
import re
import subprocess
import sys
import textwrap
import time

import pytest

import ferroloop

# asyncio's own test (test_base_events.test_log_slow_callbacks) matches the
# whole message with these.
TASK_RE = r"^Executing <Task.*{name}.*> took .* seconds$"
HANDLE_RE = r"^Executing <Handle.*{name}.*> took .* seconds$"


def _line_of(func, mark):
    src, first = inspect.getsourcelines(func)
    return first + next(i for i, s in enumerate(src) if mark in s)


async def blocking_helper():
    time.sleep(0.2)
    await asyncio.sleep(0.01)  # HELPER-MARK


async def slow_worker():
    await blocking_helper()  # WORKER-MARK


def _run_slow_task(loop):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.1
    loop.run_until_complete(loop.create_task(slow_worker(), name="the-slow-one"))


def _executing_records(caplog):
    return [r for r in caplog.records if r.name == "asyncio" and r.getMessage().startswith("Executing ")]


def test_slow_task_message_is_asyncios(loop, caplog):
    # Same message on both loops, matching asyncio's own test.
    caplog.set_level(logging.WARNING)
    _run_slow_task(loop)
    msgs = [r.getMessage() for r in _executing_records(caplog)]
    assert len(msgs) == 1, msgs
    assert re.search(TASK_RE.format(name="slow_worker"), msgs[0])
    assert "name='the-slow-one'" in msgs[0]
    took = float(re.search(r"took (\S+) seconds", msgs[0]).group(1))
    assert 0.2 <= took < 1.0


def test_slow_task_names_task_coroutine_and_line(ferro_loop, caplog):
    caplog.set_level(logging.WARNING)
    _run_slow_task(ferro_loop)
    (rec,) = _executing_records(caplog)
    report = rec.ferroloop_slow_callback
    assert isinstance(report, ferroloop.SlowCallback)
    helper_line = _line_of(blocking_helper, "HELPER-MARK")
    worker_line = _line_of(slow_worker, "WORKER-MARK")
    assert report.task_name == "the-slow-one"
    assert report.coroutine == "slow_worker"
    assert not report.finished
    # The await chain when the step returned, outermost first; it goes on
    # into asyncio.sleep, but the culprit is the innermost frame of ours.
    assert report.stack[:2] == (
        ("slow_worker", __file__, worker_line),
        ("blocking_helper", __file__, helper_line),
    )
    assert report.where == f"blocking_helper() at {__file__}:{helper_line}"
    # ... and said in a record of its own, right after asyncio's.
    detail = [r for r in caplog.records if r.name == "asyncio.ferroloop"]
    assert len(detail) == 1
    text = detail[0].getMessage()
    assert caplog.records.index(detail[0]) == caplog.records.index(rec) + 1
    assert "'the-slow-one'" in text and "slow_worker()" in text
    assert f"blocking_helper() at {__file__}:{helper_line}" in text
    assert detail[0].levelno == logging.WARNING


def test_slow_step_that_finishes_the_task(ferro_loop, caplog):
    caplog.set_level(logging.WARNING)
    ferro_loop.set_debug(True)
    ferro_loop.slow_callback_duration = 0.05

    async def finishes_slowly():
        time.sleep(0.1)

    ferro_loop.run_until_complete(finishes_slowly())
    (rec,) = _executing_records(caplog)
    report = rec.ferroloop_slow_callback
    assert report.finished and report.stack == ()
    first = inspect.getsourcelines(finishes_slowly)[1]
    assert report.where == f"{finishes_slowly.__qualname__}() defined at {__file__}:{first}"


def test_slow_handle_is_reported_as_asyncio_does(loop, caplog):
    caplog.set_level(logging.WARNING)
    loop.set_debug(True)
    loop.slow_callback_duration = 0.05

    def slow_plain_callback():
        time.sleep(0.1)

    loop.call_soon(slow_plain_callback)
    loop.call_soon(loop.stop)
    loop.run_forever()
    (rec,) = _executing_records(caplog)
    assert re.search(HANDLE_RE.format(name="slow_plain_callback"), rec.getMessage())
    # Nothing to add for a plain callback: no task, no detail record.
    assert not hasattr(rec, "ferroloop_slow_callback")
    assert not [r for r in caplog.records if r.name == "asyncio.ferroloop"]


def test_fast_callbacks_are_not_reported(ferro_loop, caplog):
    caplog.set_level(logging.WARNING)
    ferro_loop.set_debug(True)
    ferro_loop.slow_callback_duration = 0.5
    _ = ferro_loop.run_until_complete(asyncio.sleep(0.01))
    assert not _executing_records(caplog)


SCRIPT = textwrap.dedent(
    """
    import asyncio, logging, sys, time
    import ferroloop

    logging.basicConfig(level=logging.WARNING, format="%(name)s|%(message)s", stream=sys.stdout)

    async def hog():
        time.sleep(0.15)

    for factory in (asyncio.new_event_loop, ferroloop.new_event_loop):
        loop = factory()
        print("debug", type(loop).__name__, loop.get_debug())
        loop.run_until_complete(hog())
        loop.close()
    """
)


@pytest.mark.parametrize(
    "how",
    [
        pytest.param({"args": ["-X", "dev"], "env": {}}, id="X-dev"),
        pytest.param({"args": [], "env": {"PYTHONASYNCIODEBUG": "1"}}, id="PYTHONASYNCIODEBUG"),
        pytest.param({"args": [], "env": {}}, id="neither"),
    ],
)
def test_debug_mode_from_the_environment(how, tmp_path):
    # ferroloop's loops take debug mode from -X dev and PYTHONASYNCIODEBUG
    # as asyncio's do (uvloop's do not, uvloop issue #485).
    script = tmp_path / "s.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONASYNCIODEBUG"}
    env.update(how["env"])
    out = subprocess.run(
        [sys.executable, *how["args"], str(script)], env=env, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    on = bool(how["args"] or how["env"])
    assert f"debug _UnixSelectorEventLoop {on}" in out
    assert f"debug Loop {on}" in out
    executing = [line for line in out.splitlines() if line.startswith("asyncio|Executing <Task")]
    assert len(executing) == (2 if on else 0), out
    assert ("asyncio.ferroloop|slow callback: task" in out) == on


# --- the watchdog -------------------------------------------------------------


def _watchdog_records(caplog):
    return [r for r in caplog.records if r.name == "asyncio.ferroloop" and "watchdog:" in r.getMessage()]


def _thread_count():
    # The watchdog is a native thread, unknown to `threading`: count the
    # process's threads.
    return len(os.listdir("/proc/self/task"))


def _settled_thread_count(expected, timeout=2.0):
    # A thread that has been joined can linger in /proc for a moment.
    deadline = time.monotonic() + timeout
    while _thread_count() != expected and time.monotonic() < deadline:
        time.sleep(0.01)
    return _thread_count()


def _spin(seconds):
    # Pure Python, holding the GIL but reaching switch points: what a
    # CPU-bound callback looks like.
    end = time.monotonic() + seconds
    while time.monotonic() < end:  # WATCHDOG-SPIN
        pass


def test_watchdog_reports_a_long_callback_with_its_stack(ferro_loop, caplog):
    caplog.set_level(logging.WARNING)

    async def hogging_task():
        _spin(0.5)
        await asyncio.sleep(0)

    ferro_loop.set_watchdog(0.1)
    assert ferro_loop.get_watchdog() == pytest.approx(0.1)
    t0 = time.monotonic()
    ferro_loop.run_until_complete(ferro_loop.create_task(hogging_task(), name="hog"))
    assert time.monotonic() - t0 < 2.0
    (rec,) = _watchdog_records(caplog)  # once per overrunning job
    msg = rec.getMessage()
    info = rec.ferroloop_watchdog
    assert 0.1 <= info["seconds"] < 0.5
    assert info["task"] is not None and info["task"].get_name() == "hog"
    assert "name='hog'" in msg
    # The loop thread's stack as it was, down to the line it was on.
    spin_line = _line_of(_spin, "WATCHDOG-SPIN")
    assert f'File "{__file__}", line {spin_line}, in _spin' in msg
    assert "in hogging_task" in msg


def test_watchdog_plain_callback_and_fast_ones(ferro_loop, caplog):
    caplog.set_level(logging.WARNING)
    ferro_loop.set_watchdog(0.1)
    for _ in range(100):
        ferro_loop.call_soon(lambda: None)
    ferro_loop.call_soon(_spin, 0.3)
    ferro_loop.call_soon(ferro_loop.stop)
    ferro_loop.run_forever()
    (rec,) = _watchdog_records(caplog)
    assert "watchdog: a callback has been running for" in rec.getMessage()
    assert rec.ferroloop_watchdog["task"] is None


def test_watchdog_runs_only_while_the_loop_runs(ferro_loop):
    base = _thread_count()
    ferro_loop.set_watchdog(5)
    assert _thread_count() == base  # not running yet
    seen = []
    ferro_loop.call_soon(lambda: seen.append(_thread_count() - base))
    ferro_loop.call_soon(ferro_loop.stop)
    ferro_loop.run_forever()
    assert seen == [1]
    assert _settled_thread_count(base) == base  # stopped with the loop

    # Switched off while running: the thread goes at once.
    def off():
        ferro_loop.set_watchdog(None)
        seen.append(_settled_thread_count(base) - base)

    ferro_loop.call_soon(off)
    ferro_loop.call_soon(ferro_loop.stop)
    ferro_loop.run_forever()
    assert seen == [1, 0] and ferro_loop.get_watchdog() is None


def test_watchdog_off_means_no_thread(ferro_loop):
    base = _thread_count()
    seen = []
    ferro_loop.call_soon(lambda: seen.append(_thread_count() - base))
    ferro_loop.call_soon(ferro_loop.stop)
    ferro_loop.run_forever()
    assert seen == [0]


def test_watchdog_off_by_default_and_from_environment(tmp_path):
    script = tmp_path / "w.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncio, logging, sys, time, threading
            import ferroloop
            logging.basicConfig(level=logging.WARNING, format="%(name)s|%(message)s", stream=sys.stdout)
            loop = ferroloop.new_event_loop()
            print("threshold", loop.get_watchdog())
            def spin():
                end = time.monotonic() + 0.4
                while time.monotonic() < end:
                    pass
            loop.call_soon(spin)
            loop.call_soon(loop.stop)
            loop.run_forever()
            loop.close()
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if k != "FERROLOOP_WATCHDOG"}
    off = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60, check=True)
    assert "threshold None" in off.stdout and "watchdog:" not in off.stdout
    env["FERROLOOP_WATCHDOG"] = "0.1"
    on = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60, check=True)
    assert "threshold 0.1" in on.stdout
    assert on.stdout.count("asyncio.ferroloop|watchdog: a callback has been running for") == 1, on.stdout
    assert ", in spin" in on.stdout
