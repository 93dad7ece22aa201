"""Loop metrics (``loop.metrics()``) and the text of slow-callback reports.

The counters live in the native loop (``sched/metrics.rs``); this module
turns a snapshot of them into frozen, typed values, and describes what a
slow callback was doing: for a Task step, the task, its coroutine and the
innermost frame of its ``await`` chain when the step returned.
"""

from __future__ import annotations

import asyncio
import math
import os
import types
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = ("Histogram", "LoopMetrics", "SlowCallback", "describe_slow_callback")


@dataclass(frozen=True, slots=True)
class Histogram:
    """Durations counted in fixed decade buckets: < 10 µs, < 100 µs, < 1 ms,
    < 10 ms, < 100 ms, < 1 s, ≥ 1 s (``counts[i]`` is bucket ``i``)."""

    counts: tuple[int, ...]

    # Upper bounds (exclusive), in seconds; the last bucket is unbounded.
    BOUNDS: ClassVar[tuple[float, ...]] = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, math.inf)
    LABELS: ClassVar[tuple[str, ...]] = ("<10us", "<100us", "<1ms", "<10ms", "<100ms", "<1s", ">=1s")

    @property
    def total(self) -> int:
        return sum(self.counts)

    def items(self) -> list[tuple[str, int]]:
        """``(label, count)`` per bucket."""
        return list(zip(self.LABELS, self.counts))

    def bucket_of(self, seconds: float) -> str:
        """The label of the bucket a duration falls in."""
        for label, bound in zip(self.LABELS, self.BOUNDS):
            if seconds < bound:
                return label
        return self.LABELS[-1]

    def __str__(self) -> str:
        return " ".join(f"{label}:{n}" for label, n in self.items())


@dataclass(frozen=True, slots=True)
class LoopMetrics:
    """A snapshot of a ferroloop loop's counters since it was created or
    since ``reset_metrics()`` (``since``, on the loop clock).

    Always counted: ``iterations``; ``callbacks`` (every job the loop ran:
    ``call_soon``/timer handles, I/O callbacks, Future done-callbacks, Task
    steps and wake-ups, transport reads and writes); ``tasks_created`` and
    ``tasks_finished`` (native ``ferroloop.Task`` objects on this loop);
    ``poll_time`` (seconds in the poll, mostly blocked waiting for I/O or a
    timer) and ``callback_time`` (seconds running the ready jobs), both
    measured once per iteration; ``iteration_lag``, a histogram of how long
    each iteration spent running its jobs — the longest an event that arrived
    at the poll waited for its callback.

    Only while ``callback_timing`` is on (``loop.set_metrics(callback_timing=True)``
    or debug mode): ``timed_callbacks``, ``callback_durations`` (a histogram
    of single jobs), ``longest_callback`` (seconds) and ``longest_callback_what``
    (what that job was, as text: the Task, its coroutine and where it was,
    or the handle).
    """

    iterations: int
    callbacks: int
    tasks_created: int
    tasks_finished: int
    poll_time: float
    callback_time: float
    iteration_lag: Histogram
    callback_timing: bool
    timed_callbacks: int
    callback_durations: Histogram
    longest_callback: float
    longest_callback_what: str | None
    since: float

    @classmethod
    def _from_snapshot(cls, snap: Any) -> LoopMetrics:
        (it, cbs, created, finished), (poll, run, lag), (timing, timed, durations, longest, what), since = snap
        return cls(
            iterations=it,
            callbacks=cbs,
            tasks_created=created,
            tasks_finished=finished,
            poll_time=poll,
            callback_time=run,
            iteration_lag=Histogram(tuple(lag)),
            callback_timing=timing,
            timed_callbacks=timed,
            callback_durations=Histogram(tuple(durations)),
            longest_callback=longest,
            longest_callback_what=what,
            since=since,
        )


@dataclass(frozen=True, slots=True)
class SlowCallback:
    """What a slow Task step was doing: attached to the slow-callback log
    record as ``record.ferroloop_slow_callback``."""

    task_name: str
    coroutine: str
    # (function, filename, lineno) from the task's coroutine down its
    # ``await`` chain, outermost first; empty when the step finished the task.
    stack: tuple[tuple[str, str, int], ...]
    finished: bool
    # Where the coroutine is defined (what is left to show once it is done).
    defined_at: tuple[str, int] | None

    @property
    def where(self) -> str:
        """``func() at file:line`` of the innermost frame outside asyncio and
        ferroloop (an ``await asyncio.sleep()`` chain ends in asyncio's
        code, which says nothing about the culprit), or for a task the step
        finished, where its coroutine is defined."""
        if self.stack:
            own = [f for f in self.stack if not _is_library(f[1])]
            func, filename, lineno = (own or self.stack)[-1]
            return f"{func}() at {filename}:{lineno}"
        if self.defined_at is not None:
            return f"{self.coroutine}() defined at {self.defined_at[0]}:{self.defined_at[1]}"
        return f"{self.coroutine}()"

    def text(self) -> str:
        """One line for the log: the task, its coroutine, and where the step
        left it (the slow code ran on the way there)."""
        if self.finished or not self.stack:
            return f"task {self.task_name!r} ran {self.where} to completion in that step"
        chain = " -> ".join(f"{f}() at {fn}:{ln}" for f, fn, ln in self.stack)
        return f"task {self.task_name!r} ({self.coroutine}()) is now waiting in {self.where}; await chain: {chain}"


# Frames in these are asyncio's or ferroloop's machinery, not the culprit.
_LIBRARY_DIRS = (os.path.dirname(asyncio.__file__) + os.sep, os.path.dirname(__file__) + os.sep)


def _is_library(filename: str) -> bool:
    return filename.startswith(_LIBRARY_DIRS)


def _frame_of(obj: Any) -> tuple[types.FrameType | None, Any]:
    """The frame of a coroutine, generator or async generator and what it
    is awaiting (or ``yield from``-ing)."""
    for frame_attr, await_attr in (("cr_frame", "cr_await"), ("gi_frame", "gi_yieldfrom"), ("ag_frame", "ag_await")):
        frame = getattr(obj, frame_attr, None)
        if frame is not None:
            return frame, getattr(obj, await_attr, None)
    return None, None


def _coro_name(coro: Any) -> str:
    name = getattr(coro, "__qualname__", None) or getattr(coro, "__name__", None)
    return str(name) if name else type(coro).__name__


def describe_slow_callback(subject: Any) -> SlowCallback | None:
    """For a Task (or anything with ``get_coro()``), its coroutine's await
    chain as it is now; None for other callbacks. Never raises: it runs
    inside the loop's iteration, after the callback it describes."""
    get_coro = getattr(subject, "get_coro", None)
    if get_coro is None:
        return None
    try:
        coro = get_coro()
        try:
            name = str(subject.get_name())
        except Exception:
            name = "?"
        if coro is None:  # a finished eager task let go of it
            return SlowCallback(name, "?", (), True, None)
        code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
        defined_at = (code.co_filename, code.co_firstlineno) if code is not None else None
        stack = []
        obj, seen = coro, 0
        # Bounded: a cycle in a hand-made awaitable must not hang the loop.
        while obj is not None and seen < 256:
            frame, obj = _frame_of(obj)
            if frame is None:
                break
            stack.append((frame.f_code.co_name, frame.f_code.co_filename, frame.f_lineno or 0))
            seen += 1
        done = bool(getattr(subject, "done", lambda: False)())
        return SlowCallback(name, _coro_name(coro), tuple(stack), done, defined_at)
    except Exception:
        return None
