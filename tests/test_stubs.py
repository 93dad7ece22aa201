"""The package's types match what it exports at run time (stubtest over the
whole package: the extension module's stubs, `_loop.pyi`, and the inline
annotations of the pure-Python modules)."""

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
ALLOWLIST = ROOT / "python" / "ferroloop" / "stubtest-allowlist.txt"


def test_stubs_match_runtime():
    pytest.importorskip("mypy")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "ferroloop", "--allowlist", str(ALLOWLIST), "--ignore-unused-allowlist"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
