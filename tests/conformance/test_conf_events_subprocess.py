"""``SubprocessTestsMixin`` of CPython's ``test_events`` against the target
(group proc).

Upstream runs ``SubprocessTestsMixin`` in the same classes as
``EventLoopTestsMixin`` (``EPollEventLoopTests`` & co, through
``UnixEventLoopTestsMixin``).  Here it is split off, so subprocess support is
reported on its own:

* ``TargetSubprocessEventLoopTests``: ``UnixEventLoopTestsMixin`` (loop from
  ``create_event_loop`` = the target loop, plus the ``SafeChildWatcher``
  attached to it, exactly as upstream) + ``SubprocessTestsMixin``.  The
  ``EventLoopTestsMixin`` test methods it inherits are hidden (set to
  ``None``, which ``unittest``'s loader skips); they run in
  ``test_conf_events.TargetEventLoopTests``.
"""

import unittest

from test.test_asyncio import test_events as _cpy
from test.test_asyncio import utils as test_utils

import conformance_target


class TargetSubprocessEventLoopTests(_cpy.UnixEventLoopTestsMixin,
                                     _cpy.SubprocessTestsMixin,
                                     test_utils.TestCase):

    def create_event_loop(self):
        return conformance_target.new_loop()


for _name in unittest.TestLoader().getTestCaseNames(_cpy.EventLoopTestsMixin):
    if _name not in vars(_cpy.SubprocessTestsMixin):
        setattr(TargetSubprocessEventLoopTests, _name, None)
del _name
