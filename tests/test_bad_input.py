"""Bad input: ferroloop raises what stdlib asyncio raises.

Most tests are parametrized over both loops (``asyncio.new_event_loop`` and
``ferroloop.new_event_loop``) and assert the same exception type and message
on each, so a pass on both proves parity.  ``outcome()`` runs one action on a
fresh loop and returns ``(exception type, message)``; the ``parity`` tests
compare the two loops' outcomes directly, so the expected message is the one
the stdlib produces on this Python, not a string written down here.
"""

import asyncio
import decimal
import socket
import sys
import threading
import types

import pytest

import ferroloop

LOOPS = [
    pytest.param(asyncio.new_event_loop, id="asyncio"),
    pytest.param(ferroloop.new_event_loop, id="ferroloop"),
]

CLOSED = "Event loop is closed"
RUNNING = "This event loop is already running"


def future_cls(loop):
    return ferroloop.Future if isinstance(loop, ferroloop.Loop) else asyncio.Future


def task_cls(loop):
    return ferroloop.Task if isinstance(loop, ferroloop.Loop) else asyncio.Task


# The `loop` (both loops) and `ferro_loop` fixtures are in tests/conftest.py.


async def _noop():
    return None


def outcome(make_loop, action, debug=False):
    """Run ``action(loop)`` on a fresh loop; return (exc type, str(exc)) or
    ("ok", None) when nothing was raised."""
    lp = make_loop()
    lp.set_debug(debug)
    try:
        action(lp)
    except BaseException as e:  # noqa: BLE001 - we compare whatever is raised
        return type(e), str(e)
    finally:
        if not lp.is_closed():
            lp.close()
    return "ok", None


def assert_parity(action, expected_type, debug=False, message=None):
    """Both loops raise ``expected_type`` with identical messages."""
    std = outcome(asyncio.new_event_loop, action, debug)
    fer = outcome(ferroloop.new_event_loop, action, debug)
    assert std[0] is expected_type, f"stdlib raised {std!r}; the test premise is wrong"
    if message is not None:
        assert std[1] == message
    assert fer == std


# --------------------------------------------------------------------------
# Non-callable callbacks
# --------------------------------------------------------------------------

SCHEDULERS = {
    "call_soon": lambda lp, cb: lp.call_soon(cb),
    "call_later": lambda lp, cb: lp.call_later(10, cb),
    "call_at": lambda lp, cb: lp.call_at(lp.time() + 10, cb),
    "call_soon_threadsafe": lambda lp, cb: lp.call_soon_threadsafe(cb),
}

NOT_CALLABLE = [1, "not callable", None, object()]


@pytest.mark.parametrize("method", sorted(SCHEDULERS))
@pytest.mark.parametrize("bad", NOT_CALLABLE, ids=lambda v: type(v).__name__)
def test_ferroloop_rejects_non_callable_always(ferro_loop, method, bad):
    # asyncio only validates in debug mode; ferroloop validates always.
    assert not ferro_loop.get_debug()
    with pytest.raises(TypeError, match=r"^a callable object was expected by \w+\(\), got "):
        SCHEDULERS[method](ferro_loop, bad)
    # Nothing was queued.
    assert ferro_loop._ready_count == 0
    assert ferro_loop._timer_count == 0


@pytest.mark.parametrize("method", sorted(SCHEDULERS))
@pytest.mark.parametrize("bad", [1, "not callable", None], ids=lambda v: type(v).__name__)
def test_non_callable_debug_mode_parity(method, bad):
    assert_parity(lambda lp: SCHEDULERS[method](lp, bad), TypeError, debug=True)


def test_non_callable_debug_mode_message(loop):
    loop.set_debug(True)
    with pytest.raises(TypeError) as ei:
        loop.call_soon(42)
    assert str(ei.value) == "a callable object was expected by call_soon(), got 42"


# --------------------------------------------------------------------------
# Coroutines where a callback is expected
# --------------------------------------------------------------------------


@pytest.mark.parametrize("method", sorted(SCHEDULERS))
def test_ferroloop_rejects_coroutine_object_always(ferro_loop, method):
    coro = _noop()
    try:
        with pytest.raises(TypeError, match=r"^coroutines cannot be used with \w+\(\)$"):
            SCHEDULERS[method](ferro_loop, coro)
    finally:
        coro.close()
    assert ferro_loop._ready_count == 0
    assert ferro_loop._timer_count == 0


@pytest.mark.parametrize("method", sorted(SCHEDULERS))
def test_coroutine_object_debug_mode_parity(method):
    def action(lp):
        coro = _noop()
        try:
            SCHEDULERS[method](lp, coro)
        finally:
            coro.close()

    assert_parity(action, TypeError, debug=True)


@pytest.mark.parametrize("method", sorted(SCHEDULERS))
def test_coroutine_function_debug_mode_parity(method):
    assert_parity(lambda lp: SCHEDULERS[method](lp, _noop), TypeError, debug=True)


