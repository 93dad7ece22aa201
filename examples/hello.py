"""A plain asyncio program: nothing in it names ferroloop.

    python -m ferroloop examples/hello.py
"""

import asyncio
import time


async def say_after(delay, what):
    await asyncio.sleep(delay)
    print(what)


async def main():
    loop = asyncio.get_running_loop()
    print(f"running on {type(loop).__module__}.{type(loop).__name__}")
    started = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(say_after(0.2, "hello"))
        tg.create_task(say_after(0.3, "world"))
    print(f"finished in {time.perf_counter() - started:.2f} s")


asyncio.run(main())
