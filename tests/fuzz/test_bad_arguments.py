"""Differential fuzzer: bad arguments to every public method.

Each example calls one public method of the loop, a Future, a Task or a
Handle with arguments drawn from a pool of hostile values (wrong types,
out-of-range numbers, NaN, too many or too few arguments, unknown keywords),
once on stdlib asyncio and once on ferroloop, each on a fresh loop, and
asserts the same outcome: the same exception type and message, or a return
of the same type. A coroutine returned is run (with a short timeout) and
its outcome compared the same way.

Three kinds of difference are accepted, all listed in docs/DIFFERENCES.md:
- an argument-count or keyword TypeError of a method that ferroloop
  implements natively is worded by PyO3 (same type, different words);
- ferroloop checks at the call site that a callback is callable;
- ferroloop's call_at() takes only a real number for `when`.
"""

import asyncio
import inspect
import math
import re
import sys
import warnings

import pytest
from hypothesis import given
from hypothesis import strategies as st

import ferroloop

from ._settings import fuzz_seed, fuzz_settings


class _Weird:
    """An object whose every dunder a method might try misbehaves."""

    def __eq__(self, other):
        raise RuntimeError("eq")

    __hash__ = object.__hash__

    def __index__(self):
        raise RuntimeError("index")

    def __float__(self):
        raise RuntimeError("float")

    def fileno(self):
        raise RuntimeError("fileno")


# No int in 1..64 (a signal number, a descriptor that may be open) and no
# bool (True == 1): a call must fail or do nothing lasting.
VALUES = [
    None, -1, 0, 2**31, 2**64, -(2**63), 10**400, math.nan, math.inf, -math.inf, 0.5, -0.5,
    "", "x", b"", b"x", bytearray(b"x"), object(), _Weird(), int, (), [], {}, ("127.0.0.1", 0),
]
KEYWORDS = ["foo", "context", "loop", "name", "msg", "limit", "file", "n", "delay", "when"]

# Called with arguments that can only be wrong (too many, or an unknown
# keyword): anything else may block, resolve a host name or start a process.
ARITY_ONLY = {
    "run_forever", "subprocess_exec", "subprocess_shell", "getaddrinfo", "getnameinfo",
    "create_connection", "create_server", "create_unix_connection", "create_unix_server",
    "create_datagram_endpoint", "connect_accepted_socket", "connect_read_pipe", "connect_write_pipe",
    "sendfile", "sock_sendfile", "start_tls", "run_in_executor", "shutdown_default_executor",
    "shutdown_asyncgens",
}

_ARITY = re.compile(
    r"(takes (no|at most|exactly|from)? ?.*arguments?|missing \d+ required|unexpected keyword argument|"
    r"is an invalid keyword argument|takes no keyword arguments|required argument|positional argument|"
    r"got multiple values for argument)"
)


def _norm(msg):
    msg = re.sub(r"0x[0-9a-f]+", "0x?", msg)
    return msg.replace("ferroloop._ferroloop.", "_asyncio.")


def _kind_of(value):
    # Each loop returns its own classes; compare what they are.
    for base in (asyncio.AbstractEventLoop, asyncio.Task, asyncio.Future, asyncio.TimerHandle, asyncio.Handle):
        if isinstance(value, base):
            return base.__name__
    return type(value).__name__


async def _noop():
    return None


def _subject(kind, lp):
    """A fresh object of ``kind`` on ``lp``; for Task, also the coroutine."""
    if kind == "loop":
        return lp
    if kind == "future":
        return lp.create_future()
    if kind == "task":
        return lp.create_task(_noop())
    if kind == "handle":
        return lp.call_soon(int)
    if kind == "timer":
        return lp.call_later(3600, int)
    raise AssertionError(kind)


