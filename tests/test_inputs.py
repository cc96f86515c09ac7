"""fastbp.inputs: the one-time checks and conversions of user data (X, T,
sample weights) behind fit, predict, gradients, per_example_grad_norms and
loss.  What is converted, and to what; every error message; a conforming
array (float64 — int64 for class labels — C-contiguous, the right shape)
returned as it is, anything else copied; the caller's data never written."""

import copy

import numpy as np
import pytest

from fastbp.inputs import LOSSES, as_inputs, as_sample_weight, as_targets

RNG = np.random.default_rng(0)
X4 = RNG.standard_normal((4, 3))  # 4 rows of a network with 3 inputs ...
T4 = RNG.standard_normal((4, 3))  # ... and 3 outputs
LABELS4 = np.array([0, 2, 1, 2])


def read_only(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def state(a):
    """Everything about ``a`` a write could change: bytes, dtype, shape, strides."""
    if isinstance(a, np.ndarray):
        return a.dtype, a.shape, a.strides, a.flags.writeable, a.tobytes()
    return copy.deepcopy(a)


def assert_converted(got, original, dtype, shape):
    """A fresh C-contiguous native ``dtype`` array of ``shape`` holding the
    values of ``original``, sharing no memory with it."""
    assert isinstance(got, np.ndarray)
    assert got.dtype == dtype and got.dtype.isnative
    assert got.shape == shape and got.flags.c_contiguous
    np.testing.assert_array_equal(got, np.asarray(original).astype(dtype).reshape(shape))
    if isinstance(original, np.ndarray):
        assert not np.shares_memory(got, original)


# ---------------------------------------------------------------------------
# as_inputs
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("X", [X4, read_only(X4), np.empty((0, 3))], ids=["plain", "read-only", "empty"])
@pytest.mark.parametrize("check_finite", [True, False])
def test_as_inputs_returns_a_conforming_array_as_it_is(X, check_finite):
    before = state(X)
    assert as_inputs(X, 3, check_finite=check_finite) is X
    assert state(X) == before


@pytest.mark.parametrize("X", [
    X4.tolist(), tuple(map(tuple, X4.tolist())), (X4 * 10).astype(np.int64),
    (X4 * 10).astype(np.int32), (X4 > 0).astype(np.uint8), X4 > 0, X4.astype(np.float32),
    X4.astype(np.float16), np.asfortranarray(X4), np.repeat(X4, 2, axis=1)[:, ::2], X4[::-1],
    np.ascontiguousarray(X4.T).T,
    X4.astype(">f8"), read_only((X4 * 10).astype(np.int64)),
], ids=["list", "tuple", "int64", "int32", "uint8", "bool", "float32", "float16", "fortran",
        "strided", "reversed", "transposed", "big-endian", "read-only int"])
def test_as_inputs_converts_anything_else_to_a_float64_copy(X):
    before = state(X)
    assert_converted(as_inputs(X, 3), X, np.float64, (4, 3))
    assert state(X) == before


@pytest.mark.parametrize("X, err, match", [
    ([[1.0, 2.0, 3.0], [1.0, 2.0]], TypeError, r"^X must be array-like of numbers, got list: "),
    (np.array([["a", "b", "c"]]), TypeError, r"^X must hold real numbers, got dtype <U1$"),
    (np.ones((2, 3), dtype=complex), TypeError, r"^X must hold real numbers, got dtype complex128$"),
    (np.ones((2, 3), dtype=object), TypeError, r"^X must hold real numbers, got dtype object$"),
    (None, TypeError, r"^X must hold real numbers, got dtype object$"),
    (np.ones(3), ValueError, r"^X must be 2-D \(n_samples, 3\), got 1-D with shape \(3,\); "
                             r"reshape a single example with X\.reshape\(1, -1\)$"),
    (np.float64(1.0), ValueError, r"^X must be 2-D \(n_samples, 3\), got 0-D with shape \(\)"),
    (np.ones((2, 3, 1)), ValueError, r"^X must be 2-D \(n_samples, 3\), got 3-D with shape \(2, 3, 1\)"),
    (np.ones((2, 4)), ValueError, r"^X must have 3 columns \(the network's input width\), got shape \(2, 4\)$"),
    (np.ones((0, 2)), ValueError, r"^X must have 3 columns"),
    (np.array([[1.0, np.nan, 3.0]]), ValueError,
     r"^X holds NaN or infinity; clean the data or pass check_finite=False$"),
    (np.array([[1.0, 2.0, np.inf]]), ValueError, r"^X holds NaN or infinity"),
    (np.array([[-np.inf, 2.0, 3.0]]), ValueError, r"^X holds NaN or infinity"),
    ([[1, 2, float("nan")]], ValueError, r"^X holds NaN or infinity"),  # checked after the conversion
], ids=["ragged", "strings", "complex", "object", "None", "1-D", "0-D", "3-D", "columns",
        "no rows, wrong columns", "nan", "inf", "-inf", "nan in a list"])
def test_as_inputs_errors(X, err, match):
    before = state(X)
    with pytest.raises(err, match=match):
        as_inputs(X, 3)
    assert state(X) == before


def test_as_inputs_names_the_argument():
    with pytest.raises(ValueError, match=r"^X_val must be 2-D .* X_val\.reshape\(1, -1\)$"):
        as_inputs(np.ones(3), 3, name="X_val")
    with pytest.raises(ValueError, match=r"^X_val must have 3 columns"):
        as_inputs(np.ones((1, 2)), 3, name="X_val")
    with pytest.raises(ValueError, match=r"^X_val holds NaN"):
        as_inputs(np.full((1, 3), np.nan), 3, name="X_val")
    with pytest.raises(TypeError, match=r"^X_val must hold real numbers"):
        as_inputs([["x"] * 3], 3, name="X_val")


def test_as_inputs_lets_nan_and_inf_through_without_check_finite():
    X = np.array([[np.nan, np.inf, -np.inf]])
    assert as_inputs(X, 3, check_finite=False) is X
    got = as_inputs(X.tolist(), 3, check_finite=False)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, X)


