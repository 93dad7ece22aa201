"""Public API of ferroloop: run, new_event_loop, Loop, EventLoopPolicy,
install, eager task factories, Future/Task/Handle/TimerHandle, and the
``python -m ferroloop`` launcher.

Behaviour that asyncio defines is checked on both loops (parametrized), so
the asyncio run validates the expectation.
"""

import asyncio
import socket
import concurrent.futures
import contextvars
import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import pytest

import ferroloop

# The `loop` (both loops) and `ferro_loop` fixtures are in tests/conftest.py.


@pytest.fixture
def restore_policy():
    old = asyncio.get_event_loop_policy()
    try:
        yield
    finally:
        asyncio.set_event_loop_policy(old)


def run_soon_then_stop(loop):
    loop.call_soon(loop.stop)
    loop.run_forever()


# --------------------------------------------------------------------------
# ferroloop.run
# --------------------------------------------------------------------------


def test_run_returns_value():
    async def main(x):
        await asyncio.sleep(0)
        return x * 2

    assert ferroloop.run(main(21)) == 42


def test_run_uses_a_ferroloop_loop_and_closes_it():
    seen = {}

    async def main():
        lp = asyncio.get_running_loop()
        seen["loop"] = lp
        return type(lp)

    assert ferroloop.run(main()) is ferroloop.Loop
    assert isinstance(seen["loop"], ferroloop.Loop)
    assert seen["loop"].is_closed()


def test_run_propagates_exception():
    class Custom(Exception):
        pass

    async def main():
        await asyncio.sleep(0)
        raise Custom("propagated")

    with pytest.raises(Custom, match="propagated"):
        ferroloop.run(main())


@pytest.mark.parametrize("debug", [True, False])
def test_run_debug_flag(debug):
    async def main():
        return asyncio.get_running_loop().get_debug()

    assert ferroloop.run(main(), debug=debug) is debug


def test_run_cancels_leftover_tasks():
    state = {}

    async def leftover():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            state["cancelled"] = True
            raise

    async def main():
        state["task"] = asyncio.get_running_loop().create_task(leftover())
        await asyncio.sleep(0)

    ferroloop.run(main())
    assert state.get("cancelled") is True
    assert state["task"].cancelled()


def test_run_rejects_non_coroutine():
    with pytest.raises(ValueError, match="a coroutine was expected"):
        ferroloop.run(1)


def test_run_inside_running_loop_rejected():
    async def inner():
        return 1

    async def main():
        coro = inner()
        try:
            with pytest.raises(RuntimeError, match="cannot be called from a running event loop"):
                ferroloop.run(coro)
        finally:
            coro.close()
        return "ok"

    assert ferroloop.run(main()) == "ok"


def test_run_with_custom_loop_factory():
    made = []

    def factory():
        lp = ferroloop.new_event_loop()
        made.append(lp)
        return lp

    async def main():
        return asyncio.get_running_loop()

    assert ferroloop.run(main(), loop_factory=factory) is made[0]


def test_asyncio_runner_with_ferroloop_factory():
    async def main():
        return type(asyncio.get_running_loop())

    with asyncio.Runner(loop_factory=ferroloop.new_event_loop) as runner:
        assert runner.run(main()) is ferroloop.Loop
        assert runner.run(main()) is ferroloop.Loop


# --------------------------------------------------------------------------
# Policy / install
# --------------------------------------------------------------------------


def test_event_loop_policy(restore_policy):
    asyncio.set_event_loop_policy(ferroloop.EventLoopPolicy())
    lp = asyncio.new_event_loop()
    try:
        assert isinstance(lp, ferroloop.Loop)
    finally:
        lp.close()

    async def main():
        return asyncio.get_running_loop()

    used = asyncio.run(main())
    assert isinstance(used, ferroloop.Loop)
    assert used.is_closed()


def test_install(restore_policy):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ferroloop.install()
    assert isinstance(asyncio.get_event_loop_policy(), ferroloop.EventLoopPolicy)

    async def main():
        return type(asyncio.get_running_loop())

    assert asyncio.run(main()) is ferroloop.Loop


def test_policy_repr():
    assert repr(ferroloop.EventLoopPolicy()) == "<EventLoopPolicy>"