def test_call_soon_coroutine_message(loop):
    loop.set_debug(True)
    coro = _noop()
    try:
        with pytest.raises(TypeError) as ei:
            loop.call_soon(coro)
    finally:
        coro.close()
    assert str(ei.value) == "coroutines cannot be used with call_soon()"


# --------------------------------------------------------------------------
# Delays and deadlines
# --------------------------------------------------------------------------


class _FloatLike:
    """Has __float__ but does not support float + x."""

    def __float__(self):
        return 1.0


BAD_DELAYS = ["1", b"1", [], (), {}, object(), decimal.Decimal("0.5"), _FloatLike()]


@pytest.mark.parametrize("delay", BAD_DELAYS, ids=lambda v: type(v).__name__)
def test_call_later_wrong_type_delay(loop, delay):
    with pytest.raises(TypeError):
        loop.call_later(delay, lambda: None)
    assert len(getattr(loop, "_scheduled", ())) == 0
    if isinstance(loop, ferroloop.Loop):
        assert loop._timer_count == 0


@pytest.mark.parametrize("delay", BAD_DELAYS, ids=lambda v: type(v).__name__)
def test_call_later_wrong_type_delay_parity(delay):
    assert_parity(lambda lp: lp.call_later(delay, lambda: None), TypeError)


def test_call_later_delay_none(loop):
    with pytest.raises(TypeError) as ei:
        loop.call_later(None, lambda: None)
    assert str(ei.value) == "delay must not be None"


def test_call_at_when_none(loop):
    with pytest.raises(TypeError) as ei:
        loop.call_at(None, lambda: None)
    assert str(ei.value) == "when cannot be None"


def test_call_later_delay_none_parity():
    assert_parity(lambda lp: lp.call_later(None, print), TypeError, message="delay must not be None")


def test_call_at_when_none_parity():
    assert_parity(lambda lp: lp.call_at(None, print), TypeError, message="when cannot be None")


@pytest.mark.parametrize("method", ["call_soon", "call_later", "call_at", "call_soon_threadsafe"])
def test_unexpected_keyword_argument(loop, method):
    args = {"call_soon": (), "call_soon_threadsafe": (), "call_later": (1,), "call_at": (1,)}[method]
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        getattr(loop, method)(*args, print, bogus=1)


def test_missing_callback(loop):
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'callback'"):
        loop.call_soon()


def test_bad_context_reported_like_asyncio():
    """context= that is not a Context: neither loop checks it up front; the
    failure when the handle runs is reported to the exception handler with
    the same exception type."""

    def action(lp):
        seen = []
        lp.set_exception_handler(lambda _l, ctx: seen.append(ctx))
        lp.call_soon(print, context=1)
        lp.call_soon(lp.stop)
        lp.run_forever()
        assert len(seen) == 1
        raise seen[0]["exception"]

    std = outcome(asyncio.new_event_loop, action)
    fer = outcome(ferroloop.new_event_loop, action)
    assert std[0] is AttributeError
    assert fer[0] is std[0], (std, fer)


# --------------------------------------------------------------------------
# Closed loop
# --------------------------------------------------------------------------


def _closed_create_task(lp):
    coro = _noop()
    try:
        lp.create_task(coro)
    finally:
        coro.close()


def _closed_run_until_complete(lp):
    coro = _noop()
    try:
        lp.run_until_complete(coro)
    finally:
        coro.close()


def _closed_task_ctor(lp):
    coro = _noop()
    try:
        task_cls(lp)(coro, loop=lp)
    finally:
        coro.close()


CLOSED_OPS = {
    "call_soon": lambda lp: lp.call_soon(print),
    "call_later": lambda lp: lp.call_later(1, print),
    "call_at": lambda lp: lp.call_at(lp.time() + 1, print),
    "call_soon_threadsafe": lambda lp: lp.call_soon_threadsafe(print),
    "create_task": _closed_create_task,
    "Task()": _closed_task_ctor,
    "run_until_complete": _closed_run_until_complete,
    "run_forever": lambda lp: lp.run_forever(),
    "run_in_executor": lambda lp: lp.run_in_executor(None, print),
}


@pytest.mark.parametrize("op", sorted(CLOSED_OPS))
def test_closed_loop_raises(loop, op):
    loop.close()
    with pytest.raises(RuntimeError) as ei:
        CLOSED_OPS[op](loop)
    assert str(ei.value) == CLOSED
    assert not loop.is_running()


@pytest.mark.parametrize("op", sorted(CLOSED_OPS))
def test_closed_loop_parity(op):
    def action(lp):
        lp.close()
        CLOSED_OPS[op](lp)

    assert_parity(action, RuntimeError, message=CLOSED)


