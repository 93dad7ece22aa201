"""pytest glue for the CPython asyncio conformance layer.

* puts this directory on ``sys.path`` so ``conformance_target`` imports under
  every ``--import-mode``;
* collects only the module groups enabled by ``FERROLOOP_CONFORMANCE_GROUPS``
  (default: ``core``; see ``conformance_groups.py``) when the directory is
  collected; a module named explicitly on the command line is always
  collected;
* installs the target (see ``conformance_target``) around every module and
  restores the stdlib (and resets the event loop policy, like the CPython
  modules' own ``tearDownModule``) after it;
* ``gc.freeze()`` after collection (speed; see ``pytest_collection_finish``);
* per-test watchdog (``FERROLOOP_CONFORMANCE_TIMEOUT`` seconds, default 60,
  0 disables): SIGALRM raises ``ConformanceTimeout`` inside the hung test; if
  the process is still stuck after a second period, faulthandler dumps all
  stacks and exits so CI cannot hang forever;
* if ``FERROLOOP_CONFORMANCE_RESULTS`` names a file, one line per test
  (``<outcome>\\t<nodeid>``) is appended and flushed as soon as the test ends,
  plus a ``start`` line before it runs, so a crash (segfault, abort) still
  leaves usable per-test results.  ``compare.py`` relies on this.
"""

import asyncio
import faulthandler
import gc
import os
import pathlib
import signal
import sys

import pytest

_HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))

import conformance_target as target  # noqa: E402
import conformance_groups as groups  # noqa: E402

_ENABLED_GROUPS = groups.enabled()


def pytest_ignore_collect(collection_path, config):
    # Only consulted for paths found by walking a directory: pytest never
    # asks about the files given on the command line.
    name = collection_path.name
    if (name.startswith("test_conf_") and name.endswith(".py")
            and collection_path.resolve().parent == _HERE):
        if not groups.exists_here(name):
            return True
        group = groups.group_of(name)
        if group is not None and group not in _ENABLED_GROUPS:
            return True
    return None


def _known_differences():
    table = {}
    with open(_HERE / "known_differences.txt") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                nodeid, _, why = line.partition(" | ")
                table[nodeid.strip()] = why.strip()
    return table


def pytest_collection_modifyitems(config, items):
    if target.NAME != "ferroloop":
        return
    known = _known_differences()
    for item in items:
        why = known.get(item.nodeid)
        if why is not None:
            item.add_marker(pytest.mark.xfail(reason=f"deliberate difference: {why}", strict=True))


def pytest_report_header(config):
    return (f"ferroloop conformance target: {target.describe()}; "
            f"groups collected from the directory: "
            f"{','.join(_ENABLED_GROUPS)}")


def pytest_collection_finish(session):
    # Several upstream tests call gc.collect() hundreds of times (e.g.
    # test_task_del_collect); move everything that exists after collection
    # (imported modules, collected items) out of the collector's reach so
    # those calls stay cheap.  Objects created by the tests are unaffected.
    gc.collect()
    gc.freeze()


@pytest.fixture(scope="module", autouse=True)
def _conformance_target():
    # Module scope: installed while a conformance module runs, then undone
    # (which also resets the policy, like the CPython modules' own
    # tearDownModule), so other test directories in the same session see
    # the stdlib defaults.
    target.install()
    try:
        target.check_installed()
        yield target
    finally:
        target.uninstall()


# --- per-test watchdog ----------------------------------------------------

class ConformanceTimeout(BaseException):
    """Raised in the main thread when a test exceeds the watchdog timeout."""


_TIMEOUT = float(os.environ.get("FERROLOOP_CONFORMANCE_TIMEOUT", "60") or 0)


def _on_alarm(signum, frame):
    raise ConformanceTimeout(
        f"test exceeded FERROLOOP_CONFORMANCE_TIMEOUT={_TIMEOUT:g}s")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    if _TIMEOUT <= 0 or not hasattr(signal, "SIGALRM"):
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


# --- crash-proof per-test results ------------------------------------------

_RESULTS = os.environ.get("FERROLOOP_CONFORMANCE_RESULTS")
_outcomes = {}


def _write_result(line):
    with open(_RESULTS, "a", encoding="utf-8") as f:
        f.write(line + "\n")


if _RESULTS:
    def pytest_runtest_logstart(nodeid, location):
        _write_result(f"start\t{nodeid}")

    def pytest_runtest_logreport(report):
        prev = _outcomes.get(report.nodeid, "passed")
        if report.failed:
            outcome = "failed" if report.when == "call" else "error"
            if prev != "failed":
                prev = outcome
        elif report.skipped and prev == "passed":
            prev = "skipped"
        _outcomes[report.nodeid] = prev

    def pytest_runtest_logfinish(nodeid, location):
        _write_result(f"{_outcomes.pop(nodeid, 'passed')}\t{nodeid}")
