# cython: language_level=3
"""Compiled step of a dense network: forward, loss, backward (and an SGD
update) over all layers in one call, on buffers made once.

Layers ℓ = 0..L-1 map width size[ℓ] to size[ℓ+1].  One example per row:
    A_0 = X,  A_{ℓ+1} = g_ℓ(A_ℓ W_ℓᵀ + b_ℓ)                       (eqs 10, 11)
    δ_L = ∂J/∂A_L from the loss (squared error, or softmax + cross entropy)
    δZ_ℓ = δ_{ℓ+1} ⊙ g_ℓ'(A_{ℓ+1}),  δb_ℓ = Σ_rows δZ_ℓ,
    δW_ℓ = δZ_ℓᵀ A_ℓ,  δ_ℓ = δZ_ℓ W_ℓ (not for ℓ = 0)              (eqs 21-24)
which is seed 001's δ^(ℓ) = (W^(ℓ+1)ᵀ δ^(ℓ+1)) ⊙ σ'(z^(ℓ)) on batches.

Parameters and gradients are two flat float64 arrays owned by the Python
MLP (all weights first, then all biases, so an L2 penalty is a prefix).
The workspace holds every activation and two ping-pong δ buffers for up to
``capacity`` rows; smaller batches use the leading rows, so a training loop
allocates nothing once it exists.  An object is not thread-safe: the MLP
around it serialises access.
"""

cimport numpy as cnp
from libc.math cimport log, sqrt, isfinite, INFINITY
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset
from libc.stdint cimport int64_t
from scipy.linalg.cython_blas cimport dgemm, ddot
from fastbp._kernels cimport (ACT_IDENTITY, ACT_SIGMOID, ACT_TANH, ACT_RELU, check_disjoint,
                              dense_forward_kernel_threads, dense_backward_kernel_threads,
                              squared_error_kernel, check_array, worth_releasing_gil)

cdef extern from "_fastmath.h" nogil:
    # y = exp(x) elementwise, vectorised (x may equal y)
    void fb_exp_array(const double *x, double *y, int64_t m)

cdef extern from "_team.h" nogil:
    ctypedef void (*fb_task_fn)(void *arg, int part) noexcept nogil
    # 2 while a second thread may take part of the work (BLAS threads > 1)
    int fb_team_width(void *dgemm)
    # fn(arg, 0) here and fn(arg, 1) on the helper (or here, if it is late)
    void fb_team_run(fb_task_fn fn, void *arg)

# the optimisers' loops (see _optim.pyx): the penalty on [0, n_decay) only
from fastbp._update cimport fb_sgd_update, fb_momentum_update, fb_adam_update

cnp.import_array()

cdef enum:
    LOSS_SQUARED_ERROR = 0
    LOSS_CROSS_ENTROPY = 1

cdef enum:
    RED_SUM = 0
    RED_HALF = 1
    RED_MEAN = 2

# Mode of one pass over a batch.
cdef enum:
    PASS_LOSS = 0    # forward + loss
    PASS_GRAD = 1    # + backward into the gradient buffer
    PASS_NORMS = 2   # + backward for per-example gradient norms (no δW)

LOSSES = ("squared_error", "cross_entropy")
# NetworkCore.epoch's update kinds: a name's index is its code
UPDATES = ("none", "sgd", "momentum", "nesterov", "adam")
REDUCTIONS = ("sum", "half", "mean")
cdef dict _ACT_CODE = {"identity": ACT_IDENTITY, "sigmoid": ACT_SIGMOID,
                       "tanh": ACT_TANH, "relu": ACT_RELU}

def activation_code(name):
    """The compiled core's code of an activation name."""
    return _ACT_CODE[name]


cdef double _loss_scale(int reduction, Py_ssize_t n) noexcept nogil:
    # J is scaled by 1 ("sum"), ½ ("half", seed 000) or 1/N ("mean").
    if reduction == RED_HALF:
        return 0.5
    if reduction == RED_MEAN:
        return 1.0 / n if n > 0 else 1.0
    return 1.0


cdef double _squared_error_rows(const double *Y, const double *T, double *dY,
                                const double *r, Py_ssize_t n, Py_ssize_t d,
                                double s) noexcept nogil:
    """J = s Σ_i r_i Σ_j (T − Y)², δY = 2 s r_i (Y − T): per-row weights r."""
    cdef Py_ssize_t i, j
    cdef double total = 0.0, row, diff, c
    for i in range(n):
        row = 0.0
        c = 2.0 * s * r[i]
        for j in range(d):
            diff = Y[i * d + j] - T[i * d + j]
            row += diff * diff
            dY[i * d + j] = c * diff
        total += r[i] * row
    return s * total


cdef double _exp_shifted(const double *z, double *e, Py_ssize_t d,
                         double *z_max) noexcept nogil:
    """e = exp(z − max z) for one row (e may be z); returns Σ e and sets
    *z_max.  Shifting by the max keeps exp ≤ 1: the log-sum-exp of any
    finite logits stays finite."""
    cdef Py_ssize_t j
    cdef double m = z[0], total = 0.0
    for j in range(1, d):
        if z[j] > m:
            m = z[j]
    for j in range(d):
        e[j] = z[j] - m
    fb_exp_array(e, e, d)
    for j in range(d):
        total += e[j]
    z_max[0] = m
    return total


cdef enum:
    CE_CHUNK = 64  # rows whose exponentials are taken in one vectorised call


