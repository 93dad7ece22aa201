"""The type stubs of the extension module match what it exports (stubtest)."""

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
ALLOWLIST = ROOT / "python" / "ferroloop" / "stubtest-allowlist.txt"


def test_stubs_match_runtime():
    pytest.importorskip("mypy")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "ferroloop._ferroloop", "--allowlist", str(ALLOWLIST)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
