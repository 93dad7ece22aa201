"""CPython ``test.test_asyncio.test_eager_task_factory`` (3.12+) against the
target.

* ``EagerTaskFactoryLoopTests`` (mixin; upstream's concrete classes are
  ``PyEagerTaskFactoryLoopTests`` and ``CEagerTaskFactoryLoopTests``) ->
  ``NativeEagerTaskFactoryLoopTests`` with ``Task`` = the target Task. The
  loop comes from ``asyncio.new_event_loop()``, i.e. the target loop.
* ``NonEagerCTaskTests`` / ``EagerCTaskTests`` -> ``NonEagerNativeTaskTests``
  / ``EagerNativeTaskTests``: the task-counting tests with the target Task.
* ``NonEagerTests`` / ``EagerTests``: re-exported (``asyncio.Task`` on the
  target loop).

Not collected: the ``Py*`` classes (asyncio's pure-Python Task).
"""

import sys

import pytest

if sys.version_info < (3, 12):
    pytest.skip("test.test_asyncio.test_eager_task_factory is new in Python 3.12",
                allow_module_level=True)

from test.test_asyncio import test_eager_task_factory as _cpy
from test.test_asyncio import utils as _test_utils

from conformance_target import Task


class NativeEagerTaskFactoryLoopTests(_cpy.EagerTaskFactoryLoopTests,
                                      _test_utils.TestCase):
    Task = Task


class NonEagerNativeTaskTests(_cpy.BaseNonEagerTaskFactoryTests,
                              _test_utils.TestCase):
    Task = Task


class EagerNativeTaskTests(_cpy.BaseEagerTaskFactoryTests,
                           _test_utils.TestCase):
    Task = Task


NonEagerTests = _cpy.NonEagerTests
EagerTests = _cpy.EagerTests
