"""fastbp._kernels at the API boundary: out= buffers, allocation, untouched
inputs, bad input, threads."""

import threading
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fastbp

from conftest import z_buffer

N, K, D = 40, 30, 20


@pytest.fixture
def layer(rng):
    X = rng.standard_normal((N, K))
    W = rng.standard_normal((D, K))
    b = rng.standard_normal(D)
    dY = rng.standard_normal((N, D))
    return X, W, b, dY


def calls_with_outs(X, W, b, dY, act="sigmoid"):
    """Every kernel, every output given; returns (callable, outputs)."""
    C, dA, dB = np.empty((N, D)), np.empty((N, K)), np.empty((D, K))
    Y, dX, dW, db, dYl = np.empty((N, D)), np.empty((N, K)), np.empty((D, K)), np.empty(D), np.empty((N, D))
    T = np.zeros((N, D))

    def run():
        r1 = fastbp.matmul_abt(X, W, out=C)
        r2 = fastbp.matmul_abt_backward(dY, X, W, dA=dA, dB=dB)
        r3 = fastbp.dense_forward(X, W, b, act, out=Y)
        r4 = fastbp.dense_backward(dY, X, W, Y, act, dX=dX, dW=dW, db=db)
        r5 = fastbp.squared_error(Y, T, "mean", out=dYl)
        return r1, r2, r3, r4, r5

    return run, (C, dA, dB, Y, dX, dW, db, dYl)


def test_out_buffers_are_returned_and_written(layer):
    run, (C, dA, dB, Y, dX, dW, db, dYl) = calls_with_outs(*layer)
    r1, r2, r3, r4, r5 = run()
    assert r1 is C and r2[0] is dA and r2[1] is dB and r3 is Y
    assert r4[0] is dX and r4[1] is dW and r4[2] is db and r5[1] is dYl
    X, W, b, dY = layer
    np.testing.assert_allclose(C, fastbp.matmul_abt(X, W), rtol=1e-12)


def test_nothing_is_allocated_when_every_output_is_given(layer):
    run, _ = calls_with_outs(*layer)
    run()  # warm up: per-thread scratch, import-time caches
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(100):
            run()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename") if s.size_diff > 0)
    # one (N, K) float64 array is 9,600 bytes: nothing of that size may appear
    assert grown < 2000, grown


def test_inputs_are_never_modified(layer):
    X, W, b, dY = layer
    copies = [a.copy() for a in layer]
    for act in fastbp.ACTIVATIONS:
        Z = z_buffer(act, *dY.shape)
        Y = fastbp.dense_forward(X, W, b, act, Z=Z)
        Yc, Zc = Y.copy(), None if Z is None else Z.copy()
        fastbp.dense_backward(dY, X, W, Y, act, Z=Z)
        np.testing.assert_array_equal(Y, Yc)
        if Z is not None:
            np.testing.assert_array_equal(Z, Zc)
    fastbp.matmul_abt(X, W)
    fastbp.matmul_abt_backward(dY, X, W)
    fastbp.squared_error(dY, dY * 0.5)
    for a, c in zip(layer, copies):
        np.testing.assert_array_equal(a, c)


def test_read_only_inputs_are_accepted(layer):
    X, W, b, dY = (a.copy() for a in layer)
    for a in (X, W, b, dY):
        a.flags.writeable = False
    Y = fastbp.dense_forward(X, W, b, "tanh")
    Y.flags.writeable = False
    fastbp.dense_backward(dY, X, W, Y, "tanh")


# --- bad input ----------------------------------------------------------------

def test_wrong_dtype_is_a_type_error_that_says_how_to_convert(layer):
    X, W, b, dY = layer
    with pytest.raises(TypeError, match=r"X must have dtype float64.*float32.*astype"):
        fastbp.dense_forward(X.astype(np.float32), W, b)
    with pytest.raises(TypeError, match=r"B must have dtype float64.*int64"):
        fastbp.matmul_abt(X, np.ones((3, K), dtype=np.int64))
    with pytest.raises(TypeError, match=r"A must be a numpy.ndarray.*list.*ascontiguousarray"):
        fastbp.matmul_abt([[1.0]], np.ones((1, 1)))
    with pytest.raises(TypeError, match="big|dtype float64"):
        fastbp.matmul_abt(X.astype(">f8"), W)