def test_closed_loop_create_future_allowed(loop):
    # asyncio does not check for a closed loop in create_future().
    loop.close()
    fut = loop.create_future()
    assert not fut.done()
    assert fut.get_loop() is loop


def test_closed_loop_close_and_stop_are_noops(loop):
    loop.close()
    loop.close()
    loop.stop()
    assert loop.is_closed()


def test_closed_loop_set_result_with_callbacks(loop):
    fut = loop.create_future()
    fut.add_done_callback(lambda f: None)
    loop.close()
    with pytest.raises(RuntimeError) as ei:
        fut.set_result(1)
    assert str(ei.value) == CLOSED


def test_closed_loop_add_done_callback_to_done_future(loop):
    fut = loop.create_future()
    fut.set_result(1)
    loop.close()
    with pytest.raises(RuntimeError) as ei:
        fut.add_done_callback(lambda f: None)
    assert str(ei.value) == CLOSED


# --------------------------------------------------------------------------
# Running loop
# --------------------------------------------------------------------------


def test_run_until_complete_while_running(loop):
    async def main():
        coro = _noop()
        try:
            with pytest.raises(RuntimeError) as ei:
                loop.run_until_complete(coro)
        finally:
            coro.close()
        return str(ei.value)

    assert loop.run_until_complete(main()) == RUNNING
    # and the loop still works
    assert loop.run_until_complete(asyncio.sleep(0, "again")) == "again"


def test_run_forever_while_running(loop):
    async def main():
        with pytest.raises(RuntimeError) as ei:
            loop.run_forever()
        return str(ei.value)

    assert loop.run_until_complete(main()) == RUNNING
    assert not loop.is_running()
    assert loop.run_until_complete(asyncio.sleep(0, "again")) == "again"


def test_run_forever_while_running_from_callback(loop):
    errors = []

    def cb():
        try:
            loop.run_forever()
        except RuntimeError as e:
            errors.append(str(e))
        loop.stop()

    loop.call_soon(cb)
    loop.run_forever()
    assert errors == [RUNNING]


def test_close_running_loop(loop):
    async def main():
        with pytest.raises(RuntimeError) as ei:
            loop.close()
        return str(ei.value)

    assert loop.run_until_complete(main()) == "Cannot close a running event loop"
    assert not loop.is_closed()


def test_loop_stopped_before_future_completed(loop):
    async def main():
        loop.stop()
        await asyncio.sleep(10)

    coro = main()
    with pytest.raises(RuntimeError) as ei:
        loop.run_until_complete(coro)
    assert str(ei.value) == "Event loop stopped before Future completed."
    # Clean up the still pending task.
    for t in asyncio.all_tasks(loop):
        t.cancel()
    loop.run_until_complete(asyncio.sleep(0))


@pytest.mark.parametrize("bad", [1, None, "x"], ids=repr)
def test_run_until_complete_not_awaitable(loop, bad):
    with pytest.raises(TypeError) as ei:
        loop.run_until_complete(bad)
    assert str(ei.value) == "An asyncio.Future, a coroutine or an awaitable is required"


def test_run_coroutine_threadsafe_not_a_coroutine(loop):
    with pytest.raises(TypeError) as ei:
        asyncio.run_coroutine_threadsafe(1, loop)
    assert str(ei.value) == "A coroutine object is required"


def test_non_threadsafe_call_from_other_thread_debug_parity():
    def action(lp):
        lp.set_debug(True)
        box = []

        def other_thread():
            try:
                lp.call_soon(print)
            except BaseException as e:  # noqa: BLE001
                box.append(e)
            lp.call_soon_threadsafe(lp.stop)

        lp.call_soon(lambda: threading.Thread(target=other_thread).start())
        lp.run_forever()
        if box:
            raise box[0]

    std = outcome(asyncio.new_event_loop, action)
    fer = outcome(ferroloop.new_event_loop, action)
    assert std == (RuntimeError, "Non-thread-safe operation invoked on an event loop other than the current one")
    assert fer == std


# --------------------------------------------------------------------------
# Futures
# --------------------------------------------------------------------------


def test_set_result_twice(loop):
    fut = loop.create_future()
    fut.set_result(1)
    with pytest.raises(asyncio.InvalidStateError):
        fut.set_result(2)
    assert fut.result() == 1


def test_set_exception_after_result(loop):
    fut = loop.create_future()
    fut.set_result(1)
    with pytest.raises(asyncio.InvalidStateError):
        fut.set_exception(ValueError())
    assert fut.result() == 1


def test_set_result_after_cancel(loop):
    fut = loop.create_future()
    fut.cancel()
    with pytest.raises(asyncio.InvalidStateError):
        fut.set_result(1)
    assert fut.cancelled()


def _set_result_twice(lp):
    fut = lp.create_future()
    fut.set_result(1)
    fut.set_result(2)


def _set_exception_after_result(lp):
    fut = lp.create_future()
    fut.set_result(1)
    fut.set_exception(ValueError())


