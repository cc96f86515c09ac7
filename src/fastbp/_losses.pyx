# cython: language_level=3
"""Losses on a network's output, and the softmax (declared in _losses.pxd).

With P = softmax(z) and lse = log Σ exp z, cross entropy of a row is
J_i = −Σ_j T_j log P_j = (Σ_j T_j) lse − Σ_j T_j z_j, with ∂J_i/∂z =
(Σ_j T_j) P − T (P − T for one-hot or probability rows).  Squared error is
seed 001/002's J = Σ (T − Y)², δY = 2 (Y − T).

Binary cross entropy of one logit z with target t ∈ [0, 1], p = σ(z):
J = −t log p − (1 − t) log(1 − p) = log(1 + e^{−|z|}) + max(z, 0) − t z,
which is finite for every finite z (e^{−|z|} ≤ 1), and ∂J/∂z = p − t.
Poisson with the log link, ŷ = exp(z), t ≥ 0: half the Poisson deviance
J = t log(t / ŷ) − t + ŷ = exp(z) − t z + (t log t − t) (0 log 0 = 0), so J ≥ 0
with 0 at ŷ = t (scikit-learn's MLPRegressor reports this; its
HalfPoissonLoss drops the constant t log t − t), ∂J/∂z = exp(z) − t.
For z above log(DBL_MAX) ≈ 709.78, exp(z) overflows: J and δZ are +inf (the
true values exceed the float64 range).  Below, everything is finite.

Every loss is scaled by the reduction's s and the row weights r_i.
"""

cimport numpy as cnp
from libc.math cimport fabs, isfinite, log, INFINITY
from libc.stdint cimport int64_t
from libc.string cimport memcpy

from fastbp._checks cimport check_array, check_output, check_same_dim, check_vector
from fastbp._enums cimport (RED_HALF, RED_MEAN, reduction_code, LOSS_CROSS_ENTROPY,
                            LOSS_BINARY_CROSS_ENTROPY, LOSS_POISSON)

cdef extern from "_fastmath.h" nogil:
    # y = exp(x) elementwise, vectorised (x may equal y)
    void fb_exp_array(const double *x, double *y, int64_t m)
    # y = sigmoid(x) elementwise, vectorised (x may equal y)
    void fb_sigmoid_array(const double *x, double *y, int64_t m)
    # dY = grad_scale (Y − T), returns loss_scale Σ (T − Y)² in a fixed order
    double fb_squared_error(const double *Y, const double *T, double *dY, int64_t m,
                            double grad_scale, double loss_scale)

cnp.import_array()

cdef extern from "_lossmath.h" nogil:
    # y = log(1 + x) for x in [0, 1], vectorised (x may equal y)
    void fb_log1p_unit_array(const double *x, double *y, int64_t m)

cdef enum:
    CHUNK = 64  # rows whose exponentials are taken in one vectorised call
    LOG_BLOCK = 256  # elements whose log(1 + e) are taken in one vectorised call


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


cdef double binary_cross_entropy_rows(const double *Z, double *dZ, Py_ssize_t d,
                                      const Batch *b, double s, double *worst) noexcept nogil:
    cdef Py_ssize_t i = 0, col = 0, j, k, k0, mm, m = b.n * d
    cdef double total = 0.0, row = 0.0, z, e, t, J_ij, c, ri, p
    cdef double worst_one = -INFINITY
    cdef double lg[LOG_BLOCK]
    cdef const double *T = b.T
    for k in range(m):  # e = exp(−|z|) ∈ [0, 1], all at once (vectorised)
        dZ[k] = -fabs(Z[k])
    fb_exp_array(dZ, dZ, m)
    ri = (b.r[0] if b.r != NULL else 1.0) if b.n > 0 else 0.0
    k0 = 0
    while k0 < m:  # element by element, log(1 + e) a block at a time (vectorised)
        mm = min(<Py_ssize_t>LOG_BLOCK, m - k0)
        fb_log1p_unit_array(dZ + k0, lg, mm)
        for k in range(k0, k0 + mm):
            z = Z[k]
            t = T[k]
            e = dZ[k]
            # max(z, 0) − t z as one term, (1 − t) z or −t z: both ≥ 0 for t in
            # [0, 1], so nothing cancels against log(1 + e)
            J_ij = lg[k - k0] + ((1.0 - t) * z if z > 0.0 else -t * z)
            row += J_ij
            if J_ij > worst_one and ri > 0.0:
                worst_one = J_ij
            p = (1.0 if z >= 0.0 else e) / (1.0 + e)  # σ(z), stably
            dZ[k] = p - t
            col += 1
            if col == d:  # row i done: its weight and the reduction's scale
                c = s * ri
                for j in range(k + 1 - d, k + 1):
                    dZ[j] *= c
                total += ri * row
                row = 0.0
                col = 0
                i += 1
                if i < b.n:
                    ri = b.r[i] if b.r != NULL else 1.0
        k0 += mm
    worst[0] = worst_one
    return s * total


cdef double poisson_rows(const double *Z, double *dZ, Py_ssize_t d, const Batch *b,
                         double s) noexcept nogil:
    cdef Py_ssize_t i, j, m = b.n * d
    cdef double total = 0.0, row, t, c, ri
    cdef const double *T = b.T
    fb_exp_array(Z, dZ, m)  # ŷ = exp(z), all at once (vectorised)
    for i in range(b.n):
        ri = b.r[i] if b.r != NULL else 1.0
        c = s * ri
        row = 0.0
        for j in range(i * d, i * d + d):
            t = T[j]
            row += dZ[j] - t * Z[j]
            if t > 0.0:
                row += t * (log(t) - 1.0)
            dZ[j] = c * (dZ[j] - t)
        total += ri * row
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


