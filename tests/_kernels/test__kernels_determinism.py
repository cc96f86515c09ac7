"""fastbp._kernels, bitwise determinism: repeated calls, BLAS thread counts
1 and 2, buffer alignment, and fastbp's own sums in their documented fixed
order.

(Concurrent calls on shared inputs are in test__kernels_boundary.py; fit's
in tests/test_training.py.)"""

import functools

import numpy as np
import pytest

import fastbp

from conftest import z_buffer

# from products OpenBLAS runs on one thread to ones it splits between two
SHAPES = [(5, 7, 3), (32, 32, 32), (40, 41, 42), (64, 64, 64), (100, 100, 100), (300, 200, 100)]


def all_kernels(X, W, b, dY, T):
    out = [fastbp.matmul_abt(X, W), *fastbp.matmul_abt_backward(dY, X, W)]
    for act in fastbp.ACTIVATIONS:
        Z = z_buffer(act, *dY.shape)
        Y = fastbp.dense_forward(X, W, b, act, Z=Z)
        out += [Y, *fastbp.dense_backward(dY, X, W, Y, act, Z=Z)]
        out += [] if Z is None else [Z]
    for red in fastbp.REDUCTIONS:
        loss, g = fastbp.squared_error(dY, T, red)
        out += [np.array(loss), g]
    return out


def inputs(shape, seed=0):
    n, k, d = shape
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, k)), rng.standard_normal((d, k)), rng.standard_normal(d),
            rng.standard_normal((n, d)), rng.standard_normal((n, d)))


def assert_bitwise(got, want):
    for g, w in zip(got, want, strict=True):
        assert g.tobytes() == w.tobytes()


@pytest.mark.parametrize("shape", SHAPES)
def test_repeated_calls_are_bitwise_identical(shape):
    args = inputs(shape)
    first = all_kernels(*args)
    for _ in range(3):
        assert_bitwise(all_kernels(*args), first)


def raw_blas_products(X, W, dY):
    """The three GEMMs of the kernels, called on the BLAS exactly as fastbp
    calls it (row-major arrays seen as their column-major transposes)."""
    from scipy.linalg import blas
    return [blas.dgemm(1.0, W.T, X.T, trans_a=1),        # C = X Wᵀ
            blas.dgemm(1.0, W.T, dY.T),                   # δX = δY W
            blas.dgemm(1.0, X.T, dY.T, trans_b=1)]        # δW = δYᵀ X


@pytest.mark.parametrize("shape", SHAPES)
def test_blas_thread_count_does_not_change_a_bit(shape):
    """1 or 2 BLAS threads: bitwise the same wherever the BLAS itself is.

    fastbp's own code (epilogues, sums) never depends on the thread count; OpenBLAS's threaded GEMM may (it splits the product
    differently), and then fastbp can only be as invariant as its BLAS."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    X, W, b, dY, T = inputs(shape)
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        one, raw_one = all_kernels(X, W, b, dY, T), raw_blas_products(X, W, dY)
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        two, raw_two = all_kernels(X, W, b, dY, T), raw_blas_products(X, W, dY)
    if all(a.tobytes() == b_.tobytes() for a, b_ in zip(raw_one, raw_two)):
        assert_bitwise(two, one)
    else:
        for g, w in zip(two, one):
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)
        blas = [i for i in threadpoolctl.threadpool_info() if "scipy.libs" in i["filepath"]]
        pytest.skip(f"the BLAS itself ({blas[0]['version'] if blas else '?'}) gives other bits "
                    f"with 2 threads at {shape}; fastbp agrees within 1e-12")


def aligned_copy(a, offset):
    """``a`` copied to an address ≡ offset (mod 64): vector loops that peel
    to an alignment boundary would sum in another order."""
    raw = np.empty(a.nbytes + 128, np.uint8)
    start = (-raw.ctypes.data) % 64 + offset
    m = raw[start:start + a.nbytes].view(np.float64).reshape(a.shape)
    m[...] = a
    return m


@pytest.mark.parametrize("shape", SHAPES[:3] + [(13, 9, 37)])
def test_buffer_alignment_does_not_change_a_bit(shape):
    args = inputs(shape, seed=1)
    want = all_kernels(*(aligned_copy(a, 0) for a in args))
    for offset in (8, 16, 24, 32, 56):
        assert_bitwise(all_kernels(*(aligned_copy(a, offset) for a in args)), want)


@pytest.mark.parametrize("activation", fastbp.ACTIVATIONS)
@pytest.mark.parametrize("n,d", [(1, 1), (7, 3), (100, 33), (1000, 5)])
def test_bias_gradient_is_summed_row_by_row_in_order(rng, activation, n, d):
    # δb[j] = ((δZ[0, j] + δZ[1, j]) + δZ[2, j]) + ..., whatever the vector width
    dY, X, W = rng.standard_normal((n, d)) * 10.0 ** rng.integers(-8, 8, (n, d)), np.zeros((n, 0)), np.zeros((d, 0))
    Z = z_buffer(activation, n, d)
    Y = fastbp.dense_forward(X, W, rng.standard_normal(d), activation, Z=Z)
    if activation in ("softplus", "silu"):  # g' through exp: dZ's own bits, one row per call
        dZ = np.array([fastbp.dense_backward(dY[i:i + 1], X[i:i + 1], W, Y[i:i + 1], activation,
                                             Z=None if Z is None else Z[i:i + 1])[2]
                       for i in range(n)])
    else:
        dZ = dY * fastbp.reference._G_PRIME_OF_Y[activation](Y)
    want = functools.reduce(lambda acc, row: acc + row, dZ, np.zeros(d))
    db = fastbp.dense_backward(dY, X, W, Y, activation, Z=Z)[2]
    assert db.tobytes() == want.tobytes()


@pytest.mark.parametrize("m", [0, 1, 7, 8, 9, 63, 64, 1001])
def test_squared_error_sums_in_its_documented_order(rng, m):
    # element i goes to accumulator i mod 8 (in increasing i), then
    # ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))
    Y = rng.standard_normal((1, m)) * 10.0 ** rng.integers(-8, 8, (1, m))
    T = rng.standard_normal((1, m))
    e2 = ((Y - T) ** 2).ravel()
    acc = [0.0] * 8
    for i, v in enumerate(e2):
        acc[i % 8] += v
    want = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
    assert fastbp.squared_error(Y, T, "sum")[0] == want
    # the same elements as an (m/…, …) batch give the same bits: the order is
    # over the flat array, not per row
    if m % 7 == 0 and m:
        assert fastbp.squared_error(Y.reshape(7, -1), T.reshape(7, -1), "sum")[0] == want
