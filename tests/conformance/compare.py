#!/usr/bin/env python3
"""Run the conformance layer for both targets and compare per-test outcomes.

    python tests/conformance/compare.py [-j JOBS] [--out DIR]
        [--group core|io|proc|all[,...]] [--by-class]
        [--targets asyncio,ferroloop] [--min-ratio 0.99] [-- PYTEST_ARGS...]

``--group`` picks the module groups of ``conformance_groups.py`` (default
``core``: Future/Task/scheduling, the CI set; ``io``: loop-level I/O;
``proc``: subprocesses; ``all``).  A ``test_conf_*.py`` file that is in no
group always runs (with a note).

Each selected module runs in its own pytest process per target
(``JOBS`` processes at a time, default: CPU count), with the conftest writing
one ``<outcome>\\t<nodeid>`` line per test to a results file.  If a process
dies in the middle of a test (segfault, abort, watchdog), that test is
recorded as ``crashed`` and the module is resumed after it, so one crash does
not hide the rest of the module.

Output: a per-module (``--by-class``: per-class) count table per target,
with per-group totals; the number of tests that pass on asyncio and how many
of those also pass on ferroloop (the ratio, overall and per group); and the
list of tests that pass on asyncio but not on ferroloop.  Per-test outcomes
are left in ``DIR/<target>.tsv`` (default DIR: ``ferroloop-conformance`` in
the temp directory), raw pytest logs in ``DIR/<target>/``.

Exit status: 0, or 1 when ``--min-ratio`` is given and not met (or when the
comparison is impossible because a target produced no results).
"""

import argparse
import collections
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import conformance_groups  # noqa: E402

MAX_RESUMES = 25
# Rough relative cost, to start the slow modules first.
WEIGHTS = {"test_conf_tasks.py": 10, "test_conf_taskgroups.py": 5,
           "test_conf_futures.py": 3, "test_conf_waitfor.py": 2,
           "test_conf_locks.py": 2, "test_conf_subprocess.py": 10,
           "test_conf_events.py": 8, "test_conf_streams.py": 3,
           "test_conf_ssl.py": 3, "test_conf_events_subprocess.py": 3,
           "test_conf_sock_lowlevel.py": 2, "test_conf_sendfile.py": 2,
           "test_conf_sslproto.py": 2}
OUTCOMES = ("passed", "failed", "error", "skipped", "crashed")


def read_results(path):
    """Return ({nodeid: outcome}, nodeid started but never finished)."""
    outcomes, running = {}, None
    if not os.path.exists(path):
        return outcomes, running
    with open(path, encoding="utf-8") as f:
        for line in f:
            kind, _, nodeid = line.rstrip("\n").partition("\t")
            if kind == "start":
                running = nodeid
            else:
                outcomes[nodeid] = kind
                running = None
    return outcomes, running


def run_module(target, module, outdir, pytest_args, timeout):
    """Run one module for one target (resuming after crashes)."""
    name = module[:-3]
    results = os.path.join(outdir, target, name + ".results")
    log = os.path.join(outdir, target, name + ".log")
    for path in (results, log):
        if os.path.exists(path):
            os.remove(path)
    env = dict(os.environ, FERROLOOP_CONFORMANCE_TARGET=target,
               FERROLOOP_CONFORMANCE_RESULTS=results)
    if timeout is not None:
        env["FERROLOOP_CONFORMANCE_TIMEOUT"] = str(timeout)
    crashed, notes = {}, []
    t0 = time.monotonic()
    for attempt in range(MAX_RESUMES + 1):
        outcomes, _ = read_results(results)
        deselect = [a for n in list(outcomes) + list(crashed)
                    for a in ("--deselect", n)]
        cmd = [sys.executable, "-m", "pytest",
               os.path.join(os.path.relpath(HERE, ROOT), module),
               "-q", "-p", "no:cacheprovider", *deselect, *pytest_args]
        with open(log, "a", encoding="utf-8") as logf:
            logf.write(f"$ {' '.join(cmd)}\n")
            logf.flush()
            rc = subprocess.call(cmd, cwd=ROOT, env=env, stdout=logf,
                                 stderr=subprocess.STDOUT)
        outcomes, running = read_results(results)
        if running is None:
            if rc not in (0, 1, 5):   # 5: everything was deselected
                notes.append(f"pytest exited with status {rc}; see {log}")
            break
        crashed[running] = "crashed"
        notes.append(f"crash (exit status {rc}) in {running}")
    else:
        notes.append(f"gave up after {MAX_RESUMES} resumes")
    outcomes.update(crashed)
    return target, module, outcomes, notes, time.monotonic() - t0