def test_non_contiguous_and_wrong_ndim_are_value_errors(layer):
    X, W, b, dY = layer
    with pytest.raises(ValueError, match=r"X must be C-contiguous.*strides"):
        fastbp.dense_forward(np.asfortranarray(X), W, b)
    with pytest.raises(ValueError, match=r"A must be C-contiguous"):
        fastbp.matmul_abt(X[:, ::2], W[:, ::2].copy())
    with pytest.raises(ValueError, match=r"b must be a 1-D array, got 2-D with shape \(1, 20\)"):
        fastbp.dense_forward(X, W, b[None, :])
    with pytest.raises(ValueError, match=r"A must be a 2-D array, got 0-D"):
        fastbp.matmul_abt(np.ones(()), W)
    with pytest.raises(ValueError, match=r"3-D"):
        fastbp.matmul_abt(np.ones((2, 2, 2)), W)


def test_mismatched_shapes_name_both_shapes(layer):
    X, W, b, dY = layer
    with pytest.raises(ValueError, match=r"A.shape\[1\] must equal B.shape\[1\], got A \(40, 30\) and B \(20, 29\)"):
        fastbp.matmul_abt(X, W[:, :29].copy())
    with pytest.raises(ValueError, match=r"b.shape\[0\] must equal W.shape\[0\]"):
        fastbp.dense_forward(X, W, b[:5].copy())
    with pytest.raises(ValueError, match=r"dY.shape\[0\] must equal X.shape\[0\]"):
        fastbp.dense_backward(dY[:3].copy(), X, W, dY[:3].copy())
    with pytest.raises(ValueError, match=r"Y must have the shape of dY"):
        fastbp.dense_backward(dY, X, W, dY[:, :3].copy())
    with pytest.raises(ValueError, match=r"T must have the shape of Y \(40, 20\), got \(40, 19\)"):
        fastbp.squared_error(dY, dY[:, :19].copy())


def test_bad_out_buffers(layer):
    X, W, b, dY = layer
    with pytest.raises(ValueError, match=r"out must have shape \(40, 20\), got \(20, 40\)"):
        fastbp.matmul_abt(X, W, out=np.empty((D, N)))
    with pytest.raises(ValueError, match=r"out must have dtype float64"):
        fastbp.matmul_abt(X, W, out=np.empty((N, D), dtype=np.float32))
    ro = np.empty((N, D))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"out is read-only"):
        fastbp.dense_forward(X, W, b, out=ro)
    with pytest.raises(ValueError, match=r"out must be C-contiguous"):
        fastbp.matmul_abt(X, W, out=np.empty((D, N)).T)
    with pytest.raises(TypeError, match=r"dW must be a numpy.ndarray"):
        fastbp.dense_backward(dY, X, W, dY, dW=[[0.0]])
    with pytest.raises(ValueError, match=r"dX was given but need_dX is False"):
        fastbp.dense_backward(dY, X, W, dY, dX=np.empty((N, K)), need_dX=False)


def test_outputs_that_alias_inputs_or_each_other_are_refused(rng):
    A, B = rng.standard_normal((3, 3)), rng.standard_normal((3, 3))
    with pytest.raises(ValueError, match=r"out shares memory with A"):
        fastbp.matmul_abt(A, B, out=A)
    Y = fastbp.dense_forward(A, B, np.zeros(3), "sigmoid")
    with pytest.raises(ValueError, match=r"out shares memory with Y"):
        fastbp.squared_error(Y, Y * 0, out=Y)
    buf = np.empty((3, 3))
    with pytest.raises(ValueError, match=r"dB shares memory with dA"):
        fastbp.matmul_abt_backward(np.ones((3, 3)), A, B, dA=buf, dB=buf)
    with pytest.raises(ValueError, match=r"dW shares memory with dX"):
        fastbp.dense_backward(np.ones((3, 3)), A, B, Y, dX=buf, dW=buf)
    # views of one base: disjoint is fine, overlapping is aliasing
    base = rng.standard_normal((6, 3))
    dA, _ = fastbp.matmul_abt_backward(np.ones((3, 3)), base[:3], B, dA=base[3:])
    assert dA.base is base
    with pytest.raises(ValueError, match=r"dA shares memory with A"):
        fastbp.matmul_abt_backward(np.ones((3, 3)), base[:3], B, dA=base[2:5])


@pytest.mark.parametrize("bad", ["softmax", "Sigmoid", None, 3, ["relu"]])
def test_unknown_activation_lists_the_valid_ones(layer, bad):
    X, W, b, dY = layer
    with pytest.raises(ValueError, match=r"activation must be one of \('identity', 'sigmoid', 'tanh', 'relu', 'leaky_relu', "
                       r"'elu', 'softplus', 'silu'\)"):
        fastbp.dense_forward(X, W, b, bad)
    with pytest.raises(ValueError, match=r"activation must be one of"):
        fastbp.dense_backward(dY, X, W, dY, bad)