def _set_result_after_cancel(lp):
    fut = lp.create_future()
    fut.cancel()
    fut.set_result(1)


@pytest.mark.parametrize("action", [_set_result_twice, _set_exception_after_result, _set_result_after_cancel])
def test_invalid_state_message_parity(action):
    assert_parity(action, asyncio.InvalidStateError)


class _StopIterationSubclass(StopIteration):
    pass


@pytest.mark.parametrize(
    "exc", [StopIteration, StopIteration(), StopIteration("x"), _StopIterationSubclass()], ids=repr)
def test_set_exception_stop_iteration(loop, exc):
    msg = "StopIteration interacts badly with generators and cannot be raised into a Future"
    fut = loop.create_future()
    if sys.version_info >= (3, 13):
        # 3.13 stores a RuntimeError caused by it, for any StopIteration.
        fut.set_exception(exc)
        err = fut.exception()
        assert type(err) is RuntimeError and str(err) == msg
        assert type(err.__cause__) is (exc if isinstance(exc, type) else type(exc))
        assert err.__context__ is err.__cause__
        if not isinstance(exc, type):
            assert err.__cause__ is exc
    elif type(exc) is _StopIterationSubclass:
        # Before 3.13 only StopIteration itself is refused.
        fut.set_exception(exc)
        assert fut.exception() is exc
    else:
        with pytest.raises(TypeError) as ei:
            fut.set_exception(exc)
        assert str(ei.value) == msg
        assert not fut.done()


@pytest.mark.parametrize("bad", [1, "error", object(), int], ids=repr)
def test_set_exception_not_an_exception(loop, bad):
    fut = loop.create_future()
    with pytest.raises(TypeError) as ei:
        fut.set_exception(bad)
    assert str(ei.value) == "invalid exception object"
    assert not fut.done()


def test_set_exception_non_exception_class_is_not_instantiated(loop):
    constructed = []

    class NotAnException:
        def __init__(self):
            constructed.append(self)

    fut = loop.create_future()
    with pytest.raises(TypeError) as ei:
        fut.set_exception(NotAnException)
    assert str(ei.value) == "invalid exception object"
    assert constructed == []
    assert not fut.done()


def test_set_exception_class_whose_constructor_fails(loop):
    class NeedsArg(Exception):
        def __init__(self, arg):
            super().__init__(arg)

    fut = loop.create_future()
    with pytest.raises(TypeError, match="missing 1 required positional argument"):
        fut.set_exception(NeedsArg)
    assert not fut.done()


def test_result_of_pending_future(loop):
    fut = loop.create_future()
    with pytest.raises(asyncio.InvalidStateError):
        fut.result()
    with pytest.raises(asyncio.InvalidStateError):
        fut.exception()
    assert not fut.done()


def _pending_result(lp):
    lp.create_future().result()


def _pending_exception(lp):
    lp.create_future().exception()


def _pending_task_result(lp):
    t = lp.create_task(_noop())
    try:
        t.result()
    finally:
        lp.run_until_complete(t)


@pytest.mark.parametrize("action", [_pending_result, _pending_exception, _pending_task_result])
def test_pending_result_message_parity(action):
    assert_parity(action, asyncio.InvalidStateError)


@pytest.mark.parametrize("method", ["result", "exception"])
def test_cancelled_future_result_raises_cancelled(loop, method):
    fut = loop.create_future()
    fut.cancel("why")
    with pytest.raises(asyncio.CancelledError) as ei:
        getattr(fut, method)()
    assert ei.value.args == ("why",)


@pytest.mark.parametrize("method,args", [("result", ()), ("exception", ()), ("add_done_callback", (print,))])
def test_uninitialized_future_parity(method, args):
    def action(lp):
        cls = future_cls(lp)
        getattr(cls.__new__(cls), method)(*args)

    std = outcome(asyncio.new_event_loop, action)
    assert std[0] in (asyncio.InvalidStateError, RuntimeError)
    assert outcome(ferroloop.new_event_loop, action) == std


def test_await_wasnt_used_with_future(loop):
    fut = loop.create_future()
    it = fut.__await__()
    assert next(it) is fut
    with pytest.raises(RuntimeError) as ei:
        it.send(None)
    assert str(ei.value) == "await wasn't used with future"


# --------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------


@pytest.mark.parametrize("foreign", LOOPS)
def test_await_future_of_other_loop(loop, foreign):
    other = foreign()
    try:
        fut = other.create_future()

        async def main():
            await fut

        with pytest.raises(RuntimeError, match="attached to a different loop"):
            loop.run_until_complete(main())
        assert not fut.done()
    finally:
        other.close()


def test_await_future_of_other_loop_message_shape(loop):
    other = asyncio.new_event_loop()
    try:
        fut = other.create_future()

        async def main():
            await fut

        with pytest.raises(RuntimeError) as ei:
            loop.run_until_complete(main())
        msg = str(ei.value)
        assert msg.startswith("Task <Task pending name=")
        assert msg.endswith("got Future <Future pending> attached to a different loop")
    finally:
        other.close()