def module_of(nodeid):
    return os.path.basename(nodeid.split("::", 1)[0])


def class_of(nodeid):
    """``test_conf_x.py::Class`` (the module when there is no class)."""
    parts = nodeid.split("::")
    return "::".join([os.path.basename(parts[0])] + parts[1:2])


def group_of(nodeid):
    return conformance_groups.group_of(module_of(nodeid)) or "(none)"


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--out", default=os.path.join(
        tempfile.gettempdir(), "ferroloop-conformance"))
    parser.add_argument("--group", default="core",
                        help="comma-separated module groups of "
                             "conformance_groups.py (core, io, proc) or "
                             "'all'; default: core")
    parser.add_argument("--by-class", action="store_true",
                        help="count per test class instead of per module")
    parser.add_argument("--targets", default="asyncio,ferroloop",
                        help="comma-separated; the first is the baseline")
    parser.add_argument("--min-ratio", type=float, default=None,
                        help="fail unless this fraction of the baseline's "
                             "passing tests pass on the other target")
    parser.add_argument("--timeout", type=float, default=None,
                        help="per-test watchdog in seconds (conftest "
                             "default: 60)")
    parser.add_argument("pytest_args", nargs="*",
                        help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    outdir = os.path.abspath(args.out)
    try:
        selected = conformance_groups.parse(args.group)
    except ValueError as exc:
        parser.error(str(exc))
    if not selected:
        parser.error("--group selects nothing")
    notes = []
    modules = []
    for m in os.listdir(HERE):
        if not (m.startswith("test_conf_") and m.endswith(".py")):
            continue
        if not conformance_groups.exists_here(m):
            continue
        group = conformance_groups.group_of(m)
        if group is None:
            notes.append(f"{m} is in no group of conformance_groups.py; "
                         f"run anyway")
        if group is None or group in selected:
            modules.append(m)
    modules.sort(key=lambda m: (-WEIGHTS.get(m, 1), m))
    for t in targets:
        os.makedirs(os.path.join(outdir, t), exist_ok=True)

    started = time.monotonic()
    per_target = {t: {} for t in targets}
    seconds = {t: collections.Counter() for t in targets}
    with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
        jobs = [pool.submit(run_module, t, m, outdir, args.pytest_args,
                            args.timeout)
                for m in modules for t in targets]
        for job in concurrent.futures.as_completed(jobs):
            target, module, outcomes, mod_notes, secs = job.result()
            per_target[target].update(outcomes)
            seconds[target][module] = secs
            seconds[target]["TOTAL"] += secs
            notes += [f"[{target}] {module}: {n}" for n in mod_notes]
    elapsed = time.monotonic() - started

    for t in targets:
        with open(os.path.join(outdir, f"{t}.tsv"), "w",
                  encoding="utf-8") as f:
            for nodeid in sorted(per_target[t]):
                f.write(f"{per_target[t][nodeid]}\t{nodeid}\n")

    # Per-module (or per-class) counts, grouped, with group totals.
    unit_of = class_of if args.by_class else module_of
    width = 60 if args.by_class else 34
    for t in targets:
        counts = collections.defaultdict(collections.Counter)
        secs = collections.Counter()
        rows = collections.defaultdict(set)    # group -> units
        for nodeid, outcome in per_target[t].items():
            group = group_of(nodeid)
            rows[group].add(unit_of(nodeid))
            counts[unit_of(nodeid)][outcome] += 1
            counts[f"[{group}]"][outcome] += 1
            counts["TOTAL"][outcome] += 1
        for m, sec in seconds[t].items():
            if m == "TOTAL":
                continue
            group = conformance_groups.group_of(m) or "(none)"
            rows.setdefault(group, set())
            secs[f"[{group}]"] += sec
            if not args.by_class:
                secs[m] = sec
                rows[group].add(m)
        secs["TOTAL"] = seconds[t]["TOTAL"]
        print(f"\n== {t}")
        print(f"{'module' if not args.by_class else 'class':{width}}"
              + "".join(f"{o:>9}" for o in OUTCOMES) + f"{'seconds':>9}")

        def row(name):
            sec = f"{secs[name]:>9.1f}" if name in secs else f"{'':>9}"
            print(f"{name:{width}}" + "".join(f"{counts[name][o]:>9}"
                                             for o in OUTCOMES) + sec)

        for group in sorted(rows, key=lambda g: (
                list(conformance_groups.GROUPS).index(g)
                if g in conformance_groups.GROUPS else 99, g)):
            for m in sorted(rows[group]):
                row(m)
            row(f"[{group}]")
        row("TOTAL")

    for n in sorted(notes):
        print("note:", n)

    status = 0
    if len(targets) >= 2:
        base, other = targets[0], targets[1]
        base_pass = {n for n, o in per_target[base].items() if o == "passed"}
        other_res = per_target[other]
        regressions = sorted(n for n in base_pass
                             if other_res.get(n) != "passed")
        both = len(base_pass) - len(regressions)
        extra = sorted(n for n, o in other_res.items()
                       if o == "passed" and n not in base_pass)
        ratio = both / len(base_pass) if base_pass else 0.0
        print(f"\n== pass on {base} but not on {other} "
              f"({len(regressions)}):")
        ran = {module_of(n) for n in other_res}
        absent = collections.Counter(module_of(n) for n in regressions
                                     if module_of(n) not in ran)
        for m, count in sorted(absent.items()):
            print(f"{'missing':8} {m}: no results at all ({count} tests); "
                  f"see {os.path.join(outdir, other, m[:-3] + '.log')}")
        for n in regressions:
            if module_of(n) in ran:
                print(f"{other_res.get(n, 'missing'):8} {n}")
        if extra:
            print(f"\n(pass on {other} but not on {base}: {len(extra)})")
        by_group = collections.defaultdict(lambda: [0, 0])
        for n in base_pass:
            by_group[group_of(n)][0] += 1
            by_group[group_of(n)][1] += other_res.get(n) == "passed"
        if len(by_group) > 1:
            print()
            for group, (nbase, nboth) in sorted(by_group.items()):
                print(f"group {group}: {other} passes {nboth} of {nbase} "
                      f"({100 * nboth / nbase:.2f}%)")
        print(f"\n{other} passes {both} of the {len(base_pass)} tests that "
              f"pass on {base}: {100 * ratio:.2f}%")
        with open(os.path.join(outdir, "summary.json"), "w",
                  encoding="utf-8") as f:
            json.dump({"baseline": base, "target": other,
                       "groups": list(selected),
                       "per_group": {g: {"baseline_passed": v[0],
                                         "target_passed_of_baseline": v[1]}
                                     for g, v in sorted(by_group.items())},
                       "baseline_passed": len(base_pass),
                       "target_passed_of_baseline": both, "ratio": ratio,
                       "regressions": {n: other_res.get(n, "missing")
                                       for n in regressions}},
                      f, indent=1)
        if not base_pass or not other_res:
            status = 1
        elif args.min_ratio is not None and ratio < args.min_ratio:
            print(f"FAIL: ratio below --min-ratio {args.min_ratio}")
            status = 1
    print(f"\nwall time {elapsed:.1f}s with {args.jobs} jobs "
          f"(groups: {','.join(selected)}); "
          f"per-test outcomes in {outdir}/<target>.tsv")
    return status


if __name__ == "__main__":
    sys.exit(main())
