#!/usr/bin/env python3
"""Side-by-side event loop benchmarks: asyncio vs uvloop vs rloop vs ferroloop.

Every measurement runs in a fresh subprocess with a fresh event loop (after a
small warm-up on a throwaway loop), and repeats are interleaved round-robin:

    repeat 1: case 1 on loop A, case 1 on loop B, ..., case 2 on loop A, ...
    repeat 2: same, with the loop order rotated by one

so that slow drifts of the machine (thermal, other processes) hit every loop
alike.  The time measured is the process CPU time (time.process_time) spent
inside the case, i.e. sleeping in the selector does not count; wall-clock time
is recorded too (see --metric and --json).

The async_tree cases drive pyperformance's own AsyncTree classes, imported at
run time from the installed `pyperformance` package (bm_async_tree/
run_benchmark.py); nothing of pyperformance is copied here.

Run `python benchmarks/bench.py --help` for the options, and see
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import builtins
import gc
import importlib
import importlib.util
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from collections.abc import Callable

DEFAULT_LOOPS = [
    "asyncio=asyncio:new_event_loop",
    "uvloop=uvloop:new_event_loop",
    "rloop=rloop:new_event_loop",
    # rsloop's wheels need glibc >= 2.38; where it cannot be imported the
    # probe skips it with a note (benchmarks/README.md, "rsloop").
    "rsloop=rsloop:new_event_loop",
    "ferroloop=ferroloop:new_event_loop",
]

RESULT_MARK = "@@FERROLOOP-BENCH@@ "
PROBE_MARK = "@@FERROLOOP-PROBE@@ "


class CaseFailed(AssertionError):
    """A case ran but did not do what it should have (wrong count, ...)."""


def _check(cond: bool, what: str) -> None:
    if not cond:
        raise CaseFailed(what)


# ---------------------------------------------------------------------------
# Micro cases.  Each takes (loop, n), runs the whole workload on `loop` (which
# is fresh and not running) and checks that the work was really done.  The
# caller times the call.
# ---------------------------------------------------------------------------


def case_call_soon(loop: asyncio.AbstractEventLoop, n: int) -> None:
    """n callbacks scheduled with loop.call_soon in one go, then run."""
    done = loop.create_future()
    count = 0

    def callback() -> None:
        nonlocal count
        count += 1
        if count == n:
            done.set_result(None)

    async def main() -> None:
        call_soon = loop.call_soon
        for _ in range(n):
            call_soon(callback)
        await done

    loop.run_until_complete(main())
    _check(count == n, f"ran {count} of {n} callbacks")


def case_call_soon_chain(loop: asyncio.AbstractEventLoop, n: int) -> None:
    """Each callback schedules the next one: n loop iterations."""
    done = loop.create_future()
    count = 0

    def callback() -> None:
        nonlocal count
        count += 1
        if count < n:
            loop.call_soon(callback)
        else:
            done.set_result(None)

    loop.call_soon(callback)
    loop.run_until_complete(done)
    _check(count == n, f"ran {count} of {n} chained callbacks")


def case_timers(loop: asyncio.AbstractEventLoop, n: int) -> None:
    """n call_later timers with scattered delays in (0, 5] ms, every other
    one cancelled right after it is scheduled; runs until all the others
    have fired."""
    done = loop.create_future()
    expected = n - n // 2
    fired = 0
    wrong = 0

    def callback() -> None:
        nonlocal fired
        fired += 1
        if fired == expected:
            done.set_result(None)

    def cancelled_callback() -> None:
        nonlocal wrong
        wrong += 1

    async def main() -> None:
        call_later = loop.call_later
        for i in range(n):
            # deterministic scatter of delays over 1 us .. 5 ms (never 0,
            # which some loops turn into a call_soon)
            delay = (1 + (i * 7919) % 5003) * 1e-6
            if i & 1:
                call_later(delay, cancelled_callback).cancel()
            else:
                call_later(delay, callback)
        await done

    loop.run_until_complete(main())
    _check(wrong == 0, f"{wrong} cancelled timers fired")
    _check(fired == expected, f"{fired} of {expected} timers fired")


async def _one() -> int:
    return 1


def case_create_task_await(loop: asyncio.AbstractEventLoop, n: int) -> None:
    """`await loop.create_task(coro())`, one task at a time, n times."""

    async def main() -> int:
        create_task = loop.create_task
        total = 0
        for _ in range(n):
            total += await create_task(_one())
        return total

    total = loop.run_until_complete(main())
    _check(total == n, f"awaited {total} of {n} tasks")


def case_create_tasks_then_await(loop: asyncio.AbstractEventLoop, n: int) -> None:
    """Create n tasks, then await them one by one."""

    async def main() -> int:
        create_task = loop.create_task
        tasks = [create_task(_one()) for _ in range(n)]
        total = 0
        for task in tasks:
            total += await task
        return total

    total = loop.run_until_complete(main())
    _check(total == n, f"awaited {total} of {n} tasks")


def case_gather_sleep0(loop: asyncio.AbstractEventLoop, n: int) -> None:
    """asyncio.gather() of n asyncio.sleep(0) coroutines."""

    async def main() -> int:
        results = await asyncio.gather(*[asyncio.sleep(0) for _ in range(n)])
        return len(results)

    count = loop.run_until_complete(main())
    _check(count == n, f"gathered {count} of {n} results")


def case_future_pingpong(loop: asyncio.AbstractEventLoop, n: int) -> None:
    """Two tasks take turns: each creates a Future with loop.create_future(),
    completes the other's pending Future, and awaits its own.  One op is one
    hand-off (a Future created, set and awaited); n hand-offs in total."""
    pending: list = [None, None]
    handoffs = 0

    async def player(me: int) -> None:
        nonlocal handoffs
        other = 1 - me
        while True:
            theirs = pending[other]
            if handoffs >= n:
                if theirs is not None and not theirs.done():
                    theirs.set_result(None)
                return
            mine = loop.create_future()
            pending[me] = mine
            if theirs is not None and not theirs.done():
                theirs.set_result(None)
            handoffs += 1
            await mine

    async def main() -> None:
        a = loop.create_task(player(0))
        b = loop.create_task(player(1))
        await a
        await b

    loop.run_until_complete(main())
    _check(handoffs == n, f"{handoffs} of {n} hand-offs")


def case_spawn_wait(loop: asyncio.AbstractEventLoop, n: int) -> None:
    """Spawn `true` with asyncio.create_subprocess_exec and wait for it, n
    times one after the other (parent CPU time: fork/exec, pipes, reaping)."""

    async def main() -> int:
        ok = 0
        for _ in range(n):
            proc = await asyncio.create_subprocess_exec("true")
            ok += await proc.wait() == 0
        return ok

    ok = loop.run_until_complete(main())
    _check(ok == n, f"{ok} of {n} children exited with 0")


_MIB = b"\x5a" * (1 << 20)


def case_communicate_1mib(loop: asyncio.AbstractEventLoop, n: int) -> None:
    """Process.communicate() of 1 MiB through `cat` and back, n times."""

    async def main() -> int:
        good = 0
        for _ in range(n):
            proc = await asyncio.create_subprocess_exec(
                "cat", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
            )
            out, _ = await proc.communicate(_MIB)
            good += out == _MIB and proc.returncode == 0
        return good

    good = loop.run_until_complete(main())
    _check(good == n, f"{good} of {n} round trips intact")


def case_signal_latency(loop: asyncio.AbstractEventLoop, n: int) -> None:
    """os.kill(own pid, SIGUSR1) until the loop's add_signal_handler callback
    has run, n times (handler installed once, removed at the end)."""
    import signal as _signal

    async def main() -> int:
        got = 0
        waiter = None

        def handler() -> None:
            nonlocal got
            got += 1
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

        loop.add_signal_handler(_signal.SIGUSR1, handler)
        try:
            for _ in range(n):
                waiter = loop.create_future()
                os.kill(os.getpid(), _signal.SIGUSR1)
                await waiter
        finally:
            loop.remove_signal_handler(_signal.SIGUSR1)
        return got

    got = loop.run_until_complete(main())
    _check(got == n, f"{got} of {n} signals handled")


# ---------------------------------------------------------------------------
# pyperformance async_tree, loaded from the installed package.
# ---------------------------------------------------------------------------

_ASYNC_TREE_ENV = "FERROLOOP_BENCH_ASYNC_TREE"
_async_tree_module = None


def find_pyperformance_benchmark(name: str, env_var: str) -> str:
    """Path of pyperformance's bm_<name>/run_benchmark.py (or of the file
    the environment variable ``env_var`` names)."""
    override = os.environ.get(env_var)
    if override:
        return override
    spec = importlib.util.find_spec("pyperformance")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "pyperformance is not installed (pip install pyperformance); "
            f"or set {env_var} to a bm_{name}/run_benchmark.py"
        )
    for root in spec.submodule_search_locations:
        candidate = os.path.join(root, "data-files", "benchmarks", f"bm_{name}", "run_benchmark.py")
        if os.path.exists(candidate):
            return candidate
        for dirpath, _dirs, files in os.walk(root):
            if os.path.basename(dirpath) == f"bm_{name}" and "run_benchmark.py" in files:
                return os.path.join(dirpath, "run_benchmark.py")
    raise ImportError(f"bm_{name}/run_benchmark.py not found in the pyperformance package")


def find_async_tree_file() -> str:
    """Path of pyperformance's bm_async_tree/run_benchmark.py."""
    return find_pyperformance_benchmark("async_tree", _ASYNC_TREE_ENV)


