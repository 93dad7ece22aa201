#!/usr/bin/env python3
"""Run uvloop's test suite on stdlib asyncio (AIO) and on ferroloop (FERRO).

One pytest process per (module, target), so a crash or a hang on ferroloop
costs only the test that caused it: the module is resumed after that test,
which is recorded as ``crashed`` (or ``timeout`` when the watchdog's hard
exit fired). Prints per-module counts for each target and every test that
does not pass on ferroloop, next to its AIO outcome, with the one-line
reason pytest gave.

    python tests/uvloop_suite/run.py                      # both groups
    python tests/uvloop_suite/run.py --group networking   # or: processes
    python tests/uvloop_suite/run.py --modules tcp,udp --targets ferro

Per-test outcomes go to ``OUT/<target>.tsv`` (outcome, node id, reason) and
the pytest logs to ``OUT/logs/``. Exit status: 0, or 1 with
``--fail-on-regression`` when a test passes on AIO but not on FERRO.
"""

import argparse
import concurrent.futures
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import _uvloop_upstream as up  # noqa: E402

TARGET_LABEL = {"aio": "AIO", "ferro": "FERRO", "uv": "UV"}
OUTCOMES = ("passed", "failed", "error", "skipped", "crashed", "timeout")


def stub_path(group, module):
    return os.path.join(HERE, group, f"test_uvloop_{module[len('test_'):]}.py")


def read_results(path):
    """{nodeid: (outcome, reason)}, plus the node id started but never finished."""
    done, started = {}, None
    if not os.path.exists(path):
        return done, None
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if parts[0] == "start":
                started = parts[1]
            elif len(parts) >= 2:
                done[parts[1]] = (parts[0], parts[2] if len(parts) > 2 else "")
                if parts[1] == started:
                    started = None
    return done, started


def run_one(group, module, target, args, out):
    """Run one module on one target; resume after crashes. Returns summary."""
    tag = f"{module}.{target}"
    results = os.path.join(out, "raw", f"{tag}.results")
    deselect = os.path.join(out, "raw", f"{tag}.deselect")
    for p in (results, deselect):
        if os.path.exists(p):
            os.remove(p)
    env = dict(os.environ)
    env.update({
        "FERROLOOP_UVLOOP_SUITE": "1",
        "FERROLOOP_UVLOOP_TARGETS": target,
        "FERROLOOP_UVLOOP_RESULTS": results,
        "FERROLOOP_UVLOOP_DESELECT": deselect,
        "FERROLOOP_UVLOOP_TIMEOUT": str(args.timeout),
        "FERROLOOP_UVLOOP_EXPECT": args.expect,
        "PYTHONFAULTHANDLER": "1",
    })
    extra = {}          # nodeid -> (outcome, reason) for crashed tests
    t0 = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        log = os.path.join(out, "logs", f"{tag}.{attempt}.log")
        cmd = [sys.executable, "-m", "pytest", stub_path(group, module),
               "-q", "-p", "no:cacheprovider", "-o", "addopts=",
               "--rootdir", REPO, "-rN"]
        with open(log, "w") as logf:
            try:
                rc = subprocess.run(cmd, cwd=REPO, env=env, stdout=logf,
                                    stderr=subprocess.STDOUT,
                                    timeout=args.module_timeout).returncode
            except subprocess.TimeoutExpired:
                rc = "module-timeout"
        done, started = read_results(results)
        if started is None or attempt > args.max_resumes:
            if rc not in (0, 1, 5) and started is None:
                extra[f"<{tag} pytest exit {rc}>"] = ("error", f"see {log}")
            if started is not None:
                extra[started] = ("crashed", f"gave up after {attempt} runs; see {log}")
            break
        with open(log, errors="replace") as f:
            text = f.read()
        if "Timeout (0:" in text:
            extra[started] = ("timeout", f"hard watchdog exit after "
                              f"{2 * args.timeout:g}s; stacks in {log}")
        else:
            extra[started] = ("crashed", f"pytest exit {rc}; see {log}")
        with open(deselect, "w", encoding="utf-8") as f:
            f.write("\n".join(list(done) + list(extra)) + "\n")
    done.update(extra)
    return {"group": group, "module": module, "target": target,
            "results": done, "seconds": time.monotonic() - t0,
            "runs": attempt}


def describe_ferroloop():
    """Which ferroloop is measured: its path and the repo's commit."""
    try:
        import ferroloop
        where = os.path.dirname(ferroloop.__file__)
    except Exception as e:  # noqa: BLE001 - report, don't fail
        return f"ferroloop not importable: {e!r}"
    try:
        head = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain",
                                "--", "crates", "python"],
                               capture_output=True, text=True).stdout.strip()
        head = f"{head}{' + uncommitted changes' if dirty else ''}"
    except OSError:
        head = "?"
    return f"ferroloop from {where} (repo HEAD {head}); Python {sys.version.split()[0]}"


