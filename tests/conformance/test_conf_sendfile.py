"""CPython ``test.test_asyncio.test_sendfile`` against the target (group io).

* ``EPollEventLoopTests`` / ``PollEventLoopTests`` / ``SelectEventLoopTests``
  (``SendfileTestsBase`` = ``SendfileMixin`` + ``SockSendfileMixin``, one
  class per selector) -> ``TargetSendfileTests``: ``SendfileTestsBase`` with
  ``create_event_loop`` returning the target loop.
* Windows-only Proactor classes: not collected.
"""

from test.test_asyncio import test_sendfile as _cpy
from test.test_asyncio import utils as test_utils

import conformance_target


class TargetSendfileTests(_cpy.SendfileTestsBase, test_utils.TestCase):

    def create_event_loop(self):
        return conformance_target.new_loop()
