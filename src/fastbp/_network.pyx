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
from libc.string cimport memcpy
from libc.stdint cimport int64_t
from fastbp._kernels cimport (ACT_IDENTITY, ACT_SIGMOID, ACT_TANH, ACT_RELU,
                              dense_forward_kernel, dense_backward_kernel,
                              squared_error_kernel, check_array, worth_releasing_gil)

cdef extern from "_fastmath.h" nogil:
    # y = exp(x) elementwise, vectorised (x may equal y)
    void fb_exp_array(const double *x, double *y, int64_t m)

cdef extern from "_update.h" nogil:
    # θ ← θ − lr (g + λ θ) on [0, n_decay), θ ← θ − lr g after (vectorised)
    void fb_sgd_update(double *p, const double *g, int64_t n, int64_t n_decay, double lr,
                       double weight_decay)

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
    cdef Py_ssize_t i, j
    cdef double total = 0.0, m, sumexp, lse, tsum, tz, c, row_loss, inv
    cdef const double *z
    cdef double *g
    cdef int64_t lab
    worst[0] = -INFINITY
    for i in range(n):
        z = Z + i * d
        g = dZ + i * d
        sumexp = _exp_shifted(z, g, d, &m)
        lse = m + log(sumexp)
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
        if row_loss > worst[0] and (r == NULL or r[i] > 0.0):
            worst[0] = row_loss
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
    cdef Py_ssize_t i, row = cnp.PyArray_ITEMSIZE(src)
    cdef int d
    for d in range(1, cnp.PyArray_NDIM(src)):
        row *= cnp.PyArray_DIM(src, d)
    cdef const char *s = <const char *>cnp.PyArray_DATA(src)
    cdef char *t = <char *>cnp.PyArray_DATA(dst)
    cdef const int64_t *idx = (<const int64_t *>cnp.PyArray_DATA(index)) + start
    with nogil:
        for i in range(count):
            memcpy(t + i * row, s + idx[i] * row, row)


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
    cdef int *size
    cdef int *act
    cdef Py_ssize_t *w_off
    cdef Py_ssize_t *b_off
    cdef Py_ssize_t n_params, n_weights
    cdef int max_d
    cdef int64_t madds_per_row
    cdef double *params
    cdef double *grads
    cdef object _params, _grads, _work
    # workspace pointers: A[1..L] activations, two δ buffers, per-row scratch
    cdef double **A
    cdef double *D0
    cdef double *D1
    cdef double *rowbuf
    cdef double *db_scratch

    def __cinit__(self):
        self.worst_row_loss = -INFINITY
        self.size = NULL
        self.act = NULL
        self.w_off = NULL
        self.b_off = NULL
        self.A = NULL

    def __init__(self, sizes, act_codes, cnp.ndarray params, cnp.ndarray grads,
                 bint softmax_output=False):
        cdef int L = len(sizes) - 1, l
        cdef Py_ssize_t off = 0
        self.n_layers = L
        self.softmax_output = softmax_output
        self.size = <int *>malloc((L + 1) * sizeof(int))
        self.act = <int *>malloc(L * sizeof(int))
        self.w_off = <Py_ssize_t *>malloc(L * sizeof(Py_ssize_t))
        self.b_off = <Py_ssize_t *>malloc(L * sizeof(Py_ssize_t))
        self.A = <double **>malloc((L + 1) * sizeof(double *))
        if not (self.size and self.act and self.w_off and self.b_off and self.A):
            raise MemoryError("NetworkCore: no memory for the layer tables")
        self.max_d = 1
        self.madds_per_row = 0
        for l in range(L + 1):
            self.size[l] = sizes[l]
        for l in range(L):
            self.act[l] = act_codes[l]
            self.w_off[l] = off
            off += <Py_ssize_t>self.size[l + 1] * self.size[l]
            self.max_d = max(self.max_d, self.size[l + 1])
            self.madds_per_row += <int64_t>self.size[l + 1] * self.size[l]
        self.n_weights = off
        for l in range(L):
            self.b_off[l] = off
            off += self.size[l + 1]
        self.n_params = off
        for arr, name in ((params, "params"), (grads, "grads")):
            if (cnp.PyArray_TYPE(arr) != cnp.NPY_DOUBLE or cnp.PyArray_NDIM(arr) != 1
                    or cnp.PyArray_DIM(arr, 0) != off or not cnp.PyArray_IS_C_CONTIGUOUS(arr)):
                raise ValueError(f"{name} must be a contiguous float64 vector of {off} values")
        self._params = params
        self._grads = grads
        self.params = <double *>cnp.PyArray_DATA(params)
        self.grads = <double *>cnp.PyArray_DATA(grads)
        self.capacity = 0
        self._work = None

    def __dealloc__(self):
        free(self.size)
        free(self.act)
        free(self.w_off)
        free(self.b_off)
        free(self.A)

    def reserve(self, Py_ssize_t rows):
        """Make the workspace hold at least ``rows`` rows (grows, never shrinks)."""
        cdef Py_ssize_t total = 0, l, n = max(rows, 1)
        if n <= self.capacity:
            return
        for l in range(1, self.n_layers + 1):
            total += n * self.size[l]
        total += 2 * n * self.max_d + n + self.max_d
        work = cnp.PyArray_ZEROS(1, [total], cnp.NPY_DOUBLE, 0)
        cdef double *p = <double *>cnp.PyArray_DATA(work)
        for l in range(1, self.n_layers + 1):
            self.A[l] = p
            p += n * self.size[l]
        self.D0 = p
        p += n * self.max_d
        self.D1 = p
        p += n * self.max_d
        self.rowbuf = p
        p += n
        self.db_scratch = p
        self._work = work
        self.capacity = n

    # -- the pass, without the GIL ------------------------------------------

    cdef void _forward(self, const double *X, Py_ssize_t n) noexcept nogil:
        cdef int l
        cdef const double *a = X
        for l in range(self.n_layers):
            dense_forward_kernel(a, self.params + self.w_off[l], self.params + self.b_off[l],
                                 self.A[l + 1], <int>n, self.size[l], self.size[l + 1], self.act[l])
            a = self.A[l + 1]

    cdef double _pass(self, const double *X, const double *T, const int64_t *labels,
                      const double *r, Py_ssize_t n, int loss, double s, int mode,
                      double *norms) noexcept nogil:
        """Forward, loss (δ_L into D0) and, by mode, the backward pass.

        r: per-row weights or NULL; s: the reduction's scale; norms: per-row
        squared gradient norms, accumulated in PASS_NORMS mode."""
        cdef int L = self.n_layers, l, k, d
        cdef Py_ssize_t i
        cdef double J, dz2
        cdef double *cur = self.D0
        cdef double *other = self.D1
        cdef double *tmp
        cdef const double *a_in
        self._forward(X, n)
        d = self.size[L]
        if loss == LOSS_CROSS_ENTROPY:
            J = _cross_entropy_rows(self.A[L], T, labels, cur, r, n, d, s,
                                    &self.worst_row_loss)
        elif r != NULL:
            J = _squared_error_rows(self.A[L], T, cur, r, n, d, s)
        else:
            J = squared_error_kernel(self.A[L], T, cur, n * d, 2.0 * s, s)
        if mode == PASS_LOSS:
            return J
        for l in range(L - 1, -1, -1):
            k = self.size[l]
            d = self.size[l + 1]
            a_in = X if l == 0 else self.A[l]
            # δZ is formed in place in cur (we own it); δ of the layer below
            # goes to the other buffer.
            if mode == PASS_GRAD:
                dense_backward_kernel(cur, a_in, self.params + self.w_off[l], self.A[l + 1],
                                      other if l > 0 else NULL,
                                      self.grads + self.w_off[l], self.grads + self.b_off[l],
                                      cur, <int>n, k, d, self.act[l])
            else:
                # Per-example weight gradient δz_i a_iᵀ has norm ‖δz_i‖‖a_i‖,
                # the bias gradient adds ‖δz_i‖²: no δW is formed.
                dense_backward_kernel(cur, a_in, self.params + self.w_off[l], self.A[l + 1],
                                      other if l > 0 else NULL, NULL, self.db_scratch,
                                      cur, <int>n, k, d, self.act[l])
                for i in range(n):
                    dz2 = _row_sq(cur + i * d, d)
                    norms[i] += dz2 * (_row_sq(a_in + i * k, k) + 1.0)
            tmp = cur
            cur = other
            other = tmp
        return J

    cdef void _sgd(self, double lr, double weight_decay) noexcept nogil:
        # p ← p − lr (g + λ p), the penalty on weights only (a prefix); the
        # loop optim.SGD runs too
        fb_sgd_update(self.params, self.grads, self.n_params,
                      self.n_weights if weight_decay != 0.0 else 0, lr, weight_decay)

    # -- Python entry points ------------------------------------------------

    cdef int _targets(self, object T, int loss, Py_ssize_t n, const double **pt,
                      const int64_t **pl) except -1:
        cdef int dL = self.size[self.n_layers]
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
        cdef double total = 0.0
        cdef Py_ssize_t i
        for i in range(n):
            if not (w[i] >= 0.0) or not isfinite(w[i]):
                raise ValueError(f"sample_weight must be finite and >= 0, got {w[i]} at row {i}")
            total += w[i]
        if n > 0 and not total > 0.0:
            raise ValueError("sample_weight must have a positive sum, got 0")
        for i in range(n):
            dst[i] = w[i] * (n / total)
        return 0

    def step(self, X, T, int loss=LOSS_SQUARED_ERROR, int reduction=RED_SUM,
             sample_weight=None, bint backward=True, double lr=0.0,
             double weight_decay=0.0, bint update=False):
        """One batch: loss (returned), the gradient into the flat gradient
        buffer when ``backward``, and with ``update`` an SGD step on it."""
        if not (0 <= loss <= LOSS_CROSS_ENTROPY and 0 <= reduction <= RED_MEAN):
            raise ValueError(f"unknown loss code {loss} or reduction code {reduction}")
        cdef cnp.ndarray x = _float_rows(X, "X", self.size[0], -1)
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
        cdef int mode = PASS_GRAD if (backward or update) else PASS_LOSS
        if worth_releasing_gil(n * self.madds_per_row):
            with nogil:
                J = self._pass(px, pt, pl, r, n, loss, s, mode, NULL)
                if update:
                    self._sgd(lr, weight_decay)
        else:
            J = self._pass(px, pt, pl, r, n, loss, s, mode, NULL)
            if update:
                self._sgd(lr, weight_decay)
        return J

    def forward(self, X, cnp.ndarray out):
        """out = the network's output for X, in chunks of the workspace's rows."""
        cdef cnp.ndarray x = _float_rows(X, "X", self.size[0], -1)
        cdef Py_ssize_t n = cnp.PyArray_DIM(x, 0), start, m
        cdef int L = self.n_layers, dL = self.size[L]
        cdef const double *px = <const double *>cnp.PyArray_DATA(x)
        cdef double *po = <double *>cnp.PyArray_DATA(out)
        if self.capacity == 0:
            self.reserve(1)
        with nogil:
            start = 0
            while start < n:
                m = min(self.capacity, n - start)
                self._forward(px + start * self.size[0], m)
                memcpy(po + start * dL, self.A[L], m * dL * sizeof(double))
                if self.softmax_output:
                    _softmax_rows(po + start * dL, m, dL)
                start += m
        return out

    def per_example_grad_norms(self, X, T, int loss, int reduction, sample_weight,
                               cnp.ndarray out):
        """out[i] = ‖∇_θ J_i‖: J_i is example i's term of the reduced loss."""
        cdef cnp.ndarray x = _float_rows(X, "X", self.size[0], -1)
        cdef Py_ssize_t n = cnp.PyArray_DIM(x, 0), start, m, i
        cdef int dL = self.size[self.n_layers]
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
                self._pass(px + start * self.size[0],
                           pt + start * dL if pt != NULL else NULL,
                           pl + start if pl != NULL else NULL,
                           r + start if r != NULL else NULL,
                           m, loss, s, PASS_NORMS, po + start)
                start += m
            for i in range(n):
                po[i] = sqrt(po[i])
        return out
