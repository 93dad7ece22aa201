"""The awaited-by graph of tasks and futures: Python 3.14's ``asyncio.graph``
on every supported Python, for ferroloop's tasks and asyncio's alike.

``capture_call_graph(future=None, /, *, depth=1, limit=None)`` returns a
``FutureCallGraph(future, call_stack, awaited_by)``: the coroutine frames the
task is suspended in (innermost first, each a ``FrameCallGraphEntry(frame)``)
and, recursively, the graphs of the futures and tasks that await it.
``format_call_graph`` renders that as text, ``print_call_graph`` prints it.

Nothing is recorded while the program runs: who awaits a future is derived,
when a graph is captured, from the future's done-callbacks (a Task waiting
on it has registered its wake-up there; ``gather``, ``TaskGroup``,
``shield``, ``wait`` and 3.11's ``wait_for`` register callbacks that name
the outer future or the parent task). docs/observability.md lists the rules
and what they cannot see.
"""

import asyncio
import dataclasses
import functools
import sys
import types
from asyncio import events, tasks
from typing import Any, TextIO

from . import _ferroloop

__all__ = (
    "capture_call_graph",
    "format_call_graph",
    "print_call_graph",
    "FrameCallGraphEntry",
    "FutureCallGraph",
)

if sys.version_info >= (3, 14):
    # One set of classes per process: a graph captured here and one captured
    # by asyncio.graph are the same types (designed, not tested: no 3.14 on
    # the development machine; docs/observability.md).
    from asyncio.graph import FrameCallGraphEntry, FutureCallGraph
else:

    @dataclasses.dataclass(frozen=True, slots=True)
    class FrameCallGraphEntry:
        """One frame of a call stack."""

        frame: types.FrameType

    @dataclasses.dataclass(frozen=True, slots=True)
    class FutureCallGraph:
        """A future, the stack it is suspended in, and the graphs of its awaiters."""

        future: "asyncio.Future[Any] | _ferroloop.Future[Any]"
        call_stack: "tuple[FrameCallGraphEntry, ...]"
        awaited_by: "tuple[FutureCallGraph, ...]"


# Code flags of the frames that belong to a coroutine, generator or async
# generator (3.14 asks frame.f_generator, which older Pythons lack).
_GENERATOR_FLAGS = 0x20 | 0x80 | 0x100 | 0x200  # GENERATOR, COROUTINE, ITERABLE_COROUTINE, ASYNC_GENERATOR
_CO_COROUTINE = 0x80
_CO_ASYNC_GENERATOR = 0x200

# A Task's wake-up method, as each implementation names it: ferroloop's
# native Task, the C _asyncio.Task (a PyCFunction bound to the task) and the
# pure-Python Task (the name-mangled __wakeup).
_WAKEUP_NAMES = frozenset({"_wakeup", "task_wakeup", "__wakeup"})

# asyncio's closures registered as done-callbacks of the futures they wait
# for, and the free variable that holds the future waiting: gather's outer
# _GatheringFuture, shield's outer future, wait()'s waiter.
_CLOSURE_AWAITERS = {
    "gather.<locals>._done_callback": "outer",
    "shield.<locals>._inner_done_callback": "outer",
    "_wait.<locals>._on_completion": "waiter",
}

_TaskGroup = getattr(asyncio, "TaskGroup", None)


def _is_future(obj):
    return isinstance(obj, asyncio.Future)


def _closure_value(func, name):
    code = getattr(func, "__code__", None)
    closure = getattr(func, "__closure__", None)
    if code is None or closure is None or name not in code.co_freevars:
        return None
    try:
        return closure[code.co_freevars.index(name)].cell_contents
    except (ValueError, IndexError):  # a cell not filled yet
        return None