def load_async_tree():
    """Import pyperformance's async_tree benchmark module (not as __main__,
    so its pyperf Runner does not start)."""
    global _async_tree_module
    if _async_tree_module is None:
        path = find_async_tree_file()
        spec = importlib.util.spec_from_file_location(
            "_pyperformance_bm_async_tree", path
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _async_tree_module = module
    return _async_tree_module


# Class names in run_benchmark.py, for versions without its BENCHMARKS dict.
_TREE_CLASSES = {
    "none": "NoneAsyncTree",
    "io": "IOAsyncTree",
    "memoization": "MemoizationAsyncTree",
    "cpu_io_mixed": "CpuIoMixedAsyncTree",
}


def make_async_tree_case(variant: str, task_groups: bool) -> Callable:
    def case(loop: asyncio.AbstractEventLoop, levels: int) -> None:
        module = load_async_tree()
        table = getattr(module, "BENCHMARKS", None) or {}
        tree_class = table.get(variant) or getattr(module, _TREE_CLASSES[variant])
        try:
            tree = tree_class(use_task_groups=task_groups)
        except TypeError:
            if not task_groups:
                raise
            raise CaseFailed(
                "the installed pyperformance has no TaskGroup variants of "
                "async_tree; install a newer pyperformance"
            ) from None
        # The tree depth is a module global read by AsyncTree.run(); the
        # default (6 levels x 6 branches) is pyperformance's own.
        module.NUM_RECURSE_LEVELS = levels
        loop.run_until_complete(tree.run())

    case.__doc__ = (
        f"pyperformance async_tree '{variant}', "
        + ("TaskGroup" if task_groups else "asyncio.gather")
        + " (one op = one whole tree)"
    )
    return case


# ---------------------------------------------------------------------------
# Case table
# ---------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    func: Callable
    n: int  # ops per measurement (for async_tree: tree depth)
    n_quick: int
    tree: bool = False  # one op per run, reported in ms

    def ops(self, n: int) -> int:
        return 1 if self.tree else n

    def warmup_n(self, n: int) -> int:
        return 3 if self.tree else max(1, n // 20)

    @property
    def unit(self) -> str:
        return "ms/tree" if self.tree else "µs/op"

    @property
    def scale(self) -> float:
        return 1e3 if self.tree else 1e6

    @property
    def doc(self) -> str:
        return " ".join((self.func.__doc__ or "").split())


def _build_cases() -> list[Case]:
    cases = [
        Case("call_soon", case_call_soon, 1_000_000, 100_000),
        Case("call_soon_chain", case_call_soon_chain, 1_000_000, 100_000),
        Case("timers", case_timers, 100_000, 10_000),
        Case("create_task_await", case_create_task_await, 200_000, 20_000),
        Case("create_tasks_then_await", case_create_tasks_then_await, 100_000, 10_000),
        Case("gather_sleep0", case_gather_sleep0, 100_000, 10_000),
        Case("future_pingpong", case_future_pingpong, 1_000_000, 100_000),
        Case("spawn_wait", case_spawn_wait, 1_000, 100),
        Case("communicate_1mib", case_communicate_1mib, 50, 10),
        Case("signal_latency", case_signal_latency, 5_000, 500),
    ]
    for variant in ("none", "io", "memoization", "cpu_io_mixed"):
        base = "async_tree" if variant == "none" else f"async_tree_{variant}"
        for tg in (False, True):
            name = base + ("_tg" if tg else "")
            # 6 levels is pyperformance's tree (6**6 leaves); --quick uses 5.
            cases.append(Case(name, make_async_tree_case(variant, tg), 6, 5, tree=True))
    return cases


CASES = _build_cases()
CASES_BY_NAME = {case.name: case for case in CASES}


# ---------------------------------------------------------------------------
# Loop specs
# ---------------------------------------------------------------------------


@dataclass
class LoopSpec:
    name: str
    module: str
    factory: str

    @property
    def spec(self) -> str:
        return f"{self.name}={self.module}:{self.factory}"


def parse_loop_spec(text: str) -> LoopSpec:
    """`name=module:factory`; `module:factory` and `module` (meaning
    module:new_event_loop) are accepted too."""
    text = text.strip()
    name, sep, target = text.partition("=")
    if not sep:
        target = name
        name = ""
    module, _, factory = target.partition(":")
    module, factory = module.strip(), (factory.strip() or "new_event_loop")
    if not module:
        raise argparse.ArgumentTypeError(f"bad loop spec {text!r}")
    return LoopSpec(name.strip() or module.split(".")[0], module, factory)


def resolve_factory(spec: LoopSpec) -> tuple[Callable, object]:
    module = importlib.import_module(spec.module)
    obj = module
    for part in spec.factory.split("."):
        obj = getattr(obj, part)
    return obj, module


def module_version(spec: LoopSpec, module) -> str:
    if spec.module.split(".")[0] == "asyncio":
        return "CPython " + platform.python_version()
    version = getattr(module, "__version__", None)
    if version is None:
        try:
            from importlib import metadata

            version = metadata.version(spec.module.split(".")[0])
        except Exception:
            version = "?"
    return str(version)


# ---------------------------------------------------------------------------
# Child-process side
# ---------------------------------------------------------------------------


def _new_loop(factory: Callable):
    loop = factory()
    try:
        asyncio.set_event_loop(loop)
    except Exception:
        pass  # not needed by the cases: they only use the running loop
    return loop


def _close_loop(loop) -> None:
    try:
        loop.close()
    finally:
        try:
            asyncio.set_event_loop(None)
        except Exception:
            pass


def describe_error(exc: BaseException) -> dict:
    """A one-line summary and a bounded traceback; for an exception group
    (e.g. from a TaskGroup) the first leaf exception is what is shown."""
    group_type = getattr(builtins, "BaseExceptionGroup", ())  # Python >= 3.11
    leaf, depth = exc, 0
    while isinstance(leaf, group_type) and leaf.exceptions:
        leaf, depth = leaf.exceptions[0], depth + 1
    summary = f"{type(leaf).__name__}: {leaf}".strip().rstrip(":")
    if depth:
        summary += f" (first leaf of {type(exc).__name__} '{exc.message}')"
    lines = "".join(
        traceback.format_exception(type(leaf), leaf, leaf.__traceback__)
    ).splitlines()
    if len(lines) > 40:
        lines = lines[:10] + [f"    ... {len(lines) - 30} lines ..."] + lines[-20:]
    return {"error": summary, "traceback": "\n".join(lines) + "\n"}


def worker_main(argv: list[str]) -> int:
    """`bench.py --_worker SPEC CASE N [nogc]`: one measurement, printed as
    JSON on a marked line of stdout."""
    spec_text, case_name, n_text, *flags = argv
    try:
        spec = parse_loop_spec(spec_text)
        case = CASES_BY_NAME[case_name]
        n = int(n_text)
        factory, _module = resolve_factory(spec)
        if case.tree:
            load_async_tree()  # import outside the timed region

        # Warm-up on a throwaway loop (imports, caches, first-call paths).
        # Under callgrind ("nowarm") it is left out: only the difference
        # of two runs is reported, and the warm-up would be part of it.
        if "nowarm" not in flags:
            loop = _new_loop(factory)
            try:
                case.func(loop, case.warmup_n(n))
            finally:
                _close_loop(loop)

        loop = _new_loop(factory)
        try:
            gc.collect()
            if "nogc" in flags:
                gc.disable()
            wall0 = time.perf_counter()
            cpu0 = time.process_time()
            if "skip" not in flags:  # "skip": the startup-only baseline run
                case.func(loop, n)
            cpu = time.process_time() - cpu0
            wall = time.perf_counter() - wall0
        finally:
            gc.enable()
            _close_loop(loop)
        result = {"ok": True, "cpu": cpu, "wall": wall, "n": n, "ops": case.ops(n)}
    except BaseException as exc:  # report anything, including SystemExit
        result = {"ok": False, **describe_error(exc)}
    sys.stdout.flush()
    sys.stdout.write("\n" + RESULT_MARK + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


def probe_main(argv: list[str]) -> int:
    """`bench.py --_probe SPEC`: can this loop be imported and run at all?"""
    (spec_text,) = argv
    spec = parse_loop_spec(spec_text)
    try:
        factory, module = resolve_factory(spec)
    except ImportError as exc:
        result = {"ok": False, "why": f"cannot import: {exc}"}
    except Exception as exc:
        result = {
            "ok": False,
            "why": f"cannot resolve factory: {type(exc).__name__}: {exc}",
        }
    else:
        try:
            loop = _new_loop(factory)
            try:

                async def hello() -> int:
                    await asyncio.sleep(0)
                    return 42

                _check(loop.run_until_complete(hello()) == 42, "wrong result")
            finally:
                _close_loop(loop)
            result = {
                "ok": True,
                "version": module_version(spec, module),
                "type": f"{type(loop).__module__}.{type(loop).__qualname__}",
            }
        except Exception as exc:
            result = {
                "ok": False,
                "why": f"cannot run a coroutine: {type(exc).__name__}: {exc}",
            }
    sys.stdout.write("\n" + PROBE_MARK + json.dumps(result) + "\n")
    return 0


# ---------------------------------------------------------------------------
# Parent side
# ---------------------------------------------------------------------------


def _child_env() -> dict:
    env = dict(os.environ)
    for var in ("PYTHONASYNCIODEBUG", "PYTHONDEVMODE", "PYTHONTRACEMALLOC"):
        env.pop(var, None)
    env.setdefault("PYTHONHASHSEED", "0")
    return env


def _run_child(args: list[str], mark: str, timeout: float) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), *args]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=_child_env()
        )
    except subprocess.TimeoutExpired:
        return {
            "ok": False,
            "error": f"timeout after {timeout:g} s",
            "why": f"timeout after {timeout:g} s",
        }
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(mark):
            return json.loads(line[len(mark) :])
    tail = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
    msg = f"child died (exit {proc.returncode}): {tail}"
    return {"ok": False, "error": msg, "why": msg, "stderr": proc.stderr[-4000:]}


