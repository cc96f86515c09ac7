"""Shared helpers for the tests: random inputs and the comparison rule."""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# CI gets more Hypothesis examples than a developer's quick run.
settings.register_profile("ci", max_examples=200, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=50, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")

RTOL = 1e-12


def assert_sums_close(got, want, terms_bound=None, rtol=RTOL):
    """|got − want| ≤ rtol · (Σ|terms| + |want|), entry by entry.

    A sum computed in another order (the BLAS blocks differently from NumPy)
    differs by a few ulp of the sum of the absolute values of its terms, not
    of the result: an entry that cancels to nearly zero can differ a lot
    relative to itself.  ``terms_bound`` is that Σ|terms| for each entry
    (e.g. |A| |B|ᵀ for C = A Bᵀ); without it this is a plain rtol check.
    NaN must meet NaN and ±inf the same infinity.
    """
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    bound = np.abs(want) if terms_bound is None else np.abs(terms_bound) + np.abs(want)
    with np.errstate(invalid="ignore"):
        ok = np.abs(got - want) <= rtol * bound
    ok |= (got == want) | (np.isnan(got) & np.isnan(want))
    assert ok.all(), (
        f"{(~ok).sum()} of {ok.size} entries differ beyond rtol {rtol}; worst: "
        f"got {got[~ok][:3]}, want {want[~ok][:3]}")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