# --------------------------------------------------------------------------
# Types and isinstance
# --------------------------------------------------------------------------


def test_loop_is_abstract_event_loop(ferro_loop):
    assert isinstance(ferro_loop, asyncio.AbstractEventLoop)
    assert isinstance(ferro_loop, ferroloop.Loop)
    assert type(ferro_loop) is ferroloop.Loop
    assert not ferro_loop.is_running()
    assert not ferro_loop.is_closed()


def test_task_and_future_isinstance(ferro_loop):
    async def coro():
        return 1

    task = ferro_loop.create_task(coro())
    fut = ferro_loop.create_future()
    assert isinstance(task, asyncio.Task)
    assert isinstance(task, asyncio.Future)
    assert isinstance(fut, asyncio.Future)
    assert not isinstance(fut, asyncio.Task)
    assert type(task) is ferroloop.Task
    assert type(fut) is ferroloop.Future
    assert asyncio.isfuture(task) and asyncio.isfuture(fut)
    assert not asyncio.isfuture(coro)
    assert ferro_loop.run_until_complete(task) == 1
    fut.cancel()


def test_ferroloop_future_constructor(ferro_loop):
    fut = ferroloop.Future(loop=ferro_loop)
    assert fut.get_loop() is ferro_loop
    assert not fut.done()
    ferro_loop.call_soon(fut.set_result, "v")
    assert ferro_loop.run_until_complete(fut) == "v"


def test_current_task_and_all_tasks(loop):
    async def child():
        await asyncio.sleep(0)
        return asyncio.current_task()

    async def main():
        me = asyncio.current_task()
        assert me is not None
        assert me in asyncio.all_tasks()
        c = asyncio.get_running_loop().create_task(child())
        assert asyncio.all_tasks() == {me, c}
        assert await c is c
        assert asyncio.all_tasks() == {me}
        return me

    task = loop.create_task(main())
    assert loop.run_until_complete(task) is task
    assert asyncio.all_tasks(loop) == set()
    assert asyncio.current_task(loop) is None


# --------------------------------------------------------------------------
# create_task options, eager tasks
# --------------------------------------------------------------------------


def test_create_task_name(loop):
    async def coro():
        return asyncio.current_task().get_name()

    t = loop.create_task(coro(), name="alpha")
    assert t.get_name() == "alpha"
    assert loop.run_until_complete(t) == "alpha"
    t2 = loop.create_task(coro())
    assert t2.get_name().startswith("Task-")
    t2.set_name("beta")
    assert loop.run_until_complete(t2) == "beta"
    t3 = loop.create_task(coro(), name=123)
    assert t3.get_name() == "123"
    loop.run_until_complete(t3)


def test_create_task_context(loop):
    var = contextvars.ContextVar("var", default="default")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "in ctx")

    async def coro():
        before = var.get()
        var.set("changed by task")
        return before

    t = loop.create_task(coro(), context=ctx)
    assert loop.run_until_complete(t) == "in ctx"
    assert ctx[var] == "changed by task"  # the task ran inside ctx itself
    assert var.get() == "default"


def test_task_context_is_copied_by_default(loop):
    var = contextvars.ContextVar("var", default="default")

    async def coro():
        v = var.get()
        var.set("task-local")
        return v

    async def main():
        var.set("parent")
        r = await asyncio.get_running_loop().create_task(coro())
        return r, var.get()

    assert loop.run_until_complete(main()) == ("parent", "parent")


def test_eager_start_runs_first_step_synchronously(ferro_loop):
    events = []

    async def child():
        events.append(("child-start", asyncio.current_task() is not None))
        await asyncio.sleep(0)
        events.append("child-resumed")
        return "done"

    async def main():
        t = asyncio.get_running_loop().create_task(child(), eager_start=True)
        events.append("after-create")
        return await t

    assert ferro_loop.run_until_complete(main()) == "done"
    assert events == [("child-start", True), "after-create", "child-resumed"]