cdef tuple _loss_call(object Z, object T, object reduction, object sample_weight, object out,
                      bint binary):
    """(J, δZ) of binary cross entropy (binary) or Poisson on checked arguments."""
    cdef int red = reduction_code(reduction)
    cdef cnp.ndarray z = check_array(Z, "Z", 2), t = check_array(T, "T", 2)
    check_same_dim("the loss", "Z", z, 0, "T", t, 0)
    check_same_dim("the loss", "Z", z, 1, "T", t, 1)
    cdef Py_ssize_t n = cnp.PyArray_DIM(z, 0), d = cnp.PyArray_DIM(z, 1)
    cdef cnp.ndarray dz = check_output(out, "out", n, d, 2, (z, t), ("Z", "T"))
    cdef Batch b
    b.X = NULL
    b.T = <const double *>cnp.PyArray_DATA(t)
    b.labels = NULL
    b.r = NULL
    b.n = n
    cdef cnp.ndarray r = None
    if sample_weight is not None:
        r = cnp.PyArray_EMPTY(1, [n], cnp.NPY_DOUBLE, 0)
        check_row_weights(sample_weight, n, <double *>cnp.PyArray_DATA(r))
        b.r = <const double *>cnp.PyArray_DATA(r)
    cdef double s = loss_scale(red, n), J, worst
    cdef const double *pz = <const double *>cnp.PyArray_DATA(z)
    cdef double *pdz = <double *>cnp.PyArray_DATA(dz)
    with nogil:
        if binary:
            J = binary_cross_entropy_rows(pz, pdz, d, &b, s, &worst)
        else:
            J = poisson_rows(pz, pdz, d, &b, s)
    return J, dz


def binary_cross_entropy(Z, T, reduction="sum", sample_weight=None, out=None):
    """Binary cross entropy of the logits Z (N, D), σ fused in, and δZ:
    J = s Σ_i r_i Σ_j [log(1 + e^{−|z|}) + max(z, 0) − t z] (= −t log σ(z) −
    (1 − t) log(1 − σ(z)), finite for every finite z), δZ = s r_i (σ(Z) − T);
    s by ``reduction`` ("sum" 1, "half" ½, "mean" 1/N), r_i = w_i N / Σ w
    (all ones without sample_weight).  T: targets in [0, 1], unchecked.
    Returns (J, δZ)."""
    return _loss_call(Z, T, reduction, sample_weight, out, True)


def poisson(Z, T, reduction="sum", sample_weight=None, out=None):
    """Half the Poisson deviance of ŷ = exp(Z) (log link fused in), and δZ:
    J = s Σ_i r_i Σ_j [t log(t / ŷ) − t + ŷ] = s Σ r_i Σ [exp(z) − t z + t log t − t]
    (0 log 0 = 0), δZ = s r_i (exp(Z) − T); s and r_i as in
    binary_cross_entropy.  T: targets >= 0, unchecked.  Where exp(z)
    overflows (z > 709.78) J and δZ are +inf.  Returns (J, δZ)."""
    return _loss_call(Z, T, reduction, sample_weight, out, False)


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


cdef double loss_rows(int loss, const double *U, double *dU, Py_ssize_t d, const Batch *b,
                      double s, double *worst) noexcept nogil:
    worst[0] = -INFINITY
    if loss == LOSS_CROSS_ENTROPY:
        return cross_entropy_rows(U, dU, d, b, s, worst)
    if loss == LOSS_BINARY_CROSS_ENTROPY:
        return binary_cross_entropy_rows(U, dU, d, b, s, worst)
    if loss == LOSS_POISSON:
        return poisson_rows(U, dU, d, b, s)
    if b.r != NULL:
        return squared_error_rows(U, dU, d, b, s)
    return fb_squared_error(U, b.T, dU, b.n * d, 2.0 * s, s)


cdef void loss_hessian_rows(int loss, const double *U, const double *dU, double *out,
                            Py_ssize_t d, const Batch *b, double s) noexcept nogil:
    # The Hessian of ℓ in u times u̇, row by row, c = s r_i:
    #   squared error 2c u̇; binary cross entropy c σ(1−σ) u̇; Poisson c exp(u) u̇;
    #   cross entropy (softmax p, Σt the row's target sum) c Σt (p ⊙ u̇ − p (p·u̇)).
    cdef Py_ssize_t i, j, m = b.n * d
    cdef double c, pu, tsum
    cdef double *o
    cdef const double *t
    if loss == LOSS_CROSS_ENTROPY:
        memcpy(out, U, m * sizeof(double))
        softmax_rows(out, b.n, d)
    elif loss == LOSS_BINARY_CROSS_ENTROPY:
        fb_sigmoid_array(U, out, m)
        for i in range(m):
            out[i] = out[i] * (1.0 - out[i])
    elif loss == LOSS_POISSON:
        fb_exp_array(U, out, m)
    for i in range(b.n):
        c = s * (b.r[i] if b.r != NULL else 1.0)
        o = out + i * d
        if loss == LOSS_CROSS_ENTROPY:
            tsum = 1.0
            if b.labels == NULL:
                t = b.T + i * d
                tsum = 0.0
                for j in range(d):
                    tsum += t[j]
            pu = 0.0
            for j in range(d):
                pu += o[j] * dU[i * d + j]
            for j in range(d):
                o[j] = c * tsum * o[j] * (dU[i * d + j] - pu)
        elif loss == LOSS_BINARY_CROSS_ENTROPY or loss == LOSS_POISSON:
            for j in range(d):
                o[j] = c * o[j] * dU[i * d + j]
        else:
            for j in range(d):
                o[j] = 2.0 * c * dU[i * d + j]
