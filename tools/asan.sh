#!/usr/bin/env bash
# Memory-safety check of the native extension with AddressSanitizer.
#
#   tools/asan.sh                       # Python 3.11 (python3.11 on PATH)
#   PYTHON=/path/to/python3.13 tools/asan.sh
#
# Builds crates/ferroloop-py with `-Zsanitizer=address` (nightly rustc) into a
# virtualenv of its own, then runs the tests that drive the risky native paths
# under an ordinary, uninstrumented CPython with the ASan runtime preloaded.
# Exit status: 0 clean; 1 AddressSanitizer reported an error (reports are
# printed, and kept in target/asan/logs-X.Y/); 2 no report, but a test group
# failed; 3 the set-up itself failed. Takes about 5 minutes here.
# Needs: rustup's nightly toolchain, gcc (for its libasan), and PyPI for the
# venv's test dependencies and, once, uvloop's test suite.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
py=${PYTHON:-python3.11}
ver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])') || exit 3
out=$root/target/asan
venv=$out/venv-$ver
logs=$out/logs-$ver
die() { echo "asan.sh: $*" >&2; exit 3; }

# rustc ships the ASan runtime only as a static archive, linked into
# executables it builds; an extension loaded by python needs a shared runtime
# preloaded before anything else. gcc's libasan speaks the same ASan ABI (v8),
# and the symbol check below proves it has every entry point the build needs.
runtime=$(readlink -f "$(gcc -print-file-name=libasan.so)")
[ -f "$runtime" ] || die "no shared libasan found by gcc"

if [ ! -x "$venv/bin/python" ]; then
    "$py" -m venv "$venv" || die "cannot create $venv"
fi
# pyOpenSSL/psutil/uvloop: imported by the uvloop suite and the TLS tests;
# hypothesis: the fuzzers.
"$venv/bin/python" -m pip install -q maturin pytest hypothesis pyOpenSSL psutil uvloop==0.23.0 || die "pip install failed"

# --target is what keeps RUSTFLAGS off build scripts and proc macros (which
# must not be instrumented). The dev profile keeps debug info; legacy symbol
# mangling is what gcc's symbolizer can demangle; frame pointers give the
# runtime's fast unwinder whole stacks through the Rust frames.
# A wheel (not `maturin develop`) so no instrumented .so lands in python/.
export RUSTUP_TOOLCHAIN=nightly CARGO_TARGET_DIR=$out/cargo
export RUSTFLAGS="-Zsanitizer=address -Zunstable-options -Csymbol-mangling-version=legacy -Cforce-frame-pointers=yes"
rm -rf "$out/wheels"
"$venv/bin/maturin" build -q --profile dev --target x86_64-unknown-linux-gnu \
    -i "$venv/bin/python" -o "$out/wheels" || die "build failed"
unset RUSTUP_TOOLCHAIN CARGO_TARGET_DIR RUSTFLAGS
"$venv/bin/python" -m pip install -q --force-reinstall --no-deps "$out"/wheels/*.whl || die "install failed"

so=$(ls "$venv"/lib/python*/site-packages/ferroloop/_ferroloop*.so) || die "no extension in $venv"
needed=$(nm -D --undefined-only "$so" | awk '$2 ~ /^__asan_/ {print $2}' | sort -u)
case $needed in *__asan_report_load*) ;; *) die "$so is not instrumented" ;; esac
missing=$(comm -23 <(echo "$needed") <(nm -D --defined-only "$runtime" | awk '{print $3}' | sort -u))
[ -z "$missing" ] || die "$runtime lacks: $missing"