def test_eager_start_task_finishing_synchronously_is_done(ferro_loop):
    async def child():
        return 42

    async def main():
        t = asyncio.get_running_loop().create_task(child(), eager_start=True, name="eager")
        done_now = t.done()
        return done_now, t.result() if done_now else None, t.get_name(), t in asyncio.all_tasks()

    assert ferro_loop.run_until_complete(main()) == (True, 42, "eager", False)


def test_eager_start_current_task_switches_and_restores(ferro_loop):
    seen = []

    async def child():
        seen.append(asyncio.current_task().get_name())
        await asyncio.sleep(0)
        seen.append(asyncio.current_task().get_name())

    async def main():
        t = asyncio.get_running_loop().create_task(child(), name="child", eager_start=True)
        seen.append(asyncio.current_task().get_name())
        await t

    ferro_loop.run_until_complete(ferro_loop.create_task(main(), name="main"))
    assert seen == ["child", "main", "child"]


def test_eager_start_exception_in_first_step(ferro_loop):
    async def child():
        raise ValueError("sync failure")

    async def main():
        t = asyncio.get_running_loop().create_task(child(), eager_start=True)
        return t.done(), t.exception()

    done, exc = ferro_loop.run_until_complete(main())
    assert done is True
    assert isinstance(exc, ValueError) and exc.args == ("sync failure",)


def test_non_eager_default_is_lazy(ferro_loop):
    events = []

    async def child():
        events.append("child")

    async def main():
        t = asyncio.get_running_loop().create_task(child())
        events.append("after-create")
        await t

    ferro_loop.run_until_complete(main())
    assert events == ["after-create", "child"]


def test_eager_task_factory(ferro_loop):
    events = []

    async def child(n):
        events.append(("start", n))
        await asyncio.sleep(0)
        return n

    async def main():
        lp = asyncio.get_running_loop()
        t = lp.create_task(child(1), name="fact")
        events.append("after-create")
        assert type(t) is ferroloop.Task
        assert t.get_name() == "fact"
        return await t

    ferro_loop.set_task_factory(ferroloop.eager_task_factory)
    assert ferro_loop.get_task_factory() is ferroloop.eager_task_factory
    assert ferro_loop.run_until_complete(main()) == 1
    assert events == [("start", 1), "after-create"]
    ferro_loop.set_task_factory(None)
    assert ferro_loop.get_task_factory() is None


def test_create_eager_task_factory_with_subclass(ferro_loop):
    class MyTask(ferroloop.Task):
        created = 0

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            type(self).created += 1

    events = []

    async def child():
        events.append("child")
        return "r"

    async def main():
        t = asyncio.get_running_loop().create_task(child())
        events.append("after")
        return type(t), t.done(), await t

    ferro_loop.set_task_factory(ferroloop.create_eager_task_factory(MyTask))
    assert ferro_loop.run_until_complete(main()) == (MyTask, True, "r")
    assert MyTask.created == 2  # main() and child()
    assert events == ["child", "after"]


def test_task_factory_receives_context_and_name_applied(loop):
    calls = []
    cls = ferroloop.Task if isinstance(loop, ferroloop.Loop) else asyncio.Task

    def factory(lp, coro, **kw):
        calls.append((lp, sorted(kw)))
        return cls(coro, loop=lp, **kw)

    loop.set_task_factory(factory)
    assert loop.get_task_factory() is factory

    async def c():
        return 1

    t = loop.create_task(c(), name="named")
    assert t.get_name() == "named"
    assert loop.run_until_complete(t) == 1
    t2 = loop.create_task(c(), context=contextvars.copy_context())
    loop.run_until_complete(t2)
    assert calls == [(loop, []), (loop, ["context"])]


# --------------------------------------------------------------------------
# Task methods
# --------------------------------------------------------------------------


def test_task_get_coro_and_context(loop):
    async def coro():
        return 1

    c = coro()
    ctx = contextvars.copy_context()
    t = loop.create_task(c, context=ctx)
    assert t.get_coro() is c
    if hasattr(t, "get_context"):  # 3.12 API; ferroloop provides it on 3.11
        assert t.get_context() is ctx
    loop.run_until_complete(t)


def test_ferroloop_task_get_context_default(ferro_loop):
    async def coro():
        return 1

    t = ferro_loop.create_task(coro())
    assert isinstance(t.get_context(), contextvars.Context)
    ferro_loop.run_until_complete(t)


