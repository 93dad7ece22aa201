"""loop.metrics(): the counters checked against workloads whose counts and
durations are known."""

import asyncio
import dataclasses
import time

import pytest

import ferroloop
from ferroloop import Histogram, LoopMetrics


def test_call_soon_callbacks_are_counted(ferro_loop):
    before = ferro_loop.metrics()
    n = 1000
    for _ in range(n):
        ferro_loop.call_soon(lambda: None)
    ferro_loop.call_soon(ferro_loop.stop)
    ferro_loop.run_forever()
    m = ferro_loop.metrics()
    assert m.callbacks - before.callbacks >= n + 1
    # All of them were ready at once: one iteration ran them.
    assert 1 <= m.iterations - before.iterations <= 3


def test_cancelled_handles_are_not_counted_as_run(ferro_loop):
    handles = [ferro_loop.call_soon(lambda: None) for _ in range(100)]
    for h in handles[:60]:
        h.cancel()
    ferro_loop.call_soon(ferro_loop.stop)
    ferro_loop.run_forever()
    assert ferro_loop.metrics().callbacks == 41


def test_tasks_created_and_finished(ferro_loop):
    k = 50

    async def child(i):
        await asyncio.sleep(0)
        if i % 10 == 0:
            raise ValueError(i)
        return i

    async def main():
        tasks = [asyncio.ensure_future(child(i)) for i in range(k)]
        mid = ferro_loop.metrics()
        await asyncio.gather(*tasks, return_exceptions=True)
        return mid

    mid = ferro_loop.run_until_complete(main())
    m = ferro_loop.metrics()
    # main and its k children; failed ones finish too.
    assert mid.tasks_created == k + 1
    assert mid.tasks_finished == 0
    assert m.tasks_created == k + 1
    assert m.tasks_finished == k + 1


def test_cancelled_and_eager_tasks_finish(ferro_loop):
    async def forever():
        await asyncio.sleep(3600)

    async def at_once():
        return 1

    async def main():
        t = ferro_loop.create_task(forever())
        await asyncio.sleep(0)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        e = ferro_loop.create_task(at_once(), eager_start=True)
        assert e.done()

    ferro_loop.run_until_complete(main())
    m = ferro_loop.metrics()
    assert (m.tasks_created, m.tasks_finished) == (3, 3)


def test_slow_callback_is_the_longest_and_in_its_bucket(ferro_loop):
    def slow_callback_50ms():
        time.sleep(0.05)

    ferro_loop.set_metrics(callback_timing=True)
    for _ in range(20):
        ferro_loop.call_soon(lambda: None)
    ferro_loop.call_soon(slow_callback_50ms)
    ferro_loop.call_soon(ferro_loop.stop)
    ferro_loop.run_forever()
    m = ferro_loop.metrics()
    assert m.callback_timing
    assert m.timed_callbacks == 22 == m.callback_durations.total
    assert 0.05 <= m.longest_callback < 1.0
    assert "slow_callback_50ms" in m.longest_callback_what
    assert m.callback_durations.bucket_of(m.longest_callback) == "<100ms"
    assert m.callback_durations.counts[Histogram.LABELS.index("<100ms")] == 1
    # The 20 empty callbacks and stop() are fast (< 10 ms leaves room for
    # a busy machine descheduling the process).
    assert sum(m.callback_durations.counts[:4]) == 21


def test_longest_task_step_names_the_coroutine_and_line(ferro_loop):
    ferro_loop.set_metrics(callback_timing=True)

    async def busy_coroutine():
        time.sleep(0.03)
        await asyncio.sleep(0)  # LINE-MARK

    ferro_loop.run_until_complete(busy_coroutine())
    m = ferro_loop.metrics()
    import inspect

    src, first = inspect.getsourcelines(busy_coroutine)
    line = first + next(i for i, s in enumerate(src) if "LINE-MARK" in s)
    assert m.longest_callback >= 0.03
    assert "busy_coroutine" in m.longest_callback_what
    assert f"{__file__}:{line}" in m.longest_callback_what


def test_per_callback_timing_is_off_by_default(ferro_loop):
    ferro_loop.call_soon(time.sleep, 0.02)
    ferro_loop.call_soon(ferro_loop.stop)
    ferro_loop.run_forever()
    m = ferro_loop.metrics()
    assert not m.callback_timing
    assert m.timed_callbacks == 0 and m.callback_durations.total == 0
    assert m.longest_callback == 0.0 and m.longest_callback_what is None
    # ... while the per-iteration figures are always kept.
    assert m.callback_time >= 0.02
    assert m.iteration_lag.counts[Histogram.LABELS.index("<100ms")] >= 1