_COLLECTED = re.compile(r"Collected\s*:\s*([\d,]+)")


def _callgrind_count(args: list[str], timeout: float) -> int | str:
    """Instructions executed by one worker run under callgrind (the whole
    process), or an error message."""
    cmd = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, os.path.abspath(__file__), *args,
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_child_env())
    except subprocess.TimeoutExpired:
        return f"timeout after {timeout:g} s"
    res = None
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            res = json.loads(line[len(RESULT_MARK) :])
            break
    if res is None or not res.get("ok"):
        return (res or {}).get("error") or f"child died (exit {proc.returncode})"
    m = _COLLECTED.search(proc.stderr)
    if m is None:
        return "no instruction count in valgrind's output"
    return int(m.group(1).replace(",", ""))


def callgrind_per_op(spec: "LoopSpec", case: Case, timeout: float) -> float | str:
    """Instructions per op of `case` on `spec`, by difference of two runs
    under callgrind, neither warmed up: a run with n_quick ops minus one
    with a tenth of them (startup, imports and first-call paths cancel out);
    for a tree, one tree minus a run that builds nothing."""
    if case.tree:
        big = _callgrind_count(["--_worker", spec.spec, case.name, str(case.n_quick), "nowarm"], timeout)
        small = _callgrind_count(["--_worker", spec.spec, case.name, str(case.n_quick), "nowarm", "skip"], timeout)
        ops = 1
    else:
        n_small = max(1, case.n_quick // 10)
        big = _callgrind_count(["--_worker", spec.spec, case.name, str(case.n_quick), "nowarm"], timeout)
        small = _callgrind_count(["--_worker", spec.spec, case.name, str(n_small), "nowarm"], timeout)
        ops = case.ops(case.n_quick) - case.ops(n_small)
    for r in (big, small):
        if isinstance(r, str):
            return r
    return (big - small) / ops


def run_callgrind(args: argparse.Namespace, cases: list[Case], loops: list["LoopSpec"], baseline: str) -> int:
    """`--callgrind`: instructions per op instead of times (repeatable on a
    noisy machine, where a few percent disappear in the time spread)."""
    if shutil.which("valgrind") is None:
        print("--callgrind needs valgrind on PATH", file=sys.stderr)
        return 1
    names = [s.name for s in loops]
    table: dict = {c.name: {} for c in cases}
    started = time.perf_counter()
    total, done = len(cases) * len(loops), 0
    for case in cases:
        for spec in loops:
            done += 1
            r = callgrind_per_op(spec, case, args.timeout)
            table[case.name][spec.name] = r
            shown = f"{r:,.0f} instructions/op" if isinstance(r, float) else f"error: {r}"
            print(f"[{done}/{total} {time.perf_counter() - started:6.1f}s] {case.name} on {spec.name}: {shown}",
                  file=sys.stderr, flush=True)
    unit = lambda c: "instr/tree" if c.tree else "instr/op"  # noqa: E731
    head = ["case", "unit"] + [h for n in names for h in ((n,) if n == baseline else (n, f"{n} ×"))]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for case in cases:
        row = [case.name, unit(case)]
        base = table[case.name].get(baseline)
        for n in names:
            v = table[case.name][n]
            row.append(f"{v:,.0f}" if isinstance(v, float) else "error")
            if n != baseline:
                row.append(f"{base / v:.2f}" if isinstance(v, float) and isinstance(base, float) and v > 0 else "")
        lines.append("| " + " | ".join(row) + " |")
    print()
    print(f"Python {platform.python_version()} on {platform.machine()}: instructions per op under "
          f"callgrind (difference of two unwarmed runs at --quick sizes; '{baseline}' / loop in the × columns)")
    print()
    print("\n".join(lines))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"python": platform.python_version(), "metric": "callgrind instructions per op",
                       "baseline": baseline, "cases": table}, fh, indent=2, ensure_ascii=False)
            fh.write("\n")
    errors = [v for row in table.values() for v in row.values() if isinstance(v, str)]
    return 1 if (errors and args.fail_on_error) else 0