cdef double _cross_entropy_rows(const double *Z, const double *T, const int64_t *labels,
                                double *dZ, const double *r, Py_ssize_t n,
                                Py_ssize_t d, double s, double *worst) noexcept nogil:
    """Softmax fused with cross entropy, row by row, log-sum-exp stable.

    With P = softmax(z) and lse = log Σ exp z:  J_i = −Σ_j T_j log P_j
    = (Σ_j T_j) lse − Σ_j T_j z_j and ∂J_i/∂z = (Σ_j T_j) P − T, which is
    P − T for one-hot or probability rows.  ``labels`` (when not NULL)
    stands for one-hot T.  Rows are scaled by s·r_i (r NULL: all ones).
    worst: the largest J_i of a row with weight > 0 (−inf if none).
    """
    cdef Py_ssize_t i, j, i0, rows
    cdef double total = 0.0, sumexp, lse, tsum, tz, c, row_loss, inv
    cdef double worst_row = -INFINITY  # (a local: *worst may share a line with another thread's)
    cdef double z_max[CE_CHUNK]
    cdef const double *z
    cdef double *g
    cdef int64_t lab
    i0 = 0
    while i0 < n:
        # exp(z − max z) of a chunk of rows in one call (short rows would
        # spend more on the call than on the arithmetic)
        rows = min(<Py_ssize_t>CE_CHUNK, n - i0)
        for i in range(rows):
            z = Z + (i0 + i) * d
            g = dZ + (i0 + i) * d
            z_max[i] = z[0]
            for j in range(1, d):
                if z[j] > z_max[i]:
                    z_max[i] = z[j]
            for j in range(d):
                g[j] = z[j] - z_max[i]
        fb_exp_array(dZ + i0 * d, dZ + i0 * d, rows * d)
        for i in range(i0, i0 + rows):
            z = Z + i * d
            g = dZ + i * d
            sumexp = 0.0
            for j in range(d):
                sumexp += g[j]
            lse = z_max[i - i0] + log(sumexp)
            inv = 1.0 / sumexp
            c = s * (r[i] if r != NULL else 1.0)
            if labels != NULL:
                lab = labels[i]
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
            total += (r[i] if r != NULL else 1.0) * row_loss
            if row_loss > worst_row and (r == NULL or r[i] > 0.0):
                worst_row = row_loss
        i0 += rows
    worst[0] = worst_row
    return s * total


cdef void _softmax_rows(double *Z, Py_ssize_t n, Py_ssize_t d) noexcept nogil:
    """Z ← softmax(Z) row by row, in place (max subtracted first)."""
    cdef Py_ssize_t i, j
    cdef double m, inv
    cdef double *z
    for i in range(n):
        z = Z + i * d
        inv = 1.0 / _exp_shifted(z, z, d, &m)
        for j in range(d):
            z[j] *= inv


cdef double _row_weights_of(const double *w, const int64_t *idx, Py_ssize_t n,
                            double *dst) noexcept nogil:
    """dst_i = w_i N / Σ w for the n rows idx[i] of w (idx NULL: rows 0..n-1):
    weights of any scale, all ones = no weights.  Returns Σ w (summed in
    row order); dst is written only when it is > 0."""
    cdef Py_ssize_t i
    cdef double total = 0.0
    for i in range(n):
        total += w[idx[i] if idx != NULL else i]
    if total > 0.0:
        for i in range(n):
            dst[i] = w[idx[i] if idx != NULL else i] * (n / total)
    return total


cdef double _row_sq(const double *a, Py_ssize_t k) noexcept nogil:
    cdef Py_ssize_t p
    cdef double s = 0.0
    for p in range(k):
        s += a[p] * a[p]
    return s


# ---------------------------------------------------------------------------
# Checks, once per call, with C macros (at (32, 64) a Python-level check would
# cost as much as the arithmetic).
# ---------------------------------------------------------------------------

cdef cnp.ndarray _float_rows(object a, str name, Py_ssize_t cols, Py_ssize_t rows):
    """a as a checked (rows, cols) C-contiguous float64 array (rows < 0: any)."""
    cdef cnp.ndarray arr = check_array(a, name, 2)  # the kernels' own boundary check
    if cnp.PyArray_DIM(arr, 1) != cols:
        raise ValueError(f"{name} must have {cols} columns, got shape {(<object>arr).shape}")
    if rows >= 0 and cnp.PyArray_DIM(arr, 0) != rows:
        raise ValueError(f"{name} must have {rows} rows (one per row of X), got shape {(<object>arr).shape}")
    return arr


cdef cnp.ndarray _labels(object a, str name, Py_ssize_t rows, int64_t classes):
    cdef cnp.ndarray arr = <cnp.ndarray>a
    cdef Py_ssize_t i
    cdef const int64_t *p
    if cnp.PyArray_TYPE(arr) != cnp.NPY_INT64 or not cnp.PyArray_ISNOTSWAPPED(arr):
        raise TypeError(f"{name} as class labels must have dtype int64, got {arr.dtype}")
    if cnp.PyArray_DIM(arr, 0) != rows:
        raise ValueError(f"{name} must have {rows} labels (one per row of X), got shape {(<object>arr).shape}")
    if not cnp.PyArray_IS_C_CONTIGUOUS(arr) or not cnp.PyArray_ISALIGNED(arr):
        raise ValueError(f"{name} must be C-contiguous and aligned")
    p = <const int64_t *>cnp.PyArray_DATA(arr)
    for i in range(rows):
        if p[i] < 0 or p[i] >= classes:
            raise ValueError(f"{name} holds class labels in [0, {classes}), got {p[i]} at row {i}")
    return arr


cdef cnp.ndarray _vector_of(object a, str name, int typenum, Py_ssize_t n, str values):
    """a as a checked aligned, C-contiguous vector of n native ``typenum``
    ``values`` (no copy is ever made: a buffer written in place must be the
    caller's own)."""
    if (not cnp.PyArray_Check(a) or cnp.PyArray_TYPE(<cnp.ndarray>a) != typenum
            or not cnp.PyArray_ISNOTSWAPPED(<cnp.ndarray>a) or cnp.PyArray_NDIM(<cnp.ndarray>a) != 1
            or cnp.PyArray_DIM(<cnp.ndarray>a, 0) != n or not cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>a)
            or not cnp.PyArray_ISALIGNED(<cnp.ndarray>a)):
        raise ValueError(f"{name} must be a C-contiguous {cnp.PyArray_DescrFromType(typenum)} "
                         f"vector of {n} {values}, got {type(a).__name__} "
                         f"{getattr(a, 'dtype', '')} {getattr(a, 'shape', '')}")
    return <cnp.ndarray>a


