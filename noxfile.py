"""The whole test suite on every supported Python: ``python3 -m nox``.

Sessions:

* ``engine`` — ``cargo test`` of the pure-Rust engine (no Python involved);
* ``tests-3.11``, ``tests-3.12``, ``tests-3.13`` — in a fresh virtualenv of
  that interpreter: ``pip install .[test]`` (the release build of the
  extension for that Python) and ``python -m pytest`` (our tests, CPython's
  own ``test.test_asyncio`` of that interpreter through the conformance
  layer, uvloop's suite, the seed examples, and ``tests/integration``,
  which starts its own PostgreSQL, Redis and MariaDB).
* ``wheels`` — the release build (``tools/wheels.py``): manylinux_2_17
  wheels for 3.11-3.13 (maturin with zig) and an sdist, checked by
  ``auditwheel show``, each installed into a fresh virtualenv with no Rust
  on PATH and run on ``examples/hello.py``. Output in ``dist/``.

Interpreters are found on PATH (``python3.12``...) and, where pyenv is
installed, among pyenv's versions (the newest patch release of each minor).
A missing interpreter is skipped with a message on a contributor's machine;
under CI (``CI`` set in the environment, as ``.ci/run`` does) it is an error.
Arguments after ``--`` go to pytest, e.g. ``nox -s tests-3.13 -- -x tests/test_api.py``.
"""

import os
import pathlib
import re
import shutil
import subprocess

import nox

PYTHONS = ["3.11", "3.12", "3.13"]

nox.options.sessions = ["engine", "tests", "wheels"]
# An interpreter that is not on this machine must not be downloaded behind
# the user's back: found here, or skipped (an error under CI).
nox.options.download_python = "never"


def _pyenv_bin_dirs():
    """bin directories of pyenv's newest installed 3.11/3.12/3.13."""
    pyenv = shutil.which("pyenv")
    if pyenv is None:
        return []
    try:
        out = subprocess.run([pyenv, "versions", "--bare"], capture_output=True, text=True, check=True).stdout
        root = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return []
    newest = {}
    for line in out.split():
        m = re.fullmatch(r"(3\.\d+)\.(\d+)", line)
        if m and m.group(1) in PYTHONS:
            if int(m.group(2)) >= newest.get(m.group(1), (-1, ""))[0]:
                newest[m.group(1)] = (int(m.group(2)), line)
    return [str(pathlib.Path(root, "versions", v, "bin")) for _, v in newest.values()]


# pyenv's shims answer `python3.12` only for the versions selected with
# `pyenv global/local`; its version directories always have them.
os.environ["PATH"] = os.pathsep.join(_pyenv_bin_dirs() + [os.environ.get("PATH", "")])


@nox.session(python=False)
def engine(session):
    """cargo test of the pure-Rust engine crate."""
    session.run("cargo", "test", "-p", "ferroloop-engine", external=True)


@nox.session(python=PYTHONS)
def tests(session):
    """Install ferroloop with its test dependencies and run the suite."""
    session.install(".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python=PYTHONS[0])
def wheels(session):
    """manylinux wheels + sdist, audited and smoke-tested without Rust."""
    session.install("maturin>=1.7,<2", "ziglang", "auditwheel")
    session.run("python", "tools/wheels.py", *session.posargs)
