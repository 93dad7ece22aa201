"""Stress and robustness: memory, reference cycles, threads, stop/close,
errors in callbacks, KeyboardInterrupt, and destroyed-object reports.

Each test is bounded to a few seconds.  Tests that make sense for both loops
are parametrized over stdlib asyncio and ferroloop so the asyncio run proves
the expectation itself is right.
"""

import asyncio
import sys
import collections
import gc
import os
import threading
import time
import weakref

import pytest

import ferroloop
from ferroloop import _ferroloop

# The `loop` (both loops) and `ferro_loop` fixtures are in tests/conftest.py.


def run_soon_then_stop(loop):
    """Run exactly the callbacks queued so far (plus what they queue right
    before the stop), then return."""
    loop.call_soon(loop.stop)
    loop.run_forever()


# --------------------------------------------------------------------------
# 1,000,000 tasks, RSS back near baseline
# --------------------------------------------------------------------------

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


N_TASKS = 1_000_000
BATCH = 10_000

# Tolerance for RSS growth after 1,000,000 tasks, measured after gc.collect()
# against a baseline taken after a warm-up batch.
#
# Why 20 MB: with batches of 10,000, the live set is at most ~10,000 tasks
# (a few MB), and freed memory is reused batch after batch, so a correct
# implementation ends within a few MB of the baseline (measured: ~0 MB for
# ferroloop and ~2 MB for asyncio).  A leak of ONE small object per task
# costs at least 1,000,000 x (object size):
#   - the smallest objects one could leak are a float/int (24-32 bytes in
#     pymalloc) or a Rust heap allocation (>= 32 bytes with malloc's header);
#     anything that retains a Task, its coroutine frame, a Handle or a
#     context costs hundreds of bytes, i.e. hundreds of MB;
#   - so a per-task leak is >= ~24-32 MB > 20 MB and fails the bound.
# test_task_rss_bound_detects_a_small_leak checks that claim empirically: the
# same workload with one float (24 bytes) retained per task exceeds the bound.
RSS_TOLERANCE = 20 * 1024 * 1024