# ---------------------------------------------------------------------------
# as_targets
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("T, loss", [
    (T4, "squared_error"), (read_only(T4), "squared_error"), (T4, "cross_entropy"),
    (LABELS4, "cross_entropy"), (read_only(LABELS4), "cross_entropy"),
], ids=["rows", "read-only rows", "probability rows", "labels", "read-only labels"])
@pytest.mark.parametrize("check_finite", [True, False])
def test_as_targets_returns_a_conforming_array_as_it_is(T, loss, check_finite):
    assert LABELS4.dtype == np.int64
    before = state(T)
    assert as_targets(T, 4, 3, loss, check_finite=check_finite) is T
    assert state(T) == before


@pytest.mark.parametrize("T, loss, dtype, shape", [
    (T4.tolist(), "squared_error", np.float64, (4, 3)),
    ((T4 * 10).astype(np.int64), "squared_error", np.float64, (4, 3)),
    (T4.astype(np.float32), "squared_error", np.float64, (4, 3)),
    (np.asfortranarray(T4), "squared_error", np.float64, (4, 3)),
    (T4[::-1], "squared_error", np.float64, (4, 3)),
    (T4.astype(">f8"), "squared_error", np.float64, (4, 3)),
    (np.eye(3, dtype=np.int64)[LABELS4], "cross_entropy", np.float64, (4, 3)),
    (np.eye(3)[LABELS4].tolist(), "cross_entropy", np.float64, (4, 3)),
    (LABELS4.astype(np.int32), "cross_entropy", np.int64, (4,)),
    (LABELS4.astype(np.uint8), "cross_entropy", np.int64, (4,)),
    (LABELS4.tolist(), "cross_entropy", np.int64, (4,)),
    (np.repeat(LABELS4, 2)[::2], "cross_entropy", np.int64, (4,)),
    (LABELS4.astype(">i8"), "cross_entropy", np.int64, (4,)),
], ids=["list", "int", "float32", "fortran", "reversed", "big-endian", "int one-hot",
        "one-hot list", "int32 labels", "uint8 labels", "label list", "strided labels",
        "big-endian labels"])
def test_as_targets_converts_anything_else(T, loss, dtype, shape):
    before = state(T)
    assert_converted(as_targets(T, 4, 3, loss), T, dtype, shape)
    assert state(T) == before


@pytest.mark.parametrize("T", [T4[:, 0].copy(), T4[:, 0], T4[:, 0].tolist(), (T4[:, 0] * 9).astype(int)],
                         ids=["vector", "strided vector", "list", "int"])
def test_as_targets_reads_a_vector_as_the_column_of_one_output(T):
    before = state(T)
    got = as_targets(T, 4, 1, "squared_error")
    assert got.shape == (4, 1) and got.dtype == np.float64 and got.flags.c_contiguous
    np.testing.assert_array_equal(got[:, 0], np.asarray(T, dtype=np.float64))
    assert state(T) == before


