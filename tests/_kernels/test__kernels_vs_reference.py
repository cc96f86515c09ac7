"""fastbp._kernels: every compiled kernel against its NumPy twin in
fastbp.reference, and against finite differences."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastbp
from fastbp import reference as ref

from conftest import G_PRIME_MAX, assert_sums_close, z_buffer

# (N, K, D): 1×1×1, N = 1, K = 1, D = 1, empty dimensions, primes, tall,
# wide, 257, and sizes on both sides of the small-GEMM threshold.
SHAPES = [
    (1, 1, 1), (1, 7, 5), (6, 1, 4), (5, 3, 1), (0, 3, 4), (3, 0, 4), (3, 4, 0),
    (0, 0, 0), (7, 11, 13), (31, 37, 41), (500, 3, 2), (2, 3, 500), (3, 500, 2),
    (257, 17, 9), (8, 8, 8), (32, 64, 64), (64, 65, 66),
]
ACTIVATIONS = fastbp.ACTIVATIONS


def make(rng, *shape):
    return rng.standard_normal(shape)


def test_names_and_signatures_match_reference():
    import inspect
    assert fastbp.ACTIVATIONS == ("identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu",
                                  "softplus", "silu")
    for name in ("matmul_abt", "matmul_abt_backward", "dense_forward", "dense_backward",
                 "squared_error"):
        compiled, twin = getattr(fastbp, name), getattr(ref, name)
        assert inspect.signature(compiled) == inspect.signature(twin), name


@pytest.mark.parametrize("n,k,d", SHAPES)
def test_matmul_abt(rng, n, k, d):
    A, B, dC = make(rng, n, k), make(rng, d, k), make(rng, n, d)
    assert_sums_close(fastbp.matmul_abt(A, B), ref.matmul_abt(A, B), abs(A) @ abs(B).T)
    dA, dB = fastbp.matmul_abt_backward(dC, A, B)
    rdA, rdB = ref.matmul_abt_backward(dC, A, B)
    assert_sums_close(dA, rdA, abs(dC) @ abs(B))
    assert_sums_close(dB, rdB, abs(dC).T @ abs(A))


# matmul_abt_kernel transposes the smaller operand first when the smaller of
# n, d is ≥ 8, 1 < k ≤ 512 and n·k·d ≤ 10⁶ (with several BLAS threads, not
# above 2¹⁸ madds where n and d are ≥ 32): both sides of every bound, both
# operands transposed (n ≤ d, n > d), and the same scratch reused across sizes.
ABT_FORM_SHAPES = [
    (7, 64, 64), (8, 64, 64), (64, 64, 7), (64, 64, 8), (8, 2, 9), (9, 1, 8),
    (16, 512, 16), (16, 513, 16), (100, 100, 100), (100, 100, 101), (101, 99, 100),
    (33, 17, 200), (200, 17, 33), (8, 8, 8), (64, 500, 31), (31, 500, 64),
    (128, 64, 64), (64, 64, 128), (31, 128, 128), (32, 128, 128), (128, 256, 10),
]


@pytest.mark.parametrize("blas_threads", [1, 2])
def test_matmul_abt_in_every_product_form(rng, blas_threads):
    # above 2¹⁸ madds the form also depends on the BLAS's thread count
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(blas_threads, user_api="blas"):
        check_abt_forms(rng)


@pytest.mark.parametrize("coretype", [None, "Haswell"])
def test_matmul_abt_forms_with_and_without_small_matrix_kernels(coretype):
    # the copy is made only where OpenBLAS has small-matrix kernels: CI sets
    # OPENBLAS_CORETYPE=Haswell, so the other side runs in a child with it unset
    pytest.importorskip("threadpoolctl")
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    if coretype:
        env["OPENBLAS_CORETYPE"] = coretype
    here = pathlib.Path(__file__).resolve()  # this file, and tests/ for its conftest import
    code = (f"import sys; sys.path[:0] = [{str(here.parent)!r}, {str(here.parents[1])!r}]\n"
            "import numpy as np, threadpoolctl\n"
            f"from {here.stem} import check_abt_forms\n"
            "for threads in (1, 2):\n"
            "    with threadpoolctl.threadpool_limits(threads, user_api='blas'):\n"
            "        check_abt_forms(np.random.default_rng(threads))\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]


def check_abt_forms(rng):
    for shape in ABT_FORM_SHAPES + ABT_FORM_SHAPES[::-1]:
        n, k, d = shape
        A, B = make(rng, n, k), make(rng, d, k)
        X, b = make(rng, n, k), make(rng, d)
        before = (A.copy(), B.copy())
        assert_sums_close(fastbp.matmul_abt(A, B), ref.matmul_abt(A, B), abs(A) @ abs(B).T)
        assert_sums_close(fastbp.dense_forward(X, B, b, "tanh"), ref.dense_forward(X, B, b, "tanh"),
                          abs(X) @ abs(B).T + abs(b))
        assert np.array_equal(A, before[0]) and np.array_equal(B, before[1])


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("n,k,d", SHAPES)
def test_dense(rng, n, k, d, activation):
    X, W, b, dY = make(rng, n, k), make(rng, d, k), make(rng, d), make(rng, n, d)
    Z, rZ = z_buffer(activation, n, d), z_buffer(activation, n, d)
    Y = fastbp.dense_forward(X, W, b, activation, Z=Z)
    rY = ref.dense_forward(X, W, b, activation, Z=rZ)
    # g is Lipschitz (≤ 1.1) so the pre-activation's bound carries over
    assert_sums_close(Y, rY, G_PRIME_MAX * (abs(X) @ abs(W).T + abs(b)))
    if Z is not None:
        assert_sums_close(Z, rZ, abs(X) @ abs(W).T + abs(b))
    dX, dW, db = fastbp.dense_backward(dY, X, W, rY, activation, Z=rZ)
    rdX, rdW, rdb = ref.dense_backward(dY, X, W, rY, activation, Z=rZ)
    dZ_bound = G_PRIME_MAX * abs(dY)  # |g'| ≤ 1.1 for every activation
    assert_sums_close(db, rdb, dZ_bound.sum(axis=0))
    assert_sums_close(dW, rdW, dZ_bound.T @ abs(X))
    assert_sums_close(dX, rdX, dZ_bound @ abs(W))
    assert fastbp.dense_backward(dY, X, W, rY, activation, need_dX=False, Z=rZ)[0] is None


@pytest.mark.parametrize("reduction", fastbp.REDUCTIONS)
@pytest.mark.parametrize("n,d", [(1, 1), (0, 3), (3, 0), (5, 7), (257, 3), (1000, 10)])
def test_squared_error(rng, n, d, reduction):
    Y, T = make(rng, n, d), make(rng, n, d)
    loss, dY = fastbp.squared_error(Y, T, reduction)
    rloss, rdY = ref.squared_error(Y, T, reduction)
    assert isinstance(loss, float)
    assert_sums_close(loss, rloss)
    assert_sums_close(dY, rdY)


def test_squared_error_matches_the_seeds():
    Y = np.array([[0.25, 2.0]])
    T = np.array([[1.0, 0.5]])
    assert fastbp.squared_error(Y, T, "sum")[0] == 0.75 ** 2 + 1.5 ** 2  # seeds 001/002
    np.testing.assert_array_equal(fastbp.squared_error(Y, T, "half")[1], Y - T)  # seed 000
    np.testing.assert_array_equal(fastbp.squared_error(Y, T, "sum")[1], 2 * (Y - T))


# --- Hypothesis: shapes and values ------------------------------------------

dims = st.integers(0, 40)
finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


@given(n=dims, k=dims, d=dims, activation=st.sampled_from(ACTIVATIONS),
       seed=st.integers(0, 2**32 - 1), scale=st.floats(1e-3, 1e3))
def test_dense_hypothesis(n, k, d, activation, seed, scale):
    rng = np.random.default_rng(seed)
    X, W, b, dY = (scale * make(rng, n, k), make(rng, d, k), scale * make(rng, d),
                   make(rng, n, d))
    Z = z_buffer(activation, n, d)
    Y = fastbp.dense_forward(X, W, b, activation, Z=Z)
    assert_sums_close(Y, ref.dense_forward(X, W, b, activation),
                      G_PRIME_MAX * (abs(X) @ abs(W).T + abs(b)))
    got = fastbp.dense_backward(dY, X, W, Y, activation, Z=Z)
    want = ref.dense_backward(dY, X, W, Y, activation, Z=Z)
    dZ_bound = G_PRIME_MAX * abs(dY)
    assert_sums_close(got[0], want[0], dZ_bound @ abs(W))
    assert_sums_close(got[1], want[1], dZ_bound.T @ abs(X))
    assert_sums_close(got[2], want[2], dZ_bound.sum(axis=0))


@given(z=st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=64),
       activation=st.sampled_from(ACTIVATIONS))
def test_activation_extreme_values(z, activation):
    """g at any finite z, |z| up to 1e308: exact limits, no warnings."""
    b = np.array(z)
    X, W = np.zeros((3, 0)), np.zeros((b.size, 0))  # K = 0, so Z = b on every row
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        Y = fastbp.dense_forward(X, W, b, activation)
        rY = ref.dense_forward(X, W, b, activation)
    # within a few ulp; results that underflow to subnormals keep only
    # absolute precision
    np.testing.assert_allclose(Y, rY, rtol=4 * np.finfo(float).eps, atol=1e-300)
    assert np.isfinite(Y).all()


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_nan_and_inf_propagate_as_in_reference(activation):
    z = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0])
    X, W = np.zeros((2, 0)), np.zeros((z.size, 0))
    Z = z_buffer(activation, 2, z.size)
    Y = fastbp.dense_forward(X, W, z, activation, Z=Z)
    rY = ref.dense_forward(X, W, z, activation)
    np.testing.assert_array_equal(Y, rY)
    dY = np.full_like(Y, 2.0)
    dY[0, :] = [np.nan, np.inf, 1, 1, 1, 1, 1]
    with np.errstate(invalid="ignore"):
        want = ref.dense_backward(dY, X, W, rY, activation, Z=Z)
    got = fastbp.dense_backward(dY, X, W, rY, activation, Z=Z)
    np.testing.assert_array_equal(got[2], want[2])


def test_nan_in_matmul_propagates(rng):
    A, B = make(rng, 9, 5), make(rng, 4, 5)
    A[2, 3] = np.nan
    B[1, 0] = np.inf
    got, want = fastbp.matmul_abt(A, B), ref.matmul_abt(A, B)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))


# --- Finite differences -------------------------------------------------------

def central_difference(f, x, eps=1e-6):
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = f()
        flat[i] = old - eps
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return g


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("n,k,d", [(1, 1, 1), (3, 4, 2), (5, 2, 6)])
def test_dense_gradients_against_finite_differences(rng, n, k, d, activation):
    X, W, b, G = make(rng, n, k), make(rng, d, k), make(rng, d), make(rng, n, d)
    if activation in ("relu", "leaky_relu"):  # keep every z away from the kink at 0
        b += np.sign(b) * 0.5

    def J():  # a scalar function of the layer's output: J = Σ G ⊙ Y
        return float(np.sum(G * fastbp.dense_forward(X, W, b, activation)))

    Z = z_buffer(activation, n, d)
    Y = fastbp.dense_forward(X, W, b, activation, Z=Z)
    dX, dW, db = fastbp.dense_backward(G, X, W, Y, activation, Z=Z)
    for got, x in ((dX, X), (dW, W), (db, b)):
        np.testing.assert_allclose(got, central_difference(J, x), rtol=1e-6, atol=1e-8)


def test_matmul_gradients_against_finite_differences(rng):
    A, B, G = make(rng, 4, 3), make(rng, 5, 3), make(rng, 4, 5)
    dA, dB = fastbp.matmul_abt_backward(G, A, B)

    def J():
        return float(np.sum(G * fastbp.matmul_abt(A, B)))

    np.testing.assert_allclose(dA, central_difference(J, A), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dB, central_difference(J, B), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("reduction", fastbp.REDUCTIONS)
def test_squared_error_gradient_against_finite_differences(rng, reduction):
    Y, T = make(rng, 4, 3), make(rng, 4, 3)
    _, dY = fastbp.squared_error(Y, T, reduction)
    fd = central_difference(lambda: fastbp.squared_error(Y, T, reduction)[0], Y)
    np.testing.assert_allclose(dY, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_derivative_against_finite_differences(activation):
    """g' as dense_backward takes it (from Y, or from Z for silu) against
    central differences of the compiled g, over z in [-30, 30] and at the
    points where the derivatives change shape (silu's root of g', its max)."""
    z = np.concatenate([np.linspace(-30, 30, 601), [-1e-9, 1e-9, -1.2785, 2.3994]])
    if activation in ("relu", "leaky_relu"):  # not at the kink
        z = z[np.abs(z) > 1e-3]
    X, W = np.zeros((1, 0)), np.zeros((z.size, 0))  # K = 0: Z = b

    def g(v):
        return fastbp.dense_forward(X, W, v, activation)[0]

    h = 1e-6 * np.maximum(1.0, np.abs(z))
    fd = (g(z + h) - g(z - h)) / (2 * h)
    Z = z_buffer(activation, 1, z.size)
    Y = fastbp.dense_forward(X, W, z, activation, Z=Z)
    _, _, gprime = fastbp.dense_backward(np.ones_like(Y), X, W, Y, activation, Z=Z)
    np.testing.assert_allclose(gprime, fd, rtol=1e-6, atol=1e-8)