@pytest.mark.parametrize("bad", [1, None, "coro", _noop, lambda: None], ids=["int", "None", "str", "corofunc", "lambda"])
def test_task_of_non_coroutine(loop, bad):
    with pytest.raises(TypeError) as ei:
        task_cls(loop)(bad, loop=loop)
    assert str(ei.value) == f"a coroutine was expected, got {bad!r}"
    with pytest.raises(TypeError) as ei:
        loop.create_task(bad)
    assert str(ei.value) == f"a coroutine was expected, got {bad!r}"
    assert asyncio.all_tasks(loop) == set()


def test_task_set_result_and_set_exception(loop):
    task = loop.create_task(_noop())
    with pytest.raises(RuntimeError) as ei:
        task.set_result(1)
    assert str(ei.value) == "Task does not support set_result operation"
    with pytest.raises(RuntimeError) as ei:
        task.set_exception(ValueError())
    assert str(ei.value) == "Task does not support set_exception operation"
    assert loop.run_until_complete(task) is None


def test_task_awaits_itself(loop):
    async def main():
        await asyncio.current_task()

    with pytest.raises(RuntimeError, match="^Task cannot await on itself: <Task pending"):
        loop.run_until_complete(main())


def test_task_bad_yield(loop):
    @types.coroutine
    def bad():
        yield 1

    async def main():
        await bad()

    with pytest.raises(RuntimeError) as ei:
        loop.run_until_complete(main())
    assert str(ei.value) == "Task got bad yield: 1"


def test_task_yield_instead_of_yield_from(loop):
    fut = loop.create_future()

    @types.coroutine
    def bad():
        yield fut

    async def main():
        await bad()

    with pytest.raises(RuntimeError, match="^yield was used instead of yield from in task .* with <Future pending>$"):
        loop.run_until_complete(main())


def test_set_task_factory_not_callable(loop):
    with pytest.raises(TypeError) as ei:
        loop.set_task_factory(1)
    assert str(ei.value) == "task factory must be a callable or None"
    assert loop.get_task_factory() is None


def test_set_exception_handler_not_callable(loop):
    with pytest.raises(TypeError) as ei:
        loop.set_exception_handler(1)
    assert str(ei.value) == "A callable object or None is expected, got 1"
    assert loop.get_exception_handler() is None


# --- NaN deadlines ------------------------------------------------------------
# asyncio up to 3.12 treats a NaN timer as due at once. asyncio 3.13's
# _run_once lets the NaN through to the selector's timeout, so a NaN timer at
# the top of the heap raises ValueError out of run_forever; ferroloop keeps
# firing it at once (docs/DIFFERENCES.md). asyncio.sleep(nan) itself raises
# ValueError from 3.13 on, on every loop.


def _nan_crashes(loop):
    return sys.version_info >= (3, 13) and not isinstance(loop, ferroloop.Loop)


def test_sleep_nan(loop):
    # The earliest timer's NaN deadline made ferroloop's poll timeout NaN
    # (a Rust panic out of run_forever).
    async def main():
        return await asyncio.sleep(float("nan"), "r")

    if sys.version_info >= (3, 13):
        with pytest.raises(ValueError, match="Invalid delay: NaN"):
            loop.run_until_complete(main())
    else:
        assert loop.run_until_complete(main()) == "r"


def test_call_later_nan_as_the_earliest_timer(loop):
    events = []
    loop.call_later(float("nan"), events.append, "nan")
    loop.call_later(0.05, events.append, "later")
    loop.call_later(0.1, loop.stop)
    if _nan_crashes(loop):
        with pytest.raises(ValueError, match="NaN"):
            loop.run_forever()
    else:
        loop.run_forever()
        assert events == ["nan", "later"]


def test_call_later_nan_behind_other_timers(ferro_loop):
    # Not compared with asyncio: there a NaN timer below the top of the heap
    # waits until the timers above it happen to fire (it never compares as
    # earlier), so its turn depends on the heap's shape. ferroloop fires it
    # at once wherever it is.
    loop = ferro_loop
    events = []
    loop.call_later(0.05, events.append, "later")
    loop.call_later(float("nan"), events.append, "nan")
    loop.call_later(0.1, loop.stop)
    loop.run_forever()
    assert events == ["nan", "later"]


def test_call_at_nan_keeps_its_when(loop):
    h = loop.call_at(float("nan"), lambda: None)
    assert h.when() != h.when()  # NaN, as given
    h.cancel()


