"""Run uvloop's own test suite against ferroloop, without vendoring it.

What this module does, at test time:

1. ``sdist_root()`` fetches uvloop's sdist (``pip download --no-binary uvloop
   --no-deps uvloop==0.23.0``), checks its sha256 and unpacks only ``tests/``
   and ``uvloop/_testbase.py`` into a cache directory (default
   ``~/.cache/ferroloop/uvloop-0.23.0``; ``FERROLOOP_UVLOOP_CACHE`` overrides
   it, ``FERROLOOP_UVLOOP_SDIST`` points at an already downloaded tarball).
   Nothing of uvloop's is stored in this repository.
2. ``load(module)`` imports ``tests/<module>.py`` of the sdist as
   ``_uvloop_upstream_tests.<module>`` (uvloop's ``_testbase`` is taken from
   the same sdist, so tests and test base always match) and returns the test
   classes to expose, by target (``FERROLOOP_UVLOOP_TARGETS``, default
   ``aio,ferro``):

   * ``aio``: upstream's classes built on ``tb.AIOTestCase`` (stdlib loop),
     unchanged: the baseline;
   * ``ferro``: a clone of each of those, same name with ``AIO`` replaced by
     ``FERRO`` (``Test_AIO_TCP`` -> ``Test_FERRO_TCP``, ``TestAIOSockets`` ->
     ``TestFERROSockets``), same mixins, same class body, with
     ``tb.AIOTestCase`` swapped for ``FerroTestCase`` below;
   * ``uv``: upstream's ``tb.UVTestCase`` classes (needs uvloop installed),
     for reference only.

Expectations (``FERROLOOP_UVLOOP_EXPECT``): upstream branches on
``self.implementation == 'asyncio'`` / ``!= 'asyncio'`` / ``== 'uvloop'`` and
on ``self.is_asyncio_loop()``. Nearly every such branch is about a known
limitation of asyncio's *transports* (SSL shutdown, context propagation in
callbacks, pause/resume of SSL reads, ...). ferroloop currently drives
asyncio's own selector transports, so by default (``asyncio``) the clones are
held to asyncio's expectations: ``implementation`` is the string
``'ferroloop'`` (used as such where upstream formats or prefixes it: the
default executor thread-name test, the free-threading program) but compares
equal to ``'asyncio'``, and ``is_asyncio_loop()`` is true. With ``strict``
it is a plain ``'ferroloop'``: every ``!= 'asyncio'`` branch then applies
uvloop's stricter expectation (the ``== 'uvloop'`` branches still do not,
since they poke uvloop internals). Use ``strict`` once native transports land.
"""

import fcntl
import hashlib
import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import types

UVLOOP_VERSION = "0.23.0"
SDIST_NAME = f"uvloop-{UVLOOP_VERSION}.tar.gz"
SDIST_SHA256 = "28d160f51ab4da3b187063652e643dea6831072add4adc1e6d62afbe73b6be27"

PACKAGE = "_uvloop_upstream_tests"

# Upstream test modules by group (one directory per group next to this file).
GROUPS = {
    "networking": (
        "test_tcp", "test_udp", "test_unix", "test_sockets", "test_dns",
        "test_context", "test_base", "test_executors",
    ),
    "processes": ("test_process", "test_pipes", "test_signals"),
}

# Third-party modules upstream imports at module level -> PyPI name. Without
# them upstream's module fails to import as a whole; here a placeholder module
# is put in their place instead, whose every attribute raises SkipTest, so
# only the tests that use them are skipped (see README).
OPTIONAL_DEPS = {"OpenSSL": "pyOpenSSL", "psutil": "psutil"}
# Needed by every upstream module (tests and _testbase import it).
REQUIRED_DEPS = {"uvloop": "uvloop"}

TARGETS_ENV = "FERROLOOP_UVLOOP_TARGETS"
EXPECT_ENV = "FERROLOOP_UVLOOP_EXPECT"
ALL_TARGETS = ("aio", "ferro", "uv")


# --- fetching the sdist ----------------------------------------------------