async def _task_batches(n_tasks, leak=None):
    """Create and finish ``n_tasks`` tasks in batches of BATCH; every task
    must run exactly once.  With ``leak``, each task leaks a float into it."""
    loop = asyncio.get_running_loop()
    state = {"left": 0, "fut": None, "ran": 0}

    async def work(i):
        if leak is not None:
            leak.append(float(i))
        state["ran"] += 1
        state["left"] -= 1
        if state["left"] == 0:
            state["fut"].set_result(None)

    probes = []
    for _ in range(n_tasks // BATCH):
        state["left"] = BATCH
        state["fut"] = loop.create_future()
        for i in range(BATCH):
            t = loop.create_task(work(i))
        probes.append(weakref.ref(t))
        await state["fut"]
        del t
    return state["ran"], probes


def _measure_growth(loop, n_tasks, leak=None):
    gc.collect()
    before = rss_bytes()
    ran, probes = loop.run_until_complete(_task_batches(n_tasks, leak))
    gc.collect()
    after = rss_bytes()
    return ran, probes, after - before


# Both RSS measurements run in a fresh interpreter: later in a full test run
# the process holds memory freed by earlier tests, which a leak would reuse
# without growing RSS, and the control below would then prove nothing.
_FRESH_RUN = r"""
import gc, json, sys, time, weakref
import ferroloop
sys.path.insert(0, sys.argv[1])
import test_stress as ts

leak = [] if sys.argv[2] == "leak" else None
loop = ferroloop.new_event_loop()
ts._measure_growth(loop, 5 * ts.BATCH)          # warm-up: arenas, caches
t0 = time.monotonic()
ran, probes, growth = ts._measure_growth(loop, ts.N_TASKS, leak)
elapsed = time.monotonic() - t0
print(json.dumps({
    "ran": ran,
    "probes": len(probes),
    "freed": all(p() is None for p in probes),
    "all_tasks": len(ferroloop._ferroloop._live_tasks()) if leak is None else 0,
    "ready": loop._ready_count,
    "growth": growth,
    "leaked": len(leak) if leak is not None else 0,
    "elapsed": elapsed,
}))
loop.close()
"""


def _fresh_growth(mode):
    import json
    import subprocess

    here = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.run(
        [sys.executable, "-c", _FRESH_RUN, here, mode],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_million_tasks_rss_back_near_baseline():
    r = _fresh_growth("clean")
    assert r["ran"] == N_TASKS
    # Every task object was freed (one probe per batch).
    assert r["probes"] == N_TASKS // BATCH and r["freed"]
    assert r["all_tasks"] == 0 and r["ready"] == 0
    assert r["growth"] < RSS_TOLERANCE, f"RSS grew by {r['growth'] / 2**20:.1f} MB after {N_TASKS} tasks"
    assert r["elapsed"] < 30, r["elapsed"]


def test_task_rss_bound_detects_a_small_leak():
    """Control for the test above: the same workload retaining one 24-byte
    float per task must exceed RSS_TOLERANCE, so the bound is tight enough
    to catch a one-small-object-per-task leak."""
    r = _fresh_growth("leak")
    assert r["ran"] == N_TASKS and r["leaked"] == N_TASKS
    assert r["growth"] > RSS_TOLERANCE, f"a 1-float-per-task leak only grew RSS by {r['growth'] / 2**20:.1f} MB"


# --------------------------------------------------------------------------
# Native I/O objects (sock_* operations, datagram transports) are freed
# --------------------------------------------------------------------------

_IO_ROUNDS = r"""
import asyncio, gc, json, socket, ferroloop

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096

class P(asyncio.DatagramProtocol):
    pass

async def rounds(n):
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    for i in range(n):
        t = asyncio.ensure_future(loop.sock_recv(a, 100))  # waits: a SockOp
        await asyncio.sleep(0)
        if i % 2:
            t.cancel()
        else:
            b.send(b"x")
        try:
            await t
        except asyncio.CancelledError:
            pass
        await loop.sock_sendall(b, b"y" * 10)
        await loop.sock_recv(a, 100)
        if i % 20 == 0:
            tr, _ = await loop.create_datagram_endpoint(P, local_addr=("127.0.0.1", 0))
            tr.sendto(b"z", tr.get_extra_info("sockname"))
            await asyncio.sleep(0)
            tr.close()
            await asyncio.sleep(0)
    a.close()
    b.close()

async def main():
    await rounds(10_000)
    gc.collect()
    before = rss()
    await rounds(100_000)
    gc.collect()
    print(json.dumps({"growth": rss() - before}))

ferroloop.run(main())
"""


def test_sock_ops_and_datagram_transports_do_not_leak():
    """100,000 waiting sock_recv calls (half cancelled, half completed) and
    5,000 datagram transports: RSS stays flat. A Box<SockOp> or a transport
    core leaked per round would add several MB."""
    import json
    import subprocess

    proc = subprocess.run([sys.executable, "-c", _IO_ROUNDS], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    growth = json.loads(proc.stdout.strip().splitlines()[-1])["growth"]
    assert growth < 4 * 1024 * 1024, f"RSS grew by {growth / 2**20:.1f} MB"


# --------------------------------------------------------------------------
# Reference cycles are collected
# --------------------------------------------------------------------------


def _collected(ref):
    for _ in range(3):
        gc.collect()
        if ref() is None:
            return True
    return False


def test_cycle_future_done_callback_references_future(loop):
    fut = loop.create_future()
    fut.add_done_callback(lambda f, keep=fut: None)  # fut -> callback -> fut
    ref = weakref.ref(fut)
    del fut
    assert _collected(ref)


def test_cycle_done_future_result_is_itself(loop):
    fut = loop.create_future()
    fut.set_result(fut)
    ref = weakref.ref(fut)
    del fut
    assert _collected(ref)


def test_cycle_future_exception_traceback_references_future(loop):
    def fail(fut):
        try:
            raise ValueError("boom")
        except ValueError as e:
            fut.set_exception(e)  # exc -> traceback -> frame -> fut -> exc

    fut = loop.create_future()
    fail(fut)
    assert isinstance(fut.exception(), ValueError)
    ref = weakref.ref(fut)
    del fut
    assert _collected(ref)


def test_cycle_finished_task_coroutine_references_task(loop):
    holder = {}

    async def coro():
        holder["me"] = asyncio.current_task()  # task -> coro -> frame -> holder -> task
        await asyncio.sleep(0)
        return 1

    task = loop.create_task(coro())
    holder["self"] = holder
    assert loop.run_until_complete(task) == 1
    ref = weakref.ref(task)
    hold_ref = weakref.ref(task.get_coro()) if task.get_coro() is not None else None
    del task, holder
    assert _collected(ref)
    if hold_ref is not None:
        assert _collected(hold_ref)


def test_cycle_pending_task_and_its_future_collected(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    async def waiter(fut):
        await fut

    fut = loop.create_future()
    task = loop.create_task(waiter(fut))
    run_soon_then_stop(loop)  # the task is now parked on fut (fut -> task -> coro -> fut)
    assert not task.done()
    ref_task, ref_fut = weakref.ref(task), weakref.ref(fut)
    del task, fut
    assert _collected(ref_task)
    assert _collected(ref_fut)
    assert [c["message"] for c in contexts] == ["Task was destroyed but it is pending!"]
    contexts.clear()  # holds the task


def test_cycle_handle_args_reference_handle(loop):
    box = []
    handle = loop.call_soon(lambda b: None, box)
    box.append(handle)  # handle -> args -> box -> handle
    handle.cancel()
    run_soon_then_stop(loop)
    ref = weakref.ref(handle)
    del handle, box
    assert _collected(ref)


def test_cycle_timer_handle_referencing_itself_after_cancel(loop):
    box = []
    th = loop.call_later(3600, box.append, box)
    box.append(th)
    th.cancel()
    run_soon_then_stop(loop)
    ref = weakref.ref(th)
    del th, box
    assert _collected(ref)


def test_cycle_callback_referencing_loop_collected_with_loop(request):
    # A closed loop whose only references form a cycle with a callback.
    lp = ferroloop.new_event_loop()
    lp.call_later(3600, lambda keep=lp: None)
    lp.close()
    ref = weakref.ref(lp)
    del lp
    assert _collected(ref)


def test_cycle_unclosed_ferroloop_with_pending_callbacks_is_collected():
    # Pending (never run) callbacks referencing the loop itself: the loop's
    # queues must be visible to the GC (tp_traverse) for this to be freed.
    lp = ferroloop.new_event_loop()
    lp.call_soon(lambda keep=lp: None)
    lp.call_later(3600, lambda keep=lp: None)
    fut = lp.create_future()
    fut.add_done_callback(lambda f, keep=lp: None)
    fut.set_result(None)  # queues the done callback as a ready job
    ref = weakref.ref(lp)
    del lp, fut
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        assert _collected(ref)


class _LoopOwner:
    """Holds a loop; its bound method, scheduled on that loop, closes a
    cycle through the loop's queue."""

    def __init__(self, loop):
        self.loop = loop

    def method(self):
        pass


LOOP_FACTORIES = pytest.mark.parametrize("factory", [asyncio.new_event_loop, ferroloop.new_event_loop], ids=["asyncio", "ferroloop"])


@LOOP_FACTORIES
@pytest.mark.parametrize("kept", [False, True], ids=["dropped-handle", "kept-handle"])
@pytest.mark.parametrize("how", ["call_soon", "call_later", "call_soon_threadsafe"])
def test_cycle_through_a_pending_handle_of_a_dropped_unclosed_loop_is_collected(factory, kept, how):
    # obj -> loop -> queue -> handle -> obj.method -> obj, and with `kept`
    # also obj -> handle. ferroloop untracks a handle the queue alone holds
    # (its references are reported by the loop then); a handle somebody
    # keeps stays tracked. Either way the cycle goes, as on asyncio.
    import warnings

    lp = factory()
    obj = _LoopOwner(lp)
    if how == "call_later":
        h = lp.call_later(3600, obj.method)
    else:
        h = getattr(lp, how)(obj.method)
    if kept:
        obj.handle = h
    del h
    lp.call_soon(print)  # a later call: the moment the first handle is settled
    ref, lref = weakref.ref(obj), weakref.ref(lp)
    del obj, lp
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        assert _collected(ref) and _collected(lref)


@LOOP_FACTORIES
def test_cycle_through_a_handle_kept_by_the_exception_handler_is_collected(factory):
    # The handle gains an owner while it runs (the exception handler keeps
    # context["handle"]): it must take part in the GC from then on.
    class Obj:
        def method(self):
            raise ZeroDivisionError

    lp = factory()
    try:
        kept = []
        lp.set_exception_handler(lambda loop, ctx: kept.append(ctx["handle"]))
        obj = Obj()
        obj.kept = kept  # obj -> kept -> handle -> obj.method -> obj
        lp.call_soon(obj.method)
        run_soon_then_stop(lp)
        assert len(kept) == 1
        ref = weakref.ref(obj)
        del obj, kept
        lp.set_exception_handler(None)
        assert _collected(ref)
    finally:
        lp.close()


@LOOP_FACTORIES
def test_cycle_through_a_weakly_referenced_pending_handle_is_collected(factory):
    # A weak reference taken at once can hand out the handle later, so the
    # handle must stay visible to the GC even though the queue holds it alone.
    import warnings

    lp = factory()
    obj = _LoopOwner(lp)
    wr = weakref.ref(lp.call_soon(obj.method))
    lp.call_soon(print)
    obj.handle = wr()  # a strong reference again, from the weak one
    assert obj.handle is not None
    ref = weakref.ref(obj)
    del obj, lp
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        assert _collected(ref)


@LOOP_FACTORIES
@pytest.mark.parametrize("state", ["pending", "done", "context-kept"])
def test_cycle_through_a_task_context_is_collected(factory, state):
    # task -> its context -> a ContextVar's value -> task: the context is
    # untracked on ferroloop while the task alone holds it, so the task must
    # report what the context references; one handed out by get_context()
    # (and kept in the cycle) is tracked again.
    import contextvars
    import warnings

    var = contextvars.ContextVar("me")
    lp = factory()
    try:
        async def body():
            var.set(asyncio.current_task())
            if state == "pending":
                await lp.create_future()

        task = lp.create_task(body())
        run_soon_then_stop(lp)
        if state == "done":
            lp.run_until_complete(task)
        if hasattr(task, "get_context"):  # asyncio's Task: from 3.12 on
            assert task.get_context()[var] is task
        if state == "context-kept":
            if not hasattr(task, "get_context"):
                pytest.skip("Task.get_context() is new in 3.12")
            task.keep = task.get_context()
        ref = weakref.ref(task)
        del task
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lp.set_exception_handler(lambda loop, ctx: None)  # "destroyed but pending"
            assert _collected(ref)
    finally:
        lp.close()


def test_pending_callbacks_cost_the_collector_nothing():
    # A pending call_soon/call_later whose handle the caller dropped is not
    # a GC-tracked object on ferroloop: with many callbacks pending, every
    # collection would otherwise walk all their handles. asyncio's loop adds
    # two tracked objects per callback (the Handle and its context copy).
    def tracked_per_callback(factory, n=5000):
        lp = factory()
        try:
            cb = lambda: None  # noqa: E731
            gc.collect()
            before = len(gc.get_objects())
            for _ in range(n):
                lp.call_soon(cb)
                lp.call_later(3600, cb)
            lp.call_soon(cb)
            grown = len(gc.get_objects()) - before
            lp.run_until_complete(asyncio.sleep(0))
            return grown / (2 * n)
        finally:
            lp.close()

    assert tracked_per_callback(asyncio.new_event_loop) >= 1.9
    assert tracked_per_callback(ferroloop.new_event_loop) < 0.01


def test_cycle_unclosed_loop_with_pending_sock_op_is_collected():
    # A sock_recv waiting in the fd table (a native SockOp holding its
    # Future and socket) and a socket that references the loop.
    import socket

    lp = ferroloop.new_event_loop()
    a, b = socket.socketpair()
    a.setblocking(False)
    fut = lp._sock_op_recv(a, 10)  # not ready: a pending Future
    assert not fut.done()
    fut.add_done_callback(lambda f, keep=lp: None)
    ref = weakref.ref(lp)
    del lp, fut
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        assert _collected(ref)
    a.close()
    b.close()


def test_cycle_datagram_transport_and_protocol_collected():
    # protocol -> transport -> native core -> protocol, after close.
    import socket

    lp = ferroloop.new_event_loop()

    class P(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

    async def main():
        tr, pr = await lp.create_datagram_endpoint(P, local_addr=("127.0.0.1", 0))
        tr.close()
        await asyncio.sleep(0)
        return weakref.ref(tr), weakref.ref(pr)

    tref, pref = lp.run_until_complete(main())
    lp.close()
    assert _collected(tref) and _collected(pref)
    # an open one, dropped with its loop unclosed, is collected too
    lp = ferroloop.new_event_loop()
    tr, pr = lp.run_until_complete(lp.create_datagram_endpoint(P, family=socket.AF_INET, local_addr=("127.0.0.1", 0)))
    ref = weakref.ref(lp)
    del lp, tr, pr
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        assert _collected(ref)


def test_many_cycles_do_not_accumulate(loop):
    async def coro(i):
        me = asyncio.current_task()
        fut = asyncio.get_running_loop().create_future()
        fut.add_done_callback(lambda f, me=me, fut=fut: None)
        fut.set_result(me)
        await fut
        return i

    async def main():
        refs = []
        for i in range(2000):
            t = asyncio.get_running_loop().create_task(coro(i))
            refs.append(weakref.ref(t))
            await t
        return refs

    refs = loop.run_until_complete(main())
    gc.collect()
    gc.collect()
    assert sum(r() is not None for r in refs) == 0


# --------------------------------------------------------------------------
# call_soon_threadsafe from 8 threads
# --------------------------------------------------------------------------

N_THREADS = 8
PER_THREAD = 20_000


def test_call_soon_threadsafe_many_threads(loop):
    total = N_THREADS * PER_THREAD
    counts = collections.Counter()
    barrier = threading.Barrier(N_THREADS + 1)
    done = loop.create_future()
    ran = [0]

    def cb(ident):
        counts[ident] += 1
        ran[0] += 1
        if ran[0] == total:
            done.set_result(None)

    def producer(k):
        barrier.wait()
        base = k * PER_THREAD
        for i in range(base, base + PER_THREAD):
            loop.call_soon_threadsafe(cb, i)

    async def main():
        threads = [threading.Thread(target=producer, args=(k,)) for k in range(N_THREADS)]
        for t in threads:
            t.start()
        # Let the producers go while the loop is running (and blocking in
        # the poller when the queue is momentarily empty).
        await loop.run_in_executor(None, barrier.wait)
        await asyncio.wait_for(done, 30)
        for t in threads:
            t.join()
        # Anything extra would have been queued before the joins finished.
        await asyncio.sleep(0.01)

    t0 = time.monotonic()
    loop.run_until_complete(main())
    assert time.monotonic() - t0 < 30
    assert ran[0] == total
    assert len(counts) == total
    assert set(counts.values()) == {1}
    assert min(counts) == 0 and max(counts) == total - 1


def test_call_soon_threadsafe_wakes_blocked_loop(loop):
    """The loop is blocked on a far timer; a threadsafe call must wake it
    promptly."""
    got = []

    def from_thread():
        time.sleep(0.05)
        loop.call_soon_threadsafe(lambda: (got.append(time.monotonic()), loop.stop()))

    loop.call_later(3600, lambda: None)
    threading.Thread(target=from_thread).start()
    t0 = time.monotonic()
    loop.run_forever()
    assert got and got[0] - t0 < 2.0


# --------------------------------------------------------------------------
# stop / close interplay
# --------------------------------------------------------------------------


def test_close_from_callback_raises_and_loop_stays_usable(loop):
    errors = []

    def try_close():
        try:
            loop.close()
        except RuntimeError as e:
            errors.append(str(e))
        loop.stop()

    loop.call_soon(try_close)
    loop.run_forever()
    assert errors == ["Cannot close a running event loop"]
    assert not loop.is_closed()
    assert not loop.is_running()
    # Still usable: callbacks, timers and tasks.
    order = []
    loop.call_soon(order.append, 1)
    loop.call_later(0.001, order.append, 2)
    assert loop.run_until_complete(asyncio.sleep(0.01, "x")) == "x"
    assert order == [1, 2]
    loop.close()
    assert loop.is_closed()


def test_close_from_task_raises_and_loop_stays_usable(loop):
    async def main():
        try:
            loop.close()
        except RuntimeError as e:
            return str(e)

    assert loop.run_until_complete(main()) == "Cannot close a running event loop"
    assert loop.run_until_complete(asyncio.sleep(0, 5)) == 5


def test_stop_before_run_forever_runs_one_iteration(loop):
    ran = []
    loop.call_soon(ran.append, "a")
    loop.stop()
    loop.run_forever()
    assert ran == ["a"]
    assert not loop.is_running()
    # The stop request was consumed: the next run_forever needs a new stop.
    loop.call_soon(ran.append, "b")
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert ran == ["a", "b"]


def test_stop_lets_current_iteration_finish(loop):
    ran = []

    def first():
        ran.append(1)
        loop.stop()
        loop.call_soon(ran.append, 3)  # next iteration: not run this time

    loop.call_soon(first)
    loop.call_soon(ran.append, 2)  # same iteration as the stop: still runs
    loop.run_forever()
    assert ran == [1, 2]
    run_soon_then_stop(loop)
    assert ran == [1, 2, 3]


def test_stop_then_close_discards_pending_callbacks(loop):
    ran = []

    def cb():
        loop.stop()
        loop.call_soon(ran.append, "never")
        loop.call_later(0, ran.append, "never-timer")

    loop.call_soon(cb)
    loop.run_forever()
    probe = loop.call_soon(ran.append, "never2")
    ref = weakref.ref(probe)
    del probe
    loop.close()
    assert ran == []
    assert _collected(ref)
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.run_forever()


def test_stop_from_other_thread(loop):
    def stopper():
        time.sleep(0.05)
        loop.call_soon_threadsafe(loop.stop)

    threading.Thread(target=stopper).start()
    t0 = time.monotonic()
    loop.run_forever()
    assert time.monotonic() - t0 < 5
    assert not loop.is_running()


def test_run_forever_repeatedly(loop):
    counter = [0]
    for _ in range(200):
        loop.call_soon(counter.__setitem__, 0, counter[0] + 1)
        run_soon_then_stop(loop)
    assert counter[0] == 200


# --------------------------------------------------------------------------
# Exceptions in callbacks go to the exception handler
# --------------------------------------------------------------------------


class Boom(Exception):
    pass


def test_exception_in_done_callback_reported_and_loop_continues(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    after = []
    exc = Boom("in done callback")

    def bad_cb(fut):
        raise exc

    fut = loop.create_future()
    fut.add_done_callback(bad_cb)
    fut.add_done_callback(lambda f: after.append(f.result()))
    fut.set_result(7)
    loop.call_soon(after.append, "next")
    run_soon_then_stop(loop)
    run_soon_then_stop(loop)
    assert after == [7, "next"]
    assert len(contexts) == 1
    ctx = contexts[0]
    assert ctx["exception"] is exc
    assert ctx["message"].startswith("Exception in callback ")
    assert "bad_cb" in ctx["message"]
    assert "handle" in ctx
    assert not loop.is_closed()


def test_exception_in_call_soon_callback_reported(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    ran = []

    def bad():
        raise Boom("cb")

    h = loop.call_soon(bad)
    loop.call_soon(ran.append, 1)
    run_soon_then_stop(loop)
    assert ran == [1]
    assert len(contexts) == 1
    assert isinstance(contexts[0]["exception"], Boom)
    assert contexts[0]["message"].startswith("Exception in callback ")
    assert contexts[0]["handle"] is h


def test_exception_in_timer_callback_reported(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    def bad():
        raise Boom("timer")

    loop.call_later(0.001, bad)
    loop.run_until_complete(asyncio.sleep(0.02))
    assert len(contexts) == 1
    assert isinstance(contexts[0]["exception"], Boom)


def test_exceptions_in_many_done_callbacks_all_reported(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    def bad(fut):
        raise Boom(fut.result())

    futs = [loop.create_future() for _ in range(500)]
    for i, f in enumerate(futs):
        f.add_done_callback(bad)
        f.set_result(i)
    run_soon_then_stop(loop)
    assert sorted(c["exception"].args[0] for c in contexts) == list(range(500))
    assert loop.run_until_complete(asyncio.sleep(0, "alive")) == "alive"


def test_exception_handler_that_raises_does_not_kill_loop(loop, capsys):
    def handler(lp, ctx):
        raise RuntimeError("handler broke")

    loop.set_exception_handler(handler)
    ran = []
    loop.call_soon(lambda: 1 / 0)
    loop.call_soon(ran.append, "after")
    run_soon_then_stop(loop)
    assert ran == ["after"]
    assert loop.run_until_complete(asyncio.sleep(0, "ok")) == "ok"


# --------------------------------------------------------------------------
# KeyboardInterrupt / SystemExit propagate, loop stays usable
# --------------------------------------------------------------------------


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exception_in_callback_propagates_from_run_forever(loop, exc_type):
    ran = []

    def interrupt():
        raise exc_type()

    loop.call_soon(ran.append, "before")
    loop.call_soon(interrupt)
    loop.call_soon(ran.append, "after")
    with pytest.raises(exc_type):
        loop.run_forever()
    assert ran == ["before"]
    assert not loop.is_running()
    assert asyncio._get_running_loop() is None
    # The callback queued after the interrupt still runs, exactly once.
    run_soon_then_stop(loop)
    assert ran == ["before", "after"]
    assert loop.run_until_complete(asyncio.sleep(0.001, "usable")) == "usable"


def test_keyboard_interrupt_in_callback_propagates_from_run_until_complete(loop):
    loop.call_later(0.001, lambda: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        loop.run_until_complete(asyncio.sleep(5))
    assert not loop.is_running()
    # Cancel the leftover sleep task, then the loop is still usable.
    for t in asyncio.all_tasks(loop):
        t.cancel()
    loop.run_until_complete(asyncio.sleep(0))
    assert loop.run_until_complete(asyncio.sleep(0, 1)) == 1


def test_keyboard_interrupt_in_done_callback_propagates(loop):
    def interrupt(fut):
        raise KeyboardInterrupt

    fut = loop.create_future()
    fut.add_done_callback(interrupt)
    loop.call_soon(fut.set_result, None)
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    assert not loop.is_running()
    assert loop.run_until_complete(asyncio.sleep(0, "ok")) == "ok"


def test_keyboard_interrupt_in_task_propagates(loop):
    async def interrupted():
        await asyncio.sleep(0)
        raise KeyboardInterrupt

    task = loop.create_task(interrupted())
    with pytest.raises(KeyboardInterrupt):
        loop.run_until_complete(task)
    assert task.done()
    assert isinstance(task.exception(), KeyboardInterrupt)
    assert not loop.is_running()
    assert loop.run_until_complete(asyncio.sleep(0, "ok")) == "ok"


def test_keyboard_interrupt_in_exception_handler_propagates(loop):
    def handler(lp, ctx):
        raise KeyboardInterrupt

    loop.set_exception_handler(handler)
    loop.call_soon(lambda: 1 / 0)
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    loop.set_exception_handler(None)
    assert loop.run_until_complete(asyncio.sleep(0, "ok")) == "ok"


# --------------------------------------------------------------------------
# Objects reported when collected
# --------------------------------------------------------------------------


def _collect_contexts(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    return contexts


def test_task_destroyed_but_pending_reported(loop):
    contexts = _collect_contexts(loop)

    async def forever():
        await loop.create_future()

    task = loop.create_task(forever())
    run_soon_then_stop(loop)
    assert not task.done()
    task_id = id(task)
    del task
    gc.collect()
    msgs = [c["message"] for c in contexts]
    assert msgs == ["Task was destroyed but it is pending!"]
    assert id(contexts[0]["task"]) == task_id  # the very task, resurrected
    assert contexts[0]["task"].get_coro().__qualname__.endswith("forever")
    contexts.clear()


def test_task_destroyed_pending_not_reported_when_done(loop):
    contexts = _collect_contexts(loop)

    async def quick():
        return 1

    task = loop.create_task(quick())
    loop.run_until_complete(task)
    del task
    gc.collect()
    assert contexts == []


def test_future_exception_never_retrieved_reported(loop):
    contexts = _collect_contexts(loop)
    exc = Boom("lost")
    fut = loop.create_future()
    fut.set_exception(exc)
    del fut
    gc.collect()
    assert len(contexts) == 1
    ctx = contexts[0]
    assert ctx["message"] == "Future exception was never retrieved"
    assert ctx["exception"] is exc
    assert "future" in ctx


def test_future_exception_retrieved_not_reported(loop):
    contexts = _collect_contexts(loop)
    fut = loop.create_future()
    fut.set_exception(Boom("seen"))
    assert isinstance(fut.exception(), Boom)
    del fut
    gc.collect()
    assert contexts == []


def test_task_exception_never_retrieved_reported(loop):
    contexts = _collect_contexts(loop)
    exc = Boom("task lost")

    async def fail():
        raise exc

    task = loop.create_task(fail())
    run_soon_then_stop(loop)
    assert task.done()
    del task
    gc.collect()
    assert [c["message"] for c in contexts] == ["Task exception was never retrieved"]
    assert contexts[0]["exception"] is exc
    contexts.clear()


def test_never_retrieved_reports_in_bulk(loop):
    contexts = _collect_contexts(loop)
    futs = [loop.create_future() for _ in range(1000)]
    for i, f in enumerate(futs):
        f.set_exception(Boom(i))
    del futs, f
    gc.collect()
    assert sorted(c["exception"].args[0] for c in contexts) == list(range(1000))
    assert {c["message"] for c in contexts} == {"Future exception was never retrieved"}


def test_a_panic_in_the_finalizer_guard_reaches_unraisablehook(monkeypatch):
    # The tp_finalize of Future and Task runs under a guard that cannot let
    # anything propagate; a Rust panic there (a bug) must still be seen.
    # The self-test runs the real guard with a closure that panics.
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    marker = object()
    _ferroloop._finalizer_guard_selftest(marker)
    assert len(seen) == 1
    assert type(seen[0].exc_value).__name__ == "PanicException"
    assert "panic in ferroloop finalizer: self-test" in str(seen[0].exc_value)
    assert seen[0].object is marker


def test_a_pending_task_costs_the_collector_two_objects():
    # What the cyclic GC must walk for each task blocked on a future: the
    # Task and its coroutine. The task's own context (asyncio semantics:
    # each task runs in a copy of the context it was created in) is
    # untracked while the task alone holds it (the task reports what it
    # references), and the await adds nothing: the future is its own await
    # iterator. asyncio's loop adds the Context, the await's FutureIter, the
    # bound __wakeup method, its args tuple and the weak reference of its
    # task WeakSet (7 in all). A change that makes a task carry more
    # tracked objects shows up here.
    n = 2000
    loop = ferroloop.new_event_loop()
    try:
        async def leaf(f):
            await f

        async def main():
            f = loop.create_future()
            gc.collect()
            before = collections.Counter(type(o).__name__ for o in gc.get_objects())
            tasks = [loop.create_task(leaf(f)) for _ in range(n)]
            await asyncio.sleep(0)
            after = collections.Counter(type(o).__name__ for o in gc.get_objects())
            f.set_result(None)
            await asyncio.gather(*tasks)
            return {k: after[k] - before[k] for k in after if after[k] - before[k] >= n // 2}

        grown = loop.run_until_complete(main())
    finally:
        loop.close()
    assert grown == {"Task": n, "coroutine": n}


_COLLECT_DURING_ALLOCATION = r"""
import asyncio, gc, sys
import ferroloop

class MyTask(asyncio.Task):
    pass

class MyFuture(asyncio.Future):
    pass

async def leaf(i):
    await asyncio.sleep(0)
    return i

async def main():
    loop = asyncio.get_running_loop()
    total = 0
    for i in range(300):
        f = loop.create_future()
        loop.call_soon(f.set_result, i)
        total += await f
        total += await loop.create_task(leaf(i))
        total += await ferroloop.Task(leaf(i), loop=loop)
        total += await MyTask(leaf(i), loop=loop)
        mf = MyFuture(loop=loop)
        loop.call_later(0, mf.set_result, i)
        total += await mf
        total += sum(await asyncio.gather(leaf(i), leaf(i)))
    return total

# A collection at every tracked allocation: it runs while PyO3 is between
# allocating an object (already tracked, its Rust fields still zeroed) and
# writing its contents, and must find nothing there to misread.
gc.set_threshold(1, 1, 1)
n = ferroloop.run(main())
gc.set_threshold(700, 10, 10)
assert n == 7 * sum(range(300)), n
print("ok")
"""


def test_a_collection_during_any_allocation_finds_nothing_to_misread():
    # In a child process, so that a crash is a failed test with its output,
    # not a lost test run.
    import subprocess

    proc = subprocess.run([sys.executable, "-c", _COLLECT_DURING_ALLOCATION], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", (proc.returncode, proc.stdout[-2000:], proc.stderr[-4000:])
