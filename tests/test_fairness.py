"""Timers and I/O keep being serviced under a flood of callbacks, on both
loops: an iteration runs what was ready when it began, then looks at timers
and I/O again."""

import socket
import threading
import time


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
    # still be honoured promptly. (Measured on the 2-core machine, 6 threads:
    # asyncio 0.02 s, ferroloop 0.04-0.09 s; the GIL's 5 ms switch interval,
    # which native producers hold to the end, sets ferroloop's figure.)
    stop = threading.Event()

    def storm():
        while not stop.is_set():
            try:
                loop.call_soon_threadsafe(int)
            except RuntimeError:  # loop closed
                return

    threads = [threading.Thread(target=storm) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        t0 = time.monotonic()
        loop.call_later(0.02, loop.stop)
        loop.run_forever()
        elapsed = time.monotonic() - t0
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert elapsed < 0.5, elapsed
