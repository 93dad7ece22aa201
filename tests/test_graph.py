"""ferroloop.graph: Python 3.14's asyncio.graph (capture/format/print_call_graph)
on 3.11-3.13, for tasks and futures of ferroloop's loop and of asyncio's.

Every scenario runs on both loops (the `loop` fixture) and must give the same
graph: the awaited-by edges are derived from done-callbacks, which asyncio's
Task, gather, TaskGroup, shield and wait register as ferroloop's do.
"""

import asyncio
import dataclasses
import io
import re
import sys

import pytest

import ferroloop
from ferroloop import graph
from ferroloop.graph import FrameCallGraphEntry, FutureCallGraph, capture_call_graph, format_call_graph, print_call_graph


def code_names(g):
    return [e.frame.f_code.co_name for e in g.call_stack]


def shape(g):
    """A graph as nested (kind, name, frames, awaited_by) tuples, ids left out."""
    fut = g.future
    kind = "Task" if isinstance(fut, asyncio.Task) else "Future"
    name = fut.get_name() if kind == "Task" else None
    return (kind, name, code_names(g), [shape(p) for p in g.awaited_by])


async def settle():
    for _ in range(5):
        await asyncio.sleep(0)


def test_dataclasses_have_3_14_structure():
    assert [f.name for f in dataclasses.fields(FutureCallGraph)] == ["future", "call_stack", "awaited_by"]
    assert [f.name for f in dataclasses.fields(FrameCallGraphEntry)] == ["frame"]
    entry = FrameCallGraphEntry(sys._getframe())
    g = FutureCallGraph(None, (entry,), ())
    for obj, field in ((entry, "frame"), (g, "awaited_by")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, field, None)
    # slots=True: no per-instance dict.
    assert not hasattr(entry, "__dict__") and not hasattr(g, "__dict__")
    assert FrameCallGraphEntry.__slots__ == ("frame",)
    assert g == FutureCallGraph(None, (entry,), ())


def test_task_awaiting_a_future(loop):
    async def leaf(fut):
        return await fut

    async def main():
        fut = loop.create_future()
        task = asyncio.ensure_future(leaf(fut))
        task.set_name("leaf")
        await settle()
        g = capture_call_graph(fut)
        fut.set_result(1)
        await task
        return g, task, fut

    g, task, fut = loop.run_until_complete(main())
    assert g.future is fut and g.call_stack == ()
    assert isinstance(g.call_stack, tuple) and isinstance(g.awaited_by, tuple)
    (tg,) = g.awaited_by
    assert tg.future is task
    assert code_names(tg) == ["leaf"]
    assert tg.awaited_by == ()


def test_gather_tree(loop):
    async def leaf(fut):
        await fut

    async def parent(fut):
        await asyncio.gather(leaf(fut), leaf(fut))

    async def main():
        fut = loop.create_future()
        p = asyncio.ensure_future(parent(fut))
        p.set_name("parent")
        await settle()
        leaves = [t for t in asyncio.all_tasks() if t.get_coro().__name__ == "leaf"]
        graphs = [capture_call_graph(t) for t in leaves]
        fut.set_result(None)
        await p
        return graphs, p

    graphs, p = loop.run_until_complete(main())
    assert len(graphs) == 2
    for g in graphs:
        # leaf <- gather's outer future <- the task awaiting gather()
        assert shape(g)[2:] == (["leaf"], [("Future", None, [], [("Task", "parent", ["parent"], [])])])
    outer = graphs[0].awaited_by[0]
    assert outer.future is graphs[1].awaited_by[0].future
    assert outer.awaited_by[0].future is p


def test_taskgroup_tree(loop):
    async def leaf(fut):
        await fut

    async def group(fut):
        async with asyncio.TaskGroup() as tg:
            tg.create_task(leaf(fut), name="child")
            await settle()
            child = next(t for t in asyncio.all_tasks() if t.get_name() == "child")
            g = capture_call_graph(child)
            fut.set_result(None)
        return g

    async def main():
        fut = loop.create_future()
        return await asyncio.ensure_future(group(fut))

    g = loop.run_until_complete(main())
    # The child is awaited by the task in `async with` (3.14's shape: the
    # TaskGroup is not a node), suspended in the body's await; main awaits it.
    parent = g.awaited_by[0]
    top = parent.awaited_by[0]
    assert shape(g) == (
        "Task", "child", ["leaf"],
        [("Task", parent.future.get_name(), ["group"], [("Task", top.future.get_name(), ["main"], [])])],
    )


