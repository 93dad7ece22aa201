"""The parts of asyncio's private API that ferroloop calls or borrows, held
to the running interpreter's asyncio.

ferroloop binds some of asyncio's own functions onto its loop, calls private
hooks of asyncio's classes (``Server._attach``...) and its Rust half looks
up private helpers at import. When a new Python changes one of them, the
test here that names it fails, instead of a user finding out (as 3.13's
``Server._attach(transport)`` showed: every TCP server hung).
"""

import asyncio
import dis
import inspect
import sys
from asyncio import base_events, base_futures, base_tasks, format_helpers, selector_events, tasks, unix_events

import pytest

import ferroloop
from ferroloop import _loop, _transports

PY = sys.version_info[:2]


def _params(func):
    return list(inspect.signature(func).parameters)


def _borrowed():
    for cls, names in (
        (base_events.BaseEventLoop, _loop._BORROWED_BASE),
        (selector_events.BaseSelectorEventLoop, _loop._BORROWED_SELECTOR),
        (unix_events._UnixSelectorEventLoop, _loop._BORROWED_UNIX),
    ):
        for name in names:
            yield cls, name
    yield from _loop._WRAPPED


def _self_attributes(code):
    """Attribute names a function reads or writes on ``self`` (nested
    functions and comprehensions included)."""
    found = set()
    ins = list(dis.get_instructions(code))
    for a, b in zip(ins, ins[1:]):
        loads_self = a.opname in ("LOAD_FAST", "LOAD_FAST_CHECK", "LOAD_DEREF", "LOAD_CLOSURE") and a.argval == "self"
        # 3.13 fuses two loads into one instruction.
        loads_self = loads_self or (a.opname == "LOAD_FAST_LOAD_FAST" and a.argval[-1] == "self")
        if loads_self and b.opname in ("LOAD_ATTR", "LOAD_METHOD", "STORE_ATTR"):
            found.add(b.argval)
    for const in code.co_consts:
        if inspect.iscode(const):
            found |= _self_attributes(const)
    return found


@pytest.mark.parametrize("cls,name", list(_borrowed()), ids=lambda x: getattr(x, "__name__", x))
def test_borrowed_function_exists_and_needs_no_super(cls, name):
    func = getattr(cls, name)
    if (cls, name) in _loop._WRAPPED:
        assert name in vars(ferroloop.Loop)  # ferroloop's method calls it
    else:
        assert getattr(ferroloop.Loop, name) is func
    code = getattr(func, "__code__", None)
    if code is not None:
        # A function using zero-argument super() only works on instances of
        # its own class, which a ferroloop Loop is not.
        assert "__class__" not in code.co_freevars, f"{cls.__name__}.{name} uses super()"


def test_every_attribute_borrowed_functions_use_exists_on_loop():
    loop = ferroloop.new_event_loop()
    try:
        missing = {}
        for cls, name in _borrowed():
            code = getattr(getattr(cls, name), "__code__", None)
            if code is None:
                continue
            for attr in _self_attributes(code):
                if not hasattr(loop, attr):
                    missing.setdefault(attr, []).append(f"{cls.__name__}.{name}")
        assert not missing, f"asyncio {PY} functions borrowed by ferroloop read these on self: {missing}"
    finally:
        loop.close()


def test_server_attach_detach_signature():
    # ferroloop's native transport calls these on asyncio's Server.
    expected = ["self", "transport"] if _transports.SERVER_TRACKS_CLIENTS else ["self"]
    assert _params(base_events.Server._attach) == expected
    assert _params(base_events.Server._detach) == expected
    assert _transports.SERVER_TRACKS_CLIENTS == (PY >= (3, 13))
    assert hasattr(base_events.Server, "close_clients") == (PY >= (3, 13))


def test_stop_serving_and_start_serving_signatures():
    assert _params(selector_events.BaseSelectorEventLoop._stop_serving) == ["self", "sock"]
    assert _params(selector_events.BaseSelectorEventLoop._start_serving) == [
        "self", "protocol_factory", "sock", "sslcontext", "server", "backlog",
        "ssl_handshake_timeout", "ssl_shutdown_timeout",
    ]
    # asyncio 3.13's Unix loop keeps the inodes of cleanup_socket servers;
    # ferroloop's _stop_serving re-implements the cleanup (asyncio's uses
    # super()), so it has to know where that state lives.
    asyncio_loop = unix_events._UnixSelectorEventLoop()
    try:
        assert hasattr(asyncio_loop, "_unix_server_sockets") == (PY >= (3, 13))
    finally:
        asyncio_loop.close()
    loop = ferroloop.new_event_loop()
    try:
        assert hasattr(loop, "_unix_server_sockets") == (PY >= (3, 13))
        if PY >= (3, 13):
            assert "__class__" in unix_events._UnixSelectorEventLoop._stop_serving.__code__.co_freevars
            assert "_stop_serving" in vars(ferroloop.Loop)
    finally:
        loop.close()