cdef cnp.ndarray _row_indices(object a, Py_ssize_t n):
    """a as a checked C-contiguous int64 vector of n row numbers in [0, n)."""
    _vector_of(a, "order", cnp.NPY_INT64, n, "row numbers")
    cdef const int64_t *p = <const int64_t *>cnp.PyArray_DATA(<cnp.ndarray>a)
    cdef Py_ssize_t i
    for i in range(n):
        if p[i] < 0 or p[i] >= n:
            raise ValueError(f"order holds row numbers in [0, {n}), got {p[i]} at {i}")
    return <cnp.ndarray>a


cdef double *_vector(object a, str name, Py_ssize_t n, bint writeable) except NULL:
    """The data of a checked C-contiguous float64 vector of n values."""
    _vector_of(a, name, cnp.NPY_DOUBLE, n, "values")
    if writeable and not cnp.PyArray_ISWRITEABLE(<cnp.ndarray>a):
        raise ValueError(f"{name} is read-only; it is updated in place")
    return <double *>cnp.PyArray_DATA(<cnp.ndarray>a)


def all_finite(cnp.ndarray a):
    """True when every element of a C-contiguous float64 array is finite."""
    cdef Py_ssize_t i, m = cnp.PyArray_SIZE(a)
    cdef const double *p = <const double *>cnp.PyArray_DATA(a)
    cdef bint ok = True
    with nogil:
        for i in range(m):
            if not isfinite(p[i]):
                ok = False
                break
    return ok


def gather_rows(cnp.ndarray src, cnp.ndarray index, Py_ssize_t start, Py_ssize_t count,
                cnp.ndarray dst):
    """dst[:count] = src[index[start:start + count]] for C-contiguous arrays.

    The shuffled mini-batches of fit, copied into buffers made once (indices
    are trusted: fit makes them)."""
    cdef Py_ssize_t row = cnp.PyArray_ITEMSIZE(src)
    cdef int d
    for d in range(1, cnp.PyArray_NDIM(src)):
        row *= cnp.PyArray_DIM(src, d)
    cdef const char *s = <const char *>cnp.PyArray_DATA(src)
    cdef char *t = <char *>cnp.PyArray_DATA(dst)
    cdef const int64_t *idx = (<const int64_t *>cnp.PyArray_DATA(index)) + start
    with nogil:
        _copy_rows(s, idx, 0, count, row, t)


cdef void _copy_rows(const char *src, const int64_t *idx, Py_ssize_t lo, Py_ssize_t hi,
                     Py_ssize_t row, char *dst) noexcept nogil:
    """Rows lo..hi-1 of dst (``row`` bytes each) = rows idx[lo..hi-1] of src."""
    cdef Py_ssize_t i
    if row == 8:  # one label or one value per row: no call per row
        for i in range(lo, hi):
            (<int64_t *>dst)[i] = (<const int64_t *>src)[idx[i]]
        return
    for i in range(lo, hi):
        memcpy(dst + i * row, src + idx[i] * row, row)


# The layer tables of one network and the workspace of one pass, as plain C
# structs: a pass runs on either thread of a split batch (see _plan).
cdef struct Layers:
    int L
    int *size
    int *act
    Py_ssize_t *w_off
    Py_ssize_t *b_off
    double *params

cdef struct Work:
    double **A          # A[1..L]: the activations
    double *D0          # two ping-pong δ buffers
    double *D1
    double *grads       # where δW, δb go
    double *db_scratch  # δb of the norms pass (thrown away)
    double worst        # the pass's worst row loss (cross entropy)
    int threads         # BLAS threads its products may use (0: ask the BLAS)


cdef void _forward(const Layers *net, Work *w, const double *X, Py_ssize_t n) noexcept nogil:
    cdef int l
    cdef const double *a = X
    for l in range(net.L):
        dense_forward_kernel_threads(a, net.params + net.w_off[l], net.params + net.b_off[l],
                                     w.A[l + 1], <int>n, net.size[l], net.size[l + 1],
                                     net.act[l], w.threads)
        a = w.A[l + 1]


cdef double _pass(const Layers *net, Work *w, const double *X, const double *T,
                  const int64_t *labels, const double *r, Py_ssize_t n, int loss, double s,
                  int mode, double *norms) noexcept nogil:
    """Forward, loss (δ_L into D0) and, by mode, the backward pass.

    r: per-row weights or NULL; s: the reduction's scale; norms: per-row
    squared gradient norms, accumulated in PASS_NORMS mode."""
    cdef int L = net.L, l, k, d
    cdef Py_ssize_t i
    cdef double J, dz2
    cdef double *cur = w.D0
    cdef double *other = w.D1
    cdef double *tmp
    cdef const double *a_in
    _forward(net, w, X, n)
    d = net.size[L]
    if loss == LOSS_CROSS_ENTROPY:
        J = _cross_entropy_rows(w.A[L], T, labels, cur, r, n, d, s, &w.worst)
    elif r != NULL:
        J = _squared_error_rows(w.A[L], T, cur, r, n, d, s)
    else:
        J = squared_error_kernel(w.A[L], T, cur, n * d, 2.0 * s, s)
    if mode == PASS_LOSS:
        return J
    for l in range(L - 1, -1, -1):
        k = net.size[l]
        d = net.size[l + 1]
        a_in = X if l == 0 else w.A[l]
        # δZ is formed in place in cur (we own it); δ of the layer below
        # goes to the other buffer.
        if mode == PASS_GRAD:
            dense_backward_kernel_threads(cur, a_in, net.params + net.w_off[l], w.A[l + 1],
                                          other if l > 0 else NULL,
                                          w.grads + net.w_off[l], w.grads + net.b_off[l],
                                          cur, <int>n, k, d, net.act[l], w.threads)
        else:
            # Per-example weight gradient δz_i a_iᵀ has norm ‖δz_i‖‖a_i‖,
            # the bias gradient adds ‖δz_i‖²: no δW is formed.
            dense_backward_kernel_threads(cur, a_in, net.params + net.w_off[l], w.A[l + 1],
                                          other if l > 0 else NULL, NULL, w.db_scratch,
                                          cur, <int>n, k, d, net.act[l], w.threads)
            for i in range(n):
                dz2 = _row_sq(cur + i * d, d)
                norms[i] += dz2 * (_row_sq(a_in + i * k, k) + 1.0)
        tmp = cur
        cur = other
        other = tmp
    return J