def test_as_targets_takes_no_labels_of_no_rows():
    got = as_targets(np.zeros(0, dtype=np.int64), 0, 3, "cross_entropy")
    assert got.shape == (0,) and got.dtype == np.int64


@pytest.mark.parametrize("T, n_outputs, loss, err, match", [
    (T4, 3, "hinge", ValueError, r"^loss must be one of \('squared_error', 'cross_entropy', "
     r"'binary_cross_entropy', 'poisson'\), got 'hinge'$"),
    (T4, 3, None, ValueError, r"^loss must be one of .* got None$"),
    ([[1.0, 2.0, 3.0], [1.0]], 3, "squared_error", TypeError, r"^T must be array-like of numbers, got list: "),
    (np.array([["a"] * 3] * 4), 3, "squared_error", TypeError, r"^T must hold real numbers, got dtype <U1$"),
    (np.float64(1.0), 1, "squared_error", ValueError, r"^T must be 1-D or 2-D, got shape \(\)$"),
    (np.ones((4, 3, 1)), 3, "squared_error", ValueError, r"^T must be 1-D or 2-D, got shape \(4, 3, 1\)$"),
    (np.ones((5, 3)), 3, "squared_error", ValueError,
     r"^T must have 4 rows \(one per row of X\), got shape \(5, 3\)$"),
    (np.array([0, 1, 2]), 3, "cross_entropy", ValueError, r"^T must have 4 rows \(one per row of X\), got shape \(3,\)$"),
    (np.ones(4), 3, "squared_error", ValueError, r"^T must be 2-D \(4, 3\), got 1-D shape \(4,\)$"),
    (np.ones((4, 2)), 3, "squared_error", ValueError,
     r"^T must have 3 columns \(the network's output width\), got shape \(4, 2\)$"),
    (np.ones((4, 2)), 3, "cross_entropy", ValueError, r"^T must have 3 columns"),
    (np.array([0.0, 2.0, 1.0, 2.0]), 3, "cross_entropy", TypeError,
     r"^T as 1-D class labels must have an integer dtype, got float64; "
     r"use T\.astype\(int\) or one-hot rows of width 3$"),
    (np.array([True, False, True, True]), 3, "cross_entropy", TypeError, r"integer dtype, got bool"),
    (np.array([0, 2, 3, 1]), 3, "cross_entropy", ValueError,
     r"^T holds class labels in \[0, 3\) \(the output width\), got values from 0 to 3$"),
    (np.array([0, -1, 2, 1]), 3, "cross_entropy", ValueError, r"got values from -1 to 2$"),
    (np.array([[0.0, np.nan, 1.0]] * 4), 3, "squared_error", ValueError,
     r"^T holds NaN or infinity; clean the data or pass check_finite=False$"),
    (np.array([[0.0, np.inf, 1.0]] * 4), 3, "cross_entropy", ValueError, r"^T holds NaN or infinity"),
    ([np.nan, 1.0, 2.0, 3.0], 1, "squared_error", ValueError, r"^T holds NaN or infinity"),
    (np.array([[0.0, 1.0, 1.0]] * 3 + [[0.0, 1.0, -2.5]]), 3, "poisson", ValueError,
     r"^T must be >= 0 \(counts or rates\) for loss 'poisson', got -2\.5 at row 3, column 2$"),
    ([3.0, -0.0, 1.0, -1e-300], 1, "poisson", ValueError, r"got -1e-300 at row 3, column 0$"),
    (np.array([[0.0, 1.0, 0.5]] * 3 + [[1.5, 0.0, 0.0]]), 3, "binary_cross_entropy", ValueError,
     r"^T must be in \[0, 1\] \(0/1 labels or probabilities\) for loss 'binary_cross_entropy', "
     r"got 1\.5 at row 3, column 0$"),
    (np.array([[0, 1, -1]] * 4), 3, "binary_cross_entropy", ValueError, r"got -1\.0 at row 0, column 2$"),
    (np.array([[0.0, np.inf, 1.0]] * 4), 3, "poisson", ValueError, r"^T holds NaN or infinity"),
    (np.array([0, 1, 1, 0]), 3, "binary_cross_entropy", ValueError, r"^T must be 2-D \(4, 3\)"),
], ids=["loss", "loss None", "ragged", "strings", "0-D", "3-D", "rows", "label rows", "vector",
        "columns", "columns of probabilities", "float labels", "bool labels", "label too big",
        "negative label", "nan", "inf", "nan in a list", "negative count", "tiny negative count",
        "probability above 1", "negative label indicator", "inf count", "bce labels"])