def test_task_registry_target_exists():
    name = _loop._ALL_TASKS_SET.get(PY)
    if PY <= (3, 13):
        assert name is not None
    if name is not None:
        assert isinstance(getattr(tasks, name), _loop._AllTasksView)
        src = inspect.getsource(tasks.all_tasks)
        assert name in src, f"all_tasks() of {PY} no longer reads tasks.{name}"


def test_helpers_the_native_core_imports():
    # crates/ferroloop-py/src/imports.rs looks these up once, by name.
    assert isinstance(tasks._current_tasks, dict)
    assert callable(tasks._register_task)
    assert _params(base_futures._future_repr_info) == ["future"]
    assert _params(base_tasks._task_repr_info) == ["task"]
    assert _params(base_tasks._task_get_stack) == ["task", "limit"]
    assert _params(base_tasks._task_print_stack) == ["task", "limit", "file"]
    assert _params(format_helpers.extract_stack) == ["f", "limit"]
    assert _params(format_helpers._format_callback_source)[:2] == ["func", "args"]


async def _echo_once(loop):
    async def handle(reader, writer):
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"ping\n")
    line = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()
    return line


def test_server_hands_connections_to_the_protocol(loop):
    # 3.13's Server._attach(transport): a mismatch made every server hang.
    assert loop.run_until_complete(asyncio.wait_for(_echo_once(loop), 10)) == b"ping\n"


@pytest.mark.skipif(PY < (3, 13), reason="Server.close_clients()/abort_clients() are new in 3.13")
@pytest.mark.parametrize("method", ["close_clients", "abort_clients"])
def test_server_close_clients_closes_accepted_transports(loop, method):
    async def main():
        accepted = []
        lost = loop.create_future()

        class P(asyncio.Protocol):
            def connection_made(self, tr):
                accepted.append(tr)

            def connection_lost(self, exc):
                lost.set_result(type(exc))

        server = await loop.create_server(P, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while not accepted:
            await asyncio.sleep(0.01)
        server.close()
        getattr(server, method)()
        assert await asyncio.wait_for(lost, 5) is type(None)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        await asyncio.wait_for(server.wait_closed(), 5)
        assert accepted[0].is_closing()
        writer.close()
        await writer.wait_closed()

    loop.run_until_complete(main())



def _current_task_conflict(new_loop, when):
    """A task step meeting someone else's entry in asyncio's `_current_tasks`:
    at its entry (`when="enter"`) or at its exit. Returns what the exception
    handler and the dict showed."""
    loop = new_loop()
    seen = []
    loop.set_exception_handler(lambda lp, ctx: seen.append(repr(ctx.get("exception"))))
    stranger = "stranger"

    async def victim():
        if when == "exit":
            tasks._current_tasks[loop] = stranger
        return 1

    def squat():
        tasks._current_tasks[loop] = stranger

    def look():
        seen.append(tasks._current_tasks.pop(loop, "absent"))
        loop.stop()

    try:
        if when == "enter":
            loop.call_soon(squat)
        t = loop.create_task(victim(), name="victim")
        loop.call_soon(look)
        loop.run_forever()
        state = t.done() and t.result()
        if not t.done():
            t.get_coro().close()
        # A copy: the pending task, dropped later, logs its destruction.
        return list(seen), state
    finally:
        tasks._current_tasks.pop(loop, None)
        loop.close()


@pytest.mark.parametrize("when", ["enter", "exit"])
def test_a_step_meeting_another_current_task_fails_as_on_asyncio(when):
    # ferroloop enters and leaves with one dict operation each (setdefault,
    # pop) where asyncio uses two; the refusals, their messages and the
    # entry left in the dict must be asyncio's.
    expected = _current_task_conflict(asyncio.new_event_loop, when)
    assert expected[0], "the scenario raised nothing on asyncio"
    assert _current_task_conflict(ferroloop.new_event_loop, when) == expected
