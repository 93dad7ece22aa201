"""The benchmark harnesses still run ferroloop end to end (quick sizes).

No loop's timing is asserted here — speed claims come from the side-by-side
runs in benchmarks/. These check that every case completes on ferroloop (and
on asyncio, for comparison) without an error cell, and that net_bench's
floor (benchmarks/floor, no Python) builds, runs and sits below asyncio.
"""

import json
import pathlib
import shutil
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


def test_net_bench_floor_is_below_asyncio(tmp_path):
    """The floor server is built, driven like a loop's server and costs less
    server CPU per request than asyncio's on an echo row and on http. The
    best of three interleaved runs is compared: on a machine busy with other
    work a single quick run can charge a server for the machine's load."""
    if shutil.which("cargo") is None:
        pytest.skip("cargo not found: net_bench builds the floor with cargo")
    out = tmp_path / "floor.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "net_bench.py"), "--quick", "--repeat", "3", "--stat", "min",
         "--loops", "asyncio", "floor", "-k", "=echo_protocol_1k,=http",
         "--json", str(out), "--fail-on-error"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert "floor" in data["loops"], data["notes"]  # built, not skipped
    assert "| floor (no Python) |" in proc.stdout, proc.stdout
    measured = []
    for case in ("echo_protocol_1k", "http"):
        results = data["cases"][case]["results"]
        if case == "http" and results["floor"]["status"] == "skipped":
            continue  # no wrk on this machine
        assert results["floor"]["status"] == "ok", results["floor"]
        floor = results["floor"]["summary"]["server_cpu_us"]
        base = results["asyncio"]["summary"]["server_cpu_us"]
        assert 0 < floor < base, (case, floor, base)
        measured.append(case)
    assert "echo_protocol_1k" in measured
    assert "Distance from the floor" in proc.stdout, proc.stdout