def outcome(make_loop, kind, method, args, kwargs):
    lp = make_loop()
    try:
        subject = _subject(kind, lp)
        try:
            r = getattr(subject, method)(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - compared, whatever it is
            return ("raise", type(e), _norm(str(e)))
        if inspect.isawaitable(r):
            try:
                r = lp.run_until_complete(asyncio.wait_for(r, 0.5))
            except BaseException as e:  # noqa: BLE001
                return ("await-raise", type(e), _norm(str(e)))
            return ("await-ok", type(r).__name__)
        return ("ok", _kind_of(r))
    finally:
        if not lp.is_closed() and not lp.is_running():
            # Let a created task finish so no "destroyed but pending" noise.
            try:
                lp.run_until_complete(asyncio.sleep(0))
            except BaseException:  # noqa: BLE001 - the loop may be in any state
                pass
            lp.close()


def _native(kind, method):
    """Whether ferroloop implements this method natively (PyO3)."""
    make = ferroloop.new_event_loop
    lp = make()
    try:
        attr = getattr(type(_subject(kind, lp)), method, None)
        return not isinstance(attr, type(_native)) and not inspect.iscoroutinefunction(attr)
    finally:
        lp.run_until_complete(asyncio.sleep(0))
        lp.close()


def _accepted(kind, method, std, fer):
    if std == fer:
        return True
    # PyO3's words for an argument-count or keyword error of a native method.
    if (std[0], fer[0]) == ("raise", "raise") and std[1] is fer[1] is TypeError:
        if _ARITY.search(std[2]) and _ARITY.search(fer[2]) and _native(kind, method):
            return True
    # call_at() takes a real number for `when` (asyncio stores anything and
    # fails later, comparing it in its heap or subtracting the time).
    if method == "call_at" and std[0] == "ok" and fer[0] == "raise":
        if fer[1] is TypeError and fer[2].startswith("must be real number"):
            return True
        if fer[1] is RuntimeError and fer[2] == "float":  # _Weird.__float__
            return True
    # asyncio 3.12's C Future ignores keyword arguments given to its
    # no-argument methods that take the defining class (exception(),
    # get_loop()); ferroloop refuses them, as 3.11 and 3.13 do.
    if sys.version_info[:2] == (3, 12) and method in ("exception", "get_loop") and kind in ("future", "task"):
        if fer[:2] == ("raise", TypeError) and fer[2].endswith("takes no keyword arguments"):
            return True
    # A non-callable callback: ferroloop refuses it at the call site.
    if fer[0] == "raise" and fer[1] is TypeError and fer[2].startswith("a callable object was expected by"):
        return True
    return False


def _methods(kind):
    lp = asyncio.new_event_loop()
    try:
        subject = _subject(kind, lp)
        fer = ferroloop.new_event_loop()
        try:
            theirs = _subject(kind, fer)
            names = sorted(
                n for n in dir(subject)
                if not n.startswith("_") and callable(getattr(subject, n, None)) and hasattr(theirs, n)
            )
        finally:
            fer.run_until_complete(asyncio.sleep(0))
            fer.close()
        lp.run_until_complete(asyncio.sleep(0))
        return names
    finally:
        lp.close()


CASES = [(kind, name) for kind in ("loop", "future", "task", "handle", "timer") for name in _methods(kind)]


@st.composite
def calls(draw, method):
    if method in ARITY_ONLY:
        if draw(st.booleans()):
            return tuple(draw(st.sampled_from(VALUES)) for _ in range(12)), {}
        return (), {"foo": draw(st.sampled_from(VALUES))}
    nargs = draw(st.integers(0, 4))
    args = tuple(draw(st.sampled_from(VALUES)) for _ in range(nargs))
    kwargs = {}
    if draw(st.integers(0, 3)) == 0:
        kwargs[draw(st.sampled_from(KEYWORDS))] = draw(st.sampled_from(VALUES))
    if method == "run_forever" and not args and not kwargs:
        args = (None,)
    return args, kwargs


@pytest.mark.parametrize("kind,method", CASES, ids=[f"{k}.{m}" for k, m in CASES])
@fuzz_seed
@fuzz_settings(25)
@given(data=st.data())
def test_bad_arguments_parity(kind, method, data):
    args, kwargs = data.draw(calls(method), label="call")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        std = outcome(asyncio.new_event_loop, kind, method, args, kwargs)
        fer = outcome(ferroloop.new_event_loop, kind, method, args, kwargs)
    assert _accepted(kind, method, std, fer), f"{kind}.{method}(*{args!r}, **{kwargs!r}): asyncio {std}, ferroloop {fer}"