# A shuffled batch: row i is row idx[i] of the sources, copied into the
# buffers before the pass.  A split batch's parts copy their own rows, so
# each thread's rows stay in its own core's cache.
cdef struct Gather:
    const int64_t *idx
    const char *xs
    const char *ts
    char *xb
    char *tb
    Py_ssize_t x_row, t_row   # bytes per row of X, of T


cdef void _gather(const Gather *g, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    _copy_rows(g.xs, g.idx, lo, hi, g.x_row, g.xb)
    _copy_rows(g.ts, g.idx, lo, hi, g.t_row, g.tb)


# One batch cut in two: rows [0, n0) on the caller with work[0], the rest
# on the team's helper with work[1] (its own activations and gradient).
cdef struct SplitPass:
    const Gather *gather      # or NULL: the rows are in place
    const Layers *net
    Work *work[2]
    const double *X
    const double *T
    const int64_t *labels
    const double *r
    Py_ssize_t n0, n
    int loss, mode
    double s
    double J[2]


cdef void _pass_part(void *arg, int part) noexcept nogil:
    cdef SplitPass *p = <SplitPass *>arg
    cdef Py_ssize_t lo = 0 if part == 0 else p.n0, m = p.n0 if part == 0 else p.n - p.n0
    cdef int k0 = p.net.size[0], dL = p.net.size[p.net.L]
    if p.gather != NULL:
        _gather(p.gather, lo, lo + m)
    p.J[part] = _pass(p.net, p.work[part], p.X + lo * k0,
                      p.T + lo * dL if p.T != NULL else NULL,
                      p.labels + lo if p.labels != NULL else NULL,
                      p.r + lo if p.r != NULL else NULL,
                      m, p.loss, p.s, p.mode, NULL)


# The update that follows a pass, on the whole parameter vector or (after a
# split batch) half of it on each thread, which first sums the two parts'
# gradients on its half: the caller's half into grads, the helper's into
# the second part's buffer g1, so that each thread writes only lines it
# wrote in the pass (a write to a line the other core holds waits for it).
# The loops are elementwise, so halves give the bits the whole vector gives.
cdef enum:
    UPD_NONE = 0
    UPD_SGD = 1
    UPD_MOMENTUM = 2
    UPD_NESTEROV = 3
    UPD_ADAM = 4

cdef struct Update:
    int kind
    double lr, weight_decay, momentum, beta1, beta2, eps, c1, c2
    double *m           # Adam's first moment, or the velocity
    double *v           # Adam's second moment
    double *params
    double *grads
    double *g1          # the second part's gradient, or NULL
    Py_ssize_t n, n_decay
    Py_ssize_t half     # where the helper's half starts (after a split)


cdef void _update_range(Update *u, Py_ssize_t lo, Py_ssize_t hi, bint sum_in_g1) noexcept nogil:
    """The update of params[lo:hi), after the two parts' gradients are
    summed there (g1 not NULL) into grads or, with sum_in_g1, into g1."""
    cdef Py_ssize_t i, m = hi - lo
    cdef Py_ssize_t nd = min(max(u.n_decay - lo, 0), m)
    cdef double *g = u.g1 if sum_in_g1 else u.grads
    cdef const double *other = u.grads if sum_in_g1 else u.g1
    if u.g1 != NULL:
        for i in range(lo, hi):
            g[i] += other[i]
    if u.kind == UPD_SGD:
        fb_sgd_update(u.params + lo, g + lo, m, nd if u.weight_decay != 0.0 else 0,
                      u.lr, u.weight_decay)
    elif u.kind == UPD_MOMENTUM or u.kind == UPD_NESTEROV:
        fb_momentum_update(u.params + lo, g + lo, u.m + lo, m, nd, u.lr, u.momentum,
                           u.kind == UPD_NESTEROV, u.weight_decay)
    elif u.kind == UPD_ADAM:
        fb_adam_update(u.params + lo, g + lo, u.m + lo, u.v + lo, m, nd, u.lr,
                       u.beta1, u.beta2, u.eps, u.c1, u.c2, u.weight_decay)


cdef void _update_part(void *arg, int part) noexcept nogil:
    cdef Update *u = <Update *>arg
    if part == 0:
        _update_range(u, 0, u.half, False)
    else:
        _update_range(u, u.half, u.n, True)


# The split pays where a part's work is long next to the exchange after it
# (each gradient half and each updated parameter half crosses between the
# cores: ~8 µs for 7,500 parameters) and its products are ones OpenBLAS
# would not spread over its pool well: up to 10^6 multiply-adds, which its
# small-matrix kernels run on the calling thread, or which gemm_rm_threads
# makes in pieces of 2^18 that it runs there (above, OpenBLAS's own threads
# win).  A part's work and the exchange both grow with the parameter count,
# so the bound is on rows: measured (benchmarks/bench_split.py, 2-core Zen 4
# VM) 16 rows a part gained 0-5 %, 32 rows 34-48 %, 100 rows 57-88 %; a whole
# step of 37,000 multiply-adds (15 µs) still gained 44 %.
cdef enum:
    SPLIT_MIN_MADDS = 1 << 15    # of the whole batch (the hand-over's fixed µs)
    SPLIT_MIN_ROWS = 24          # of each part
    SPLIT_MAX_LAYER_MADDS = 1000000  # of each layer's product on a part


cdef class NetworkCore:
    """Holds the pointers of one network's parameters, gradients and
    workspace, and runs whole passes over a batch without the GIL."""

    cdef readonly int n_layers
    cdef readonly Py_ssize_t capacity
    cdef readonly bint softmax_output
    # the largest one-row cross entropy −log P(true class) of the last pass
    # (rows of weight 0 left out): lets a caller see whether any row's
    # probability fell below a threshold without another pass
    cdef readonly double worst_row_loss
    # batches split over two threads so far (see _plan)
    cdef readonly Py_ssize_t split_steps
    cdef Layers net
    cdef Py_ssize_t n_params, n_weights
    cdef int max_d, max_layer_madds_row
    cdef int64_t madds_per_row
    cdef double *params
    cdef double *grads
    cdef object _params, _grads, _work, _work1
    # work[0]: the caller's workspace (gradient into grads); work[1]: the
    # second part of a split batch, made on its first split
    cdef Work work[2]
    cdef Py_ssize_t capacity1
    cdef double *rowbuf
    cdef SplitPass split

    def __cinit__(self):
        self.worst_row_loss = -INFINITY
        self.net.size = NULL
        self.net.act = NULL
        self.net.w_off = NULL
        self.net.b_off = NULL
        self.work[0].A = NULL
        self.work[1].A = NULL
        self.work[0].threads = 0

    def __init__(self, sizes, act_codes, cnp.ndarray params, cnp.ndarray grads,
                 bint softmax_output=False):
        cdef int L = len(sizes) - 1, l
        cdef Py_ssize_t off = 0
        self.n_layers = L
        self.softmax_output = softmax_output
        self.net.L = L
        self.net.size = <int *>malloc((L + 1) * sizeof(int))
        self.net.act = <int *>malloc(L * sizeof(int))
        self.net.w_off = <Py_ssize_t *>malloc(L * sizeof(Py_ssize_t))
        self.net.b_off = <Py_ssize_t *>malloc(L * sizeof(Py_ssize_t))
        self.work[0].A = <double **>malloc((L + 1) * sizeof(double *))
        self.work[1].A = <double **>malloc((L + 1) * sizeof(double *))
        if not (self.net.size and self.net.act and self.net.w_off and self.net.b_off
                and self.work[0].A and self.work[1].A):
            raise MemoryError("NetworkCore: no memory for the layer tables")
        self.max_d = 1
        self.madds_per_row = 0
        self.max_layer_madds_row = 0
        for l in range(L + 1):
            self.net.size[l] = sizes[l]
        for l in range(L):
            self.net.act[l] = act_codes[l]
            self.net.w_off[l] = off
            off += <Py_ssize_t>self.net.size[l + 1] * self.net.size[l]
            self.max_d = max(self.max_d, self.net.size[l + 1])
            self.madds_per_row += <int64_t>self.net.size[l + 1] * self.net.size[l]
            self.max_layer_madds_row = max(self.max_layer_madds_row,
                                           self.net.size[l + 1] * self.net.size[l])
        self.n_weights = off
        for l in range(L):
            self.net.b_off[l] = off
            off += self.net.size[l + 1]
        self.n_params = off
        for arr, name in ((params, "params"), (grads, "grads")):
            if (cnp.PyArray_TYPE(arr) != cnp.NPY_DOUBLE or cnp.PyArray_NDIM(arr) != 1
                    or cnp.PyArray_DIM(arr, 0) != off or not cnp.PyArray_IS_C_CONTIGUOUS(arr)):
                raise ValueError(f"{name} must be a contiguous float64 vector of {off} values")
        self._params = params
        self._grads = grads
        self.params = <double *>cnp.PyArray_DATA(params)
        self.grads = <double *>cnp.PyArray_DATA(grads)
        self.net.params = self.params
        self.work[0].grads = self.grads
        self.capacity = 0
        self.capacity1 = 0
        self._work = None
        self._work1 = None
        self.split_steps = 0

    def __dealloc__(self):
        free(self.net.size)
        free(self.net.act)
        free(self.net.w_off)
        free(self.net.b_off)
        free(self.work[0].A)
        free(self.work[1].A)

    cdef object _make_work(self, Work *w, Py_ssize_t n, bint own_grads):
        """Point w's buffers into one new zeroed array for n rows (returned:
        the owner of the memory)."""
        cdef Py_ssize_t total = 2 * n * self.max_d + self.max_d, l
        for l in range(1, self.n_layers + 1):
            total += n * self.net.size[l]
        if own_grads:
            total += self.n_params
        work = cnp.PyArray_ZEROS(1, [total], cnp.NPY_DOUBLE, 0)
        cdef double *p = <double *>cnp.PyArray_DATA(work)
        for l in range(1, self.n_layers + 1):
            w.A[l] = p
            p += n * self.net.size[l]
        w.D0 = p
        p += n * self.max_d
        w.D1 = p
        p += n * self.max_d
        w.db_scratch = p
        p += self.max_d
        if own_grads:
            w.grads = p
        w.threads = 1 if own_grads else 0  # the second part runs on one thread
        return work

    def reserve(self, Py_ssize_t rows):
        """Make the workspace hold at least ``rows`` rows (grows, never shrinks)."""
        cdef Py_ssize_t n = max(rows, 1)
        if n <= self.capacity:
            return
        work = self._make_work(&self.work[0], n, False)
        rowbuf = cnp.PyArray_ZEROS(1, [n], cnp.NPY_DOUBLE, 0)
        self.rowbuf = <double *>cnp.PyArray_DATA(rowbuf)
        self._work = (work, rowbuf)
        self.capacity = n

    cdef Py_ssize_t _plan(self, Py_ssize_t n, int mode) noexcept nogil:
        """Rows of part 0 when a pass of n rows is worth splitting over two
        threads now, else 0: while a second thread may work, for batches of
        at least SPLIT_MIN_MADDS whose layers' products on a part are at most
        SPLIT_MAX_LAYER_MADDS."""
        cdef Py_ssize_t n0 = (n + 1) // 2
        if (mode != PASS_GRAD or n < 2 * SPLIT_MIN_ROWS
                or n * self.madds_per_row < SPLIT_MIN_MADDS):
            return 0
        if n0 * <int64_t>self.max_layer_madds_row > SPLIT_MAX_LAYER_MADDS:
            return 0
        if fb_team_width(<void *>dgemm) < 2:
            return 0
        return n0

    cdef int _prepare(self, Py_ssize_t n, Py_ssize_t n0) except -1:
        """The workspaces a pass of n rows split at n0 (0: not split) needs."""
        if n > self.capacity:
            self.reserve(n)
        if n0 > 0 and n - n0 > self.capacity1:
            self._work1 = self._make_work(&self.work[1], n - n0, True)
            self.capacity1 = n - n0
        return 0

    cdef double _run(self, const double *X, const double *T, const int64_t *labels,
                     const double *r, Py_ssize_t n, int loss, double s, int mode,
                     Py_ssize_t n0, Update *u, const Gather *gather,
                     bint keep_grads=True) noexcept nogil:
        """One pass over the batch, split at row n0 over two threads unless
        n0 is 0, then the update u (u NULL or of kind UPD_NONE: none); the
        gradient ends in grads either way (without ``keep_grads``, the half
        from u.half on is left in the second part's buffer, u.g1, after a
        split with an update).  With ``gather``, X and T (or labels) are its
        buffers, filled here."""
        cdef double J
        if n0 > 0 and n - n0 > self.capacity1:
            n0 = 0  # (a batch larger than the second workspace: not split)
        if n0 == 0:
            if gather != NULL:
                _gather(gather, 0, n)
            J = _pass(&self.net, &self.work[0], X, T, labels, r, n, loss, s, mode, NULL)
            if u != NULL and u.kind != UPD_NONE:
                u.g1 = NULL
                _update_range(u, 0, u.n, False)
            return J
        self.split.net = &self.net
        self.split.gather = gather
        self.split.work[0] = &self.work[0]
        self.split.work[1] = &self.work[1]
        self.split.X = X
        self.split.T = T
        self.split.labels = labels
        self.split.r = r
        self.split.n0 = n0
        self.split.n = n
        self.split.loss = loss
        self.split.mode = mode
        self.split.s = s
        self.work[0].threads = 1  # each part's products on its own thread
        fb_team_run(_pass_part, &self.split)
        self.work[0].threads = 0
        if self.work[1].worst > self.work[0].worst:
            self.work[0].worst = self.work[1].worst
        self.split_steps += 1
        # the parts' gradients summed, and the update, half on each thread
        cdef Update sum_only
        if u == NULL or u.kind == UPD_NONE:
            sum_only.kind = UPD_NONE
            sum_only.n_decay = 0
            u = &sum_only
        u.params = self.params
        u.grads = self.grads
        u.g1 = self.work[1].grads
        u.n = self.n_params
        u.half = (u.n // 2) & ~(<Py_ssize_t>7)  # whole vectors on each side
        if u.kind == UPD_NONE:
            _update_range(u, 0, u.n, False)
        else:
            fb_team_run(_update_part, u)
            if keep_grads:  # the helper's half of the sum is in g1
                memcpy(self.grads + u.half, u.g1 + u.half, (u.n - u.half) * sizeof(double))
        return self.split.J[0] + self.split.J[1]

    cdef void _plain_update(self, Update *u, int kind) noexcept nogil:
        u.kind = kind
        u.params = self.params
        u.grads = self.grads
        u.g1 = NULL
        u.n = self.n_params
        u.n_decay = self.n_weights  # the penalty on weights only (a prefix)

    # -- Python entry points ------------------------------------------------

    cdef int _targets(self, object T, int loss, Py_ssize_t n, const double **pt,
                      const int64_t **pl) except -1:
        cdef int dL = self.net.size[self.n_layers]
        pt[0] = NULL
        pl[0] = NULL
        if loss == LOSS_CROSS_ENTROPY and cnp.PyArray_Check(T) and cnp.PyArray_NDIM(<cnp.ndarray>T) == 1:
            pl[0] = <const int64_t *>cnp.PyArray_DATA(_labels(T, "T", n, dL))
        else:
            pt[0] = <const double *>cnp.PyArray_DATA(_float_rows(T, "T", dL, n))
        return 0

    cdef int _row_weights(self, object sample_weight, Py_ssize_t n, double *dst) except -1:
        """dst_i = w_i N / Σ w: weights of any scale, all ones = no weights."""
        if not cnp.PyArray_Check(sample_weight) or cnp.PyArray_TYPE(<cnp.ndarray>sample_weight) != cnp.NPY_DOUBLE \
                or cnp.PyArray_NDIM(<cnp.ndarray>sample_weight) != 1 \
                or cnp.PyArray_DIM(<cnp.ndarray>sample_weight, 0) != n \
                or not cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>sample_weight):
            raise ValueError(f"sample_weight must be a contiguous float64 vector of {n} values (one per row of X)")
        cdef const double *w = <const double *>cnp.PyArray_DATA(<cnp.ndarray>sample_weight)
        cdef Py_ssize_t i
        for i in range(n):
            if not (w[i] >= 0.0) or not isfinite(w[i]):
                raise ValueError(f"sample_weight must be finite and >= 0, got {w[i]} at row {i}")
        if n > 0 and not _row_weights_of(w, NULL, n, dst) > 0.0:
            raise ValueError("sample_weight must have a positive sum, got 0")
        return 0

    cdef int _state(self, Update *u, int kind, m, v) except -1:
        """u's optimiser state: m (the velocity, or Adam's first moment) and
        v (Adam's second), checked: the caller's own contiguous vectors of
        n_params values, sharing no memory with each other or the network
        (the update loops take restrict pointers).  Allocates nothing."""
        u.m = NULL
        u.v = NULL
        if kind == UPD_MOMENTUM or kind == UPD_NESTEROV or kind == UPD_ADAM:
            u.m = _vector(m, "m", self.n_params, True)
            check_disjoint(m, "m", self._params, "params")
            check_disjoint(m, "m", self._grads, "grads")
        if kind == UPD_ADAM:
            u.v = _vector(v, "v", self.n_params, True)
            check_disjoint(v, "v", self._params, "params")
            check_disjoint(v, "v", self._grads, "grads")
            check_disjoint(m, "m", v, "v")
        return 0

    def step(self, X, T, int loss=LOSS_SQUARED_ERROR, int reduction=RED_SUM,
             sample_weight=None, bint backward=True, double lr=0.0,
             double weight_decay=0.0, int update=UPD_NONE, double momentum=0.0,
             double beta1=0.0, double beta2=0.0, double eps=0.0, long t=0, m=None, v=None):
        """One batch: loss (returned), the gradient into the flat gradient
        buffer when ``backward``, and with ``update`` (a code of UPDATES; True
        is "sgd") the optimiser's step on it, as fastbp.optim's loops make it:
        SGD with lr and weight_decay; momentum or Nesterov with ``momentum``
        and the velocity m; Adam with beta1, beta2, eps, step count t (this
        step's, from 1) and moments m, v.  The penalty is on the weights."""
        if not (0 <= loss <= LOSS_CROSS_ENTROPY and 0 <= reduction <= RED_MEAN
                and UPD_NONE <= update <= UPD_ADAM):
            raise ValueError(f"unknown loss code {loss}, reduction code {reduction} "
                             f"or update code {update}")
        if update == UPD_ADAM and t < 1:
            raise ValueError(f"t must be >= 1, got {t}")
        cdef Update u
        self._plain_update(&u, update)
        self._state(&u, update, m, v)
        cdef cnp.ndarray x = _float_rows(X, "X", self.net.size[0], -1)
        cdef Py_ssize_t n = cnp.PyArray_DIM(x, 0)
        cdef const double *pt
        cdef const int64_t *pl
        self._targets(T, loss, n, &pt, &pl)
        if loss == LOSS_CROSS_ENTROPY and reduction == RED_HALF:
            raise ValueError("reduction for cross_entropy must be 'sum' or 'mean', got 'half'")
        if n > self.capacity:
            self.reserve(n)
        cdef const double *r = NULL
        if sample_weight is not None:
            self._row_weights(sample_weight, n, self.rowbuf)
            r = self.rowbuf
        cdef const double *px = <const double *>cnp.PyArray_DATA(x)
        cdef double s = _loss_scale(reduction, n), J
        cdef int mode = PASS_GRAD if (backward or update != UPD_NONE) else PASS_LOSS
        cdef Py_ssize_t n0 = self._plan(n, mode)
        self._prepare(n, n0)
        u.lr = lr
        u.weight_decay = weight_decay
        u.momentum = momentum
        u.beta1 = beta1
        u.beta2 = beta2
        u.eps = eps
        if update == UPD_ADAM:
            u.c1 = 1.0 / (1.0 - beta1 ** t)
            u.c2 = 1.0 / (1.0 - beta2 ** t)
        if worth_releasing_gil(n * self.madds_per_row):
            with nogil:
                J = self._run(px, pt, pl, r, n, loss, s, mode, n0, &u, NULL)
        else:
            J = self._run(px, pt, pl, r, n, loss, s, mode, n0, &u, NULL)
        self.worst_row_loss = self.work[0].worst
        return J

    def epoch(self, X, T, order, Py_ssize_t batch_size, int loss, sample_weight,
              cnp.ndarray X_buf, cnp.ndarray T_buf, int kind, double lr, double momentum,
              double beta1, double beta2, double eps, long t, m, v, double alpha,
              double grad_scale, double loss_scale, Py_ssize_t held_units):
        """One epoch of scikit-learn's stochastic solvers, every batch in one call.

        Batch b is rows order[b·batch_size:][:batch_size] of X and T, gathered
        into X_buf and T_buf (order None: the rows in place, no copies).  Its
        objective is the mean loss (weighted by sample_weight, when given) plus
        α/(2 N_b) ‖W‖², N_b its rows or their weight sum (a batch of weight 0
        is skipped); the gradient is taken grad_scale times (the loss's own
        scale), so the penalty's term is λ = grad_scale α / N_b.  The update
        (kind: UPD_SGD / MOMENTUM / NESTEROV / ADAM with its state m, v and
        step count t) follows each batch; Adam's ε is added to √v before the
        bias correction, as scikit-learn's is (ε_t = ε / √(1 − β2ᵗ)).  The
        last ``held_units`` output units are set back to 0 after each update
        (the binary case's second logit).

        Returns (Σ_b rows_b (J_b / loss_scale + penalty_b), t after the epoch).
        """
        if not 0 <= loss <= LOSS_CROSS_ENTROPY or not UPD_SGD <= kind <= UPD_ADAM:
            raise ValueError(f"unknown loss code {loss} or update code {kind}")
        cdef cnp.ndarray x = _float_rows(X, "X", self.net.size[0], -1)
        cdef Py_ssize_t n = cnp.PyArray_DIM(x, 0), i
        cdef int L = self.n_layers, dL = self.net.size[L], k0 = self.net.size[0]
        cdef const double *pt
        cdef const int64_t *pl
        self._targets(T, loss, n, &pt, &pl)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        batch_size = min(batch_size, n)
        cdef const int64_t *idx = NULL
        cdef Py_ssize_t t_row = cnp.PyArray_NBYTES(<cnp.ndarray>T) // max(n, 1)
        if order is not None:
            idx = <const int64_t *>cnp.PyArray_DATA(_row_indices(order, n))
            _float_rows(X_buf, "X_buf", k0, -1)
            if (cnp.PyArray_DIM(X_buf, 0) < batch_size or cnp.PyArray_DIM(T_buf, 0) < batch_size
                    or cnp.PyArray_TYPE(T_buf) != cnp.PyArray_TYPE(<cnp.ndarray>T)
                    or not cnp.PyArray_IS_C_CONTIGUOUS(T_buf)
                    or cnp.PyArray_NBYTES(T_buf) // cnp.PyArray_DIM(T_buf, 0) != t_row):
                raise ValueError(f"X_buf and T_buf must hold {batch_size} rows of X and T "
                                 f"(C-contiguous, T's dtype), got shapes "
                                 f"{(<object>X_buf).shape} and {(<object>T_buf).shape}")
        cdef const double *w = NULL
        if sample_weight is not None:
            w = _vector(sample_weight, "sample_weight", n, False)
        cdef Update u
        self._plain_update(&u, kind)
        self._state(&u, kind, m, v)
        if not 0 <= held_units < dL:
            raise ValueError(f"held_units must be in [0, {dL}), got {held_units}")
        self._prepare(batch_size, self._plan(batch_size, PASS_GRAD))
        cdef Gather g
        g.t_row = t_row
        g.x_row = k0 * sizeof(double)
        g.xs = <const char *>cnp.PyArray_DATA(x)
        g.ts = <const char *>(pt if pt != NULL else <const double *>pl)
        g.xb = <char *>cnp.PyArray_DATA(X_buf)
        g.tb = <char *>cnp.PyArray_DATA(T_buf)
        cdef Py_ssize_t start, mb
        cdef const double *bx
        cdef const char *bt
        cdef const double *r
        cdef double norm, penalty, J, total = 0.0
        cdef int n_w = <int>self.n_weights, one = 1
        cdef double *held_w = self.params + self.net.w_off[L - 1] + (dL - held_units) * self.net.size[L - 1]
        cdef double *held_b = self.params + self.net.b_off[L - 1] + (dL - held_units)
        u.lr = lr
        u.momentum = momentum
        u.beta1 = beta1
        u.beta2 = beta2
        with nogil:
            start = 0
            while start < n:
                mb = min(batch_size, n - start)
                if idx != NULL:  # copied in _run, each part by its own thread
                    g.idx = idx + start
                    bx = <const double *>g.xb
                    bt = g.tb
                else:
                    bx = <const double *>(g.xs + start * g.x_row)
                    bt = g.ts + start * g.t_row
                r = NULL
                norm = mb
                if w != NULL:
                    norm = (_row_weights_of(w, idx + start, mb, self.rowbuf) if idx != NULL
                            else _row_weights_of(w + start, NULL, mb, self.rowbuf))
                    if not norm > 0.0:
                        start += mb
                        continue  # nothing to learn from this batch
                    r = self.rowbuf
                # L2 penalty α/(2 N_b) ‖W‖², with its gradient scaled like the loss's
                penalty = 0.5 * alpha * ddot(&n_w, self.params, &one, self.params, &one) / norm
                u.weight_decay = grad_scale * alpha / norm
                if kind == UPD_ADAM:
                    t += 1
                    u.eps = eps / sqrt(1.0 - beta2 ** t)
                    u.c1 = 1.0 / (1.0 - beta1 ** t)
                    u.c2 = 1.0 / (1.0 - beta2 ** t)
                J = self._run(bx, <const double *>bt if pt != NULL else NULL,
                              <const int64_t *>bt if pl != NULL else NULL, r, mb, loss,
                              1.0 / mb, PASS_GRAD, self._plan(mb, PASS_GRAD), &u,
                              &g if idx != NULL else NULL, False)
                if held_units:
                    memset(held_w, 0, held_units * self.net.size[L - 1] * sizeof(double))
                    memset(held_b, 0, held_units * sizeof(double))
                total += (J / loss_scale + penalty) * mb
                start += mb
            if u.g1 != NULL:  # grads: the last batch's gradient, whole
                memcpy(self.grads + u.half, u.g1 + u.half, (u.n - u.half) * sizeof(double))
        return total, t

    def forward(self, X, cnp.ndarray out):
        """out = the network's output for X, in chunks of the workspace's rows."""
        cdef cnp.ndarray x = _float_rows(X, "X", self.net.size[0], -1)
        cdef Py_ssize_t n = cnp.PyArray_DIM(x, 0), start, m
        cdef int L = self.n_layers, dL = self.net.size[L]
        cdef const double *px = <const double *>cnp.PyArray_DATA(x)
        cdef double *po = <double *>cnp.PyArray_DATA(out)
        if self.capacity == 0:
            self.reserve(1)
        with nogil:
            start = 0
            while start < n:
                m = min(self.capacity, n - start)
                _forward(&self.net, &self.work[0], px + start * self.net.size[0], m)
                memcpy(po + start * dL, self.work[0].A[L], m * dL * sizeof(double))
                if self.softmax_output:
                    _softmax_rows(po + start * dL, m, dL)
                start += m
        return out

    def per_example_grad_norms(self, X, T, int loss, int reduction, sample_weight,
                               cnp.ndarray out):
        """out[i] = ‖∇_θ J_i‖: J_i is example i's term of the reduced loss."""
        cdef cnp.ndarray x = _float_rows(X, "X", self.net.size[0], -1)
        cdef Py_ssize_t n = cnp.PyArray_DIM(x, 0), start, m, i
        cdef int dL = self.net.size[self.n_layers]
        cdef const double *pt
        cdef const int64_t *pl
        self._targets(T, loss, n, &pt, &pl)
        if loss == LOSS_CROSS_ENTROPY and reduction == RED_HALF:
            raise ValueError("reduction for cross_entropy must be 'sum' or 'mean', got 'half'")
        if self.capacity == 0:
            self.reserve(1)
        # the weights and the mean's 1/N are those of the whole X, not of a chunk
        cdef cnp.ndarray rw = None
        cdef const double *r = NULL
        if sample_weight is not None:
            rw = cnp.PyArray_EMPTY(1, [n], cnp.NPY_DOUBLE, 0)
            self._row_weights(sample_weight, n, <double *>cnp.PyArray_DATA(rw))
            r = <const double *>cnp.PyArray_DATA(rw)
        cdef double s = _loss_scale(reduction, n)
        cdef const double *px = <const double *>cnp.PyArray_DATA(x)
        cdef double *po = <double *>cnp.PyArray_DATA(out)
        with nogil:
            for i in range(n):
                po[i] = 0.0
            start = 0
            while start < n:
                m = min(self.capacity, n - start)
                _pass(&self.net, &self.work[0], px + start * self.net.size[0],
                      pt + start * dL if pt != NULL else NULL,
                      pl + start if pl != NULL else NULL,
                      r + start if r != NULL else NULL,
                      m, loss, s, PASS_NORMS, po + start)
                start += m
            for i in range(n):
                po[i] = sqrt(po[i])
        return out
