"""Loop metrics and slow-callback reports on ferroloop.

    python examples/metrics.py

A small workload with one badly behaved task (it calls time.sleep() inside
a coroutine), run three ways: plain (always-on counters), with per-callback
timing, and in debug mode, where the slow step is logged with the task,
its coroutine and the line it was at.
"""

import asyncio
import logging
import sys
import time

import ferroloop


async def fetch(i: int) -> int:
    await asyncio.sleep(0.01)
    return i


async def parse(n: int) -> None:
    time.sleep(0.12)  # blocking the loop: what the reports point at
    await asyncio.sleep(0)


async def main() -> None:
    results = await asyncio.gather(*(fetch(i) for i in range(200)))
    await asyncio.create_task(parse(len(results)), name="parser")
    loop = asyncio.get_running_loop()
    for _ in range(300):
        loop.call_soon(lambda: None)
    await asyncio.sleep(0.05)


def show(title: str, m: ferroloop.LoopMetrics) -> None:
    print(f"--- {title}")
    print(f"iterations {m.iterations}, callbacks {m.callbacks}, tasks {m.tasks_created} created / {m.tasks_finished} finished")
    print(f"poll {m.poll_time * 1e3:.1f} ms, running callbacks {m.callback_time * 1e3:.1f} ms")
    print(f"iteration lag  {m.iteration_lag}")
    if m.callback_timing:
        print(f"callback times {m.callback_durations}  ({m.timed_callbacks} timed)")
        print(f"longest {m.longest_callback * 1e3:.1f} ms: {m.longest_callback_what}")
    else:
        print("(per-callback timing off)")


def run(debug: bool = False, timing: bool = False) -> ferroloop.LoopMetrics:
    loop = ferroloop.new_event_loop()
    try:
        loop.set_debug(debug)
        loop.set_metrics(callback_timing=timing)
        loop.run_until_complete(main())
        return loop.metrics()
    finally:
        loop.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    show("always-on counters", run())
    show("callback_timing=True", run(timing=True))
    show("debug mode", run(debug=True))