@pytest.mark.parametrize("how", ["timeout", "wait_for"])
def test_nan_timeout_times_out(loop, how):
    async def main():
        try:
            if how == "timeout":
                async with asyncio.timeout(float("nan")):
                    await asyncio.sleep(1)
            else:
                await asyncio.wait_for(asyncio.sleep(1), float("nan"))
            return "done"
        except TimeoutError:
            return "TimeoutError"

    if _nan_crashes(loop):
        with pytest.raises(ValueError, match="NaN"):
            loop.run_until_complete(main())
    else:
        assert loop.run_until_complete(main()) == "TimeoutError"


def test_remove_done_callback_whose_eq_resolves_the_future(loop):
    # __eq__ runs during the scan; if it resolves the future, every
    # registered callback must still run (an awaiting Task's wake-up too).
    state = {}

    class Resolver:
        def __call__(self, f):
            pass

        def __eq__(self, other):
            if not state["fut"].done():
                state["fut"].set_result("value")
            return False

        __hash__ = object.__hash__

    async def main():
        fut = state["fut"] = loop.create_future()
        fut.add_done_callback(Resolver())
        log = []
        fut.add_done_callback(lambda _: log.append("plain"))

        async def waiter():
            return await fut

        t = loop.create_task(waiter())
        await asyncio.sleep(0)
        fut.remove_done_callback(Resolver())
        done, _ = await asyncio.wait([t], timeout=2)
        return (t.result() if done else "hung"), log

    assert loop.run_until_complete(main()) == ("value", ["plain"])


def test_remove_done_callback_eq_error_keeps_callbacks(loop):
    class Boom:
        def __call__(self, f):
            pass

        def __eq__(self, other):
            raise ZeroDivisionError

        __hash__ = object.__hash__

    fut = loop.create_future()
    ran = []
    fut.add_done_callback(Boom())
    fut.add_done_callback(ran.append)
    with pytest.raises(ZeroDivisionError):
        fut.remove_done_callback(ran.append)
    fut.set_result(1)
    loop.run_until_complete(asyncio.sleep(0))
    assert ran == [fut]


def test_set_debug_keeps_the_value_given(loop):
    loop.set_debug("yes")
    assert loop.get_debug() == "yes"
    loop.set_debug(0)
    assert loop.get_debug() == 0
    loop.set_debug(False)


@pytest.mark.parametrize("when", [10**400, -(10**400)])
def test_call_at_int_beyond_float_range(loop, when):
    fired = []
    h = loop.call_at(when, fired.append, 1)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert fired == ([1] if when < 0 else [])
    h.cancel()


class _HugeFileno:
    def fileno(self):
        return 10**10


@pytest.mark.parametrize("fd", [10**10, _HugeFileno(), -(10**10)], ids=["huge", "huge_fileno", "negative_huge"])
def test_add_reader_descriptor_out_of_c_range(loop, fd):
    with pytest.raises((ValueError, OverflowError)) as ei:
        loop.add_reader(fd, print)
    if fd == -(10**10):
        assert (ei.type, str(ei.value)) == (ValueError, "Invalid file descriptor: -10000000000")
    else:
        assert (ei.type, str(ei.value)) == (OverflowError, "Python int too large to convert to C int")


@pytest.mark.parametrize("fd", [2**64, 10**400, _HugeFileno()], ids=["2**64", "10**400", "huge_fileno"])
@pytest.mark.parametrize("method", ["remove_reader", "remove_writer"])
def test_remove_descriptor_out_of_c_range_is_not_registered(loop, method, fd):
    # asyncio's selector holds Python ints: it does not find the descriptor.
    assert getattr(loop, method)(fd) is False


@pytest.mark.parametrize("n", [2**62, 2**63, -1], ids=["2**62", "2**63", "-1"])
def test_sock_recv_size_python_cannot_allocate_or_take(n):
    # socket.recv allocates its n bytes up front (MemoryError), takes a
    # Py_ssize_t (OverflowError) and refuses negatives (ValueError), even
    # when data is waiting.
    def action(lp):
        a, b = socket.socketpair()
        try:
            a.setblocking(False)
            b.send(b"hello")
            lp.run_until_complete(lp.sock_recv(a, n))
        finally:
            a.close()
            b.close()

    std = outcome(asyncio.new_event_loop, action)
    assert std[0] in (MemoryError, OverflowError, ValueError), std
    assert outcome(ferroloop.new_event_loop, action) == std