def test_task_cancel_with_message(loop):
    seen = []

    async def sleeper():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError as e:
            seen.append(e.args)  # the coroutine sees the message
            raise

    async def main():
        t = asyncio.get_running_loop().create_task(sleeper())
        await asyncio.sleep(0)
        assert t.cancel("stop it") is True
        assert t.cancelling() == 1
        with pytest.raises(asyncio.CancelledError):
            await t
        return t

    t = loop.run_until_complete(main())
    assert seen == [("stop it",)]
    assert t.cancelled()
    with pytest.raises(asyncio.CancelledError):
        t.result()
    assert t.cancel() is False


def test_future_cancel_with_message(loop):
    fut = loop.create_future()
    assert fut.cancel("why") is True
    with pytest.raises(asyncio.CancelledError) as ei:
        fut.result()
    assert ei.value.args == ("why",)


def test_task_cancelling_and_uncancel(loop):
    async def resilient():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            me = asyncio.current_task()
            n = me.cancelling()
            remaining = me.uncancel()
            return n, remaining

    async def main():
        t = asyncio.get_running_loop().create_task(resilient())
        await asyncio.sleep(0)
        t.cancel()
        t.cancel()  # second request counted too
        return await t

    assert loop.run_until_complete(main()) == (2, 1)


def test_task_cancel_before_start(loop):
    started = []

    async def coro():
        started.append(1)

    t = loop.create_task(coro())
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        loop.run_until_complete(t)
    assert started == []
    assert t.cancelled()


def test_task_done_callbacks_and_result(loop):
    order = []

    async def coro():
        await asyncio.sleep(0)
        return "res"

    t = loop.create_task(coro())
    t.add_done_callback(lambda f: order.append(("cb1", f.result())))
    t.add_done_callback(lambda f: order.append(("cb2", f is t)))
    assert loop.run_until_complete(t) == "res"
    run_soon_then_stop(loop)
    assert order == [("cb1", "res"), ("cb2", True)]


def test_future_remove_done_callback(loop):
    fut = loop.create_future()
    calls = []
    cb = calls.append
    fut.add_done_callback(cb)
    fut.add_done_callback(cb)
    fut.add_done_callback(lambda f: calls.append("other"))
    assert fut.remove_done_callback(cb) == 2
    fut.set_result(1)
    run_soon_then_stop(loop)
    assert calls == ["other"]


# --------------------------------------------------------------------------
# Subclassing
# --------------------------------------------------------------------------


def test_subclass_future(ferro_loop):
    class MyFuture(ferroloop.Future):
        def __init__(self, *, loop=None, tag=None):
            super().__init__(loop=loop)
            self.tag = tag

        def set_result(self, result):
            super().set_result(("wrapped", result))

    fut = MyFuture(loop=ferro_loop, tag="t")
    assert type(fut) is MyFuture
    assert fut.tag == "t"
    assert asyncio.isfuture(fut)

    async def main():
        asyncio.get_running_loop().call_soon(fut.set_result, 5)
        return await fut

    assert ferro_loop.run_until_complete(main()) == ("wrapped", 5)
    assert fut.done()


def test_subclass_task(ferro_loop):
    class MyTask(ferroloop.Task):
        def __init__(self, coro, *, loop=None, **kw):
            super().__init__(coro, loop=loop, **kw)
            self.extra = "x"

        def get_name(self):
            return "my:" + super().get_name()

    async def coro():
        await asyncio.sleep(0)
        return asyncio.current_task()

    t = MyTask(coro(), loop=ferro_loop, name="n")
    assert type(t) is MyTask
    assert t.extra == "x"
    assert t.get_name() == "my:n"
    assert asyncio.isfuture(t)
    assert ferro_loop.run_until_complete(t) is t


def test_subclass_task_via_task_factory(ferro_loop):
    class MyTask(ferroloop.Task):
        pass

    ferro_loop.set_task_factory(lambda lp, coro, **kw: MyTask(coro, loop=lp, **kw))

    async def child():
        return 3

    async def main():
        t = asyncio.get_running_loop().create_task(child())
        return type(t), await t, type(asyncio.current_task())

    assert ferro_loop.run_until_complete(main()) == (MyTask, 3, MyTask)