def test_debug_mode_times_callbacks(ferro_loop):
    ferro_loop.set_debug(True)
    ferro_loop.slow_callback_duration = 10.0
    ferro_loop.call_soon(time.sleep, 0.01)
    ferro_loop.call_soon(ferro_loop.stop)
    ferro_loop.run_forever()
    m = ferro_loop.metrics()
    assert m.callback_timing and m.timed_callbacks == 2
    assert m.longest_callback >= 0.01
    assert "sleep" in m.longest_callback_what


def test_poll_time_grows_when_the_loop_sleeps(ferro_loop):
    before = ferro_loop.metrics()
    ferro_loop.run_until_complete(asyncio.sleep(0.1))
    m = ferro_loop.metrics()
    assert m.poll_time - before.poll_time >= 0.09
    # Nothing was running while it waited.
    assert m.callback_time - before.callback_time < 0.05


def test_callback_time_counts_busy_callbacks_not_poll(ferro_loop):
    ferro_loop.call_soon(time.sleep, 0.05)
    ferro_loop.call_soon(ferro_loop.stop)
    ferro_loop.run_forever()
    m = ferro_loop.metrics()
    assert m.callback_time >= 0.05
    assert m.poll_time < 0.05


def test_errors_do_not_stop_counting(ferro_loop):
    ferro_loop.set_exception_handler(lambda loop, ctx: None)

    def fail():
        raise RuntimeError("boom")

    for _ in range(5):
        ferro_loop.call_soon(fail)
    ferro_loop.call_soon(ferro_loop.stop)
    ferro_loop.run_forever()
    assert ferro_loop.metrics().callbacks == 6


@pytest.mark.parametrize("timing", [False, True])
def test_keyboard_interrupt_iteration_is_still_recorded(ferro_loop, timing):
    ferro_loop.set_metrics(callback_timing=timing)

    def interrupt():
        raise KeyboardInterrupt

    ferro_loop.call_soon(lambda: None)
    ferro_loop.call_soon(interrupt)
    with pytest.raises(KeyboardInterrupt):
        ferro_loop.run_forever()
    m = ferro_loop.metrics()
    assert m.callbacks == 2 and m.iterations == 1
    assert m.timed_callbacks == (2 if timing else 0)


def test_reset_metrics(ferro_loop):
    ferro_loop.set_metrics(callback_timing=True)
    ferro_loop.run_until_complete(asyncio.sleep(0.01))
    assert ferro_loop.metrics().callbacks > 0
    t = ferro_loop.time()
    ferro_loop.reset_metrics()
    m = ferro_loop.metrics()
    assert (m.iterations, m.callbacks, m.tasks_created, m.tasks_finished, m.timed_callbacks) == (0, 0, 0, 0, 0)
    assert m.poll_time == m.callback_time == m.longest_callback == 0.0
    assert m.longest_callback_what is None
    assert m.iteration_lag.total == m.callback_durations.total == 0
    assert m.since >= t
    # Resetting counts, not settings.
    assert m.callback_timing


def test_metrics_is_a_frozen_snapshot(ferro_loop):
    m = ferro_loop.metrics()
    assert isinstance(m, LoopMetrics)
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.callbacks = 5  # type: ignore[misc]
    ferro_loop.call_soon(ferro_loop.stop)
    ferro_loop.run_forever()
    assert m.callbacks == 0 and ferro_loop.metrics().callbacks == 1


def test_module_function(ferro_loop):
    async def main():
        return ferroloop.metrics()

    inside = ferro_loop.run_until_complete(main())
    assert inside.tasks_created == 1
    assert ferroloop.metrics(ferro_loop).tasks_finished == 1
    lp = asyncio.new_event_loop()
    try:
        with pytest.raises(TypeError, match="ferroloop loop"):
            ferroloop.metrics(lp)
    finally:
        lp.close()
    with pytest.raises(RuntimeError):
        ferroloop.metrics()  # no running loop


def test_histogram_helpers():
    h = Histogram((1, 2, 3, 0, 0, 0, 4))
    assert h.total == 10
    assert h.items()[0] == ("<10us", 1) and h.items()[-1] == (">=1s", 4)
    assert h.bucket_of(0.0) == "<10us"
    assert h.bucket_of(0.00001) == "<100us"
    assert h.bucket_of(0.5) == "<1s"
    assert h.bucket_of(1.0) == ">=1s"
    assert str(h).startswith("<10us:1 <100us:2")