def counterpart(nodeid):
    """Node id of the AIO test a FERRO clone was made from."""
    path, cls, name = nodeid.split("::")
    return f"{path}::{cls.replace('FERRO', 'AIO')}::{name}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--group", choices=("all",) + tuple(up.GROUPS),
                    default="all")
    ap.add_argument("--modules", default="",
                    help="comma-separated subset, e.g. tcp,udp (any group)")
    ap.add_argument("--targets", default="aio,ferro",
                    help="comma-separated: aio, ferro, uv (default aio,ferro)")
    ap.add_argument("--expect", choices=("asyncio", "strict"),
                    default="asyncio",
                    help="expectations for the ferroloop clones (see README)")
    ap.add_argument("--timeout", type=float, default=60,
                    help="per-test watchdog, seconds (default 60)")
    ap.add_argument("--module-timeout", type=float, default=1800,
                    help="wall limit for one pytest process (default 1800)")
    ap.add_argument("--max-resumes", type=int, default=25)
    ap.add_argument("-j", "--jobs", type=int, default=1,
                    help="parallel pytest processes (default 1: some tests "
                    "use fixed or probed ports, so >1 may add flakes)")
    ap.add_argument("--out", default=os.path.join(tempfile.gettempdir(),
                                                  "ferroloop-uvloop-suite"))
    ap.add_argument("--fail-on-regression", action="store_true")
    args = ap.parse_args()

    groups = up.GROUPS if args.group == "all" else {args.group: up.GROUPS[args.group]}
    wanted = {f"test_{m.strip()}" for m in args.modules.split(",") if m.strip()}
    if wanted:
        groups = dict(up.GROUPS)
    jobs = [(g, m) for g, mods in groups.items() for m in mods
            if not wanted or m in wanted]
    unknown = wanted - {m for _, m in jobs}
    if unknown:
        ap.error(f"unknown module(s): {sorted(unknown)}")
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    for t in targets:
        if t not in TARGET_LABEL:
            ap.error(f"unknown target {t!r}")

    os.makedirs(os.path.join(args.out, "raw"), exist_ok=True)
    os.makedirs(os.path.join(args.out, "logs"), exist_ok=True)
    up.sdist_root()     # fetch once, before any parallel run

    print(describe_ferroloop(), flush=True)
    t0 = time.monotonic()
    work = [(g, m, t) for g, m in jobs for t in targets]
    summaries = []
    with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
        futs = [pool.submit(run_one, g, m, t, args, args.out) for g, m, t in work]
        for fut in concurrent.futures.as_completed(futs):
            s = fut.result()
            c = {o: 0 for o in OUTCOMES}
            for outcome, _ in s["results"].values():
                c[outcome] = c.get(outcome, 0) + 1
            print(f"  done {s['module']:<16} {TARGET_LABEL[s['target']]:<5} "
                  f"{c['passed']:>4} passed {len(s['results']):>4} total "
                  f"{s['seconds']:7.1f}s", flush=True)
            summaries.append(s)
    wall = time.monotonic() - t0

    by = {(s["module"], s["target"]): s for s in summaries}
    for t in targets:
        with open(os.path.join(args.out, f"{t}.tsv"), "w", encoding="utf-8") as f:
            for s in summaries:
                if s["target"] != t:
                    continue
                for nodeid, (outcome, why) in sorted(s["results"].items()):
                    f.write(f"{outcome}\t{nodeid}\t{why}\n")

    # --- per-module table ---
    print()
    head = f"{'group':<11} {'module':<15}"
    for t in targets:
        head += f" | {TARGET_LABEL[t]:>5} pass/fail/err/skip/other  secs"
    print(head)
    print("-" * len(head))
    totals = {t: {o: 0 for o in OUTCOMES} for t in targets}
    for g, m in jobs:
        line = f"{g:<11} {m:<15}"
        for t in targets:
            s = by[(m, t)]
            c = {o: 0 for o in OUTCOMES}
            for outcome, _ in s["results"].values():
                c[outcome] += 1
                totals[t][outcome] += 1
            other = c["crashed"] + c["timeout"]
            line += (f" | {c['passed']:>5}/{c['failed']:>4}/{c['error']:>3}"
                     f"/{c['skipped']:>4}/{other:>5} {len(s['results']):>4}t"
                     f" {s['seconds']:5.0f}")
        print(line)
    line = f"{'total':<27}"
    for t in targets:
        c = totals[t]
        n = sum(c.values())
        line += (f" | {c['passed']:>5}/{c['failed']:>4}/{c['error']:>3}"
                 f"/{c['skipped']:>4}/{c['crashed'] + c['timeout']:>5} {n:>4}t"
                 f"      ")
    print(line)
    print(f"\nwall time {wall:.0f}s; per-test outcomes in {args.out}/<target>.tsv")

    # --- ferroloop tests that do not pass ---
    regressions = 0
    if "ferro" in targets:
        aio = {}
        for s in summaries:
            if s["target"] == "aio":
                aio.update(s["results"])
        print("\nFERRO tests not passing (AIO outcome in brackets):")
        for s in sorted((s for s in summaries if s["target"] == "ferro"),
                        key=lambda s: s["module"]):
            for nodeid, (outcome, why) in sorted(s["results"].items()):
                ref = aio.get(counterpart(nodeid), ("n/a", ""))[0] if "::" in nodeid else "n/a"
                if outcome == "passed" or (outcome == "skipped" and ref != "passed"):
                    continue
                if ref == "passed":
                    regressions += 1
                short = nodeid.split("/")[-1]
                print(f"  {outcome:<7} [{ref}] {short}\n           {why[:220]}")
        if "aio" in targets:
            print(f"\n{regressions} test(s) pass on AIO but not on FERRO")
    return 1 if (args.fail_on_regression and regressions) else 0


if __name__ == "__main__":
    sys.exit(main())
