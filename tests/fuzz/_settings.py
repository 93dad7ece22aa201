"""How long the fuzzers run.

CI runs a fixed number of examples from a fixed seed (hypothesis's
``derandomize``), so a run is repeatable and bounded. Locally,
``FERROLOOP_FUZZ_EXAMPLES=N`` runs N examples per test from a random seed
(hypothesis prints the seed and a reproducer for any failure);
``FERROLOOP_FUZZ_SEED=S`` then replays one.
"""

import os

from hypothesis import HealthCheck, settings

_N = os.environ.get("FERROLOOP_FUZZ_EXAMPLES")
_SEED = os.environ.get("FERROLOOP_FUZZ_SEED")


def fuzz_settings(default_examples):
    """Settings for one fuzz test: ``default_examples`` derandomized in CI."""
    common = dict(
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
        print_blob=True,
    )
    if _N is None and _SEED is None:
        return settings(max_examples=default_examples, derandomize=True, **common)
    return settings(max_examples=int(_N or default_examples), **common)


def fuzz_seed(test):
    """Apply FERROLOOP_FUZZ_SEED, when given, to a hypothesis test."""
    if _SEED is None:
        return test
    from hypothesis import seed

    return seed(int(_SEED))(test)