@pytest.mark.parametrize("buffered", [False, True], ids=["nothing_buffered", "data_buffered"])
def test_write_of_non_contiguous_memoryview(loop, buffered):
    # asyncio passes the view to socket.send(), which refuses it: a fatal
    # write error with BufferError (3.11 refuses it in write() itself when
    # data is already buffered).
    async def main():
        lost = loop.create_future()

        class P(asyncio.Protocol):
            def connection_lost(self, exc):
                lost.set_result(exc)

        a, b = socket.socketpair()
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        loop.set_exception_handler(lambda *args: None)
        tr, _ = await loop.connect_accepted_socket(P, a)
        try:
            if buffered:
                tr.write(b"x" * 1_000_000)
            try:
                tr.write(memoryview(b"abcdef")[::2])
                raised = None
            except TypeError as e:
                raised = str(e)
            got = b""
            b.setblocking(False)
            for _ in range(100):
                await asyncio.sleep(0.005)
                try:
                    got += b.recv(1 << 20)
                except BlockingIOError:
                    if lost.done() or raised:
                        break
            exc = lost.result() if lost.done() else None
            return raised, type(exc), str(exc) if exc else None, got.endswith(b"ace")
        finally:
            tr.close()
            b.close()
            await asyncio.sleep(0)

    raised, exc_type, msg, sent = loop.run_until_complete(main())
    assert not sent
    if buffered and sys.version_info < (3, 12):
        assert (raised, exc_type) == ("can't set bytearray slice from memoryview", type(None))
    else:
        assert (raised, exc_type, msg) == (None, BufferError, "memoryview: underlying buffer is not C-contiguous")


@pytest.mark.parametrize("method", ["call_soon", "call_soon_threadsafe", "call_later", "call_at"])
def test_scheduling_with_keyword_arguments_for_the_callback(method):
    def action(lp):
        first = () if method.startswith("call_soon") else (1,)
        getattr(lp, method)(*first, print, "x", sep="", foo=1)

    # Same type and words but for the class named (PyO3 parses the native
    # method's arguments; see DIFFERENCES.md).
    std = outcome(asyncio.new_event_loop, action)
    fer = outcome(ferroloop.new_event_loop, action)
    assert std[0] is fer[0] is TypeError
    assert std[1].startswith("BaseEventLoop.") and fer[1].split(".", 1)[1] == std[1].split(".", 1)[1], (std, fer)


@pytest.mark.parametrize(
    "call",
    [
        lambda lp: lp.set_debug(),
        lambda lp: lp.set_debug(True, False),
        lambda lp: lp.run_in_executor(),
        lambda lp: lp.add_signal_handler(foo=1),
        lambda lp: lp.sock_recv(None),
        lambda lp: lp.sock_sendall(None, b"", flags=0),
        lambda lp: lp.sock_connect(),
        lambda lp: lp.getaddrinfo(),
        lambda lp: lp.start_tls(None),
        lambda lp: lp.close(1),
        lambda lp: lp.run_forever(1),
    ],
    ids=["set_debug()", "set_debug(2)", "run_in_executor()", "add_signal_handler(foo)", "sock_recv(1)",
         "sock_sendall(flags)", "sock_connect()", "getaddrinfo()", "start_tls(1)", "close(1)", "run_forever(1)"],
)
def test_python_level_methods_word_argument_errors_as_asyncio(call):
    # The message names the function's __qualname__: asyncio's defining class.
    std = outcome(asyncio.new_event_loop, call)
    assert std[0] is TypeError, std
    assert outcome(ferroloop.new_event_loop, call) == std


def test_future_positional_argument(loop):
    with pytest.raises(TypeError) as ei:
        future_cls(loop)(loop)
    assert str(ei.value) == "Future() takes no positional arguments"


@pytest.mark.parametrize("attr", ["_asyncio_future_blocking", "_log_traceback", "_cancel_message"])
def test_deleting_settable_future_attributes(loop, attr):
    fut = future_cls(loop)(loop=loop)
    with pytest.raises(AttributeError) as ei:
        delattr(fut, attr)
    assert str(ei.value) == "cannot delete attribute"


def test_deleting_task_log_destroy_pending(loop):
    task = task_cls(loop)(_noop(), loop=loop)
    with pytest.raises(AttributeError) as ei:
        del task._log_destroy_pending
    assert str(ei.value) == "cannot delete attribute"
    loop.run_until_complete(task)


def test_future_blocking_set_to_none_is_false(loop):
    # A falsy value, as any other: only deletion is refused.
    fut = future_cls(loop)(loop=loop)
    fut._asyncio_future_blocking = None
    assert fut._asyncio_future_blocking is False


def test_remove_done_callback_compares_an_awaiting_tasks_wakeup(loop):
    # asyncio compares every entry of the list with the callback given,
    # an awaiting Task's wake-up included: an `__eq__` that resolves the
    # future there wakes the task. (ferroloop's native wake-up entry was
    # skipped: the future stayed pending and the task hung.)
    fut = loop.create_future()

    class EqResolves:
        def __call__(self, f):
            pass

        def __eq__(self, other):
            if not fut.done():
                fut.set_result("by-eq")
            return self is other

        __hash__ = object.__hash__

    async def waiter():
        return await fut

    async def main():
        task = loop.create_task(waiter())
        await asyncio.sleep(0)
        removed = fut.remove_done_callback(EqResolves())
        return removed, await asyncio.wait_for(task, 1)

    assert loop.run_until_complete(main()) == (0, "by-eq")