def _awaiter_of_callback(cb):
    """The future or task a done-callback stands for, or None."""
    owner = getattr(cb, "__self__", None)
    if owner is not None:
        name = getattr(cb, "__name__", None)
        if name in _WAKEUP_NAMES and _is_future(owner):
            return owner
        if name == "_on_task_done" and _TaskGroup is not None and isinstance(owner, _TaskGroup):
            parent = getattr(owner, "_parent_task", None)
            return parent if _is_future(parent) else None
        return None
    if isinstance(cb, functools.partial):
        # 3.11's wait_for: fut.add_done_callback(partial(_release_waiter, waiter))
        if cb.func is getattr(tasks, "_release_waiter", None) and cb.args and _is_future(cb.args[0]):
            return cb.args[0]
        return None
    if getattr(cb, "__module__", None) == "asyncio.tasks":
        var = _CLOSURE_AWAITERS.get(getattr(cb, "__qualname__", None))
        if var is not None:
            value = _closure_value(cb, var)
            return value if _is_future(value) else None
    return None


def _awaiters(future):
    """The futures and tasks awaiting ``future``, in callback order."""
    found = []
    try:
        callbacks = future._callbacks
    except AttributeError:
        callbacks = None
    for entry in callbacks or ():
        cb = entry[0] if isinstance(entry, tuple) else entry
        waiter = _awaiter_of_callback(cb)
        if waiter is not None and waiter is not future and not any(w is waiter for w in found):
            found.append(waiter)
    if not isinstance(future, _ferroloop.Future):
        # asyncio's own futures on 3.14 keep a set of their awaiters; a
        # ferroloop future's attribute is this very derivation.
        recorded = getattr(future, "_asyncio_awaited_by", None)
        for waiter in recorded or ():
            if not any(w is waiter for w in found):
                found.append(waiter)
    return found


def _awaited_by_set(future):
    """``future._asyncio_awaited_by`` of a ferroloop Future or Task: a
    frozenset of its awaiters, or None (3.14's shape)."""
    found = _awaiters(future)
    return frozenset(found) if found else None


def _coroutine_frames(coro):
    """The frames of the chain of awaits starting at ``coro``, outermost first."""
    frames = []
    while coro is not None:
        if hasattr(coro, "cr_await"):
            frame, coro = coro.cr_frame, coro.cr_await
        elif hasattr(coro, "ag_await"):
            frame, coro = coro.ag_frame, coro.ag_await
        elif hasattr(coro, "gi_yieldfrom"):
            # A generator-based coroutine or an __await__ generator; 3.14's
            # asyncio.graph stops at these, their frames are part of the
            # await chain all the same.
            frame, coro = coro.gi_frame, coro.gi_yieldfrom
        else:
            break
        if frame is None:  # finished or closed
            break
        frames.append(FrameCallGraphEntry(frame))
    return frames


def _keep(entries, limit):
    """Entries to keep of a stack listed outermost first: ``limit`` > 0 keeps
    the outermost ``limit`` (nearest the task's entry point), < 0 the
    innermost ``-limit``, None all."""
    if limit is None:
        return entries
    if limit > 0:
        return entries[:limit]
    if limit < 0:
        return entries[limit:]
    return []


def _check_future(future):
    if not isinstance(future, asyncio.Future):
        raise TypeError(f"{future!r} object does not appear to be compatible with asyncio.Future")


def _graphs_of_awaiters(future, limit, path):
    graphs = []
    for waiter in _awaiters(future):
        # A cycle of awaits (tasks awaiting each other) is cut where it
        # closes instead of recursing until RecursionError.
        if any(p is waiter for p in path):
            continue
        graphs.append(_graph_of(waiter, limit, path))
    return tuple(graphs)


def _graph_of(future, limit, path=()):
    _check_future(future)
    get_coro = getattr(future, "get_coro", None)
    coro = get_coro() if get_coro is not None and limit != 0 else None
    stack = _keep(_coroutine_frames(coro), limit)
    stack.reverse()
    return FutureCallGraph(future, tuple(stack), _graphs_of_awaiters(future, limit, path + (future,)))


def _is_current(future, loop):
    return future is tasks.current_task(loop)


