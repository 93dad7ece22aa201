"""The pytest plugin (``pytest --ferroloop``) on a sample project.

The sample's tests each assert that they run on a ferroloop loop, in the
four ways a suite usually gets one: pytest-asyncio, anyio's pytest plugin,
``unittest.IsolatedAsyncioTestCase`` and a plain ``asyncio.run()``. Run
with ``--ferroloop`` they pass; run without it the same tests fail, which
shows that it is the plugin that moved them.
"""

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("pytest_asyncio")
pytest.importorskip("anyio")

SAMPLE = '''
import asyncio
import unittest

import anyio
import pytest


def loop_module():
    return type(asyncio.get_running_loop()).__module__


@pytest.mark.asyncio
async def test_pytest_asyncio():
    await asyncio.sleep(0)
    assert loop_module() == "ferroloop._loop"


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
async def test_anyio():
    await anyio.sleep(0)
    assert loop_module() == "ferroloop._loop"


class TestCase(unittest.IsolatedAsyncioTestCase):
    async def test_isolated(self):
        await asyncio.sleep(0)
        self.assertEqual(loop_module(), "ferroloop._loop")


def test_asyncio_run():
    async def main():
        await asyncio.sleep(0)
        return loop_module()

    assert asyncio.run(main()) == "ferroloop._loop"


def test_explicit_loop_factory_is_kept():
    # A test that asks for a loop of its own keeps it.
    async def main():
        return loop_module()

    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        assert runner.run(main()) == "asyncio.unix_events"
'''


def _run_sample(tmp_path, *args):
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args, str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_flag_runs_every_kind_of_asyncio_test_on_ferroloop(tmp_path):
    r = _run_sample(tmp_path, "--ferroloop")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "5 passed" in r.stdout
    # pytest-asyncio's loop, anyio's runner, IsolatedAsyncioTestCase's
    # runner and asyncio.run(): one loop each.
    summary = [line for line in r.stdout.splitlines() if line.startswith("ferroloop: ")]
    assert summary == ["ferroloop: 4 event loops made by ferroloop's policy"], r.stdout


def test_without_the_flag_the_plugin_changes_nothing(tmp_path):
    r = _run_sample(tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "4 failed, 1 passed" in r.stdout, r.stdout
    assert "ferroloop: " not in r.stdout


def test_the_ini_setting_turns_it_on(tmp_path):
    r = _run_sample(tmp_path, "-o", "ferroloop=true")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "5 passed" in r.stdout


def test_the_policy_in_force_is_restored_after_the_session(tmp_path):
    (tmp_path / "test_restore.py").write_text(
        textwrap.dedent(
            """
            import asyncio

            def test_policy_is_ferroloops_during_the_session():
                assert type(asyncio.get_event_loop_policy()).__module__ == "ferroloop.pytest_plugin"
            """
        )
    )
    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)
    code = textwrap.dedent(
        f"""
        import asyncio, sys, pytest
        before = asyncio.get_event_loop_policy()
        rc = pytest.main(["-p", "no:cacheprovider", "-q", "--ferroloop", {str(tmp_path / "test_restore.py")!r}])
        assert rc == 0, rc
        assert asyncio.get_event_loop_policy() is before, asyncio.get_event_loop_policy()
        print("RESTORED")
        """
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "RESTORED" in r.stdout
