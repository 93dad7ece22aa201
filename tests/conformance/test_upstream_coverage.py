"""Every test of the running Python's ``test.test_asyncio`` is either run by
the conformance layer or left out here, with the reason.

A new Python adds modules (3.12: ``test_eager_task_factory``; 3.13:
``test_staggered``; 3.14: ``test_graph``, ``test_free_threading``) and
classes (3.13: ``QueueShutdownTests``, ``UnixServerCleanupTests``). Without
this check they would silently stay out of the referee's reach; with it, the
first run on that Python fails and names them.
"""

import importlib
import pathlib
import sys
import unittest

import pytest

import conformance_groups

_HERE = pathlib.Path(__file__).resolve().parent

#: Upstream modules without a ``test_conf_*`` counterpart, and why.
NOT_RUN_MODULES = {
    "test_proactor_events": "Windows only",
    "test_windows_events": "Windows only",
    "test_windows_utils": "Windows only",
    "test_selector_events": "unit tests of asyncio's selector loop and its "
                            "transports, with a mocked selector",
    "test_transports": "unit tests of asyncio's transport base classes",
    "test_protocols": "unit tests of asyncio's protocol base classes",
}

#: Upstream TestCase classes of covered modules that no conformance class
#: runs (by name, in any version that has them), and why.
NOT_RUN_CLASSES = {
    # asyncio's pure-Python Future/Task, not the loop under test
    "test_futures.PyFutureTests": "asyncio's pure-Python Future",
    "test_futures.PyFutureDoneCallbackTests": "asyncio's pure-Python Future",
    "test_futures.PyFutureInheritanceTests": "asyncio's pure-Python Future",
    "test_futures2.PyFutureTests": "asyncio's pure-Python Future",
    "test_tasks.PyTask_CFutureSubclass_Tests": "asyncio's pure-Python Task",
    "test_tasks.PyTask_CFuture_Tests": "asyncio's pure-Python Task",
    "test_tasks.PyTask_PyFuture_Tests": "asyncio's pure-Python Task",
    "test_tasks.PyTask_PyFuture_SubclassTests": "asyncio's pure-Python Task",
    "test_tasks.PyIntrospectionTests": "asyncio's pure-Python Task",
    "test_tasks.PyCurrentLoopTests": "asyncio's pure-Python Task",
    "test_tasks.CompatibilityTests": "empty (its tests were removed upstream)",
    # rebuilt from the same mixins and decorator (test_conf_tasks.py)
    "test_tasks.CTask_CFuture_SubclassTests": "run as NativeTask_NativeFuture_SubclassTests",
    "test_tasks.CTaskSubclass_PyFuture_Tests": "run as NativeTaskSubclass_PyFuture_Tests",
    "test_eager_task_factory.PyEagerTaskFactoryLoopTests": "asyncio's pure-Python Task",
    "test_eager_task_factory.NonEagerPyTaskTests": "asyncio's pure-Python Task",
    "test_eager_task_factory.EagerPyTaskTests": "asyncio's pure-Python Task",
    "test_eager_task_factory.CEagerTaskFactoryLoopTests": "run as NativeEagerTaskFactoryLoopTests",
    "test_eager_task_factory.NonEagerCTaskTests": "run as NonEagerNativeTaskTests",
    "test_eager_task_factory.EagerCTaskTests": "run as EagerNativeTaskTests",
    # one Target* class stands for the per-selector classes
    "test_events.EPollEventLoopTests": "run as TargetEventLoopTests",
    "test_events.PollEventLoopTests": "run as TargetEventLoopTests",
    "test_events.SelectEventLoopTests": "run as TargetEventLoopTests",
    "test_sendfile.EPollEventLoopTests": "run as TargetSendfileTests",
    "test_sendfile.PollEventLoopTests": "run as TargetSendfileTests",
    "test_sendfile.SelectEventLoopTests": "run as TargetSendfileTests",
    "test_sock_lowlevel.EPollEventLoopTests": "run as TargetSockTests",
    "test_sock_lowlevel.PollEventLoopTests": "run as TargetSockTests",
    "test_sock_lowlevel.SelectEventLoopTests": "run as TargetSockTests",
    # Windows only
    "test_buffered_proto.BufferedProtocolProactorTests": "Windows only",
    "test_server.ProactorStartServerTests": "Windows only",
    "test_sslproto.ProactorStartTLSTests": "Windows only",
    # asyncio internals through mocks, on test_utils.TestLoop or a mocked
    # selector (the behaviour is covered by the real-loop classes)
    "test_base_events.BaseEventTests": "asyncio helper functions",
    "test_base_events.BaseEventLoopTests": "BaseEventLoop on a mocked selector",
    "test_base_events.BaseLoopSockSendfileTests": "BaseEventLoop internals",
    "test_base_events.TestSelectorUtils": "asyncio helper functions",
    "test_events.HandleTests": "asyncio's Handle class",
    "test_events.TimerTests": "asyncio's TimerHandle class",
    "test_events.AbstractEventLoopTests": "the abstract base class",
    "test_events.PolicyTests": "the policy classes",
    "test_events.TestPyGetEventLoop": "asyncio's pure-Python get_event_loop",
    "test_events.TestAbstractServer": "the abstract base class",
    "test_subprocess.SubprocessTransportTests": "asyncio's subprocess transport with mocks",
    "test_subprocess.SubprocessMultiLoopWatcherTests": "the policy's child watchers (3.11)",
    "test_subprocess.MultiLoopChildWatcherTests": "the policy's child watchers (3.12)",
    "test_unix_events.SelectorEventLoopSignalTests": "add_signal_handler with a mocked signal module",
    "test_unix_events.UnixReadPipeTransportTests": "asyncio's pipe transport with mocked os",
    "test_unix_events.UnixWritePipeTransportTests": "asyncio's pipe transport with mocked os",
    "test_unix_events.AbstractChildWatcherTests": "the policy's child watchers",
    "test_unix_events.BaseChildWatcherTests": "the policy's child watchers",
    "test_unix_events.SafeChildWatcherTests": "the policy's child watchers",
    "test_unix_events.FastChildWatcherTests": "the policy's child watchers",
    "test_unix_events.PolicyTests": "the policy's child-watcher API",
}