def _current_stack(depth, limit):
    """The caller's frames up to the outermost coroutine frame of the running
    task, innermost first."""
    if limit == 0:
        return []
    stack = []
    frame = sys._getframe(depth + 1)
    while frame is not None:
        stack.append(FrameCallGraphEntry(frame))
        back = frame.f_back
        if frame.f_code.co_flags & _GENERATOR_FLAGS and (back is None or not back.f_code.co_flags & _GENERATOR_FLAGS):
            # The outermost coroutine frame: below it is whatever runs the
            # Task (the loop), not part of its await chain.
            break
        frame = back
    del frame, back
    # Listed innermost first here: a positive limit keeps the outermost.
    if limit is not None:
        stack = stack[-limit:] if limit > 0 else stack[:-limit]
    return stack


def capture_call_graph(
    future: "asyncio.Future[Any] | _ferroloop.Future[Any] | None" = None,
    /,
    *,
    depth: int = 1,
    limit: "int | None" = None,
) -> "FutureCallGraph | None":
    """Capture the awaited-by graph of ``future``, or of the current task.

    Returns a ``FutureCallGraph``, or None when ``future`` is not given and
    no task is running. For the current task the call stack starts ``depth``
    frames above this call (1: its caller). ``limit`` truncates every call
    stack of the graph to ``abs(limit)`` entries: positive keeps the
    outermost (nearest the task's entry point), negative the innermost; 0
    captures no stacks, only the awaited-by structure.
    """
    loop = events._get_running_loop()
    target: "asyncio.Future[Any] | _ferroloop.Future[Any]"
    if future is not None:
        target = future
        if loop is None or not _is_current(future, loop):
            return _graph_of(future, limit)
    elif loop is None:
        raise RuntimeError(
            "capture_call_graph() is called outside of a running event loop "
            "and no *future* to introspect was provided"
        )
    else:
        current = tasks.current_task(loop)
        if current is None:
            return None
        target = current
    _check_future(target)
    stack = _current_stack(depth, limit)
    return FutureCallGraph(target, tuple(stack), _graphs_of_awaiters(target, limit, (target,)))


def _frame_line(frame):
    code = frame.f_code
    flags = code.co_flags
    if flags & _GENERATOR_FLAGS:
        kind = "async" if flags & _CO_COROUTINE else "async generator" if flags & _CO_ASYNC_GENERATOR else "generator"
        where = f"{kind} {code.co_qualname}()"
    else:
        where = f"{code.co_qualname}()"
    return f"File {code.co_filename!r}, line {frame.f_lineno}, in {where}"


def _render(graph, lines, level):
    indent = "    " * level
    fut = graph.future
    if isinstance(fut, asyncio.Task):
        lines.append(f"{indent}* Task(name={fut.get_name()!r}, id={id(fut):#x})")
    else:
        lines.append(f"{indent}* Future(id={id(fut):#x})")
    if graph.call_stack:
        lines.append(f"{indent}  + Call stack:")
        lines.extend(f"{indent}  |   {_frame_line(entry.frame)}" for entry in graph.call_stack)
    if graph.awaited_by:
        lines.append(f"{indent}  + Awaited by:")
        for parent in graph.awaited_by:
            _render(parent, lines, level + 1)


def format_call_graph(
    future: "asyncio.Future[Any] | _ferroloop.Future[Any] | None" = None,
    /,
    *,
    depth: int = 1,
    limit: "int | None" = None,
) -> str:
    """The graph of ``capture_call_graph`` as text ("" when there is none)."""
    graph = capture_call_graph(future, depth=depth + 1, limit=limit)
    if graph is None:
        return ""
    lines: "list[str]" = []
    try:
        _render(graph, lines, 0)
    finally:
        # The graph holds frames (and through them their locals): let it go
        # now rather than at the next collection.
        del graph
    return "\n".join(lines)


def print_call_graph(
    future: "asyncio.Future[Any] | _ferroloop.Future[Any] | None" = None,
    /,
    *,
    file: "TextIO | None" = None,
    depth: int = 1,
    limit: "int | None" = None,
) -> None:
    """Print the graph of ``capture_call_graph`` to ``file`` (stdout)."""
    print(format_call_graph(future, depth=depth + 1, limit=limit), file=file)
