"""A small task tree to look at from outside and from inside.

    python examples/inspect_tasks.py            # runs 60 s (or: ... SECONDS)

While it runs, in another terminal (the PID is printed at start):

    python -m ferroloop ps PID
    python -m ferroloop pstree PID

The inspector is on because of ``inspect=True`` below; for a program you do
not edit, set ``FERROLOOP_INSPECT=1`` in its environment instead. Before
waiting, the program prints its own awaited-by graph, seen from one of the
leaf tasks, with ``ferroloop.graph.print_call_graph``.
"""

import asyncio
import os
import sys

import ferroloop
from ferroloop import graph


async def download(seconds: float) -> None:
    await asyncio.sleep(seconds)


async def album(seconds: float, tracks: list[str]) -> None:
    async with asyncio.TaskGroup() as tg:
        for track in tracks:
            tg.create_task(download(seconds), name=track)


async def playlist(seconds: float) -> None:
    await asyncio.gather(download(seconds), download(seconds))


async def main(seconds: float) -> None:
    print(f"PID {os.getpid()}: try `python -m ferroloop pstree {os.getpid()}`", flush=True)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(album(seconds, ["intro", "outro"]), name="album")
        tg.create_task(playlist(seconds), name="playlist")
        await asyncio.sleep(0.1)
        leaf = next(t for t in asyncio.all_tasks() if t.get_name() == "intro")
        graph.print_call_graph(leaf)


if __name__ == "__main__":
    ferroloop.run(main(float(sys.argv[1]) if len(sys.argv) > 1 else 60.0), inspect=True)
