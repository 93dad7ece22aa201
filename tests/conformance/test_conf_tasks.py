"""CPython ``test.test_asyncio.test_tasks`` against the target.

Future/Task mixins (run on ``test_utils.TestLoop``, as upstream):

* ``CTask_CFuture_Tests`` -> ``NativeTask_NativeFuture_Tests``: subclass with
  ``Task``/``Future`` = target classes (keeps its C-only extra tests;
  ``test_refleaks_in_task___init__`` skips on non-debug builds).
* ``CTask_CFuture_SubclassTests`` -> ``NativeTask_NativeFuture_SubclassTests``:
  ``BaseTaskTests`` + upstream ``add_subclass_tests`` applied to the target
  classes.
* ``CTaskSubclass_PyFuture_Tests`` / ``CTask_PyFuture_Tests`` ->
  ``NativeTaskSubclass_PyFuture_Tests`` / ``NativeTask_PyFuture_Tests``:
  target Task driving asyncio's pure-Python Future (foreign futures).
* ``CCurrentLoopTests`` -> ``NativeCurrentLoopTests``: ``new_task`` creates a
  target Task; the loop comes from ``asyncio.new_event_loop()`` (target loop).
* ``FutureGatherTests`` / ``CoroutineGatherTests``: subclassed so that both
  TestLoops create target Futures (``create_future``) and Tasks (task
  factory).  For the asyncio target that is what TestLoop does anyway.

Loop-level, re-exported unchanged (their loops come from the policy):
``RunCoroutineThreadsafeTests``, ``SleepTests``, ``CTask_Future_Tests``
(``asyncio.Future`` subclass awaited by a task of the target loop).

Target-independent, re-exported unchanged (they count in the CPython baseline):
``GenericTaskTests``, ``CIntrospectionTests`` (the ``_asyncio`` C
``_register_task``/``_enter_task``/... functions, which ``asyncio.current_task``
and ``all_tasks`` keep using with any loop).

Not collected: every ``PyTask_*`` class, ``PyCurrentLoopTests`` and
``PyIntrospectionTests`` (asyncio's pure-Python implementation), and the empty
``CompatibilityTests``.
"""

from test.test_asyncio import test_tasks as _cpy
from test.test_asyncio import utils as _test_utils

from conformance_target import Future, PyFuture, Task


class NativeTask_NativeFuture_Tests(_cpy.CTask_CFuture_Tests):
    Task = Task
    Future = Future


@_cpy.add_subclass_tests
class NativeTask_NativeFuture_SubclassTests(_cpy.BaseTaskTests,
                                            _test_utils.TestCase):
    Task = Task
    Future = Future


@_cpy.add_subclass_tests
class NativeTaskSubclass_PyFuture_Tests(_cpy.BaseTaskTests,
                                        _test_utils.TestCase):
    Task = Task
    Future = PyFuture


class NativeTask_PyFuture_Tests(_cpy.CTask_PyFuture_Tests):
    Task = Task
    Future = PyFuture


class NativeCurrentLoopTests(_cpy.CCurrentLoopTests):
    def new_task(self, coro):
        return Task(coro, loop=self.loop)


def _native_task_factory(loop, coro, **kwargs):
    return Task(coro, loop=loop, **kwargs)


class _NativeGatherMixin:
    def setUp(self):
        super().setUp()
        for loop in (self.one_loop, self.other_loop):
            loop.create_future = lambda loop=loop: Future(loop=loop)
            loop.set_task_factory(_native_task_factory)


class FutureGatherTests(_NativeGatherMixin, _cpy.FutureGatherTests):
    pass


class CoroutineGatherTests(_NativeGatherMixin, _cpy.CoroutineGatherTests):
    pass


RunCoroutineThreadsafeTests = _cpy.RunCoroutineThreadsafeTests
SleepTests = _cpy.SleepTests
CTask_Future_Tests = _cpy.CTask_Future_Tests
GenericTaskTests = _cpy.GenericTaskTests
CIntrospectionTests = _cpy.CIntrospectionTests
