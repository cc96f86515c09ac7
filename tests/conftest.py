"""Shared helpers for the tests: random inputs, the comparison rule, and the
helpers of more than one test file (resident memory, a network's bytes)."""

import os
import sys

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


def z_buffer(activation, n, d):
    """The (n, d) buffer for the pre-activation Z that dense_forward keeps and
    dense_backward takes for "silu" (None for the activations whose g' comes
    from Y)."""
    return np.empty((n, d)) if activation == "silu" else None


# max |g'| over the activations (silu' reaches 1.0998 near z = 2.4; the others 1)
G_PRIME_MAX = 1.1


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


# --- resident memory (the kernels' and the network's leak tests) -------------

PAGE = 4096
RSS_BOUND = 1 << 20  # 1 MiB of allocator noise allowed after warm-up


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def growth(step, calls, warmup=2000):
    """RSS after ``calls`` runs of ``step`` minus RSS after warm-up."""
    for _ in range(warmup):
        step()
    before = rss()
    for _ in range(calls):
        step()
    after = rss()
    sys.stderr.write(f"RSS {before / 2**20:.2f} MiB -> {after / 2**20:.2f} MiB\n")
    return after - before, before, after


# --- networks (fastbp.MLP's tests: network, training, checkpoint) ------------

def random_regression(n=64, k=5, d=3, seed=0):
    """(X, T): n rows of k standard-normal inputs and d targets."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, k)), rng.standard_normal((n, d))


def params_bytes(net):
    """A network's weights and biases as bytes: equal only when bitwise equal."""
    return b"".join(np.ascontiguousarray(a).tobytes() for a in (*net.weights, *net.biases))


def softmax(Z):
    """Row-wise softmax, shifted by each row's maximum."""
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    return E / E.sum(axis=1, keepdims=True)
