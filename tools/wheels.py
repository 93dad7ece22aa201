"""Release build: manylinux wheels for every supported Python, plus an sdist,
checked and smoke-tested.

    python tools/wheels.py [--out DIR] [--python 3.11 ...]

Needs maturin, ziglang and auditwheel (``python3 -m nox -s wheels`` installs
them into its own virtualenv and runs this), Rust, and the interpreters on
PATH (``python3.11``...; the noxfile adds pyenv's). Steps:

1. ``maturin build --release --zig --compatibility manylinux2014`` for each
   interpreter: zig links against glibc 2.17's symbols, so the wheel
   installs on any distribution with glibc 2.17 or newer (a local build is
   tagged for the build machine's glibc instead);
2. ``maturin sdist``;
3. ``auditwheel show`` must find each wheel consistent with
   ``manylinux_2_17_x86_64`` (or that platform's machine);
4. each wheel goes into a fresh virtualenv of its Python, and
   ``examples/hello.py`` runs on it through ``python -m ferroloop`` with no
   Rust toolchain on PATH, from a directory outside the checkout.

Exits non-zero at the first failure.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHONS = ["3.11", "3.12", "3.13"]
MANYLINUX = f"manylinux_2_17_{platform.machine()}"


def run(*cmd: str | os.PathLike[str], **kw: object) -> subprocess.CompletedProcess[str]:
    print("+", " ".join(map(str, cmd)), flush=True)
    return subprocess.run([str(c) for c in cmd], check=True, text=True, **kw)  # type: ignore[call-overload]


def interpreter(version: str) -> str:
    found = shutil.which(f"python{version}")
    if found is None:
        raise SystemExit(f"python{version} is not on PATH")
    return found


def build(out: Path, versions: list[str]) -> list[Path]:
    env = dict(os.environ)
    # A target directory of its own: zig links differently from the tests'
    # builds, which would otherwise be rebuilt from scratch each time.
    env.setdefault("CARGO_TARGET_DIR", str(ROOT / "target" / "wheels"))
    wheels = []
    for v in versions:
        before = set(out.glob("*.whl"))
        run("maturin", "build", "--release", "--zig", "--compatibility", "manylinux2014",
            "-i", interpreter(v), "-o", out, cwd=ROOT, env=env)
        new = sorted(set(out.glob("*.whl")) - before) or sorted(out.glob(f"*-cp{v.replace('.', '')}-*.whl"))
        wheels.append(new[-1])
    run("maturin", "sdist", "-o", out, cwd=ROOT, env=env)
    return wheels


def audit(wheel: Path) -> None:
    r = run("auditwheel", "show", wheel, capture_output=True)
    text = " ".join(r.stdout.split())
    print(text)
    if f'consistent with the following platform tag: "{MANYLINUX}"' not in text:
        raise SystemExit(f"{wheel.name}: auditwheel does not find it {MANYLINUX}")


def without_rust(env: dict[str, str]) -> dict[str, str]:
    cargo = shutil.which("cargo")
    rustc = shutil.which("rustc")
    bad = {str(Path(p).parent) for p in (cargo, rustc) if p}
    env = {k: v for k, v in env.items() if k not in ("CARGO_HOME", "RUSTUP_HOME", "CARGO_TARGET_DIR", "VIRTUAL_ENV")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p and p not in bad)
    return env


def smoke(wheel: Path, version: str) -> None:
    with tempfile.TemporaryDirectory(prefix="ferroloop-wheel-") as tmp:
        venv = Path(tmp, "venv")
        run(interpreter(version), "-m", "venv", venv)
        py = venv / "bin" / "python"
        env = without_rust(dict(os.environ))
        if shutil.which("cargo", path=env["PATH"]) or shutil.which("rustc", path=env["PATH"]):
            raise SystemExit("could not take Rust off PATH for the smoke test")
        # --no-index: the wheel has no dependencies, and nothing may be built.
        run(py, "-m", "pip", "install", "-q", "--no-index", "--only-binary", ":all:", wheel, env=env, cwd=tmp)
        example = Path(tmp, "hello.py")
        shutil.copy(ROOT / "examples" / "hello.py", example)
        r = run(py, "-m", "ferroloop", example, env=env, cwd=tmp, capture_output=True)
        print(r.stdout, end="")
        if "running on ferroloop._loop.Loop" not in r.stdout:
            raise SystemExit(f"{wheel.name}: the example did not run on ferroloop: {r.stdout!r}")
        check = (
            "import ferroloop, sys; "
            "assert ferroloop.__file__.startswith(sys.prefix), ferroloop.__file__; "
            "print(ferroloop.run(__import__('asyncio').sleep(0, 'on the wheel')))"
        )
        r = run(py, "-c", check, env=env, cwd=tmp, capture_output=True)
        if r.stdout.strip() != "on the wheel":
            raise SystemExit(f"{wheel.name}: unexpected output {r.stdout!r}")
        print(f"{wheel.name}: installs without Rust and runs", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "dist")
    ap.add_argument("--python", action="append", dest="versions", help="only these (default: 3.11 3.12 3.13)")
    args = ap.parse_args()
    versions = args.versions or PYTHONS
    args.out.mkdir(parents=True, exist_ok=True)
    wheels = build(args.out.resolve(), versions)
    for w in wheels:
        audit(w)
    for w, v in zip(wheels, versions):
        smoke(w, v)
    print("sdist:", *sorted(p.name for p in args.out.glob("*.tar.gz")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
