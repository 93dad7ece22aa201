"""uvloop 0.23.0's tests/test_udp.py: its AIO classes and their ferroloop clones.

Collected only with FERROLOOP_UVLOOP_SUITE=1; see ../README.md.
"""

import pytest

import _uvloop_upstream as _up

try:
    globals().update(_up.load("test_udp", __name__))
except _up.MissingDependency as _e:
    pytest.skip(str(_e), allow_module_level=True)