rm -rf "$logs" && mkdir -p "$logs"
# detect_leaks=0: CPython does not free everything at exit, so LeakSanitizer
# would bury real reports. log_path: one file per process that reports, child
# interpreters included. allocator_may_return_null: tests that ask for huge
# buffers get MemoryError, as without ASan, instead of an abort.
# detect_stack_use_after_return: stack frames of the instrumented code live on
# as long as a pointer into them might (iovecs, msghdrs, out-parameters).
# PYTHONMALLOC=malloc: Python objects come from malloc, so ASan sees their
# lifetimes (a use after the last decref is a heap-use-after-free).
asan=(env PYTHONMALLOC=malloc LD_PRELOAD="$runtime"
      ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:detect_stack_use_after_return=1:log_path=$logs/asan")

# Positive control: a use-after-free through libc's memset must be reported,
# or the runtime is not active and a clean run would prove nothing.
"${asan[@]}" "$venv/bin/python" -c 'import ctypes
libc = ctypes.CDLL(None); libc.malloc.restype = ctypes.c_void_p
p = libc.malloc(16); libc.free(ctypes.c_void_p(p)); ctypes.memset(p, 0, 16)'
grep -qs "heap-use-after-free" "$logs"/asan.* || die "the positive control was not reported: is ASan active?"
rm -f "$logs"/asan.*
# ...and the tests, run from here, must import the instrumented build.
imported=$("${asan[@]}" "$venv/bin/python" -c 'import ferroloop._ferroloop as m; print(m.__file__)')
[ "$imported" = "$so" ] || die "python imports ferroloop._ferroloop from '$imported', not $so"

run() {  # run NAME [VAR=value...] -- PYTEST-ARGS...: one pytest process per group,
    local name=$1 envs=() t0=$SECONDS rc  # so that an abort in one spares the others
    shift; while [ "$1" != -- ]; do envs+=("$1"); shift; done; shift
    # no:faulthandler: a crash then reaches ASan's handler first, which
    # reports where it happened, not where faulthandler re-raised it.
    "${asan[@]}" "${envs[@]}" "$venv/bin/python" -m pytest -v -p no:faulthandler "$@" >"$logs/$name.log" 2>&1
    rc=$?
    echo "$name: pytest exit $rc in $((SECONDS - t0)) s: $(tail -n 1 "$logs/$name.log")"
    return $rc
}

failed=0
# Tasks and their finalizers, sock_* operations and their cancellation,
# transports closed in callbacks, write buffers, datagrams, TLS, bad input,
# and the differential fuzzers' programs and hostile arguments.
# The two RSS bounds of test_stress.py do not hold with ASan's quarantine and
# shadow memory; their workloads run in the last group, judged by ASan only.
rss="test_million_tasks_rss_back_near_baseline or test_sock_ops_and_datagram_transports_do_not_leak"
run own -- -k "not ($rss)" \
    tests/test_stress.py tests/test_sock_ops.py tests/test_transport_writes.py \
    tests/test_network_faults.py tests/test_datagram.py tests/test_tls.py \
    tests/test_bad_input.py tests/test_api.py tests/test_asyncio_private_api.py tests/fuzz || failed=1
# CPython's own test_asyncio on ferroloop: Future/Task (core) and loop I/O.
run conformance FERROLOOP_CONFORMANCE_GROUPS=core,io -- tests/conformance || failed=1
# uvloop's TCP/UDP/unix/socket tests on ferroloop's native transports.
run uvloop FERROLOOP_UVLOOP_SUITE=1 FERROLOOP_UVLOOP_TARGETS=ferro -- tests/uvloop_suite/networking || failed=1
run rss-workloads -- -k "$rss" tests/test_stress.py ||
    echo "rss-workloads: their RSS assertions are expected to fail here; only ASan reports count"

reports=$(grep -l "ERROR: AddressSanitizer" "$logs"/asan.* 2>/dev/null)
for f in "$logs"/asan.*; do [ -e "$f" ] && { echo "=== $f"; cat "$f"; }; done
if [ -n "$reports" ]; then
    echo "asan.sh: AddressSanitizer reported $(echo "$reports" | wc -l) error(s); logs in $logs"
    exit 1
fi
[ $failed -eq 0 ] || { echo "asan.sh: no ASan report, but a test group failed; logs in $logs"; exit 2; }
echo "asan.sh: no AddressSanitizer report"
