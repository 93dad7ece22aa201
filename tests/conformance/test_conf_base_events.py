"""Real-loop parts of CPython's ``test.test_asyncio.test_base_events``
against the target (group io).

* ``RunningLoopTests``: re-exported (two loops from
  ``asyncio.new_event_loop()``; running one inside the other must fail).
* ``BaseEventLoopWithSelectorTests`` -> ``TargetLoopWithSelectorTests``: the
  upstream ``setUp`` builds ``asyncio.SelectorEventLoop()``; here it runs
  with that name bound to the target's loop factory
  (``conformance_target.SelectorEventLoopIsTarget``).  A real loop, but many
  tests replace loop methods on the instance (``sock_connect``,
  ``getaddrinfo``, ``_add_reader``...) or patch ``socket`` in
  ``asyncio.base_events``; they check the ``create_connection`` /
  ``create_server`` / ``create_datagram_endpoint`` logic on top of those.
  Counted separately in the report.

Not collected: ``BaseEventTests`` (``_ipaddr_info`` & co, no loop),
``BaseEventLoopTests`` (a bare ``BaseEventLoop()``; only 3 of its 41 tests
use ``asyncio.new_event_loop()``, and only to create named tasks),
``BaseLoopSockSendfileTests`` (a bare ``BaseSelectorEventLoop()``: asyncio's
fallback path) and ``TestSelectorUtils`` (no loop).
"""

from test.test_asyncio import test_base_events as _cpy

import conformance_target

RunningLoopTests = _cpy.RunningLoopTests


class TargetLoopWithSelectorTests(
        conformance_target.SelectorEventLoopIsTarget,
        _cpy.BaseEventLoopWithSelectorTests):
    pass