def _upstream_dir():
    import test.test_asyncio
    return pathlib.Path(test.test_asyncio.__file__).resolve().parent


def _upstream_modules():
    return sorted(p.stem for p in _upstream_dir().glob("test_*.py"))


def _conf_file(upstream):
    return f"test_conf_{upstream[len('test_'):]}.py"


def test_every_upstream_module_is_run_or_listed():
    missing = [m for m in _upstream_modules()
               if m not in NOT_RUN_MODULES and not (_HERE / _conf_file(m)).exists()]
    assert not missing, (
        f"test.test_asyncio of Python {sys.version.split()[0]} has modules "
        f"the conformance layer does not run: {missing}; add a "
        f"test_conf_ module (and its group) or list them in NOT_RUN_MODULES")


def test_every_conf_module_has_a_group_and_a_version():
    for m in _upstream_modules():
        f = _conf_file(m)
        if (_HERE / f).exists():
            assert conformance_groups.group_of(f) is not None, f
            assert conformance_groups.exists_here(f), (
                f"{f}: its upstream module exists on this Python, but "
                f"conformance_groups.SINCE says it does not")


@pytest.mark.parametrize(
    "upstream",
    [m for m in _upstream_modules() if m not in NOT_RUN_MODULES])
def test_every_upstream_class_is_run_or_listed(upstream):
    up = importlib.import_module(f"test.test_asyncio.{upstream}")
    conf = importlib.import_module(_conf_file(upstream)[:-3])
    ours = [v for v in vars(conf).values() if isinstance(v, type)]
    missing = []
    for name, cls in vars(up).items():
        if (isinstance(cls, type) and issubclass(cls, unittest.TestCase)
                and cls.__module__ == up.__name__
                and f"{upstream}.{name}" not in NOT_RUN_CLASSES
                and not any(issubclass(o, cls) for o in ours)):
            missing.append(name)
    assert not missing, (
        f"{upstream} of Python {sys.version.split()[0]} has test classes "
        f"that no class of {_conf_file(upstream)} runs: {missing}; run them "
        f"there or list them in NOT_RUN_CLASSES with the reason")
