"""Checks and one-time conversion of user data (X, T, sample weights).

Run once per call of fit / predict / gradients, never per mini-batch.  The
caller's arrays are never written: a conversion makes a copy, and an array
that is already float64 and C-contiguous is used as it is, read-only.

Sparse X (scipy.sparse, any format) becomes the one form the compiled sparse
layer reads (``fastbp._sparse``): canonical CSR (sorted column numbers, no
duplicates, summed), float64 data, int64 indices and indptr.  CSC and the
other formats are converted once here, as scikit-learn does; a CSR that is
already in that form is used as it is, anything else is a copy (the
caller's matrix is never changed).
"""

import numpy as np
import scipy.sparse as sp

from fastbp._enums import LOSSES
from fastbp._checks import all_finite


def _numeric(a, name):
    try:
        arr = np.asarray(a)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} must be array-like of numbers, got {type(a).__name__}: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return arr


def _finite(arr, name):
    if not all_finite(arr):
        raise ValueError(f"{name} holds NaN or infinity; clean the data or pass check_finite=False")


def is_sparse(X):
    """Whether X is a scipy.sparse matrix or array."""
    return sp.issparse(X)


def as_sparse_inputs(X, n_features, name="X", check_finite=True):
    """A scipy.sparse X as canonical float64 CSR with int64 indices (see above)."""
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, {n_features}), got shape {X.shape}")
    if X.shape[1] != n_features:
        raise ValueError(f"{name} must have {n_features} columns (the network's input width), got shape {X.shape}")
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {X.dtype}")
    csr = X if X.format == "csr" else X.tocsr()  # CSC, COO, LIL, ...: converted once
    if not (csr.dtype == np.float64 and csr.indices.dtype == np.int64
            and csr.indptr.dtype == np.int64 and csr.has_canonical_format):
        # astype copies: the caller's matrix is never changed
        csr = sp.csr_matrix((csr.data.astype(np.float64), csr.indices.astype(np.int64),
                             csr.indptr.astype(np.int64)), shape=csr.shape)
        if not csr.has_canonical_format:
            csr.sum_duplicates()  # sorts the column numbers, sums duplicates
        # scipy narrows index arrays where it can (here, and in copy() or
        # row indexing: see take_rows); the core reads int64
        csr.indices = csr.indices.astype(np.int64, copy=False)
        csr.indptr = csr.indptr.astype(np.int64, copy=False)
    if check_finite:
        _finite(csr.data, name)
    return csr


def take_rows(X, rows):
    """Rows ``rows`` (an index array or a slice) of X, dense or sparse, in
    the form the core reads (scipy's row indexing may narrow the indices)."""
    part = X[rows]
    if is_sparse(part):
        part = as_sparse_inputs(part, X.shape[1], check_finite=False)
    return part


def as_inputs(X, n_features, name="X", check_finite=True):
    """X as a C-contiguous float64 (N, n_features) array, or a scipy.sparse X
    as canonical float64 CSR with int64 indices (``as_sparse_inputs``)."""
    if is_sparse(X):
        return as_sparse_inputs(X, n_features, name, check_finite)
    arr = _numeric(X, name)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (n_samples, {n_features}), got {arr.ndim}-D with shape {arr.shape}; "
            f"reshape a single example with {name}.reshape(1, -1)")
    if arr.shape[1] != n_features:
        raise ValueError(f"{name} must have {n_features} columns (the network's input width), got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if check_finite:
        _finite(arr, name)
    return arr


# the targets a loss is defined for, beyond finite: (low, high, what they are)
_DOMAINS = {"binary_cross_entropy": (0.0, 1.0, "in [0, 1] (0/1 labels or probabilities)"),
            "poisson": (0.0, np.inf, ">= 0 (counts or rates)")}


def _in_domain(arr, loss, name):
    """ValueError naming the first target outside the loss's domain (NaN is
    check_finite's business, as for every loss)."""
    low, high, what = _DOMAINS[loss]
    bad = (arr < low) | (arr > high)
    if bad.any():
        i, j = np.unravel_index(int(np.argmax(bad)), arr.shape)
        raise ValueError(f"{name} must be {what} for loss {loss!r}, got {float(arr[i, j])} at "
                         f"row {i}, column {j}")


def as_targets(T, n_rows, n_outputs, loss, name="T", check_finite=True):
    """T as float64 (N, n_outputs) rows, or, for cross_entropy, int64 labels (N,).

    With one output, a 1-D T of N values is read as a column (but for
    cross_entropy, where it holds class labels).  binary_cross_entropy's
    targets must be in [0, 1], poisson's >= 0 (checked whatever
    check_finite says).
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    arr = _numeric(T, name)
    if arr.ndim == 0 or arr.ndim > 2:
        raise ValueError(f"{name} must be 1-D or 2-D, got shape {arr.shape}")
    if arr.shape[0] != n_rows:
        raise ValueError(f"{name} must have {n_rows} rows (one per row of X), got shape {arr.shape}")
    if arr.ndim == 1:
        if loss == "cross_entropy":
            if arr.dtype.kind not in "iu":
                raise TypeError(
                    f"{name} as 1-D class labels must have an integer dtype, got {arr.dtype}; "
                    f"use {name}.astype(int) or one-hot rows of width {n_outputs}")
            labels = np.ascontiguousarray(arr, dtype=np.int64)
            if labels.size and (labels.min() < 0 or labels.max() >= n_outputs):
                raise ValueError(
                    f"{name} holds class labels in [0, {n_outputs}) (the output width), "
                    f"got values from {labels.min()} to {labels.max()}")
            return labels
        if n_outputs != 1:
            raise ValueError(f"{name} must be 2-D ({n_rows}, {n_outputs}), got 1-D shape {arr.shape}")
        arr = arr.reshape(n_rows, 1)
    if arr.shape[1] != n_outputs:
        raise ValueError(f"{name} must have {n_outputs} columns (the network's output width), got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if check_finite:
        _finite(arr, name)
    if loss in _DOMAINS:
        _in_domain(arr, loss, name)
    return arr


def as_sample_weight(w, n_rows, name="sample_weight"):
    """Sample weights as a float64 (N,) array; checked further by the core."""
    if w is None:
        return None
    arr = _numeric(w, name)
    if arr.shape != (n_rows,):
        raise ValueError(f"{name} must have shape ({n_rows},) (one weight per row of X), got {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float64)