# --------------------------------------------------------------------------
# contextvars in callbacks
# --------------------------------------------------------------------------


def test_contextvars_in_callbacks(loop):
    var = contextvars.ContextVar("var", default="default")
    seen = []

    var.set("at-schedule")
    loop.call_soon(lambda: seen.append(("soon", var.get())))
    loop.call_later(0, lambda: seen.append(("later", var.get())))
    var.set("after")  # must not affect the copies taken above
    try:
        loop.run_until_complete(asyncio.sleep(0.01))
    finally:
        var.set("default")
    assert sorted(seen) == [("later", "at-schedule"), ("soon", "at-schedule")]


def test_callbacks_snapshot_the_context_they_were_scheduled_in(loop):
    # ferroloop reuses one snapshot while the current context's contents
    # stay the same, reading the current context in place; switching
    # contexts or setting a variable between calls must still give each
    # callback what was current at its call_soon, and isolate them.
    var = contextvars.ContextVar("var", default="default")
    seen = []

    def cb(tag):
        seen.append((tag, var.get()))
        var.set("written by " + tag)

    other = contextvars.copy_context()
    other.run(var.set, "other")
    loop.call_soon(cb, "a")
    loop.call_soon(cb, "b")
    other.run(loop.call_soon, cb, "in-other")
    loop.call_soon(cb, "c")
    var.set("changed")
    loop.call_soon(cb, "d")
    contextvars.Context().run(loop.call_soon, cb, "in-empty")
    loop.call_soon(cb, "e")
    try:
        run_soon_then_stop(loop)
    finally:
        var.set("default")
    assert seen == [
        ("a", "default"), ("b", "default"), ("in-other", "other"), ("c", "default"),
        ("d", "changed"), ("in-empty", "default"), ("e", "changed"),
    ]
    assert other[var] == "other"


@pytest.mark.skipif(sys.version_info[:2] not in ((3, 11), (3, 12), (3, 13)), reason="offset known for 3.11-3.13 only")
def test_the_current_context_is_read_in_place():
    # Without the verified thread-state offset every callback copies the
    # context again (correct, but an allocation per call_soon).
    from ferroloop import _ferroloop

    assert _ferroloop._context_read_in_place()


@pytest.mark.parametrize("method", ["call_soon", "call_later", "call_at", "call_soon_threadsafe", "add_done_callback"])
def test_explicit_context_honoured(loop, method):
    var = contextvars.ContextVar("var", default="default")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "explicit")
    seen = []

    def cb(*_):
        seen.append(var.get())
        var.set("written by callback")

    if method == "call_soon":
        loop.call_soon(cb, context=ctx)
    elif method == "call_later":
        loop.call_later(0, cb, context=ctx)
    elif method == "call_at":
        loop.call_at(loop.time(), cb, context=ctx)
    elif method == "call_soon_threadsafe":
        loop.call_soon_threadsafe(cb, context=ctx)
    else:
        fut = loop.create_future()
        fut.add_done_callback(cb, context=ctx)
        fut.set_result(None)
    loop.run_until_complete(asyncio.sleep(0.01))
    assert seen == ["explicit"]
    assert ctx[var] == "written by callback"
    assert var.get() == "default"


# --------------------------------------------------------------------------
# Ordering and timing
# --------------------------------------------------------------------------


def test_call_soon_fifo(loop):
    order = []
    for i in range(1000):
        loop.call_soon(order.append, i)
    run_soon_then_stop(loop)
    assert order == list(range(1000))


def test_call_soon_and_threadsafe_interleaved_fifo(loop):
    order = []
    for i in range(200):
        if i % 2:
            loop.call_soon_threadsafe(order.append, i)
        else:
            loop.call_soon(order.append, i)
    run_soon_then_stop(loop)
    assert order == list(range(200))


def test_loop_time_is_monotonic_clock(loop):
    for _ in range(100):
        before = time.monotonic()
        t = loop.time()
        after = time.monotonic()
        assert before <= t <= after


