# cython: language_level=3
"""Losses on a network's output, and the softmax (declared in _losses.pxd).

With P = softmax(z) and lse = log Σ exp z, cross entropy of a row is
J_i = −Σ_j T_j log P_j = (Σ_j T_j) lse − Σ_j T_j z_j, with ∂J_i/∂z =
(Σ_j T_j) P − T (P − T for one-hot or probability rows).  Squared error is
seed 001/002's J = Σ (T − Y)², δY = 2 (Y − T).  Both are scaled by the
reduction's s and the row weights r_i.
"""

cimport numpy as cnp
from libc.math cimport isfinite, log, INFINITY
from libc.stdint cimport int64_t

from fastbp._checks cimport check_array, check_vector
from fastbp._enums cimport RED_HALF, RED_MEAN

cdef extern from "_fastmath.h" nogil:
    # y = exp(x) elementwise, vectorised (x may equal y)
    void fb_exp_array(const double *x, double *y, int64_t m)

cnp.import_array()

cdef enum:
    CHUNK = 64  # rows whose exponentials are taken in one vectorised call


cpdef double loss_scale(int reduction, Py_ssize_t n) noexcept nogil:
    """J's scale for a reduction code (fastbp.names.Reduction) over n rows."""
    if reduction == RED_HALF:
        return 0.5
    if reduction == RED_MEAN:
        return 1.0 / n if n > 0 else 1.0
    return 1.0


cdef double squared_error_rows(const double *Y, double *dY, Py_ssize_t d, const Batch *b,
                               double s) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef double total = 0.0, row, diff, c
    cdef const double *T = b.T
    for i in range(b.n):
        row = 0.0
        c = 2.0 * s * b.r[i]
        for j in range(d):
            diff = Y[i * d + j] - T[i * d + j]
            row += diff * diff
            dY[i * d + j] = c * diff
        total += b.r[i] * row
    return s * total


cdef void _shifted_exp(const double *Z, double *E, Py_ssize_t rows, Py_ssize_t d,
                       double *z_max) noexcept nogil:
    """E = exp(Z − max z) row by row (E may be Z), z_max[i] = row i's max:
    shifting keeps exp ≤ 1, so the log-sum-exp of finite logits is finite.
    The exponentials of all rows are one vectorised call."""
    cdef Py_ssize_t i, j
    cdef const double *z
    cdef double *e
    for i in range(rows):
        z = Z + i * d
        e = E + i * d
        z_max[i] = z[0]
        for j in range(1, d):
            if z[j] > z_max[i]:
                z_max[i] = z[j]
        for j in range(d):
            e[j] = z[j] - z_max[i]
    fb_exp_array(E, E, rows * d)


cdef double cross_entropy_rows(const double *Z, double *dZ, Py_ssize_t d, const Batch *b,
                               double s, double *worst) noexcept nogil:
    cdef Py_ssize_t i, j, i0, rows
    cdef double total = 0.0, sumexp, lse, tsum, tz, c, ri, row_loss, inv
    cdef double worst_row = -INFINITY  # (a local: *worst may share a line with another thread's)
    cdef double z_max[CHUNK]
    cdef const double *z
    cdef double *g
    cdef const double *T = b.T
    cdef int64_t lab
    i0 = 0
    while i0 < b.n:
        rows = min(<Py_ssize_t>CHUNK, b.n - i0)
        _shifted_exp(Z + i0 * d, dZ + i0 * d, rows, d, z_max)
        for i in range(i0, i0 + rows):
            z = Z + i * d
            g = dZ + i * d
            sumexp = 0.0
            for j in range(d):
                sumexp += g[j]
            lse = z_max[i - i0] + log(sumexp)
            inv = 1.0 / sumexp
            ri = b.r[i] if b.r != NULL else 1.0
            c = s * ri
            if b.labels != NULL:
                lab = b.labels[i]
                row_loss = lse - z[lab]
                for j in range(d):
                    g[j] = c * (g[j] * inv)
                g[lab] -= c
            else:
                tsum = 0.0
                tz = 0.0
                for j in range(d):
                    tsum += T[i * d + j]
                    tz += T[i * d + j] * z[j]
                row_loss = tsum * lse - tz
                for j in range(d):
                    g[j] = c * (tsum * g[j] * inv - T[i * d + j])
            total += ri * row_loss
            if row_loss > worst_row and ri > 0.0:
                worst_row = row_loss
        i0 += rows
    worst[0] = worst_row
    return s * total


cdef void softmax_rows(double *Z, Py_ssize_t n, Py_ssize_t d) noexcept nogil:
    cdef Py_ssize_t i, j, i0, rows
    cdef double z_max[CHUNK]
    cdef double total, inv
    cdef double *z
    i0 = 0
    while i0 < n:
        rows = min(<Py_ssize_t>CHUNK, n - i0)
        _shifted_exp(Z + i0 * d, Z + i0 * d, rows, d, z_max)
        for i in range(i0, i0 + rows):
            z = Z + i * d
            total = 0.0
            for j in range(d):
                total += z[j]
            inv = 1.0 / total
            for j in range(d):
                z[j] *= inv
        i0 += rows


def softmax(Z):
    """Z ← softmax of each row of a C-contiguous float64 (N, D) array, in
    place (max-shifted, so finite logits give finite probabilities); returns Z."""
    cdef cnp.ndarray z = check_array(Z, "Z", 2)
    if not cnp.PyArray_ISWRITEABLE(z):
        raise ValueError("Z is read-only; softmax is taken in place")
    cdef Py_ssize_t n = cnp.PyArray_DIM(z, 0), d = cnp.PyArray_DIM(z, 1)
    if d > 0:
        with nogil:
            softmax_rows(<double *>cnp.PyArray_DATA(z), n, d)
    return Z


cdef double row_weights_of(const double *w, const int64_t *idx, Py_ssize_t n,
                           double *dst) noexcept nogil:
    cdef Py_ssize_t i
    cdef double total = 0.0
    for i in range(n):
        total += w[idx[i] if idx != NULL else i]
    if total > 0.0:
        for i in range(n):
            dst[i] = w[idx[i] if idx != NULL else i] * (n / total)
    return total


cdef int check_row_weights(object sample_weight, Py_ssize_t n, double *dst) except -1:
    cdef cnp.ndarray arr = check_vector(sample_weight, "sample_weight", cnp.NPY_DOUBLE, n,
                                        "values (one per row of X)", False)
    cdef const double *w = <const double *>cnp.PyArray_DATA(arr)
    cdef Py_ssize_t i
    for i in range(n):
        if not (w[i] >= 0.0) or not isfinite(w[i]):
            raise ValueError(f"sample_weight must be finite and >= 0, got {w[i]} at row {i}")
    if n > 0 and not row_weights_of(w, NULL, n, dst) > 0.0:
        raise ValueError("sample_weight must have a positive sum, got 0")
    return 0