def test_remove_done_callback_removes_an_awaiting_tasks_wakeup(loop):
    # Given the task's own wake-up, asyncio removes it (the task is then
    # never woken by this future); likewise here.
    fut = loop.create_future()

    async def waiter():
        return await fut

    async def main():
        task = loop.create_task(waiter())
        await asyncio.sleep(0)
        (wakeup, _ctx), = fut._callbacks
        removed = fut.remove_done_callback(wakeup)
        fut.set_result(1)
        await asyncio.sleep(0)
        done = task.done()
        task.cancel()
        return removed, done

    assert loop.run_until_complete(main()) == (1, False)


def _reentrant_remove_scenario(loop, n_before, action, n_after, drop_first):
    """remove_done_callback(obj) where obj's __eq__ does ``action`` when
    compared; returns the count, the callbacks left and those that ran."""
    fut = loop.create_future()
    ran = []

    def make(i):
        def cb(f):
            ran.append(i)
        return cb

    class Hostile:
        calls = 0

        def __call__(self, f):
            ran.append("hostile")

        def __eq__(self, other):
            Hostile.calls += 1
            if Hostile.calls == 1:
                if action == "resolve":
                    fut.set_result(None)
                elif action == "add":
                    fut.add_done_callback(make("added"))
                elif action == "remove_self":
                    fut.remove_done_callback(self)
                elif action == "cancel":
                    fut.cancel()
            return self is other

        __hash__ = object.__hash__

    hostile = Hostile()
    first = make("first")
    fut.add_done_callback(first)
    if drop_first:  # empties the first-callback slot, the rest stays in the list
        pass
    for i in range(n_before):
        fut.add_done_callback(make(i))
    fut.add_done_callback(hostile)
    for i in range(n_after):
        fut.add_done_callback(make(10 + i))
    if drop_first:
        fut.remove_done_callback(first)
    count = fut.remove_done_callback(hostile)
    left = len(fut._callbacks or ())
    if not fut.done():
        fut.set_result(None)
    loop.run_until_complete(asyncio.sleep(0))
    return count, left, ran


@pytest.mark.parametrize("action", ["resolve", "add", "remove_self", "cancel", "none"])
@pytest.mark.parametrize("n_before,n_after", [(0, 0), (0, 2), (2, 0), (3, 3)])
@pytest.mark.parametrize("drop_first", [False, True], ids=["slot_kept", "slot_emptied"])
def test_remove_done_callback_reentrant_counts_as_asyncio(action, n_before, n_after, drop_first):
    # The count returned, the callbacks left and those run, when the
    # callback's __eq__ re-enters the future during the search: the C
    # Future's (its first-callback slot included).
    def run(make_loop):
        lp = make_loop()
        try:
            return _reentrant_remove_scenario(lp, n_before, action, n_after, drop_first)
        finally:
            lp.close()

    assert run(ferroloop.new_event_loop) == run(asyncio.new_event_loop)


@pytest.mark.parametrize(
    "call",
    [
        lambda lp, c: lp.create_task(),
        lambda lp, c: lp.create_task(c, 1),
        lambda lp, c: lp.create_task(c, coro=c),
        lambda lp, c: lp.create_task(c, 1, 2, name="x"),
        lambda lp, c: lp.create_task(**{"name": "x"}),
        lambda lp, c: lp.create_task(c, 1, coro=c),
        lambda lp, c: lp.create_task(c, 1, name="x", context=None),
    ],
    ids=["no-coro", "extra-positional", "coro-twice", "two-extra", "name-only", "twice-and-extra", "extra-and-two-keywords"],
)
def test_create_task_argument_errors_are_asyncios(call):
    # create_task has its own fastcall entry point (aio/fastcall.rs), whose
    # argument errors must read as asyncio's Python method's do.
    outcomes = []
    for new_loop in (asyncio.new_event_loop, ferroloop.new_event_loop):
        lp = new_loop()

        async def c():
            pass

        coro = c()
        try:
            with pytest.raises(TypeError) as ei:
                call(lp, coro)
            outcomes.append(str(ei.value))
        finally:
            coro.close()
            lp.close()
    assert outcomes[1] == outcomes[0]


def test_create_task_keywords_reach_the_task():
    # The fastcall entry point sorts name/context/eager_start from the
    # keyword names CPython hands it.
    import contextvars

    lp = ferroloop.new_event_loop()
    try:
        var = contextvars.ContextVar("v")
        ctx = contextvars.copy_context()
        ctx.run(var.set, "in ctx")

        async def c():
            return var.get("unset")

        t = lp.create_task(c(), context=ctx, name="named")
        assert t.get_name() == "named"
        assert lp.run_until_complete(t) == "in ctx"
        t = lp.create_task(coro=c(), name=None)
        assert t.get_name().startswith("Task-")
        assert lp.run_until_complete(t) == "unset"
    finally:
        lp.close()