def test_call_later_ordering_and_timing(loop):
    fired = []
    start = loop.time()

    def record(tag, handle_box):
        fired.append((tag, loop.time(), handle_box[0].when()))

    boxes = {}
    for tag, delay in [("c", 0.06), ("a", 0.02), ("b", 0.04)]:
        box = []
        box.append(loop.call_later(delay, record, tag, box))
        boxes[tag] = box
        assert abs(box[0].when() - (start + delay)) < 0.01

    loop.run_until_complete(asyncio.sleep(0.1))
    assert [f[0] for f in fired] == ["a", "b", "c"]
    res = loop._clock_resolution
    for tag, at, when in fired:
        assert at >= when - res, (tag, at, when)  # never early
        assert at - when < 0.5, (tag, at, when)  # and not absurdly late


def test_call_at_when_exact(loop):
    when = loop.time() + 100.5
    h = loop.call_at(when, lambda: None)
    assert h.when() == when
    h.cancel()


def test_call_later_zero_and_negative_run_next_iteration(loop):
    order = []
    loop.call_later(-5, order.append, "neg")
    loop.call_later(0, order.append, "zero")
    loop.run_until_complete(asyncio.sleep(0.01))
    assert order == ["neg", "zero"]


def test_equal_deadline_timers_fire_in_scheduling_order(ferro_loop):
    # Deliberate ferroloop guarantee (docs/DIFFERENCES.md); asyncio leaves
    # this order unspecified.
    order = []
    when = ferro_loop.time() + 0.01
    for i in range(200):
        ferro_loop.call_at(when, order.append, i)
    ferro_loop.run_until_complete(asyncio.sleep(0.05))
    assert order == list(range(200))


def test_timers_after_ready_callbacks(loop):
    order = []
    loop.call_later(0, order.append, "timer")
    loop.call_soon(order.append, "soon")
    loop.run_until_complete(asyncio.sleep(0.01))
    assert order == ["soon", "timer"]


# --------------------------------------------------------------------------
# Handles
# --------------------------------------------------------------------------


def test_handle_cancel(loop):
    ran = []
    h = loop.call_soon(ran.append, "h")
    keep = loop.call_soon(ran.append, "keep")
    assert not h.cancelled()
    h.cancel()
    assert h.cancelled()
    h.cancel()  # idempotent
    run_soon_then_stop(loop)
    assert ran == ["keep"]
    assert not keep.cancelled()


def test_timer_handle_cancel(loop):
    ran = []
    h = loop.call_later(0.001, ran.append, "t")
    h.cancel()
    assert h.cancelled()
    loop.run_until_complete(asyncio.sleep(0.02))
    assert ran == []


def test_timer_handle_cancel_from_callback(loop):
    ran = []
    later = loop.call_later(0.01, ran.append, "late")
    loop.call_soon(later.cancel)
    loop.run_until_complete(asyncio.sleep(0.03))
    assert ran == []
    assert later.cancelled()


def test_many_cancelled_timers(loop):
    ran = []
    handles = [loop.call_later(0.001 + i * 1e-6, ran.append, i) for i in range(1000)]
    for h in handles[::2]:
        h.cancel()
    loop.run_until_complete(asyncio.sleep(0.05))
    assert ran == list(range(1, 1000, 2))


def test_native_handle_types(ferro_loop):
    h = ferro_loop.call_soon(lambda: None)
    th = ferro_loop.call_later(10, lambda: None)
    assert type(h) is ferroloop.Handle
    assert type(th) is ferroloop.TimerHandle
    assert issubclass(ferroloop.TimerHandle, ferroloop.Handle)
    assert th.when() > ferro_loop.time()
    h.cancel()
    th.cancel()


def test_handles_are_asyncio_handles(loop):
    # Code written for asyncio checks isinstance(h, asyncio.Handle /
    # asyncio.TimerHandle); docs/DIFFERENCES.md lists no exception for
    # handles (it does for Future/Task, which pass such checks).
    h = loop.call_soon(lambda: None)
    th = loop.call_later(10, lambda: None)
    try:
        assert isinstance(h, asyncio.Handle)
        assert not isinstance(h, asyncio.TimerHandle)
        assert isinstance(th, asyncio.TimerHandle)
        assert isinstance(th, asyncio.Handle)
    finally:
        h.cancel()
        th.cancel()


