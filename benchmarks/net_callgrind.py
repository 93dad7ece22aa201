"""Server instructions per request of net_bench's servers, under callgrind.

``net_bench.py`` times the server process; on a shared 2-core machine a
time moves 10-20 % from run to run, which hides the changes worth making.
This counts instructions instead: it starts net_bench's own server child
(``net_bench.py --_server SPEC FLAVOUR``) under ``valgrind --tool=callgrind``
twice, drives it with a small in-process blocking client for ``--small`` and
for ``--big`` requests (after the same ``--warmup``), and reports
``(Ir(big) - Ir(small)) / (big - small)``: start-up, imports, accept and
first-call paths cancel out.

The client keeps exactly one request in flight (``--conns`` connections,
default 1, served round-robin from one thread), so every request is one
wake-up of the server and the count repeats to within a few instructions
whatever else the machine does. (net_bench's timed client keeps 10 in
flight; an unloaded server sees about one per wake-up there too.)

    python benchmarks/net_callgrind.py                       # every case, ferroloop asyncio uvloop rloop
    python benchmarks/net_callgrind.py -k protocol,tls --loops ferroloop
    python benchmarks/net_callgrind.py -k =echo_streams_1k --loops ferroloop --keep /tmp/cg
    callgrind_annotate --inclusive=yes /tmp/cg/ferroloop-echo_streams_1k.big.out | head -60

``--profile N`` prints the N functions with the largest self cost per
request (the same difference, per function, from ``callgrind_annotate``).
``--keep DIR`` keeps the callgrind output of the big run of each cell
(``LOOP-CASE.big.out``, and ``.small.out``) for ``callgrind_annotate``; with
``--big`` large against ``--small`` the big file is dominated by the
per-request work.
"""

import argparse
import os
import re
import shutil
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as _bench  # noqa: E402
import net_bench as _nb  # noqa: E402

DEFAULT_LOOPS = ["ferroloop=ferroloop:new_event_loop", "asyncio=asyncio:new_event_loop",
                 "uvloop=uvloop:new_event_loop", "rloop=rloop:new_event_loop"]

# case name -> (net_bench server flavour, request kind, payload size)
CASES = {
    "echo_protocol_1k": ("protocol", "echo", 1024),
    "echo_streams_1k": ("streams", "echo", 1024),
    "echo_tls_1k": ("tls", "tls", 1024),
    "http": ("http", "http", 0),
    "echo_sock_1k": ("sock", "echo", 1024),
    "echo_protocol_100k": ("protocol", "echo", 100 * 1024),
}

_TOTALS = re.compile(rb"^(?:summary|totals):\s*(\d+)", re.M)


def _connect(port: int, kind: str) -> socket.socket:
    s = socket.create_connection((_nb.HOST, port), timeout=60)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if kind == "tls":
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        s = ctx.wrap_socket(s)
    return s


def _request(s: socket.socket, kind: str, payload: bytes, buf: memoryview) -> None:
    if kind == "http":
        s.sendall(_nb.HTTP_REQUEST)
        want = len(_nb.HTTP_RESPONSE)
    else:
        s.sendall(payload)
        want = len(payload)
    got = 0
    while got < want:
        k = s.recv_into(buf[got:], want - got)
        if not k:
            raise ConnectionError("server closed the connection")
        got += k
    expect = _nb.HTTP_RESPONSE if kind == "http" else payload
    if buf[:want] != expect:
        raise ValueError("wrong response bytes")


