"""The benchmark harnesses still run ferroloop end to end (quick sizes).

No timing is asserted here — speed claims come from the side-by-side runs in
benchmarks/. These only check that every case completes on ferroloop (and
on asyncio, for comparison) without an error cell.
"""

import pathlib
import subprocess
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.mark.parametrize("script", ["bench.py", "net_bench.py"])
def test_benchmark_harness_runs_every_case_on_ferroloop(script):
    pytest.importorskip("pyperformance")
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick", "--repeat", "1",
         "--loops", "asyncio", "ferroloop", "--fail-on-error"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # The main table: header "| case | unit | asyncio | ferroloop | ..."
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| case | unit |"))
    columns = [c.strip() for c in lines[header].strip("|").split("|")]
    fer = columns.index("ferroloop")
    rows = []
    for line in lines[header + 2:]:
        if not line.startswith("| "):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    assert len(rows) >= 9, proc.stdout
    for cells in rows:
        # a number, or "skipped" (e.g. wrk not installed); never an error
        assert cells[fer] not in ("error", "timeout", "", "—"), cells