# --------------------------------------------------------------------------
# Threads and executors
# --------------------------------------------------------------------------


def test_run_in_executor_default(loop):
    async def main():
        lp = asyncio.get_running_loop()
        ident = await lp.run_in_executor(None, threading.get_ident)
        value = await lp.run_in_executor(None, pow, 2, 10)
        return ident, value

    ident, value = loop.run_until_complete(main())
    assert ident != threading.get_ident()
    assert value == 1024


def test_run_in_executor_custom_and_exception(loop):
    def fail():
        raise ValueError("in thread")

    with concurrent.futures.ThreadPoolExecutor(1) as ex:

        async def main():
            lp = asyncio.get_running_loop()
            with pytest.raises(ValueError, match="in thread"):
                await lp.run_in_executor(ex, fail)
            return await lp.run_in_executor(ex, str.upper, "ok")

        assert loop.run_until_complete(main()) == "OK"


def test_to_thread(loop):
    var = contextvars.ContextVar("var", default="default")

    def work(x):
        return x + 1, var.get(), threading.get_ident()

    async def main():
        var.set("propagated")
        return await asyncio.to_thread(work, 1)

    r, v, ident = loop.run_until_complete(main())
    assert (r, v) == (2, "propagated")
    assert ident != threading.get_ident()


def test_run_coroutine_threadsafe_from_other_thread(loop):
    async def add(a, b):
        await asyncio.sleep(0.001)
        return a + b, asyncio.get_running_loop()

    results = []

    def submitter():
        cf = asyncio.run_coroutine_threadsafe(add(1, 2), loop)
        results.append(cf.result(timeout=10))
        loop.call_soon_threadsafe(loop.stop)

    th = threading.Thread(target=submitter)
    th.start()
    loop.run_forever()
    th.join(10)
    assert results == [(3, loop)]


