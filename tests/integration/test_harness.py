"""The checks every scenario relies on must catch what they claim to: a
leaked descriptor, a task left running, an error reported to the loop, a
scenario that overruns its timeout."""

import asyncio
import socket
import warnings

import pytest


def test_leaked_descriptor_is_caught(run):
    kept = []

    async def scenario():
        kept.append(socket.socket())

    try:
        with pytest.raises(AssertionError, match="descriptors left open"):
            run(scenario)
    finally:
        kept[0].close()


def test_task_left_behind_is_caught(run):
    async def scenario():
        asyncio.create_task(asyncio.sleep(3600))

    with pytest.raises(AssertionError, match="tasks left behind"):
        run(scenario)


def test_error_reported_to_loop_is_caught(run):
    async def scenario():
        asyncio.get_running_loop().call_soon(lambda: 1 / 0)
        await asyncio.sleep(0)

    with pytest.raises(AssertionError, match="exception handler"):
        run(scenario)


def test_timeout_is_enforced(run):
    async def scenario():
        await asyncio.sleep(3600)

    with pytest.raises(TimeoutError):
        run(scenario, timeout=0.2)


def test_anyio_runs_the_parametrized_loop(run):
    pytest.importorskip("anyio")

    async def scenario():
        return type(asyncio.get_running_loop()).__module__

    expected = "ferroloop._loop" if run.name == "ferroloop" else "asyncio.unix_events"
    assert run.anyio(scenario) == expected
    assert run(scenario) == expected



def test_resource_warning_is_an_error():
    """The directory's filterwarnings marks make a socket dropped unclosed
    (a ResourceWarning) fail the scenario."""
    with pytest.raises(ResourceWarning):
        warnings.warn("unclosed <socket>", ResourceWarning)
