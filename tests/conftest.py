"""Defaults for the whole test run.

``python -m pytest`` (the README's test command, and CI) runs everything:
our own tests, all groups of the CPython conformance layer (core, I/O,
processes) and uvloop's test suite cloned onto ferroloop. Each default can be
overridden from the environment for a quicker local run, e.g.
``FERROLOOP_CONFORMANCE_GROUPS=core FERROLOOP_UVLOOP_SUITE=0 python -m pytest``.
"""

import os

os.environ.setdefault("FERROLOOP_CONFORMANCE_GROUPS", "all")
os.environ.setdefault("FERROLOOP_UVLOOP_SUITE", "1")
# In the default run the uvloop suite runs its ferroloop clones only; the
# stdlib baseline is measured by tests/uvloop_suite/run.py.
os.environ.setdefault("FERROLOOP_UVLOOP_TARGETS", "ferro")