def test_as_targets_errors(T, n_outputs, loss, err, match):
    before = state(T)
    with pytest.raises(err, match=match):
        as_targets(T, 4, n_outputs, loss)
    assert state(T) == before


def test_as_targets_names_the_argument():
    with pytest.raises(ValueError, match=r"^T_val must have 4 rows"):
        as_targets(np.ones((5, 3)), 4, 3, "squared_error", name="T_val")
    with pytest.raises(TypeError, match=r"^T_val as 1-D class labels .* use T_val\.astype\(int\)"):
        as_targets(np.zeros(4), 4, 3, "cross_entropy", name="T_val")
    with pytest.raises(ValueError, match=r"^T_val holds NaN"):
        as_targets(np.full((4, 3), np.nan), 4, 3, "squared_error", name="T_val")


def test_as_targets_lets_nan_and_inf_through_without_check_finite():
    T = np.array([[np.nan, np.inf, -np.inf]] * 4)
    for loss in ("squared_error", "cross_entropy"):
        assert as_targets(T, 4, 3, loss, check_finite=False) is T
    # a loss with a domain refuses what lies outside it, NaN is check_finite's
    nan = np.array([[np.nan, 0.0, 1.0]] * 4)
    for loss in ("binary_cross_entropy", "poisson"):
        assert as_targets(nan, 4, 3, loss, check_finite=False) is nan
        with pytest.raises(ValueError, match=f"for loss '{loss}', got -inf at row 0, column 2$"):
            as_targets(np.array([[np.nan, 0.5, -np.inf]] * 4), 4, 3, loss, check_finite=False)
    assert as_targets(np.array([[np.inf]] * 4), 4, 1, "poisson", check_finite=False).shape == (4, 1)
    got = as_targets(T[:, 0].tolist(), 4, 1, "squared_error", check_finite=False)
    assert np.isnan(got).all() and got.shape == (4, 1)


# ---------------------------------------------------------------------------
# as_sample_weight
# ---------------------------------------------------------------------------

def test_as_sample_weight_of_none_is_none():
    assert as_sample_weight(None, 4) is None


@pytest.mark.parametrize("w", [np.array([1.0, 0.5, 0.0, 2.0]), read_only(np.array([1.0, 0.5, 0.0, 2.0]))],
                         ids=["plain", "read-only"])
def test_as_sample_weight_returns_a_conforming_array_as_it_is(w):
    before = state(w)
    assert as_sample_weight(w, 4) is w
    assert state(w) == before


@pytest.mark.parametrize("w", [[1, 2, 3, 4], np.arange(4), np.arange(4, dtype=np.float32),
                               np.arange(8.0)[::2], np.arange(4.0)[::-1], np.arange(4.0).astype(">f8")],
                         ids=["list", "int", "float32", "strided", "reversed", "big-endian"])
def test_as_sample_weight_converts_anything_else_to_a_float64_copy(w):
    before = state(w)
    assert_converted(as_sample_weight(w, 4), w, np.float64, (4,))
    assert state(w) == before


def test_as_sample_weight_leaves_the_values_to_the_core():
    # negative, non-finite and all-zero weights are refused by NetworkCore
    # (and by fit), with their own messages: not here
    w = np.array([-1.0, np.nan, np.inf, 0.0])
    assert as_sample_weight(w, 4) is w
    assert as_sample_weight(np.zeros(4), 4).tolist() == [0.0] * 4


@pytest.mark.parametrize("w, err, match", [
    (np.ones(3), ValueError, r"^sample_weight must have shape \(4,\) \(one weight per row of X\), got \(3,\)$"),
    (np.ones((4, 1)), ValueError, r"got \(4, 1\)$"),
    (np.float64(1.0), ValueError, r"got \(\)$"),
    ([1.0, [2.0, 3.0], 4.0, 5.0], TypeError, r"^sample_weight must be array-like of numbers, got list: "),
    (np.array(["1", "1", "1", "1"]), TypeError, r"^sample_weight must hold real numbers, got dtype <U1$"),
], ids=["length", "2-D", "0-D", "ragged", "strings"])
def test_as_sample_weight_errors(w, err, match):
    before = state(w)
    with pytest.raises(err, match=match):
        as_sample_weight(w, 4)
    assert state(w) == before


def test_as_sample_weight_names_the_argument():
    with pytest.raises(ValueError, match=r"^w_val must have shape \(4,\)"):
        as_sample_weight(np.ones(3), 4, name="w_val")
