"""fastbp._sparse: the CSR first layer against its twins in fastbp.reference
(scipy's sparse products) and against the dense kernels, over random and
edge shapes; its argument checks."""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import fastbp
from fastbp import reference as ref
from fastbp._sparse import csr_backward, csr_forward
from fastbp.inputs import as_inputs

from conftest import z_buffer

# (N, K, D, density): N = 1, K = 1, D = 1, empty rows/columns (low density),
# wide, tall, all zero
SHAPES = [(1, 1, 1, 1.0), (1, 9, 4, 0.5), (7, 1, 3, 0.6), (5, 8, 1, 0.4), (13, 40, 7, 0.05),
          (200, 300, 11, 0.02), (3, 500, 2, 0.01), (64, 17, 33, 0.3), (6, 5, 4, 0.0)]
FORMATS = [sp.csr_matrix, sp.csr_array, sp.csc_matrix, sp.csc_array]


def _X(n, k, density, seed, fmt=sp.csr_matrix, index=np.int64):
    X = fmt(sp.random(n, k, density=density, format="csr", random_state=seed))
    if X.format == "csr":
        X.indices = X.indices.astype(index)
        X.indptr = X.indptr.astype(index)
    return X


def _dense(X):
    return np.ascontiguousarray(X.toarray())


@pytest.mark.parametrize("n,k,d,density", SHAPES)
@pytest.mark.parametrize("activation", fastbp.ACTIVATIONS)
def test_forward_backward_match_reference_and_dense(n, k, d, density, activation):
    rng = np.random.default_rng(n * 31 + k)
    X = as_inputs(_X(n, k, density, 1), k)
    W, b, dY = rng.standard_normal((d, k)), rng.standard_normal(d), rng.standard_normal((n, d))
    Z, rZ = z_buffer(activation, n, d), z_buffer(activation, n, d)  # silu keeps Z
    Y = csr_forward(X, W, b, activation, Z=Z)
    np.testing.assert_allclose(Y, ref.csr_forward(X, W, b, activation, Z=rZ), rtol=1e-12,
                               atol=1e-14)
    np.testing.assert_allclose(Y, ref.dense_forward(_dense(X), W, b, activation), rtol=1e-12,
                               atol=1e-14)
    if Z is not None:
        np.testing.assert_allclose(Z, rZ, rtol=1e-12, atol=1e-14)
    dW, db = csr_backward(dY, X, Y, activation, Z=Z)
    rdW, rdb = ref.csr_backward(dY, X, Y, activation, Z=rZ)
    np.testing.assert_allclose(dW, rdW, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(db, rdb, rtol=1e-12, atol=1e-13)
    _, ddW, _ = ref.dense_backward(dY, _dense(X), W, Y, activation, need_dX=False, Z=rZ)
    np.testing.assert_allclose(dW, ddW, rtol=1e-12, atol=1e-13)


def test_silu_needs_z_and_the_others_refuse_it():
    X = as_inputs(_X(4, 6, 0.5, 2), 6)
    W, b, dY = np.ones((3, 6)), np.zeros(3), np.ones((4, 3))
    Y = csr_forward(X, W, b, "silu")  # inference needs no Z
    with pytest.raises(ValueError, match="csr_backward: activation 'silu' needs Z"):
        csr_backward(dY, X, Y, "silu")
    for fn, args in ((csr_forward, (X, W, b, "tanh")), (csr_backward, (dY, X, Y, "tanh"))):
        with pytest.raises(ValueError, match="Z is for activation 'silu' only"):
            fn(*args, Z=np.empty((4, 3)))
    with pytest.raises(ValueError, match="Z"):
        csr_forward(X, W, b, "silu", Z=np.empty((4, 2)))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 30), k=st.integers(1, 40), d=st.integers(1, 12),
       density=st.floats(0.0, 1.0), seed=st.integers(0, 2**16),
       fmt=st.sampled_from(FORMATS), index=st.sampled_from([np.int32, np.int64]))
def test_any_format_and_index_type(n, k, d, density, seed, fmt, index):
    rng = np.random.default_rng(seed)
    raw = _X(n, k, density, seed, fmt, index)
    X = as_inputs(raw, k)
    W, b = rng.standard_normal((d, k)), rng.standard_normal(d)
    np.testing.assert_allclose(csr_forward(X, W, b, "tanh"),
                               ref.dense_forward(_dense(raw), W, b, "tanh"), rtol=1e-12, atol=1e-14)