def cache_dir():
    default = os.path.join(os.path.expanduser("~"), ".cache", "ferroloop",
                           f"uvloop-{UVLOOP_VERSION}")
    return os.environ.get("FERROLOOP_UVLOOP_CACHE") or default


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download(dest_dir):
    given = os.environ.get("FERROLOOP_UVLOOP_SDIST")
    if given:
        return given
    tmp = tempfile.mkdtemp(prefix="uvloop-sdist-", dir=dest_dir)
    try:
        # --no-binary uvloop (not :all:): pip still prepares metadata in an
        # isolated build env; letting the build deps (Cython, setuptools) be
        # wheels keeps that at a few seconds instead of minutes.
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps",
               "--no-binary", "uvloop", "--disable-pip-version-check",
               f"uvloop=={UVLOOP_VERSION}", "-d", tmp]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        path = os.path.join(tmp, SDIST_NAME)
        if proc.returncode != 0 or not os.path.isfile(path):
            raise RuntimeError(
                f"could not download uvloop's sdist ({' '.join(cmd)}):\n"
                + proc.stdout[-3000:])
        final = os.path.join(dest_dir, SDIST_NAME)
        os.replace(path, final)
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _wanted(name):
    # "uvloop-0.23.0/tests/..." and "uvloop-0.23.0/uvloop/_testbase.py"
    parts = name.split("/", 2)
    if len(parts) < 2 or ".." in name.split("/") or name.startswith("/"):
        return False
    return parts[1] == "tests" or parts[1:] == ["uvloop", "_testbase.py"]


