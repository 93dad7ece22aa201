"""Functional parts of CPython's ``test.test_asyncio.test_unix_events``
against the target (group io).

Included (they run a real loop and real descriptors):

* ``SelectorEventLoopUnixSocketTests`` -> ``TargetUnixSocketTests``: the
  upstream ``setUp`` builds ``asyncio.SelectorEventLoop()``; here it runs
  with that name bound to the target's loop factory
  (``conformance_target.SelectorEventLoopIsTarget``).  Unix-socket servers
  and connections (``create_unix_server``/``create_unix_connection``).
* ``SelectorEventLoopUnixSockSendfileTests``: re-exported (loop from
  ``asyncio.new_event_loop()``); ``sock_sendfile`` over ``os.sendfile``.
* ``TestFunctional``: re-exported (loop from ``asyncio.new_event_loop()``);
  ``add_reader``/``add_writer`` argument checks and transport-owned fds.

Not collected, because they test asyncio's own implementation through mocks
rather than the loop's behaviour:

* ``SelectorEventLoopSignalTests``: ``add_signal_handler`` with
  ``asyncio.unix_events.signal`` patched (a native implementation never
  calls that module object).  Real signal handling is covered by
  ``test_conf_events`` (``test_add_signal_handler``,
  ``test_signal_handling_*``).
* ``UnixReadPipeTransportTests`` / ``UnixWritePipeTransportTests``: asyncio's
  pipe transport classes on ``test_utils.TestLoop`` with mocked ``os``.  Real
  pipes are covered by ``test_conf_events`` (``test_read_pipe``,
  ``test_write_pipe``, PTY tests...).
* ``AbstractChildWatcherTests``, ``BaseChildWatcherTests``,
  ``SafeChildWatcherTests``, ``FastChildWatcherTests``: the watchers with
  mocked ``os.waitpid``; ``PolicyTests``: the policy's child-watcher API.
  Subprocesses are covered by the proc group.
"""

import sys

from test.test_asyncio import test_unix_events as _cpy

import conformance_target


class TargetUnixSocketTests(conformance_target.SelectorEventLoopIsTarget,
                            _cpy.SelectorEventLoopUnixSocketTests):
    pass


SelectorEventLoopUnixSockSendfileTests = \
    _cpy.SelectorEventLoopUnixSockSendfileTests
TestFunctional = _cpy.TestFunctional

if sys.version_info >= (3, 12):
    # A forked child gets no share of the parent's running loop.
    TestFork = _cpy.TestFork
