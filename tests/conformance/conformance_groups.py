"""Module groups of the conformance layer (shared by conftest and compare.py).

``core``
    Future, Task and the scheduling half of the loop.  Part of the default
    ``python -m pytest`` run and of CI.
``io``
    Loop-level I/O: sockets, transports, servers, streams, TLS, sendfile,
    pipes, signal handlers (``test_events`` & co).  Not collected by default.
``proc``
    Subprocesses (``test_subprocess`` and the ``SubprocessTestsMixin`` part of
    ``test_events``).  Not collected by default.

A module outside the default groups is collected when its group is listed in
``FERROLOOP_CONFORMANCE_GROUPS`` (comma-separated group names, or ``all``), or
when its file is named explicitly on the pytest command line (which is what
``compare.py`` does).
"""

import os
import sys

ENV_VAR = "FERROLOOP_CONFORMANCE_GROUPS"

GROUPS = {
    "core": (
        "test_conf_context.py",
        "test_conf_eager_task_factory.py",
        "test_conf_futures.py",
        "test_conf_futures2.py",
        "test_conf_locks.py",
        "test_conf_pep492.py",
        "test_conf_queues.py",
        "test_conf_runners.py",
        "test_conf_staggered.py",
        "test_conf_taskgroups.py",
        "test_conf_tasks.py",
        "test_conf_threads.py",
        "test_conf_timeouts.py",
        "test_conf_waitfor.py",
    ),
    "io": (
        "test_conf_base_events.py",
        "test_conf_buffered_proto.py",
        "test_conf_events.py",
        "test_conf_sendfile.py",
        "test_conf_server.py",
        "test_conf_sock_lowlevel.py",
        "test_conf_ssl.py",
        "test_conf_sslproto.py",
        "test_conf_streams.py",
        "test_conf_unix_events.py",
    ),
    "proc": (
        "test_conf_events_subprocess.py",
        "test_conf_subprocess.py",
    ),
}

DEFAULT = ("core",)

#: Modules whose upstream module first exists in that Python version; on an
#: older interpreter they are not collected (nothing to run).
SINCE = {
    "test_conf_eager_task_factory.py": (3, 12),
    "test_conf_staggered.py": (3, 13),
}


def exists_here(module):
    """Whether the running Python has the upstream module of ``module``."""
    return sys.version_info >= SINCE.get(module, (0,))


def group_of(module):
    """The group of a ``test_conf_*.py`` file name (None: unknown)."""
    for group, modules in GROUPS.items():
        if module in modules:
            return group
    return None


def parse(spec):
    """``"core,io"`` / ``"all"`` -> tuple of group names (ValueError if bad)."""
    names = [s.strip().lower() for s in spec.split(",") if s.strip()]
    if "all" in names:
        return tuple(GROUPS)
    bad = [n for n in names if n not in GROUPS]
    if bad:
        raise ValueError(f"unknown conformance group(s) {', '.join(bad)}; "
                         f"known: {', '.join(GROUPS)}, all")
    return tuple(names)


def enabled():
    """Groups collected when a directory (not a file) is collected."""
    spec = os.environ.get(ENV_VAR, "").strip()
    return parse(spec) if spec else DEFAULT
