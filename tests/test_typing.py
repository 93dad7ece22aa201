"""The public API is typed: ``mypy --strict`` accepts the README's usage
example and typical calls, and rejects calls that are wrong (so the types
are really seen, not Any)."""

import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

API_USE = '''
import asyncio
import ferroloop

async def answer() -> int:
    await asyncio.sleep(0)
    return 42

n: int = ferroloop.run(answer())
loop: ferroloop.Loop = ferroloop.new_event_loop()
loop.set_task_factory(ferroloop.eager_task_factory)
loop.set_task_factory(ferroloop.create_eager_task_factory(asyncio.Task))
fut: ferroloop.Future[int] = ferroloop.Future(loop=loop)
loop.set_metrics(callback_timing=True)
metrics: ferroloop.LoopMetrics = ferroloop.metrics(loop)
callbacks: int = loop.metrics().callbacks
lag: tuple[int, ...] = metrics.iteration_lag.counts
loop.close()
policy: asyncio.AbstractEventLoopPolicy = ferroloop.EventLoopPolicy()

from ferroloop import graph, inspector

g: graph.FutureCallGraph | None = graph.capture_call_graph(fut, limit=2)
text: str = graph.format_call_graph(fut, depth=1)
graph.print_call_graph(fut, file=None)
where: str | None = inspector.enable(ferroloop.new_event_loop())
inspector.disable(loop)
m: int = ferroloop.run(answer(), inspect=True)
'''

WRONG = '''
import ferroloop.graph

async def answer() -> int:
    return 42

s: str = ferroloop.run(answer())
ferroloop.run(42)
ferroloop.new_event_loop().close(1)
ferroloop.graph.format_call_graph(limit="all")
ferroloop.new_event_loop().set_metrics(True)
t: str = ferroloop.new_event_loop().metrics().poll_time
'''


def _readme_usage_example():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    usage = text.split("## Usage", 1)[1]
    return re.search(r"```python\n(.*?)```", usage, re.S).group(1)


def test_mypy_strict_accepts_the_api_and_rejects_misuse(tmp_path):
    pytest.importorskip("mypy")
    (tmp_path / "readme_usage.py").write_text(_readme_usage_example())
    (tmp_path / "api_use.py").write_text(API_USE)
    (tmp_path / "wrong.py").write_text(WRONG)
    # The README's example uses asyncio.run(loop_factory=...), 3.12+ (its
    # comment says so): on 3.11 it is checked as 3.12 code.
    target = "%d.%d" % max(sys.version_info[:2], (3, 12))
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--python-version", target, "--no-incremental",
         "--cache-dir", str(tmp_path / ".cache"), "readme_usage.py", "api_use.py", "wrong.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    errors = [line for line in proc.stdout.splitlines() if ": error:" in line]
    assert [e for e in errors if not e.startswith("wrong.py")] == [], proc.stdout
    lines = sorted({int(e.split(":")[1]) for e in errors})
    assert lines == [7, 8, 9, 10, 11, 12], proc.stdout  # each wrong call, and nothing else
