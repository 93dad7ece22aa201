"""pytest-asyncio choosing the loop through its ``pytest_asyncio_loop_factories``
hook (implemented in this directory's conftest.py): every ``mark.asyncio``
test here runs once on asyncio's loop and once on ferroloop's, async
fixtures included."""

import asyncio

import pytest

pytest_asyncio = pytest.importorskip("pytest_asyncio")
aiohttp = pytest.importorskip("aiohttp")

import ferroloop  # noqa: E402

from .conftest import hard_deadline, leaked_fds, open_fds  # noqa: E402
from .support import aiohttp_server  # noqa: E402
from .test_aiohttp import make_app  # noqa: E402

EXPECTED = {"asyncio": asyncio.unix_events._UnixSelectorEventLoop, "ferroloop": ferroloop.Loop}


@pytest.fixture(autouse=True)
def _deadline():
    # pytest-asyncio runs these tests, not the suite's runner: the same last
    # resort against a hang, and asyncio.timeout inside each test.
    with hard_deadline(120):
        yield


def _loop_id(request):
    # The hook's factory names become the parametrization ids.
    return request.node.callspec.id.split("-")[0]


@pytest_asyncio.fixture
async def served():
    async with aiohttp_server(make_app()) as base:
        yield base, asyncio.get_running_loop()


@pytest.mark.asyncio
async def test_runs_on_each_factory(request):
    assert type(asyncio.get_running_loop()) is EXPECTED[_loop_id(request)]


@pytest.mark.asyncio
async def test_async_fixture_shares_the_loop(request, served):
    base, fixture_loop = served
    assert fixture_loop is asyncio.get_running_loop()
    assert type(fixture_loop) is EXPECTED[_loop_id(request)]
    before = open_fds()
    async with asyncio.timeout(30), aiohttp.ClientSession() as s:
        got = await asyncio.gather(*(s.get(f"{base}/echo", params={"n": i}) for i in range(20)))
        bodies = [await r.json() for r in got]
    await asyncio.sleep(0)
    assert bodies == [{"n": i, "square": i * i, "secure": False} for i in range(20)]
    assert not leaked_fds(before)
    assert asyncio.all_tasks() == {asyncio.current_task()}


@pytest.mark.asyncio(loop_factories=["ferroloop"])
async def test_marker_selects_ferroloop_only():
    assert type(asyncio.get_running_loop()) is ferroloop.Loop


def test_each_factory_is_collected(request):
    """Both parametrizations exist: the hook was seen by pytest-asyncio."""
    names = {item.name for item in request.session.items if item.module is request.module}
    assert {"test_runs_on_each_factory[asyncio]", "test_runs_on_each_factory[ferroloop]"} <= names
    # One factory selected: one item (pytest-asyncio hides its id).
    assert [n for n in names if n.startswith("test_marker_selects_ferroloop_only")] == [
        "test_marker_selects_ferroloop_only"
    ]
