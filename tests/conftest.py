"""Defaults for the whole test run.

``python -m pytest`` (the README's test command, and CI) runs everything:
our own tests, all groups of the CPython conformance layer (core, I/O,
processes) and uvloop's test suite cloned onto ferroloop. Each default can be
overridden from the environment for a quicker local run, e.g.
``FERROLOOP_CONFORMANCE_GROUPS=core FERROLOOP_UVLOOP_SUITE=0 python -m pytest``.
"""

import os

os.environ.setdefault("FERROLOOP_CONFORMANCE_GROUPS", "all")
os.environ.setdefault("FERROLOOP_UVLOOP_SUITE", "1")
# In the default run the uvloop suite runs its ferroloop clones only; the
# stdlib baseline is measured by tests/uvloop_suite/run.py.
os.environ.setdefault("FERROLOOP_UVLOOP_TARGETS", "ferro")


import asyncio  # noqa: E402
import signal  # noqa: E402

import pytest  # noqa: E402

import ferroloop  # noqa: E402


# A signal ignored when the run starts (nohup ignores SIGHUP; a shell without
# job control ignores SIGINT in background jobs) stays ignored in every child
# a test spawns, since exec keeps SIG_IGN: tests that signal a child (uvloop's
# test_send_signal sends SIGHUP, the SIGINT tests send SIGINT) then wait for
# an exit that never comes, on asyncio's loop as on ferroloop's. uvloop's
# own run does not see it because libuv resets dispositions in its children;
# CPython's test resets SIGHUP itself. The run is made independent of how it
# was started by restoring what Python would have installed.
def _restore_inherited_dispositions():
    for sig, default in (
        (signal.SIGHUP, signal.SIG_DFL),
        (signal.SIGINT, signal.default_int_handler),
        (signal.SIGTERM, signal.SIG_DFL),
    ):
        if signal.getsignal(sig) == signal.SIG_IGN:
            signal.signal(sig, default)


_restore_inherited_dispositions()


def _close(lp):
    if lp.is_running():  # a test that failed mid-run
        lp.stop()
        return
    if not lp.is_closed():
        lp.run_until_complete(lp.shutdown_default_executor())
        lp.close()


@pytest.fixture(params=[asyncio.new_event_loop, ferroloop.new_event_loop], ids=["asyncio", "ferroloop"])
def loop(request):
    """A fresh loop, once stdlib asyncio's and once ferroloop's: tests using
    it assert the same behaviour on both."""
    lp = request.param()
    try:
        yield lp
    finally:
        _close(lp)


@pytest.fixture
def ferro_loop():
    lp = ferroloop.new_event_loop()
    try:
        yield lp
    finally:
        _close(lp)
