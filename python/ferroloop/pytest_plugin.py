"""Run an existing test suite's asyncio code on ferroloop: ``pytest --ferroloop``.

pytest loads this module through ferroloop's ``pytest11`` entry point, and it
does nothing unless ``--ferroloop`` is given (or ``ferroloop = true`` is set
in the pytest configuration). Then, for the whole session, asyncio's event
loop policy makes ferroloop loops. That is where every usual way of running
asyncio tests gets its loop on Python 3.11-3.13:

* pytest-asyncio (its ``event_loop_policy`` fixture returns the policy in
  force, and its runner asks that policy for loops);
* anyio's pytest plugin with the asyncio backend (``asyncio.Runner`` without
  a ``loop_factory``);
* ``unittest.IsolatedAsyncioTestCase`` (``asyncio.Runner`` too);
* plain ``asyncio.run()`` / ``asyncio.new_event_loop()`` in a test.

A test that passes its own ``loop_factory`` (or uvloop) keeps it. The
terminal summary says how many ferroloop loops the session made, so a run
that silently used another loop shows up as a count of 0.

Python 3.14 deprecates policies: there the policy is still installed (the
deprecation warning of doing so is silenced, so ``-W error`` suites still
start), which keeps the plugin working until policies are removed in 3.16.
"""

from __future__ import annotations

import asyncio
import sys
import warnings
from typing import Any

import pytest

import ferroloop

__all__ = ("pytest_addoption", "pytest_configure", "pytest_unconfigure")


class _CountingPolicy(ferroloop.EventLoopPolicy):
    """ferroloop's policy, counting the loops it makes."""

    def __init__(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            super().__init__()
        self.loops_made = 0

    def _loop_factory(self) -> ferroloop.Loop:
        self.loops_made += 1
        return ferroloop.new_event_loop()


_STATE_KEY = pytest.StashKey[tuple[_CountingPolicy, Any]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ferroloop")
    group.addoption(
        "--ferroloop",
        action="store_true",
        default=None,
        help="run the tests' asyncio event loops on ferroloop",
    )
    parser.addini("ferroloop", type="bool", default=False, help="run the tests' asyncio event loops on ferroloop")


def _enabled(config: pytest.Config) -> bool:
    flag = config.getoption("ferroloop")
    if flag is not None:
        return bool(flag)
    return bool(config.getini("ferroloop"))


def _set_policy(policy: Any) -> None:
    with warnings.catch_warnings():
        # 3.14+: setting a policy is deprecated, not yet removed.
        warnings.simplefilter("ignore", DeprecationWarning)
        asyncio.set_event_loop_policy(policy)


def pytest_configure(config: pytest.Config) -> None:
    if not _enabled(config):
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        previous = asyncio.get_event_loop_policy()
    policy = _CountingPolicy()
    _set_policy(policy)
    config.stash[_STATE_KEY] = (policy, previous)


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(_STATE_KEY, None)
    if state is None:
        return
    del config.stash[_STATE_KEY]
    _set_policy(state[1])


def pytest_report_header(config: pytest.Config) -> str | None:
    if _STATE_KEY not in config.stash:
        return None
    where = ferroloop.__file__.rsplit("/", 2)[0]
    return f"ferroloop: asyncio event loops are ferroloop loops (from {where}, Python {sys.version.split()[0]})"


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    state = config.stash.get(_STATE_KEY, None)
    if state is None:
        return
    n = state[0].loops_made
    terminalreporter.write_line(f"ferroloop: {n} event loop{'s' if n != 1 else ''} made by ferroloop's policy")
