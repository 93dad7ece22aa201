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

import pytest  # noqa: E402

import ferroloop  # noqa: E402


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
