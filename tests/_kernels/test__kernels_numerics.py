"""fastbp._kernels, numerics: NaN and ±inf go exactly where the reference
puts them (every output, tiny and larger products), and finite inputs up to
±1e308 raise no warning and give the reference's elementwise results.

(Activation limits and db's NaN pattern are in test__kernels_vs_reference.py;
the network's losses at ±1e300 are in tests/test_network.py.)"""

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastbp
from fastbp import reference as ref

SPECIAL = [np.nan, np.inf, -np.inf]
SHAPES = [(3, 4, 2), (9, 33, 40), (40, 41, 42)]


def sprinkle(rng, a, count=3):
    a = a.copy()
    for _ in range(count):
        a.flat[rng.integers(a.size)] = SPECIAL[rng.integers(3)]
    return a


def assert_same_specials(got, want):
    """NaN where the reference has NaN, the same infinity where it has one,
    and close values elsewhere."""
    got, want = np.asarray(got), np.asarray(want)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want))
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
    fin = np.isfinite(want)
    np.testing.assert_allclose(got[fin], want[fin], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("n,k,d", SHAPES)
def test_matmul_specials_land_where_the_reference_puts_them(n, k, d, seed):
    rng = np.random.default_rng(seed)
    A, B, dC = (sprinkle(rng, rng.standard_normal(s)) for s in ((n, k), (d, k), (n, d)))
    with np.errstate(invalid="ignore"):
        want = [ref.matmul_abt(A, B), *ref.matmul_abt_backward(dC, A, B)]
    got = [fastbp.matmul_abt(A, B), *fastbp.matmul_abt_backward(dC, A, B)]
    for g, w in zip(got, want):
        assert_same_specials(g, w)


@pytest.mark.parametrize("activation", fastbp.ACTIVATIONS)
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n,k,d", SHAPES)
def test_dense_specials_land_where_the_reference_puts_them(n, k, d, activation, seed):
    rng = np.random.default_rng(seed)
    X, W, dY = (sprinkle(rng, rng.standard_normal(s)) for s in ((n, k), (d, k), (n, d)))
    b = sprinkle(rng, rng.standard_normal(d), count=1)
    Z = np.empty((n, d)) if activation == "silu" else None
    with np.errstate(invalid="ignore", over="ignore"):
        Y = ref.dense_forward(X, W, b, activation, Z=Z)
        want = ref.dense_backward(dY, X, W, Y, activation, Z=Z)
    assert_same_specials(fastbp.dense_forward(X, W, b, activation), Y)
    for g, w in zip(fastbp.dense_backward(dY, X, W, Y, activation, Z=Z), want):
        assert_same_specials(g, w)


@pytest.mark.parametrize("reduction", fastbp.REDUCTIONS)
@pytest.mark.parametrize("y,t,loss", [(np.nan, 0.0, np.nan), (np.inf, 0.0, np.inf),
                                      (-np.inf, 0.0, np.inf), (np.inf, np.inf, np.nan),
                                      (1e200, -1e200, np.inf)])
def test_squared_error_specials(reduction, y, t, loss):
    Y, T = np.zeros((3, 5)), np.ones((3, 5))
    Y[1, 2], T[1, 2] = y, t
    got_loss, got_dY = fastbp.squared_error(Y, T, reduction)
    with np.errstate(invalid="ignore", over="ignore"):
        want_loss, want_dY = ref.squared_error(Y, T, reduction)
    assert np.isnan(got_loss) if np.isnan(loss) else got_loss == loss
    assert np.isnan(want_loss) if np.isnan(loss) else want_loss == loss
    np.testing.assert_array_equal(got_dY, want_dY)  # elementwise: bitwise


finite = st.floats(-1e308, 1e308, allow_nan=False, allow_infinity=False)
ROUNDED = ("elu", "softplus", "silu")
arrays = st.lists(finite, min_size=6, max_size=6).map(lambda v: np.array(v).reshape(2, 3))


@given(Y=arrays, T=arrays, dY=arrays, activation=st.sampled_from(fastbp.ACTIVATIONS),
       reduction=st.sampled_from(fastbp.REDUCTIONS))
def test_finite_inputs_raise_no_warning(Y, T, dY, activation, reduction):
    """Any finite input, however large: no warning from any kernel (they are
    errors here), and elementwise results bitwise as in the reference."""
    b = Y[0]
    X, W = np.zeros((2, 0)), np.zeros((3, 0))  # Z = b: the activation sees b itself
    Yact = ref.dense_forward(X, W, b, activation)  # the reference is warning-free too
    Z = np.vstack([b, b]) if activation == "silu" else None
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        loss, g = fastbp.squared_error(Y, T, reduction)
        fwd = fastbp.dense_forward(X, W, b, activation)
        _, _, db = fastbp.dense_backward(dY, X, W, Yact, activation, Z=Z)
        fastbp.matmul_abt(Y, T)
        fastbp.matmul_abt_backward(dY, Y, np.vstack([T, T[:1]]))
    # sigmoid and tanh within 2 ulp; elu, softplus, silu (expm1, log1p) a few more
    rtol = 2e-15 if activation in ROUNDED else 4e-16
    np.testing.assert_allclose(fwd, Yact, rtol=rtol, atol=1e-300)
    with np.errstate(all="ignore"):
        want_loss, want_g = ref.squared_error(Y, T, reduction)
        dZ = dY * ref._g_prime(activation, Yact, Z)
    np.testing.assert_array_equal(g, want_g)
    assert loss == want_loss or (np.isinf(loss) and np.isinf(want_loss)) or \
        abs(loss - want_loss) <= 1e-14 * abs(want_loss)
    # two rows: δb = δZ[0] + δZ[1], one addition, the same in any order
    if activation in ("softplus", "silu"):  # g' through exp: within rounding
        with np.errstate(all="ignore"):
            np.testing.assert_allclose(db, dZ[0] + dZ[1], rtol=1e-13,
                                       atol=1e-13 * float(np.max(np.abs(dY))))
    else:
        np.testing.assert_array_equal(db, dZ[0] + dZ[1])
