"""Behaviour that asyncio changed between 3.11, 3.12 and 3.13: the same
scenario on the running Python's asyncio and on ferroloop, compared (the
conformance layer covers most of it too; these name each change)."""

import asyncio
import sys
import warnings

import pytest

import ferroloop

PY = sys.version_info[:2]


@pytest.mark.parametrize("started", [True, False], ids=["waiting", "not_started"])
def test_uncancel_to_zero_withdraws_a_pending_cancel(loop, started):
    # 3.13: uncancel() reaching 0 withdraws a cancel() that has not been
    # delivered yet; before, the task is still cancelled at its next step.
    async def child():
        if started:
            await asyncio.sleep(0)
        return "finished"

    async def main():
        t = loop.create_task(child())
        if started:
            await asyncio.sleep(0)  # t now waits in sleep(0)'s bare yield
        t.cancel()  # nothing to cancel it through: the cancel is pending
        assert t.uncancel() == 0
        try:
            return await t
        except asyncio.CancelledError:
            return "cancelled"

    got = loop.run_until_complete(main())
    assert got == ("finished" if PY >= (3, 13) else "cancelled")


@pytest.mark.skipif(PY < (3, 12), reason="asyncio has eager tasks from 3.12")
def test_eager_task_finished_in_first_step_drops_coro(loop):
    if PY == (3, 12) and not isinstance(loop, ferroloop.Loop):
        pytest.skip("3.12.1's C Task crashes the interpreter here (gh-122332)")

    async def quick():
        return 1

    native = isinstance(loop, ferroloop.Loop)
    factory = ferroloop.eager_task_factory if native else asyncio.eager_task_factory

    async def main():
        loop.set_task_factory(factory)
        t = loop.create_task(quick())
        assert t.done()
        return t

    task = loop.run_until_complete(main())
    # (asyncio 3.12's Python Task returns None too.)
    assert task.get_coro() is None


def test_future_iter_throw_three_arguments(loop):
    fut = loop.create_future()
    it = fut.__await__()
    next(it)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ValueError):
            it.throw(ValueError, ValueError("x"), None)
    deprecations = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    if PY >= (3, 12):
        assert [str(w.message) for w in deprecations] == [
            "the (type, exc, tb) signature of throw() is deprecated, use the single-arg signature instead."
        ]
    else:
        assert deprecations == []
    fut.cancel()


def test_future_iter_throw_one_argument_does_not_warn(loop):
    fut = loop.create_future()
    it = fut.__await__()
    next(it)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(KeyError):
            it.throw(KeyError("k"))
    fut.cancel()


def test_create_task_forwards_keywords_to_the_factory(ferro_loop):
    seen = {}

    def factory(loop, coro, **kwargs):
        seen.update(kwargs)
        return ferroloop.Task(coro, loop=loop, **{k: v for k, v in kwargs.items() if k in ("name", "context")})

    async def work():
        return 7

    async def main():
        ferro_loop.set_task_factory(factory)
        t = ferro_loop.create_task(work(), name="n", priority=3)
        return await t, t.get_name()

    assert ferro_loop.run_until_complete(main()) == (7, "n")
    assert seen.get("priority") == 3
    # The name reaches the factory from 3.13.3 on (asyncio does the same);
    # before, it is set on the task afterwards.
    assert ("name" in seen) == (sys.version_info >= (3, 13, 3))


def test_create_task_unknown_keyword_without_factory(ferro_loop):
    async def work():
        pass

    coro = work()
    with pytest.raises(TypeError, match="priority"):
        ferro_loop.create_task(coro, priority=3)
    coro.close()
