"""Timers and I/O keep being serviced under a flood of callbacks, on both
loops: an iteration runs what was ready when it began, then looks at timers
and I/O again."""

import contextlib
import socket
import threading
import time


@contextlib.contextmanager
def _storm(loop, callback, threads=4):
    """Threads calling ``loop.call_soon_threadsafe(callback)`` as fast as
    they can while the block runs; yields the count of calls made."""
    stop = threading.Event()
    submitted = [0]

    def storm():
        while not stop.is_set():
            try:
                loop.call_soon_threadsafe(callback)
            except RuntimeError:  # loop closed
                return
            submitted[0] += 1

    workers = [threading.Thread(target=storm) for _ in range(threads)]
    for t in workers:
        t.start()
    try:
        yield submitted
    finally:
        stop.set()
        for t in workers:
            t.join()


def test_timer_and_reader_under_a_call_soon_flood(loop):
    # A callback that re-queues itself forever: every iteration has work,
    # yet the timer and the readable socket must get their turn.
    spins = [0]

    def spin():
        spins[0] += 1
        loop.call_soon(spin)

    a, b = socket.socketpair()
    try:
        seen = {}
        t0 = time.monotonic()

        def readable():
            a.recv(10)
            seen["read"] = spins[0]
            loop.remove_reader(a)

        loop.add_reader(a, readable)
        loop.call_soon(spin)
        loop.call_later(0.02, lambda: seen.setdefault("timer", time.monotonic() - t0))
        loop.call_later(0.05, loop.stop)
        b.send(b"x")
        loop.run_forever()
        assert "read" in seen and seen["read"] < 10  # within a few iterations
        assert 0.015 <= seen["timer"] < 0.5
    finally:
        a.close()
        b.close()


def test_timer_under_a_call_soon_threadsafe_storm(loop):
    # Threads submitting as fast as they can: the 20 ms stop timer must
    # still be honoured promptly (2-core machine, 6 threads: 0.02-0.03 s on
    # both loops).
    a, b = socket.socketpair()
    seen = {}

    def readable():
        a.recv(10)
        seen["read"] = time.monotonic() - t0
        loop.remove_reader(a)

    try:
        with _storm(loop, int):
            t0 = time.monotonic()
            loop.add_reader(a, readable)
            b.send(b"x")
            loop.call_later(0.02, loop.stop)
            loop.run_forever()
            elapsed = time.monotonic() - t0
    finally:
        loop.remove_reader(a)
        a.close()
        b.close()
    assert elapsed < 0.5, elapsed
    # The readable socket was serviced too, before the stop.
    assert seen.get("read", 1) < elapsed, seen


def test_threadsafe_producers_leave_the_loop_thread_its_turn(loop):
    # Producer threads calling call_soon_threadsafe in a tight loop must not
    # keep the loop's thread off the GIL: asyncio's producers hand it on at
    # every call (the self-pipe write), so the backlog stays small and the
    # loop's own timers keep time. A native producer that never yields piled
    # up 100k-350k handles before run_forever even started.
    ran = [0]

    def count():
        ran[0] += 1

    with _storm(loop, count) as submitted:
        backlog_at_start = submitted[0]
        seen = {}

        def at_stop():
            seen["backlog"] = submitted[0] - ran[0]
            loop.stop()

        t0 = time.monotonic()
        loop.call_later(0.02, at_stop)
        loop.run_forever()
        elapsed = time.monotonic() - t0
    assert backlog_at_start < 20_000, backlog_at_start
    assert seen["backlog"] < 20_000, seen
    assert elapsed < 0.25, elapsed