def count(spec: str, case: str, requests: int, warmup: int, conns: int, out: str, timeout: float) -> int:
    """Instructions of one server process that served `requests` requests."""
    flavour, kind, size = CASES[case]
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
           sys.executable, _nb.THIS, "--_server", spec, flavour]
    server = _nb.Child([], f"{spec} server", cmd=cmd)
    deadline = time.monotonic() + timeout
    try:
        ready = _nb.json.loads(server.expect(_nb.READY_MARK, deadline, "the server to listen"))
        socks = [_connect(ready["port"], kind) for _ in range(conns)]
        pattern = b"0123456789abcdefghijklmnopqrstuv"
        payload = (pattern * (size // len(pattern) + 1))[:size]
        buf = memoryview(bytearray(max(size, len(_nb.HTTP_RESPONSE))))
        for i in range(warmup + requests):
            _request(socks[i % conns], kind, payload, buf)
        for s in socks:
            s.close()
        # The server sees the EOFs before it is told to quit.
        snap = _nb._server_cpu(server, deadline)
        _nb._server_errors(snap)
    finally:
        server.stop(grace=timeout)
    with open(out, "rb") as f:
        m = _TOTALS.search(f.read())
    if m is None:
        raise RuntimeError(f"no totals in {out}: {server.stderr_tail()}")
    return int(m.group(1))


_FN_LINE = re.compile(r"^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(.*?)\s*$")


def self_costs(path: str) -> dict:
    """Self instructions per function of one callgrind file (callgrind_annotate)."""
    import subprocess

    text = subprocess.run(["callgrind_annotate", "--auto=no", "--threshold=100", path],
                          capture_output=True, text=True, check=True).stdout
    costs: dict = {}
    body = text.split("file:function", 1)[-1]
    for line in body.splitlines()[2:]:
        m = _FN_LINE.match(line)
        if not m:
            continue
        name = m.group(2)
        # "path/file.c:function [object]" -> "function [object basename]"
        fn, _, obj = name.partition(" [")
        fn = fn.rsplit(":", 1)[-1] if ":" in fn else fn
        obj = os.path.basename(obj.rstrip("]")) if obj else "?"
        key = f"{fn.split(chr(39))[0]} [{obj}]"
        costs[key] = costs.get(key, 0) + int(m.group(1).replace(",", ""))
    return costs


def print_profile(big: str, small: str, requests: int, top: int) -> None:
    """Per-request self cost by function: big run minus small run."""
    a, b = self_costs(big), self_costs(small)
    diff = {k: (a.get(k, 0) - b.get(k, 0)) / requests for k in set(a) | set(b)}
    total = sum(diff.values())
    print(f"\n{os.path.basename(big)}: {total:,.0f} Ir/request, top {top} functions (self)")
    for k, v in sorted(diff.items(), key=lambda kv: -kv[1])[:top]:
        print(f"{v:10,.0f}  {k}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--loops", nargs="+", default=None, metavar="SPEC")
    p.add_argument("-k", dest="filters", action="append", metavar="PATTERN")
    p.add_argument("--small", type=int, default=200)
    p.add_argument("--big", type=int, default=2200)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--conns", type=int, default=1)
    p.add_argument("--keep", metavar="DIR", help="keep the callgrind output files here")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="also print the N functions with the largest self cost per request")
    args = p.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("needs valgrind on PATH", file=sys.stderr)
        return 1
    specs = [_bench.parse_loop_spec(s) for s in (args.loops or DEFAULT_LOOPS)]
    cases = list(CASES)
    if args.filters:
        pats = [x for f in args.filters for x in f.split(",") if x]
        cases = [c for c in cases if any(c == q[1:] if q.startswith("=") else q in c for q in pats)]
    outdir = args.keep or tempfile.mkdtemp(prefix="net-callgrind-")
    os.makedirs(outdir, exist_ok=True)
    rows = {}
    for case in cases:
        for spec in specs:
            name = spec.name
            try:
                ir = {}
                for label, n in (("big", args.big), ("small", args.small)):
                    ir[label] = count(spec.spec, case, n, args.warmup, args.conns,
                                      os.path.join(outdir, f"{name}-{case}.{label}.out"), args.timeout)
                per = (ir["big"] - ir["small"]) / (args.big - args.small)
                rows.setdefault(case, {})[name] = f"{per:,.0f}"
                if args.profile:
                    print_profile(os.path.join(outdir, f"{name}-{case}.big.out"),
                                  os.path.join(outdir, f"{name}-{case}.small.out"),
                                  args.big - args.small, args.profile)
            except Exception as exc:  # one failed cell does not stop the run
                rows.setdefault(case, {})[name] = f"error: {exc}".splitlines()[0][:60]
            print(f"{case} {name}: {rows[case][name]}", file=sys.stderr, flush=True)
    names = [s.name for s in specs]
    print(f"server instructions per request (callgrind, {args.big} - {args.small} requests, "
          f"{args.conns} connection(s), Python {sys.version.split()[0]})\n")
    print("| case | " + " | ".join(names) + " |")
    print("| --- |" + " ---: |" * len(names))
    for case in cases:
        print(f"| {case} | " + " | ".join(rows[case].get(n, "") for n in names) + " |")
    if not args.keep:
        shutil.rmtree(outdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
