"""CPython ``test.test_asyncio.test_subprocess`` against the target
(group proc).

The ``SubprocessMixin`` classes get their loop from
``asyncio.get_event_loop_policy().new_event_loop()``, i.e. the target loop,
and attach a child watcher to it; they are re-exported unchanged:

* ``SubprocessThreadedWatcherTests``, ``SubprocessSafeWatcherTests``,
  ``SubprocessFastWatcherTests``, ``SubprocessPidfdWatcherTests`` (skipped
  upstream when the kernel has no pidfd).
* ``GenericWatcherTests``: ``asyncio.Runner(loop_factory=new_event_loop)``.

Not collected: ``SubprocessMultiLoopWatcherTests`` (skipped upstream,
bpo-38323: it can hang) and ``SubprocessTransportTests`` (asyncio's
``BaseSubprocessTransport`` on ``test_utils.TestLoop`` with a mocked
process).
"""

from test.test_asyncio import test_subprocess as _cpy

SubprocessThreadedWatcherTests = _cpy.SubprocessThreadedWatcherTests
SubprocessSafeWatcherTests = _cpy.SubprocessSafeWatcherTests
SubprocessFastWatcherTests = _cpy.SubprocessFastWatcherTests
SubprocessPidfdWatcherTests = _cpy.SubprocessPidfdWatcherTests
GenericWatcherTests = _cpy.GenericWatcherTests
