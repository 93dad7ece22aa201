"""CPython ``test.test_asyncio.test_sock_lowlevel`` against the target
(group io).

Mapping:

* ``EPollEventLoopTests`` / ``PollEventLoopTests`` / ``SelectEventLoopTests``
  (``BaseSockTestsMixin``, one class per selector) -> ``TargetSockTests``:
  ``BaseSockTestsMixin`` with ``create_event_loop`` returning the target loop
  (``asyncio`` target: ``SelectorEventLoop()`` on the default selector).
* Windows-only Proactor classes: not collected.
"""

from test.test_asyncio import test_sock_lowlevel as _cpy
from test.test_asyncio import utils as test_utils

import conformance_target


class TargetSockTests(_cpy.BaseSockTestsMixin, test_utils.TestCase):

    def create_event_loop(self):
        return conformance_target.new_loop()