@pytest.mark.parametrize("bad", ["avg", None, 1, ["sum"]])
def test_unknown_reduction_lists_the_valid_ones(bad):
    Y = np.ones((2, 2))
    with pytest.raises(ValueError, match=r"reduction must be one of \('sum', 'half', 'mean'\)"):
        fastbp.squared_error(Y, Y, bad)


def test_dimensions_beyond_32_bit_int_are_refused():
    huge = np.empty((2**31, 0))  # zero bytes, but a dimension the BLAS's int can't hold
    with pytest.raises(ValueError, match=r"32-bit int"):
        fastbp.matmul_abt(huge, np.empty((3, 0)))


def test_empty_dimensions_give_shaped_zeros():
    X, W, b = np.empty((4, 0)), np.empty((3, 0)), np.array([1.0, -2.0, 0.5])
    np.testing.assert_array_equal(fastbp.matmul_abt(X, W), np.zeros((4, 3)))
    np.testing.assert_array_equal(fastbp.dense_forward(X, W, b, "relu"), np.tile([1.0, 0, 0.5], (4, 1)))
    dX, dW, db = fastbp.dense_backward(np.empty((0, 3)), np.empty((0, 5)), np.ones((3, 5)), np.empty((0, 3)), "tanh")
    assert dX.shape == (0, 5)
    np.testing.assert_array_equal(dW, np.zeros((3, 5)))
    np.testing.assert_array_equal(db, np.zeros(3))
    assert fastbp.squared_error(np.empty((0, 2)), np.empty((0, 2)), "mean")[0] == 0.0


# --- threads ------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(8, 8, 8), (300, 200, 100)])
def test_threads_get_exactly_the_single_thread_results(rng, shape):
    n, k, d = shape
    X, W, b, dY = rng.standard_normal((n, k)), rng.standard_normal((d, k)), rng.standard_normal(d), rng.standard_normal((n, d))
    for a in (X, W, b, dY):
        a.flags.writeable = False  # shared, read-only inputs

    def work():
        Y = fastbp.dense_forward(X, W, b, "sigmoid")
        return (Y,) + fastbp.dense_backward(dY, X, W, Y, "sigmoid") + fastbp.matmul_abt_backward(dY, X, W)

    expected = work()
    start = threading.Barrier(4)

    def racer(_):
        start.wait()
        return [work() for _ in range(5)]

    with ThreadPoolExecutor(4) as pool:
        for results in pool.map(racer, range(4)):
            for got in results:
                for g, e in zip(got, expected):
                    np.testing.assert_array_equal(g, e)


def test_z_is_required_for_silu_and_refused_otherwise(layer):
    """silu's g' needs the pre-activation: dense_backward requires Z for it
    and refuses Z for the others; dense_forward keeps Z for silu only."""
    X, W, b, dY = layer
    n, d = dY.shape
    Z = np.empty((n, d))
    Y = fastbp.dense_forward(X, W, b, "silu", Z=Z)
    np.testing.assert_allclose(Z, X @ W.T + b, rtol=1e-12, atol=1e-12)
    assert np.array_equal(Y, fastbp.dense_forward(X, W, b, "silu"))  # Z=None: Y alone
    with pytest.raises(ValueError, match=r"activation 'silu' needs Z"):
        fastbp.dense_backward(dY, X, W, Y, "silu")
    for act in ("identity", "relu", "elu", "softplus"):
        with pytest.raises(ValueError, match=r"Z is kept for activation 'silu' only"):
            fastbp.dense_forward(X, W, b, act, Z=np.empty((n, d)))
        with pytest.raises(ValueError, match=r"Z is for activation 'silu' only"):
            fastbp.dense_backward(dY, X, W, Y, act, Z=Z)
    with pytest.raises(ValueError, match=r"Z must have shape \(%d, %d\)" % (n, d)):
        fastbp.dense_forward(X, W, b, "silu", Z=np.empty((n, d + 1)))
    with pytest.raises(ValueError, match=r"Z must have the shape of dY"):
        fastbp.dense_backward(dY, X, W, Y, "silu", Z=np.empty((n + 1, d)))
    with pytest.raises(ValueError, match=r"Z shares memory with out"):
        fastbp.dense_forward(X, W, b, "silu", out=Z, Z=Z)
    with pytest.raises(TypeError, match=r"Z must have dtype float64"):
        fastbp.dense_backward(dY, X, W, Y, "silu", Z=Z.astype(np.float32))
    with pytest.raises(ValueError, match=r"db shares memory with Z"):
        fastbp.dense_backward(dY, X, W, Y, "silu", Z=Z, db=Z[0])
