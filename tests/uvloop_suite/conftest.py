"""pytest glue for running uvloop's test suite against ferroloop (opt-in).

Nothing here is collected unless ``FERROLOOP_UVLOOP_SUITE=1``: the default
``python -m pytest`` of the project stays as it was. When enabled:

* this directory goes on ``sys.path`` so the stubs import ``_uvloop_upstream``;
* per-test watchdog (``FERROLOOP_UVLOOP_TIMEOUT`` seconds, default 60, 0
  disables) over setup + call + teardown: SIGALRM raises ``UvloopSuiteTimeout``
  inside the hung test; if the process is still stuck after a second period,
  faulthandler dumps every stack and exits (``run.py`` then resumes the module
  after that test); interpreter shutdown gets one period too (a test that
  failed can leave a thread blocked that shutdown would join forever);
* ``FERROLOOP_UVLOOP_RESULTS=<file>``: a ``start\\t<nodeid>`` line before each
  test and ``<outcome>\\t<nodeid>\\t<one-line reason>`` after it, flushed at
  once, so a crash still leaves per-test results (``run.py`` reads them);
* ``FERROLOOP_UVLOOP_DESELECT=<file>``: node ids (one a line) to deselect
  (``run.py`` uses it to resume after a crash).
"""

import faulthandler
import os
import signal
import sys

import pytest

ENABLED = os.environ.get("FERROLOOP_UVLOOP_SUITE") == "1"

if not ENABLED:
    collect_ignore = ["networking", "processes"]
else:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def pytest_report_header(config):
    # Only shown when this directory is named on the command line.
    if not ENABLED:
        return ("uvloop suite: disabled (set FERROLOOP_UVLOOP_SUITE=1 or use "
                "tests/uvloop_suite/run.py); collecting nothing here")
    import _uvloop_upstream as up
    return (f"uvloop suite: uvloop {up.UVLOOP_VERSION} tests from "
            f"{up.cache_dir()}; targets={','.join(up.targets())} "
            f"expect={up.expect_mode()}")


def pytest_terminal_summary(terminalreporter):
    if not ENABLED:
        return
    import _uvloop_upstream as up
    if up.MISSING_OPTIONAL:
        terminalreporter.write_line(
            "uvloop suite: missing optional test dependencies (tests using "
            f"them were skipped): {', '.join(sorted(set(up.MISSING_OPTIONAL)))}")


# Upstream tests that dup2() over sys.stdout/sys.stderr's descriptors and
# expect a child process to write there: pytest's fd capture swaps those
# objects for its own temp files, so capture is turned off around them.
NEEDS_REAL_STDIO = {"test_process_streams_redirect"}


@pytest.hookimpl(hookwrapper=True, trylast=True)   # inside capture's wrapper
def pytest_runtest_call(item):
    capman = item.config.pluginmanager.getplugin("capturemanager")
    if ENABLED and capman is not None and item.name in NEEDS_REAL_STDIO:
        with capman.global_and_fixture_disabled():
            yield
    else:
        yield


# --- resume support ---------------------------------------------------------

def pytest_collection_modifyitems(config, items):
    path = os.environ.get("FERROLOOP_UVLOOP_DESELECT")
    if not (ENABLED and path and os.path.exists(path)):
        return
    with open(path, encoding="utf-8") as f:
        skip = {line.strip() for line in f if line.strip()}
    keep = [it for it in items if it.nodeid not in skip]
    dropped = [it for it in items if it.nodeid in skip]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


# --- per-test watchdog ------------------------------------------------------

class UvloopSuiteTimeout(BaseException):
    """Raised in the main thread when a test exceeds the watchdog timeout."""


_TIMEOUT = float(os.environ.get("FERROLOOP_UVLOOP_TIMEOUT", "60") or 0)


def _on_alarm(signum, frame):
    raise UvloopSuiteTimeout(
        f"test exceeded FERROLOOP_UVLOOP_TIMEOUT={_TIMEOUT:g}s")


_HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    # pytest dispatches this hook for every test of the session, not only
    # this directory's: the watchdog is for uvloop's tests alone.
    mine = os.path.abspath(str(item.fspath)).startswith(_HERE + os.sep)
    if not ENABLED or _TIMEOUT <= 0 or not mine:
        yield
        return
    old = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, _TIMEOUT)
    faulthandler.dump_traceback_later(2 * _TIMEOUT, exit=True)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        faulthandler.cancel_dump_traceback_later()
        signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    # A failed test can leave a thread blocked for good (say, an executor
    # worker in sock.recv()); interpreter shutdown then joins it forever.
    # Bound that too: dump the stacks and exit after one watchdog period.
    if ENABLED and _TIMEOUT > 0:
        faulthandler.dump_traceback_later(_TIMEOUT, exit=True)


# --- crash-proof per-test results -------------------------------------------

_RESULTS = os.environ.get("FERROLOOP_UVLOOP_RESULTS") if ENABLED else None
_outcomes = {}


def _write_result(line):
    with open(_RESULTS, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def _reason(report):
    """One line saying why a test failed or was skipped."""
    if report.skipped:
        lr = report.longrepr
        if isinstance(lr, tuple) and len(lr) == 3:
            return str(lr[2]).replace("Skipped: ", "", 1)
        return ""
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return crash.message
    return str(report.longrepr).strip().splitlines()[-1] if report.longrepr else ""


if _RESULTS:
    def pytest_runtest_logstart(nodeid, location):
        _write_result(f"start\t{nodeid}")

    def pytest_runtest_logreport(report):
        prev, why = _outcomes.get(report.nodeid, ("passed", ""))
        if report.failed:
            outcome = "failed" if report.when == "call" else "error"
            if "UvloopSuiteTimeout" in _reason(report):
                outcome = "timeout"
            if prev not in ("failed", "error", "timeout"):
                prev, why = outcome, f"[{report.when}] {_reason(report)}"
        elif report.skipped and prev == "passed":
            prev, why = "skipped", _reason(report)
        _outcomes[report.nodeid] = (prev, why)

    def pytest_runtest_logfinish(nodeid, location):
        outcome, why = _outcomes.pop(nodeid, ("passed", ""))
        why = " ".join(why.split())[:300]
        _write_result(f"{outcome}\t{nodeid}\t{why}")