def sdist_root():
    """Directory holding the sdist's ``tests/`` and ``uvloop/_testbase.py``."""
    base = cache_dir()
    root = os.path.join(base, f"uvloop-{UVLOOP_VERSION}")
    stamp = os.path.join(base, ".complete")
    if os.path.exists(stamp):
        return root
    os.makedirs(base, exist_ok=True)
    with open(os.path.join(base, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # parallel runners: one fetch
        if os.path.exists(stamp):
            return root
        tarball = os.path.join(base, SDIST_NAME)
        if not (os.path.isfile(tarball) and _sha256(tarball) == SDIST_SHA256):
            tarball = _download(base)
        digest = _sha256(tarball)
        if digest != SDIST_SHA256:
            raise RuntimeError(f"{tarball}: sha256 {digest}, "
                               f"expected {SDIST_SHA256}")
        shutil.rmtree(root, ignore_errors=True)
        with tarfile.open(tarball) as tf:
            members = [m for m in tf.getmembers()
                       if _wanted(m.name) and (m.isfile() or m.isdir())]
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tf.extractall(base, members=members, **kwargs)
        with open(stamp, "w") as f:
            f.write(digest + "\n")
    return root


# --- importing upstream ------------------------------------------------------

class MissingDependency(Exception):
    def __init__(self, module, package):
        super().__init__(f"needs {package} (pip install {package}): "
                         f"upstream imports {module!r} at module level")
        self.package = package


def _install_testbase(root):
    """Make ``uvloop._testbase`` the sdist's copy (the installed uvloop may be
    another version). Imports the installed ``uvloop`` package."""
    import uvloop
    existing = sys.modules.get("uvloop._testbase")
    path = os.path.join(root, "uvloop", "_testbase.py")
    if existing is not None and getattr(existing, "__file__", None) == path:
        return existing
    spec = importlib.util.spec_from_file_location("uvloop._testbase", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["uvloop._testbase"] = mod
    spec.loader.exec_module(mod)
    uvloop._testbase = mod
    return mod


class _Placeholder(types.ModuleType):
    """Stands in for a missing optional package: using it skips the test."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        import unittest
        raise unittest.SkipTest(f"needs {self.__package_name} "
                                f"(pip install {self.__package_name})")

    def __init__(self, name, package):
        super().__init__(name)
        self.__dict__["_Placeholder__package_name"] = package


MISSING_OPTIONAL = []


def _stand_in_for_missing_optional_deps():
    for top, package in OPTIONAL_DEPS.items():
        if top in sys.modules:
            continue
        try:
            importlib.import_module(top)
        except ImportError:
            sys.modules[top] = _Placeholder(top, package)
            MISSING_OPTIONAL.append(package)
    # upstream does `from OpenSSL import SSL`
    ossl = sys.modules["OpenSSL"]
    if isinstance(ossl, _Placeholder) and "OpenSSL.SSL" not in sys.modules:
        sub = _Placeholder("OpenSSL.SSL", OPTIONAL_DEPS["OpenSSL"])
        sys.modules["OpenSSL.SSL"] = sub
        ossl.__dict__["SSL"] = sub


def import_upstream(module):
    """Import the sdist's ``tests/<module>.py``; returns the module."""
    root = sdist_root()
    try:
        _stand_in_for_missing_optional_deps()
        _install_testbase(root)
        if PACKAGE not in sys.modules:
            pkg = types.ModuleType(PACKAGE)
            pkg.__path__ = [os.path.join(root, "tests")]
            pkg.__file__ = os.path.join(root, "tests", "__init__.py")
            sys.modules[PACKAGE] = pkg
        return importlib.import_module(f"{PACKAGE}.{module}")
    except ModuleNotFoundError as e:
        top = (e.name or "").split(".")[0]
        if top in REQUIRED_DEPS:
            raise MissingDependency(top, REQUIRED_DEPS[top]) from e
        raise


# --- the ferroloop test base --------------------------------------------------

class _Implementation(str):
    """``'ferroloop'`` that compares equal to ``'asyncio'`` (see docstring)."""

    __slots__ = ()

    def __eq__(self, other):
        if other == "asyncio":
            return True
        return str.__eq__(self, other)

    def __ne__(self, other):
        return not self.__eq__(other)

    __hash__ = str.__hash__


def expect_mode():
    mode = os.environ.get(EXPECT_ENV, "asyncio") or "asyncio"
    if mode not in ("asyncio", "strict"):
        raise ValueError(f"{EXPECT_ENV} must be 'asyncio' or 'strict', not {mode!r}")
    return mode


_ferro_base = None


def ferro_test_case():
    """``FerroTestCase``: uvloop's ``tb.BaseTestCase`` on ferroloop's loop."""
    global _ferro_base
    if _ferro_base is not None:
        return _ferro_base
    import ferroloop
    tb = sys.modules["uvloop._testbase"]
    asyncio_expectations = expect_mode() == "asyncio"

    class FerroTestCase(tb.BaseTestCase):
        implementation = (_Implementation("ferroloop") if asyncio_expectations
                          else "ferroloop")

        # Unlike tb.AIOTestCase.setUp, no SafeChildWatcher is attached on
        # 3.11: it needs loop.add_signal_handler(SIGCHLD), and child watching
        # is the loop's business (asyncio's policy default, a
        # ThreadedChildWatcher, needs nothing from the loop).

        def new_loop(self):
            return ferroloop.new_event_loop()

        def new_policy(self):
            return ferroloop.EventLoopPolicy()

        if asyncio_expectations:
            def is_asyncio_loop(self):
                return True

    FerroTestCase.__module__ = __name__
    _ferro_base = FerroTestCase
    return FerroTestCase


# Class attributes that name the loop in code run by a child interpreter.
FERRO_CLASS_OVERRIDES = {
    # test_signals: pasted into `loop = <NEW_LOOP>` of a program that only
    # imports asyncio and uvloop.
    "NEW_LOOP": "__import__('ferroloop').new_event_loop()",
}


def _clone(cls, old_base, new_base, name, module_name):
    bases = tuple(new_base if b is old_base else b for b in cls.__bases__)
    ns = {k: v for k, v in vars(cls).items()
          if k not in ("__dict__", "__weakref__")}
    for attr, value in FERRO_CLASS_OVERRIDES.items():
        if hasattr(cls, attr):
            ns[attr] = value
    ns["__module__"] = module_name
    ns["__qualname__"] = name
    return type(cls)(name, bases, ns)


def targets():
    raw = os.environ.get(TARGETS_ENV, "aio,ferro")
    chosen = tuple(t.strip() for t in raw.split(",") if t.strip())
    bad = [t for t in chosen if t not in ALL_TARGETS]
    if bad:
        raise ValueError(f"{TARGETS_ENV}: unknown target(s) {bad}; "
                         f"choose from {ALL_TARGETS}")
    return chosen


def load(module, into_module):
    """Test classes of upstream ``module`` to put in ``into_module``'s namespace."""
    up = import_upstream(module)
    tb = sys.modules["uvloop._testbase"]
    chosen = targets()
    out = {}
    for name, obj in vars(up).items():
        if not (isinstance(obj, type) and obj.__module__ == up.__name__):
            continue
        if tb.AIOTestCase in obj.__bases__:
            if "aio" in chosen:
                out[name] = obj
            if "ferro" in chosen:
                new = name.replace("AIO", "FERRO")
                assert new != name and new not in vars(up), name
                out[new] = _clone(obj, tb.AIOTestCase, ferro_test_case(),
                                  new, into_module)
        elif "uv" in chosen and issubclass(obj, tb.UVTestCase):
            out[name] = obj
        elif issubclass(obj, tb.AIOTestCase):
            raise RuntimeError(f"{module}.{name} derives from AIOTestCase "
                               "indirectly; teach _clone about it")
    return out