def test_taskgroup_parent_waiting_in_aexit(loop):
    async def leaf(fut):
        await fut

    async def group(fut):
        async with asyncio.TaskGroup() as tg:
            tg.create_task(leaf(fut), name="child")

    async def main():
        fut = loop.create_future()
        t = asyncio.ensure_future(group(fut))
        await settle()
        child = next(t for t in asyncio.all_tasks() if t.get_name() == "child")
        g = capture_call_graph(child)
        fut.set_result(None)
        await t
        return g

    g = loop.run_until_complete(main())
    (parent,) = g.awaited_by
    assert code_names(parent) == ["__aexit__", "group"]
    assert parent.call_stack[0].frame.f_code.co_qualname == "TaskGroup.__aexit__"


def test_shield_and_wait_reach_the_awaiting_task(loop):
    async def leaf(fut):
        await fut

    async def shielded(fut):
        await asyncio.shield(leaf(fut))

    async def waiting(fut):
        await asyncio.wait([asyncio.ensure_future(leaf(fut))])

    async def main():
        fut = loop.create_future()
        ts = asyncio.ensure_future(shielded(fut))
        tw = asyncio.ensure_future(waiting(fut))
        await settle()
        graphs = {}
        for t in asyncio.all_tasks():
            if t.get_coro().__name__ == "leaf":
                g = capture_call_graph(t)
                top = g
                while top.awaited_by:
                    top = top.awaited_by[0]
                graphs[top.future] = shape(g)
        fut.set_result(None)
        await asyncio.gather(ts, tw)
        return graphs, ts, tw

    graphs, ts, tw = loop.run_until_complete(main())
    # Each leaf task is awaited through the helper's future by its caller.
    assert graphs[ts][3] == [("Future", None, [], [("Task", ts.get_name(), ["shielded"], [])])]
    assert graphs[tw][3] == [("Future", None, [], [("Task", tw.get_name(), ["_wait", "wait", "waiting"], [])])]


def test_wait_for_reaches_the_awaiting_task(loop):
    async def leaf(fut):
        await fut

    async def waiting(fut):
        await asyncio.wait_for(leaf(fut), 60)

    async def main():
        fut = loop.create_future()
        t = asyncio.ensure_future(waiting(fut))
        await settle()
        inner = [x for x in asyncio.all_tasks() if x.get_coro().__name__ == "leaf"]
        g = capture_call_graph(inner[0]) if inner else None
        fut.set_result(None)
        await t
        return g, t

    g, t = loop.run_until_complete(main())
    if sys.version_info >= (3, 12):
        # 3.12's wait_for awaits the coroutine in the caller's own task.
        assert g is None
    else:
        # 3.11's wraps it in a task and waits on a waiter future.
        assert shape(g)[3] == [("Future", None, [], [("Task", t.get_name(), ["wait_for", "waiting"], [])])]


def test_current_task_capture_and_depth(loop):
    def helper():
        return capture_call_graph(), capture_call_graph(depth=2)

    async def inner():
        return helper()

    async def outer():
        return await inner()

    async def main():
        t = asyncio.ensure_future(outer())
        return await t, t

    (here, skipped), t = loop.run_until_complete(main())
    assert here.future is t and skipped.future is t
    # From the caller of capture_call_graph down to the task's outermost
    # coroutine frame, innermost first; nothing of the loop below it.
    assert code_names(here) == ["helper", "inner", "outer"]
    assert code_names(skipped) == ["inner", "outer"]
    assert here.call_stack[0].frame.f_code is helper.__code__