def select_cases(filters: list[str] | None) -> list[Case]:
    if not filters:
        return list(CASES)
    words = [w.strip() for f in filters for w in f.split(",") if w.strip()]
    chosen = []
    for case in CASES:
        for word in words:
            if word.startswith("=") and case.name == word[1:]:
                chosen.append(case)
                break
            if not word.startswith("=") and word in case.name:
                chosen.append(case)
                break
    return chosen


def _fmt_value(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def build_table(
    results: dict,
    cases: list[Case],
    loops: list[str],
    baseline: str | None,
    stat: str,
    metric: str,
) -> str:
    header = ["case", "unit"]
    for name in loops:
        header.append(name)
        if baseline and name != baseline:
            header.append(f"{name} ×")
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|",
    ]
    for case in cases:
        row = [case.name, case.unit]
        base_value = (
            results[case.name].get(baseline, {}).get("value") if baseline else None
        )
        for name in loops:
            cell = results[case.name].get(name, {})
            value = cell.get("value")
            row.append(
                "error"
                if cell.get("error")
                else ("—" if value is None else _fmt_value(value))
            )
            if baseline and name != baseline:
                if value and base_value and not cell.get("error"):
                    row.append(f"{base_value / value:.2f}")
                else:
                    row.append("—")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(
            "Side-by-side asyncio event loop benchmarks (process CPU time, "
            "fresh subprocess per measurement, loops interleaved)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Cases:\n" + "\n".join(f"  {c.name:27s} {c.doc}" for c in CASES),
    )
    parser.add_argument(
        "--loops",
        nargs="+",
        metavar="SPEC",
        default=None,
        help="event loops as name=module:factory (space or comma separated); "
        "default: " + " ".join(DEFAULT_LOOPS),
    )
    parser.add_argument(
        "-k",
        dest="filters",
        action="append",
        metavar="PATTERN",
        help="only cases whose name contains PATTERN (comma separated list "
        "allowed, repeatable; '=name' for an exact name)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="measurements per case and loop (default 5, or 1 with --quick)",
    )
    parser.add_argument(
        "--stat",
        choices=("median", "min"),
        default="median",
        help="how repeats are summarised (default: median)",
    )
    parser.add_argument(
        "--metric",
        choices=("cpu", "wall"),
        default="cpu",
        help="process CPU time (default) or wall-clock time",
    )
    parser.add_argument(
        "--no-gc",
        action="store_true",
        help="disable the cyclic GC during the timed region (diagnostic: "
        "shows how much of a case is GC work)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="10x smaller N (and a 5-level async tree), 1 repeat: a CI smoke run",
    )
    parser.add_argument(
        "--baseline",
        default=None,
        help="loop the ratios are computed against (default: asyncio)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=180.0,
        help="seconds before one measurement is abandoned (default 180)",
    )
    parser.add_argument(
        "--json", metavar="FILE", help="also write all results and samples to FILE"
    )
    parser.add_argument(
        "--fail-on-error",
        action="store_true",
        help="exit with status 1 if any cell is 'error' (default: 0)",
    )
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="count instructions per op under valgrind's callgrind instead of "
        "timing (repeatable on a noisy machine; --quick sizes, no repeats)",
    )
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    args = parser.parse_args(argv)

    if args.list:
        for case in CASES:
            print(f"{case.name:27s} N={case.n:<8} quick N={case.n_quick:<7} {case.doc}")
        return 0

    cases = select_cases(args.filters)
    if not cases:
        parser.error("no case matches -k " + ",".join(args.filters or []))
    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 5)
    if repeat < 1:
        parser.error("--repeat must be >= 1")

    specs_text = [
        s
        for item in (args.loops or DEFAULT_LOOPS)
        for s in item.split(",")
        if s.strip()
    ]
    specs = [parse_loop_spec(s) for s in specs_text]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        parser.error(f"duplicate loop names in {names}")

    notes: list[str] = []
    loops: list[LoopSpec] = []
    versions: dict[str, str] = {}
    for spec in specs:
        probe = _run_child(
            ["--_probe", spec.spec], PROBE_MARK, timeout=min(60.0, args.timeout)
        )
        if probe.get("ok"):
            loops.append(spec)
            versions[spec.name] = probe["version"]
            print(
                f"# {spec.name}: {spec.module}:{spec.factory} -> {probe['type']} "
                f"({probe['version']})",
                file=sys.stderr,
            )
        else:
            notes.append(f"{spec.name} skipped ({spec.spec}): {probe.get('why')}")
            print(f"# {spec.name}: SKIPPED: {probe.get('why')}", file=sys.stderr)
    if not loops:
        print("no event loop could be imported", file=sys.stderr)
        return 1
    loop_names = [s.name for s in loops]
    baseline = args.baseline or (
        "asyncio" if "asyncio" in loop_names else loop_names[0]
    )
    if baseline not in loop_names:
        parser.error(
            f"baseline {baseline!r} is not among the loops that run: {loop_names}"
        )

    if args.callgrind:
        return run_callgrind(args, cases, loops, baseline)

    tree_source = None
    if any(c.tree for c in cases):
        try:
            tree_source = find_async_tree_file()
        except ImportError as exc:
            notes.append(f"async_tree cases: {exc}")

    samples: dict = {c.name: {n: [] for n in loop_names} for c in cases}
    errors: dict = {c.name: {} for c in cases}
    started = time.perf_counter()
    total = repeat * len(cases) * len(loops)
    done = 0
    for r in range(repeat):
        order = loops[r % len(loops) :] + loops[: r % len(loops)]
        for case in cases:
            n = case.n_quick if args.quick else case.n
            for spec in order:
                done += 1
                if spec.name in errors[case.name]:
                    continue  # failed before: don't waste time on it
                res = _run_child(
                    ["--_worker", spec.spec, case.name, str(n)]
                    + (["nogc"] if args.no_gc else []),
                    RESULT_MARK,
                    timeout=args.timeout,
                )
                if res.get("ok"):
                    value = res[args.metric] / res["ops"] * case.scale
                    samples[case.name][spec.name].append(
                        {
                            "cpu": res["cpu"],
                            "wall": res["wall"],
                            "n": res["n"],
                            "ops": res["ops"],
                        }
                    )
                    shown = f"{_fmt_value(value)} {case.unit}"
                else:
                    errors[case.name][spec.name] = res.get("error")
                    shown = "error: " + str(res.get("error"))
                    if res.get("traceback"):
                        print(res["traceback"], file=sys.stderr, end="")
                print(
                    f"[{done}/{total} {time.perf_counter() - started:6.1f}s] "
                    f"{case.name} on {spec.name}: {shown}",
                    file=sys.stderr,
                    flush=True,
                )

    pick = statistics.median if args.stat == "median" else min
    results: dict = {}
    for case in cases:
        n = case.n_quick if args.quick else case.n
        results[case.name] = {}
        for name in loop_names:
            vals = [
                s[args.metric] / s["ops"] * case.scale for s in samples[case.name][name]
            ]
            cell = {"samples": samples[case.name][name], "n": n}
            if name in errors[case.name]:
                cell["error"] = errors[case.name][name]
                notes.append(f"{case.name} on {name}: {errors[case.name][name]}")
            elif vals:
                cell["value"] = pick(vals)
                cell["min"] = min(vals)
                cell["max"] = max(vals)
            results[case.name][name] = cell

    elapsed = time.perf_counter() - started
    metric_text = "process CPU time" if args.metric == "cpu" else "wall-clock time"
    print()
    print(
        f"Python {platform.python_version()} on {platform.machine()}, "
        + ", ".join(f"{n} {versions[n]}" for n in loop_names)
    )
    print(
        f"{metric_text}, {args.stat} of {repeat} run(s) per cell, each in a fresh "
        f"process{' (--quick sizes)' if args.quick else ''}"
        f"{', cyclic GC disabled while timing' if args.no_gc else ''}; "
        f"'{baseline}' time / loop time in the × columns "
        f"(>1 = faster than {baseline}); "
        f"{elapsed:.0f} s in all"
    )
    print()
    print(build_table(results, cases, loop_names, baseline, args.stat, args.metric))
    if notes:
        print()
        for note in notes:
            print(f"- {note}")

    if args.json:
        payload = {
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "metric": args.metric,
            "stat": args.stat,
            "repeat": repeat,
            "quick": args.quick,
            "gc_disabled": args.no_gc,
            "baseline": baseline,
            "loops": {
                s.name: {"spec": s.spec, "version": versions[s.name]} for s in loops
            },
            "notes": notes,
            "async_tree_source": tree_source,
            "cases": {
                c.name: {
                    "unit": c.unit,
                    "n": c.n_quick if args.quick else c.n,
                    "description": c.doc,
                    "results": results[c.name],
                }
                for c in cases
            },
            "elapsed_s": elapsed,
        }
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2, ensure_ascii=False)
            fh.write("\n")
    if args.fail_on_error and any(errors[c.name] for c in cases):
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--_worker":
        sys.exit(worker_main(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == "--_probe":
        sys.exit(probe_main(sys.argv[2:]))
    sys.exit(main())
