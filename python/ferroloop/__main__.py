"""``python -m ferroloop script.py [args]`` / ``python -m ferroloop -m module [args]``.

Runs an unmodified asyncio program with ferroloop as the event loop: the
program's own ``asyncio.run()`` and ``asyncio.new_event_loop()`` get a
ferroloop loop.

``python -m ferroloop ps PID`` / ``python -m ferroloop pstree PID`` show the
tasks of a running process whose loop has the inspector on
(``FERROLOOP_INSPECT=1``; docs/observability.md). A script named ``ps`` or
``pstree`` is run as ``./ps``.
"""

import os
import runpy
import sys
import warnings


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = "usage: python -m ferroloop (script.py | -m module) [args ...] | (ps | pstree) PID"
    if argv and argv[0] in ("ps", "pstree"):
        from . import _tools

        return _tools.main(argv[0], argv[1:])
    if not argv or argv[0] in ("-h", "--help"):
        print(usage, file=sys.stderr if not argv else sys.stdout)
        return 2 if not argv else 0
    import asyncio
    import importlib.util

    import ferroloop

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        asyncio.set_event_loop_policy(ferroloop.EventLoopPolicy())
    if argv[0] == "-m":
        if len(argv) < 2:
            print(usage, file=sys.stderr)
            return 2
        try:
            spec_found = importlib.util.find_spec(argv[1]) is not None
        except (ImportError, ValueError):
            spec_found = False
        if not spec_found:
            # What `python -m missing` says, and its status.
            print(f"{sys.executable}: No module named {argv[1]}", file=sys.stderr)
            return 1
        sys.argv = argv[1:]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        if not os.path.exists(argv[0]):
            # What `python missing.py` says, and its status.
            print(
                f"{sys.executable}: can't open file {os.path.abspath(argv[0])!r}: "
                f"[Errno 2] No such file or directory",
                file=sys.stderr,
            )
            return 2
        sys.argv = argv
        runpy.run_path(argv[0], run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