def test_out_is_written_and_twice_gives_the_same_bits():
    rng = np.random.default_rng(0)
    X = as_inputs(_X(50, 80, 0.1, 3), 80)
    W, b = rng.standard_normal((9, 80)), rng.standard_normal(9)
    out = np.empty((50, 9))
    assert csr_forward(X, W, b, "relu", out) is out
    dY = rng.standard_normal((50, 9))
    a, b2 = csr_backward(dY, X, out, "relu"), csr_backward(dY, X, out, "relu")
    assert np.array_equal(a[0], b2[0]) and np.array_equal(csr_forward(X, W, b, "relu"), out)


def test_refuses_what_it_cannot_read():
    W, b = np.ones((2, 4)), np.ones(2)
    X = sp.csr_matrix(np.eye(3, 4))
    with pytest.raises(TypeError, match="X.indices must have dtype int64"):
        csr_forward(X, W, b)  # int32 indices: as_inputs converts them once
    X = as_inputs(X, 4)
    with pytest.raises(ValueError, match=r"must have 5 columns, got shape \(3, 4\)"):
        csr_forward(X, np.ones((2, 5)), b)
    with pytest.raises(TypeError, match="CSR"):
        csr_forward(X.tocsc(), W, b)
    bad = as_inputs(X, 4)
    bad.indices = X.indices.copy()  # (scipy's copy() may narrow the indices to int32)
    bad.indices[0] = 7
    with pytest.raises(ValueError, match="column 7"):
        csr_forward(bad, W, b)
    unsorted = sp.csr_matrix((np.ones(2), np.array([1, 0], np.int64), np.array([0, 2, 2, 2], np.int64)),
                             shape=(3, 4))
    unsorted.has_canonical_format = False
    with pytest.raises(ValueError, match="canonical"):
        csr_forward(unsorted, W, b)


def test_as_inputs_canonicalises_a_copy():
    # duplicates and unsorted column numbers are summed and sorted, on a copy
    raw = sp.csr_matrix((np.array([1.0, 2.0, 3.0]), np.array([2, 0, 2]), np.array([0, 3, 3])),
                        shape=(2, 3))
    X = as_inputs(raw, 3)
    assert X.has_canonical_format and X.indices.dtype == np.int64 and X.indptr.dtype == np.int64
    np.testing.assert_array_equal(X.toarray(), [[2.0, 0.0, 4.0], [0, 0, 0]])
    assert raw.nnz == 3  # the caller's matrix is unchanged
    ok = as_inputs(X, 3)
    assert ok is X  # already in the core's form: used as it is
    coo = as_inputs(raw.tocoo(), 3)
    assert coo.format == "csr"
    with pytest.raises(ValueError, match="NaN"):
        as_inputs(sp.csr_matrix(np.array([[np.nan, 1.0]])), 2)
    with pytest.raises(ValueError, match=r"must have 4 columns .* got shape \(2, 3\)"):
        as_inputs(raw, 4)


def test_signatures_match_the_reference_twins():
    import inspect

    from fastbp import _sparse
    for name in ("csr_forward", "csr_backward"):
        assert inspect.signature(getattr(_sparse, name)) == inspect.signature(getattr(ref, name))


def test_zero_rows():
    X = as_inputs(_X(0, 5, 0.5, 0), 5)
    W, b = np.ones((3, 5)), np.ones(3)
    assert csr_forward(X, W, b).shape == (0, 3)
    dW, db = csr_backward(np.empty((0, 3)), X, np.empty((0, 3)), "tanh")
    assert not dW.any() and not db.any()


@pytest.mark.parametrize("activation", fastbp.ACTIVATIONS)
def test_backward_against_finite_differences(activation):
    rng = np.random.default_rng(7)
    X = as_inputs(_X(6, 5, 0.5, 7), 5)
    W, b, dY = rng.standard_normal((3, 5)), rng.standard_normal(3), rng.standard_normal((6, 3))
    Z = z_buffer(activation, 6, 3)
    dW, db = csr_backward(dY, X, csr_forward(X, W, b, activation, Z=Z), activation, Z=Z)
    h = 1e-6
    for j, c in np.ndindex(3, 5):
        E = np.zeros_like(W)
        E[j, c] = h
        fd = (np.sum(dY * csr_forward(X, W + E, b, activation))
              - np.sum(dY * csr_forward(X, W - E, b, activation))) / (2 * h)
        assert dW[j, c] == pytest.approx(fd, rel=1e-5, abs=1e-7)
    for j in range(3):
        e = np.zeros(3)
        e[j] = h
        fd = (np.sum(dY * csr_forward(X, W, b + e, activation))
              - np.sum(dY * csr_forward(X, W, b - e, activation))) / (2 * h)
        assert db[j] == pytest.approx(fd, rel=1e-5, abs=1e-7)