def test_current_task_passed_explicitly_is_captured_live(loop):
    async def main():
        me = asyncio.current_task()
        return capture_call_graph(me), me

    g, me = loop.run_until_complete(main())
    assert g.future is me and code_names(g) == ["main"]


def test_no_current_task_and_no_loop(loop):
    with pytest.raises(RuntimeError, match="outside of a running event loop"):
        capture_call_graph()
    with pytest.raises(TypeError):
        capture_call_graph(future=loop.create_future())  # positional-only, as in 3.14
    seen = []
    loop.call_soon(lambda: seen.append((capture_call_graph(), format_call_graph())))
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == [(None, "")]


def test_not_a_future_is_a_type_error():
    with pytest.raises(TypeError, match="does not appear to be compatible with asyncio.Future"):
        capture_call_graph(object())


async def c3(fut):
    await fut


async def c2(fut):
    await c3(fut)


async def c1(fut):
    await c2(fut)


@pytest.mark.parametrize(
    "limit, frames",
    [(None, ["c3", "c2", "c1"]), (1, ["c1"]), (2, ["c2", "c1"]), (-1, ["c3"]), (-2, ["c3", "c2"]), (0, []), (9, ["c3", "c2", "c1"])],
)
def test_limit_of_a_suspended_task(loop, limit, frames):
    async def main():
        fut = loop.create_future()
        t = asyncio.ensure_future(c1(fut))
        await settle()
        g = capture_call_graph(fut, limit=limit)
        fut.set_result(None)
        await t
        return g

    g = loop.run_until_complete(main())
    # limit applies to every stack of the graph; 0 keeps the edges only.
    assert g.call_stack == ()
    assert code_names(g.awaited_by[0]) == frames


@pytest.mark.parametrize("limit, frames", [(None, ["d3", "d2", "d1"]), (1, ["d1"]), (-1, ["d3"]), (-2, ["d3", "d2"]), (0, [])])
def test_limit_of_the_current_task(loop, limit, frames):
    async def d3():
        return capture_call_graph(limit=limit)

    async def d2():
        return await d3()

    async def d1():
        return await d2()

    g = loop.run_until_complete(d1())
    assert code_names(g) == frames


def test_await_cycle_terminates(loop):
    # a awaits task b while b waits (with a timeout) for a: a's graph leads
    # back to a through wait()'s waiter and b, and is cut there instead of
    # recursing forever.
    holder = {}

    async def a():
        await holder["b"]

    async def b():
        await asyncio.wait([holder["a"]], timeout=0.05)

    async def main():
        holder["a"] = ta = asyncio.ensure_future(a())
        holder["b"] = tb = asyncio.ensure_future(b())
        await settle()
        g = capture_call_graph(ta)
        text = format_call_graph(ta)
        await asyncio.gather(ta, tb)
        return g, ta, tb, text

    g, ta, tb, text = loop.run_until_complete(main())
    (waiter,) = g.awaited_by
    assert not isinstance(waiter.future, asyncio.Task)
    assert waiter.awaited_by[0].future is tb and waiter.awaited_by[0].awaited_by == ()
    assert text.count("* Task(") == 2


def test_formatted_output(loop):
    async def leaf(fut):
        await fut

    async def parent(fut):
        await asyncio.gather(leaf(fut))

    async def main():
        fut = loop.create_future()
        p = asyncio.ensure_future(parent(fut))
        p.set_name("parent")
        await settle()
        child = next(t for t in asyncio.all_tasks() if t.get_coro().__name__ == "leaf")
        child.set_name("child")
        text = format_call_graph(child)
        buf = io.StringIO()
        print_call_graph(child, file=buf)
        outer = capture_call_graph(child).awaited_by[0].future
        fut.set_result(None)
        await p
        return text, buf.getvalue(), child, p, outer

    text, printed, child, p, outer = loop.run_until_complete(main())
    file = __file__
    leaf_line = leaf.__code__.co_firstlineno + 1
    parent_line = parent.__code__.co_firstlineno + 1
    # The layout of 3.14's asyncio.format_call_graph.
    assert text == "\n".join(
        [
            f"* Task(name='child', id={id(child):#x})",
            "  + Call stack:",
            f"  |   File {file!r}, line {leaf_line}, in async test_formatted_output.<locals>.leaf()",
            "  + Awaited by:",
            f"    * Future(id={id(outer):#x})",
            "      + Awaited by:",
            f"        * Task(name='parent', id={id(p):#x})",
            "          + Call stack:",
            f"          |   File {file!r}, line {parent_line}, in async test_formatted_output.<locals>.parent()",
        ]
    )
    assert printed == text + "\n"


