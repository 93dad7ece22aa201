"""CPython ``test.test_asyncio.test_events`` against the target (group io).

Mapping (CPython class -> class here):

* ``EPollEventLoopTests`` / ``PollEventLoopTests`` / ``SelectEventLoopTests``
  (``UnixEventLoopTestsMixin`` + ``SubprocessTestsMixin``, one class per
  selector) -> ``TargetEventLoopTests``: ``EventLoopTestsMixin`` with
  ``create_event_loop`` returning the target loop
  (``conformance_target.new_loop()``; with the ``asyncio`` target that is
  ``SelectorEventLoop()`` on the default selector, i.e. epoll, so the three
  upstream selector variants collapse into one).  ``UnixEventLoopTestsMixin``
  is left out here: all it adds is a ``SafeChildWatcher`` attached to the
  loop (which needs ``add_signal_handler(SIGCHLD)``) for the subprocess
  tests, and those live in ``test_conf_events_subprocess.py`` (group proc).
* ``TestCGetEventLoop``: re-exported (the C ``get_event_loop`` family around
  a loop from the default policy, i.e. the target loop).
* ``TestServer``: re-exported (``create_server`` + ``Server.get_loop`` on a
  loop from ``asyncio.new_event_loop()``).
* Not collected, because they do not run the target loop: ``HandleTests``,
  ``TimerTests`` (mock loops), ``AbstractEventLoopTests``,
  ``TestAbstractServer``, ``PolicyTests`` (the abstract classes and the
  policy machinery), ``TestPyGetEventLoop`` (asyncio's pure-Python
  ``get_event_loop``), and the Windows-only Proactor/Select classes.
"""

from test.test_asyncio import test_events as _cpy
from test.test_asyncio import utils as test_utils

import conformance_target


class TargetEventLoopTests(_cpy.EventLoopTestsMixin, test_utils.TestCase):

    def create_event_loop(self):
        return conformance_target.new_loop()


TestCGetEventLoop = _cpy.TestCGetEventLoop
TestServer = _cpy.TestServer
