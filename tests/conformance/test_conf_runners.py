"""CPython ``test.test_asyncio.test_runners`` against the target.

Upstream ``BaseTest`` installs a ``TestPolicy`` whose loops come from
``BaseTest.new_loop()``: a bare ``asyncio.BaseEventLoop`` with a mocked
selector, so ``asyncio.run``/``asyncio.Runner`` would never touch the target.
Here ``RunTests`` and ``RunnerTests`` are subclassed with a ``new_loop`` that
returns a real target loop (``conformance_target.new_loop()``), instrumented
the same way upstream instruments its mock (``shutdown_ag_run`` is set when
``shutdown_asyncgens`` runs; the real ``shutdown_asyncgens`` still runs).
The test bodies are unchanged; this covers SIGINT/KeyboardInterrupt handling
(``_thread.interrupt_main``) while the target loop is running or sleeping.
"""

from test.test_asyncio import test_runners as _cpy

import conformance_target


class _TargetLoopMixin:
    def new_loop(self):
        loop = conformance_target.new_loop()
        loop.shutdown_ag_run = False
        real_shutdown_asyncgens = loop.shutdown_asyncgens

        async def shutdown_asyncgens():
            loop.shutdown_ag_run = True
            await real_shutdown_asyncgens()

        loop.shutdown_asyncgens = shutdown_asyncgens
        return loop


class RunTests(_TargetLoopMixin, _cpy.RunTests):
    pass


class RunnerTests(_TargetLoopMixin, _cpy.RunnerTests):
    pass