def test_run_coroutine_threadsafe_loop_in_thread(loop):
    th = threading.Thread(target=loop.run_forever)
    th.start()
    try:

        async def coro():
            return type(asyncio.get_running_loop()), threading.get_ident()

        cf = asyncio.run_coroutine_threadsafe(coro(), loop)
        typ, ident = cf.result(timeout=10)
        assert typ is type(loop)
        assert ident == th.ident

        async def boom():
            raise KeyError("x")

        with pytest.raises(KeyError):
            asyncio.run_coroutine_threadsafe(boom(), loop).result(timeout=10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        th.join(10)
    assert not th.is_alive()


# --------------------------------------------------------------------------
# Async generators
# --------------------------------------------------------------------------


def test_shutdown_asyncgens(loop):
    finalized = []

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            finalized.append("closed")

    gens = []

    async def main():
        g = agen()
        gens.append(g)
        assert await g.__anext__() == 1

    loop.run_until_complete(main())
    assert finalized == []
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert finalized == ["closed"]


def test_asyncgen_finalizer_hook_on_gc(loop):
    finalized = []

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            finalized.append("closed")

    async def main():
        g = agen()
        await g.__anext__()
        del g  # finalizer hook schedules aclose() on the loop
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    loop.run_until_complete(main())
    assert finalized == ["closed"]


def test_ferroloop_run_finalizes_asyncgens():
    finalized = []

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            finalized.append("closed")

    keep = []

    async def main():
        g = agen()
        keep.append(g)
        await g.__anext__()

    ferroloop.run(main())
    assert finalized == ["closed"]


# --------------------------------------------------------------------------
# python -m ferroloop
# --------------------------------------------------------------------------


def _run_launcher(args, cwd, timeout=60):
    env = dict(os.environ)
    env.pop("PYTHONASYNCIODEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "ferroloop", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


SCRIPT = textwrap.dedent(
    """
    import asyncio, sys

    async def main():
        lp = asyncio.get_running_loop()
        print("LOOP", type(lp).__module__, type(lp).__qualname__)
        print("ARGV", sys.argv)
        print("NAME", __name__)
        lp2 = asyncio.new_event_loop()
        print("NEW", type(lp2).__qualname__)
        lp2.close()
        return 0

    if __name__ == "__main__":
        sys.exit(asyncio.run(main()))
    """
)


def test_python_m_ferroloop_script(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text(SCRIPT)
    r = _run_launcher([str(script), "a1", "--flag", "x y"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = dict(line.split(" ", 1) for line in r.stdout.splitlines())
    assert lines["LOOP"] == "ferroloop._loop Loop"
    assert lines["ARGV"] == repr([str(script), "a1", "--flag", "x y"])
    assert lines["NAME"] == "__main__"
    assert lines["NEW"] == "Loop"


def test_python_m_ferroloop_module(tmp_path):
    pkg = tmp_path / "fl_testpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "prog.py").write_text(SCRIPT)
    r = _run_launcher(["-m", "fl_testpkg.prog", "arg1", "arg2"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = dict(line.split(" ", 1) for line in r.stdout.splitlines())
    assert lines["LOOP"] == "ferroloop._loop Loop"
    argv = eval(lines["ARGV"])  # noqa: S307 - our own repr output
    assert argv[1:] == ["arg1", "arg2"]
    assert argv[0].endswith(os.path.join("fl_testpkg", "prog.py"))
    assert lines["NAME"] == "__main__"


def test_python_m_ferroloop_script_exit_status_and_exception(tmp_path):
    script = tmp_path / "fail.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncio
            async def main():
                raise SystemExit(7)
            asyncio.run(main())
            """
        )
    )
    r = _run_launcher([str(script)], cwd=tmp_path)
    assert r.returncode == 7
    script.write_text(
        textwrap.dedent(
            """
            import asyncio
            async def main():
                raise ZeroDivisionError("inside")
            asyncio.run(main())
            """
        )
    )
    r = _run_launcher([str(script)], cwd=tmp_path)
    assert r.returncode == 1
    assert "ZeroDivisionError: inside" in r.stderr


def test_python_m_ferroloop_usage(tmp_path):
    r = _run_launcher([], cwd=tmp_path)
    assert r.returncode == 2
    assert "usage: python -m ferroloop" in r.stderr
    r = _run_launcher(["-m"], cwd=tmp_path)
    assert r.returncode == 2
    r = _run_launcher(["--help"], cwd=tmp_path)
    assert r.returncode == 0
    assert "usage: python -m ferroloop" in r.stdout


@pytest.mark.parametrize(
    "host,port,kw",
    [
        ("127.0.0.1", 80, {}),
        ("::1", "8080", {"type": socket.SOCK_STREAM}),
        (None, 0, {"flags": socket.AI_PASSIVE}),
        ("localhost", 80, {"family": socket.AF_INET}),
        ("127.0.0.1", "http", {"type": socket.SOCK_STREAM}),
        ("999.1.1.1", 80, {"family": socket.AF_INET}),
    ],
)
def test_getaddrinfo_matches_asyncio_and_skips_the_executor_for_numeric(host, port, kw):
    async def resolve():
        loop = asyncio.get_running_loop()
        try:
            return await loop.getaddrinfo(host, port, **kw), loop._default_executor is not None
        except OSError as e:
            return (type(e), e.args), loop._default_executor is not None

    std = asyncio.run(resolve())
    fer = ferroloop.run(resolve())
    assert fer[0] == std[0]
    numeric = host in ("127.0.0.1", "::1", None) and str(port).isdigit()
    assert fer[1] is (not numeric)  # no thread pool for numeric addresses


def test_getnameinfo_numeric_fast_path_matches_asyncio():
    flags = socket.NI_NUMERICHOST | socket.NI_NUMERICSERV

    async def lookup():
        loop = asyncio.get_running_loop()
        return await loop.getnameinfo(("127.0.0.1", 8080), flags), loop._default_executor is not None

    assert ferroloop.run(lookup()) == (asyncio.run(lookup())[0], False)


@pytest.mark.parametrize("args", [["missing.py"], ["-m", "no_such_module_xyz"]], ids=["script", "module"])
def test_launcher_missing_target_says_what_python_says(tmp_path, args):
    ours = _run_launcher(args, tmp_path)
    theirs = subprocess.run([sys.executable, *args], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert (ours.returncode, ours.stderr) == (theirs.returncode, theirs.stderr)
    assert ours.stdout == ""