def test_print_call_graph_of_the_current_task_starts_at_its_caller(loop):
    def sync_helper(buf):
        print_call_graph(file=buf)

    async def main():
        buf = io.StringIO()
        sync_helper(buf)
        return buf.getvalue(), asyncio.current_task()

    out, me = loop.run_until_complete(main())
    lines = out.splitlines()
    assert lines[0] == f"* Task(name={me.get_name()!r}, id={id(me):#x})"
    assert lines[2].endswith("in test_print_call_graph_of_the_current_task_starts_at_its_caller.<locals>.sync_helper()")
    assert lines[3].endswith("in async test_print_call_graph_of_the_current_task_starts_at_its_caller.<locals>.main()")
    assert len(lines) == 4


def test_generator_frames_in_the_chain(loop):
    import types

    @types.coroutine
    def legacy(fut):
        yield from fut

    async def modern(fut):
        await legacy(fut)

    async def main():
        fut = loop.create_future()
        t = asyncio.ensure_future(modern(fut))
        await settle()
        g = capture_call_graph(t)
        text = format_call_graph(t)
        fut.set_result(None)
        await t
        return g, text

    g, text = loop.run_until_complete(main())
    assert code_names(g) == ["legacy", "modern"]
    assert "in generator test_generator_frames_in_the_chain.<locals>.legacy()" in text


def test_both_loops_give_the_same_shapes():
    async def leaf(fut):
        await fut

    async def mid(fut):
        await asyncio.gather(leaf(fut), leaf(fut))

    async def main(fut_box):
        fut = asyncio.get_running_loop().create_future()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(mid(fut), name="mid")
            await settle()
            out = sorted(repr(shape(capture_call_graph(t))) for t in asyncio.all_tasks())
            fut.set_result(None)
        return out

    def unnumbered(shapes):
        # Default names count tasks per implementation (Task-N): not compared.
        return sorted(re.sub(r"'Task-\d+'", "'Task-N'", s) for s in shapes)

    on_asyncio = unnumbered(asyncio.run(main(None)))
    on_ferroloop = unnumbered(ferroloop.run(main(None)))
    assert on_ferroloop == on_asyncio
    assert len(on_ferroloop) == 4


def test_ferroloop_futures_expose_asyncio_awaited_by(ferro_loop):
    async def leaf(fut):
        await fut

    async def main():
        fut = ferro_loop.create_future()
        assert fut._asyncio_awaited_by is None
        t = asyncio.ensure_future(leaf(fut))
        await settle()
        seen = fut._asyncio_awaited_by
        fut.set_result(None)
        await t
        return seen, t, fut._asyncio_awaited_by

    seen, t, after = ferro_loop.run_until_complete(main())
    # 3.14's asyncio.graph reads this attribute: a frozenset of awaiters.
    assert seen == frozenset({t}) and type(seen) is frozenset
    assert after is None
    assert t._asyncio_awaited_by is None


def test_graph_holds_no_hot_path_state(ferro_loop):
    # The derivation reads callbacks only: a future nobody awaits has none,
    # and capturing leaves the future's callbacks as they were.
    async def waiter(fut):
        await fut

    async def main():
        fut = ferro_loop.create_future()
        t = asyncio.ensure_future(waiter(fut))
        await settle()
        before = list(fut._callbacks or ())
        capture_call_graph(fut)
        after = list(fut._callbacks or ())
        fut.set_result(None)
        await t
        return before, after

    before, after = ferro_loop.run_until_complete(main())
    assert before == after
    assert graph._awaited_by_set(ferro_loop.create_future()) is None
