# cython: language_level=3
"""Compiled core of a dense network: forward, loss, backward and the
optimiser's update over all layers in one call, on buffers made once.

Layers ℓ = 0..L-1 map width size[ℓ] to size[ℓ+1].  One example per row:
    A_0 = X,  A_{ℓ+1} = g_ℓ(A_ℓ W_ℓᵀ + b_ℓ)                       (eqs 10, 11)
    δ_L = ∂J/∂A_L from the loss (fastbp._losses); a loss that fuses the
          output activation in (cross entropy, binary cross entropy,
          Poisson) takes the logits: the last layer runs as identity and
          δ_L = ∂J/∂Z_L
    δZ_ℓ = δ_{ℓ+1} ⊙ g_ℓ'(A_{ℓ+1}),  δb_ℓ = Σ_rows δZ_ℓ,
    δW_ℓ = δZ_ℓᵀ A_ℓ,  δ_ℓ = δZ_ℓ W_ℓ (not for ℓ = 0)              (eqs 21-24)
which is seed 001's δ^(ℓ) = (W^(ℓ+1)ᵀ δ^(ℓ+1)) ⊙ σ'(z^(ℓ)) on batches.

Parameters and gradients are two flat float64 arrays owned by the Python
MLP (all weights first, then all biases, so an L2 penalty is a prefix).
The workspace holds every activation and two ping-pong δ buffers for up to
``capacity`` rows; smaller batches use the leading rows, so a training loop
allocates nothing once it exists.  A batch may be split over two threads
(see ``_plan``).  An object is not thread-safe: the MLP around it
serialises access.

Entry points: ``step`` (one batch), ``epoch`` (every batch of an epoch, with
an ``Objective`` for scikit-learn's), ``forward``, ``per_example_grad_norms``.
"""

cimport numpy as cnp
from libc.math cimport sqrt, isfinite, INFINITY
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset
from libc.stdint cimport int64_t
from scipy.linalg.cython_blas cimport dgemm, ddot

from fastbp._checks cimport check_rows, check_labels, check_row_indices, check_vector, check_csr
from fastbp._enums cimport (ACT_IDENTITY, ACT_SILU, LOSS_SQUARED_ERROR, LOSS_CROSS_ENTROPY,
                            LOSS_BINARY_CROSS_ENTROPY, LOSS_POISSON, RED_SUM, RED_HALF, RED_MEAN,
                            UPD_NONE, UPD_ADAM, OUT_NONE, OUT_SOFTMAX, OUT_EXP)
from fastbp._kernels cimport (Shape, DenseGrads, LayerOut, dense_forward_kernel, dense_backward_kernel,
                              worth_releasing_gil)
from fastbp._losses cimport (Batch, loss_scale, loss_rows, softmax_rows, row_weights_of,
                             check_row_weights)
from fastbp._optim cimport Update, UpdateSpec, load_update, set_adam_step, update_range
from fastbp._sparse cimport CSR, sparse_forward_kernel, sparse_backward_kernel, sparse_row_sq

cdef extern from "_fastmath.h" nogil:
    # y = exp(x) elementwise, vectorised (x may equal y)
    void fb_exp_array(const double *x, double *y, int64_t m)

cdef extern from "_team.h" nogil:
    ctypedef void (*fb_task_fn)(void *arg, int part) noexcept nogil
    # 2 while a second thread may take part of the work (BLAS threads > 1)
    int fb_team_width(void *dgemm)
    # fn(arg, 0) here and fn(arg, 1) on the helper (or here, if it is late)
    void fb_team_run(fb_task_fn fn, void *arg)

cnp.import_array()

# Mode of one pass over a batch.
cdef enum:
    PASS_LOSS = 0    # forward + loss
    PASS_GRAD = 1    # + backward into the gradient buffer
    PASS_NORMS = 2   # + backward for per-example gradient norms (no δW)


cdef double _row_sq(const double *a, Py_ssize_t k) noexcept nogil:
    cdef Py_ssize_t p
    cdef double s = 0.0
    for p in range(k):
        s += a[p] * a[p]
    return s


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


cdef void forward_layers(const Layers *net, Work *w, const double *X, const CSR *sx,
                         Py_ssize_t n) noexcept nogil:
    """The activations of n rows: X dense, or sx (CSR rows) when not NULL."""
    cdef int l
    cdef const double *a = X
    for l in range(net.L):
        if l == 0 and sx != NULL:
            sparse_forward_kernel(sx, net.params + net.w_off[0], net.params + net.b_off[0],
                                  LayerOut(w.A[1], w.Z[1]), layer_shape(net, 0, n), net.act[0])
        else:
            dense_forward_kernel(a, net.params + net.w_off[l], net.params + net.b_off[l],
                                 LayerOut(w.A[l + 1], w.Z[l + 1]), layer_shape(net, l, n),
                                 net.act[l], w.threads)
        a = w.A[l + 1]


cdef void backward_first_layer(const Layers *net, Work *w, const double *dY, const double *X,
                               const CSR *sx, DenseGrads g, Py_ssize_t n) noexcept nogil:
    """Layer 0's backward pass, on X dense or on sx (CSR rows)."""
    if sx != NULL:
        sparse_backward_kernel(dY, sx, LayerOut(w.A[1], w.Z[1]), g, layer_shape(net, 0, n),
                               net.act[0])
    else:
        dense_backward_kernel(dY, X, net.params + net.w_off[0], LayerOut(w.A[1], w.Z[1]), g,
                              layer_shape(net, 0, n), net.act[0], w.threads)


cdef double _pass(const Layers *net, Work *w, const Batch *b, PassSpec p,
                  double *norms) noexcept nogil:
    """Forward, loss (δ_L into D0) and, by p.mode, the backward pass; norms:
    per-row squared gradient norms, accumulated in PASS_NORMS mode."""
    cdef int L = net.L, l, k, d
    cdef Py_ssize_t i, n = b.n
    cdef double J, dz2
    cdef double *cur = w.D0
    cdef double *other = w.D1
    cdef double *tmp
    cdef const double *a_in
    cdef DenseGrads g
    cdef Layers logits
    if p.loss != LOSS_SQUARED_ERROR:
        # the loss fuses the output activation in and takes the logits Z_L,
        # so the output layer runs as identity (δ_L is then δZ_L)
        logits = net[0]
        logits.act = net.logit_act
        net = &logits
    forward_layers(net, w, b.X, p.sx, n)
    J = loss_rows(p.loss, w.A[L], cur, net.size[L], b, p.s, &w.worst)
    if p.mode == PASS_LOSS:
        return J
    for l in range(L - 1, -1, -1):
        k = net.size[l]
        d = net.size[l + 1]
        a_in = b.X if l == 0 else w.A[l]
        # δZ is formed in place in cur (we own it); δ of the layer below
        # goes to the other buffer.
        g.dX = other if l > 0 else NULL
        g.dZ_work = cur
        if p.mode == PASS_GRAD:
            g.dW = w.grads + net.w_off[l]
            g.db = w.grads + net.b_off[l]
        else:
            # Per-example weight gradient δz_i a_iᵀ has norm ‖δz_i‖‖a_i‖,
            # the bias gradient adds ‖δz_i‖²: no δW is formed.
            g.dW = NULL
            g.db = w.db_scratch
        if l == 0:
            backward_first_layer(net, w, cur, a_in, p.sx, g, n)
        else:
            dense_backward_kernel(cur, a_in, net.params + net.w_off[l],
                                  LayerOut(w.A[l + 1], w.Z[l + 1]), g,
                                  layer_shape(net, l, n), net.act[l], w.threads)
        if p.mode == PASS_NORMS:
            for i in range(n):
                dz2 = _row_sq(cur + i * d, d)
                norms[i] += dz2 * ((sparse_row_sq(p.sx, i) if l == 0 and p.sx != NULL
                                    else _row_sq(a_in + i * k, k)) + 1.0)
        tmp = cur
        cur = other
        other = tmp
    return J


cdef void _gather(const Gather *g, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    if g.xs != NULL:  # (a CSR X is read in place, through its rows' numbers)
        _copy_rows(g.xs, g.idx, lo, hi, g.x_row, g.xb)
    _copy_rows(g.ts, g.idx, lo, hi, g.t_row, g.tb)


cdef Batch batch_rows(const Batch *b, Py_ssize_t lo, Py_ssize_t m, int k0, int dL) noexcept nogil:
    cdef Batch part = b[0]
    if b.X != NULL:
        part.X = b.X + lo * k0
    if b.T != NULL:
        part.T = b.T + lo * dL
    if b.labels != NULL:
        part.labels = b.labels + lo
    if b.r != NULL:
        part.r = b.r + lo
    part.n = m
    return part


cdef void _pass_part(void *arg, int part) noexcept nogil:
    cdef SplitPass *p = <SplitPass *>arg
    cdef Py_ssize_t lo = 0 if part == 0 else p.n0
    cdef Py_ssize_t m = p.n0 if part == 0 else p.batch.n - p.n0
    cdef Batch rows = batch_rows(&p.batch, lo, m, p.net.size[0], p.net.size[p.net.L])
    if p.gather != NULL:
        _gather(p.gather, lo, lo + m)
    p.J[part] = _pass(p.net, p.work[part], &rows, p.spec, NULL)


# After a split batch the update is made half of the parameter vector on
# each thread, which first sums the two parts' gradients on its half: the
# caller's half into grads, the helper's into the second part's buffer g1,
# so that each thread writes only lines it wrote in the pass (a write to a
# line the other core holds waits for it).  The loops are elementwise, so
# halves give the bits the whole vector gives.
cdef void _update_part(void *arg, int part) noexcept nogil:
    cdef Update *u = <Update *>arg
    if part == 0:
        update_range(u, 0, u.half, False)
    else:
        update_range(u, u.half, u.n, True)


# The split pays where a part's work is long next to the exchange after it
# (each gradient half and each updated parameter half crosses between the
# cores: ~8 µs for 7,500 parameters) and its products are ones OpenBLAS
# would not spread over its pool well: up to 10^6 multiply-adds, which its
# small-matrix kernels run on the calling thread, or which gemm_rm makes in
# pieces of 2^18 that it runs there (above, OpenBLAS's own threads win).  A
# part's work and the exchange both grow with the parameter count, so the
# bound is on rows: measured (benchmarks/bench_split.py, 2-core Zen 4 VM)
# 16 rows a part gained 0-5 %, 32 rows 34-48 %, 100 rows 57-88 %; a whole
# step of 37,000 multiply-adds (15 µs) still gained 44 %.
cdef enum:
    SPLIT_MIN_MADDS = 1 << 15    # of the whole batch (the hand-over's fixed µs)
    SPLIT_MIN_ROWS = 24          # of each part
    SPLIT_MAX_LAYER_MADDS = 1000000  # of each layer's product on a part


cdef class Objective:
    """The objective of an epoch's batches beyond the loss, as configuration
    (the defaults are fastbp's own: the loss alone).

    alpha: an L2 penalty α/(2 N_b) ‖W‖² per batch, N_b its rows or weight
    sum (scikit-learn's), its gradient taken grad_scale times (the loss's
    gradient's scale against the objective's), added to the update's own
    weight_decay.  loss_scale divides each batch's loss in the epoch's
    total.  weigh_by_rows: the total weighs a batch by its rows (as
    scikit-learn's loss_curve_ does), not by its weight.  held_units: the
    last output units whose weights and bias are set back to 0 after each
    update (the binary case's second logit).  eps_before_correction: Adam's
    ε is added to √v before the bias correction (scikit-learn's placement).
    """
    cdef readonly double alpha, grad_scale, loss_scale
    cdef readonly Py_ssize_t held_units
    cdef readonly bint weigh_by_rows, eps_before_correction

    def __init__(self, *, double alpha=0.0, double grad_scale=1.0, double loss_scale=1.0,
                 Py_ssize_t held_units=0, bint weigh_by_rows=False,
                 bint eps_before_correction=False):
        if not (alpha >= 0.0 and isfinite(alpha)):
            raise ValueError(f"alpha must be a finite number >= 0, got {alpha}")
        if not (grad_scale > 0.0 and loss_scale > 0.0):
            raise ValueError(f"grad_scale and loss_scale must be > 0, got {grad_scale}, {loss_scale}")
        if held_units < 0:
            raise ValueError(f"held_units must be >= 0, got {held_units}")
        self.alpha = alpha
        self.grad_scale = grad_scale
        self.loss_scale = loss_scale
        self.held_units = held_units
        self.weigh_by_rows = weigh_by_rows
        self.eps_before_correction = eps_before_correction


cdef Objective _LOSS_ALONE = Objective()


cdef class NetworkCore:
    """Holds the pointers of one network's parameters, gradients and
    workspace, and runs whole passes over a batch without the GIL (its
    attributes are declared in _network.pxd)."""

    def __cinit__(self):
        self.worst_row_loss = -INFINITY
        self.net.size = NULL
        self.net.act = NULL
        self.net.logit_act = NULL
        self.net.w_off = NULL
        self.net.b_off = NULL
        self.work[0].A = NULL
        self.work[1].A = NULL
        self.work[0].Z = NULL
        self.work[1].Z = NULL
        self.work[0].threads = 0

    def __init__(self, sizes, activations, params, grads, *, int output=OUT_NONE):
        """sizes: the widths, input first; activations: one Activation code
        per layer; params, grads: the MLP's flat float64 vectors; output:
        the Output code of what forward applies to the last layer's values
        (OUT_SOFTMAX, OUT_EXP: an output activation only a fused loss
        trains, the last layer then being identity).  A pass of any loss but
        squared error runs the last layer as identity (its logits)."""
        cdef int L = len(sizes) - 1, l
        cdef Py_ssize_t off = 0
        if len(activations) != L:
            raise ValueError(f"activations must have one code per layer ({L}), got {len(activations)}")
        if not OUT_NONE <= output <= OUT_EXP:
            raise ValueError(f"unknown output code {output}")
        self.n_layers = L
        self.output = output
        self.net.L = L
        self.net.size = <int *>malloc((L + 1) * sizeof(int))
        self.net.act = <int *>malloc(L * sizeof(int))
        self.net.logit_act = <int *>malloc(L * sizeof(int))
        self.net.w_off = <Py_ssize_t *>malloc(L * sizeof(Py_ssize_t))
        self.net.b_off = <Py_ssize_t *>malloc(L * sizeof(Py_ssize_t))
        self.work[0].A = <double **>malloc((L + 1) * sizeof(double *))
        self.work[1].A = <double **>malloc((L + 1) * sizeof(double *))
        self.work[0].Z = <double **>malloc((L + 1) * sizeof(double *))
        self.work[1].Z = <double **>malloc((L + 1) * sizeof(double *))
        if not (self.net.size and self.net.act and self.net.logit_act and self.net.w_off
                and self.net.b_off and self.work[0].A and self.work[1].A and self.work[0].Z
                and self.work[1].Z):
            raise MemoryError("NetworkCore: no memory for the layer tables")
        self.max_d = 1
        self.madds_per_row = 0
        self.max_layer_madds_row = 0
        for l in range(L + 1):
            self.net.size[l] = sizes[l]
        for l in range(L):
            self.net.act[l] = activations[l]
            self.net.logit_act[l] = activations[l] if l < L - 1 else ACT_IDENTITY
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
        self.params = <double *>cnp.PyArray_DATA(
            check_vector(params, "params", cnp.NPY_DOUBLE, off, "values", True))
        self.grads = <double *>cnp.PyArray_DATA(
            check_vector(grads, "grads", cnp.NPY_DOUBLE, off, "values", True))
        self._params = params
        self._grads = grads
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
        free(self.net.logit_act)
        free(self.net.w_off)
        free(self.net.b_off)
        free(self.work[0].A)
        free(self.work[1].A)
        free(self.work[0].Z)
        free(self.work[1].Z)

    cdef object _make_work(self, Work *w, Py_ssize_t n, bint own_grads):
        """Point w's buffers into one new zeroed array for n rows (returned:
        the owner of the memory)."""
        cdef Py_ssize_t total = 2 * n * self.max_d + self.max_d, l
        for l in range(1, self.n_layers + 1):
            total += n * self.net.size[l] * (2 if self.net.act[l - 1] == ACT_SILU else 1)
        if own_grads:
            total += self.n_params
        work = cnp.PyArray_ZEROS(1, [total], cnp.NPY_DOUBLE, 0)
        cdef double *p = <double *>cnp.PyArray_DATA(work)
        for l in range(1, self.n_layers + 1):
            w.A[l] = p
            p += n * self.net.size[l]
            w.Z[l] = NULL
            if self.net.act[l - 1] == ACT_SILU:  # silu's g' needs Z (the others' come from Y)
                w.Z[l] = p
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
        if self.sparse_x:
            return 0  # a CSR X's batches are not split (kept simple: one thread)
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

    cdef double _run(self, const Batch *b, PassSpec p, Update *u, const Gather *gather,
                     bint keep_grads) noexcept nogil:
        """One pass over the batch, split over two threads when _plan says
        so, then the update u (kind UPD_NONE: none); the gradient ends in
        grads either way (without ``keep_grads``, the half from u.half on
        is left in the second part's buffer, u.g1, after a split with an
        update).  With ``gather``, b's rows are its buffers, filled here."""
        cdef double J
        cdef Py_ssize_t n0 = self._plan(b.n, p.mode)
        if n0 > 0 and b.n - n0 > self.capacity1:
            n0 = 0  # (a batch larger than the second workspace: not split)
        u.g1 = NULL
        if n0 == 0:
            if gather != NULL:
                _gather(gather, 0, b.n)
            J = _pass(&self.net, &self.work[0], b, p, NULL)
            if u.kind != UPD_NONE:
                update_range(u, 0, u.n, False)
            return J
        self.split.net = &self.net
        self.split.gather = gather
        self.split.work[0] = &self.work[0]
        self.split.work[1] = &self.work[1]
        self.split.batch = b[0]
        self.split.spec = p
        self.split.n0 = n0
        self.work[0].threads = 1  # each part's products on its own thread
        fb_team_run(_pass_part, &self.split)
        self.work[0].threads = 0
        if self.work[1].worst > self.work[0].worst:
            self.work[0].worst = self.work[1].worst
        self.split_steps += 1
        # the parts' gradients summed, and the update, half on each thread
        u.g1 = self.work[1].grads
        u.half = (u.n // 2) & ~(<Py_ssize_t>7)  # whole vectors on each side
        if u.kind == UPD_NONE:
            update_range(u, 0, u.n, False)  # the sum alone
        else:
            fb_team_run(_update_part, u)
            if keep_grads:  # the helper's half of the sum is in g1
                self._whole_gradient(u)
        return self.split.J[0] + self.split.J[1]

    cdef void _whole_gradient(self, Update *u) noexcept nogil:
        """grads ← the whole summed gradient after a split update, whose
        second half was summed in the second part's buffer."""
        if u.g1 != NULL and u.kind != UPD_NONE:
            memcpy(self.grads + u.half, u.g1 + u.half, (u.n - u.half) * sizeof(double))

    cdef int _csr(self, object X) except -1:
        """self.sx ← the checked CSR X (canonical, int64 indices: see
        fastbp.inputs.as_inputs), every row in place."""
        t = check_csr(X, "X", self.net.size[0])
        self._sx = t
        self.sx.data = <const double *>cnp.PyArray_DATA(<cnp.ndarray>t[0])
        self.sx.indices = <const int64_t *>cnp.PyArray_DATA(<cnp.ndarray>t[1])
        self.sx.indptr = <const int64_t *>cnp.PyArray_DATA(<cnp.ndarray>t[2])
        self.sx.rows = NULL
        self.sx.row0 = 0
        self.sx.k = self.net.size[0]
        self.sparse_x = True
        return 0

    cdef const CSR *_sx_ptr(self) noexcept nogil:
        return &self.sx if self.sparse_x else NULL

    cdef int _batch_x(self, Batch *b, object X) except -1:
        """b.X, b.n ← X's checked float64 rows, or (b.X NULL) self.sx ← X as CSR."""
        cdef cnp.ndarray x
        if cnp.PyArray_Check(X):
            x = check_rows(X, "X", self.net.size[0], -1)
            b.n = cnp.PyArray_DIM(x, 0)
            b.X = <const double *>cnp.PyArray_DATA(x)
            self.sparse_x = False
            self._sx = None
        else:
            self._csr(X)
            b.n = X.shape[0]
            b.X = NULL
        return 0

    cdef int _update(self, Update *u, UpdateSpec spec) except -1:
        """u ← spec's update (none for None), the penalty on the weights."""
        if spec is None:
            u.kind = UPD_NONE
            u.params = self.params
            u.grads = self.grads
            u.g1 = NULL
            u.n = self.n_params
            u.n_decay = 0
            return 0
        return load_update(spec, u, self._params, self._grads, self.n_weights)

    cdef int _batch(self, Batch *b, object X, object T, int loss, bint whole) except -1:
        """b ← the checked rows of X and their targets T (float64 rows, or
        int64 labels for cross entropy); whole: X's own rows, not a part."""
        cdef int dL = self.net.size[self.n_layers]
        self._batch_x(b, X)
        b.T = NULL
        b.labels = NULL
        b.r = NULL
        if loss == LOSS_CROSS_ENTROPY and cnp.PyArray_Check(T) and cnp.PyArray_NDIM(<cnp.ndarray>T) == 1:
            b.labels = <const int64_t *>cnp.PyArray_DATA(check_labels(T, "T", b.n, dL))
        else:
            b.T = <const double *>cnp.PyArray_DATA(check_rows(T, "T", dL, b.n))
        return 0

    # -- Python entry points ------------------------------------------------

    def step(self, X, T, *, int loss=LOSS_SQUARED_ERROR, int reduction=RED_SUM,
             sample_weight=None, bint backward=True, UpdateSpec update=None):
        """One batch: its loss (returned); the gradient into the flat
        gradient buffer when ``backward`` or ``update``; then ``update``'s
        step on it (an UpdateSpec, whose t counts the step), as
        fastbp._optim's loops make it, the penalty on the weights.

        X: float64 rows, or a CSR matrix in the form fastbp.inputs.as_inputs
        makes (canonical, float64, int64 indices).  loss, reduction: Loss and
        Reduction codes.  sample_weight: float64 (N,) weights, example i's
        cost weighing w_i N / Σ w."""
        check_codes(loss, reduction)
        cdef Update u
        self._update(&u, update)
        cdef Batch b
        self._batch(&b, X, T, loss, True)
        cdef Py_ssize_t n = b.n
        if n > self.capacity:
            self.reserve(n)
        if sample_weight is not None:
            check_row_weights(sample_weight, n, self.rowbuf)
            b.r = self.rowbuf
        cdef PassSpec p = PassSpec(loss, PASS_GRAD if (backward or update is not None) else PASS_LOSS,
                                   loss_scale(reduction, n), self._sx_ptr())
        self._prepare(n, self._plan(n, p.mode))
        cdef long t = 0
        if u.kind == UPD_ADAM:
            t = update.t + 1
            set_adam_step(&u, t, u.k.eps, False)
        cdef double J
        if worth_releasing_gil(n * self.madds_per_row):
            with nogil:
                J = self._run(&b, p, &u, NULL, True)
        else:
            J = self._run(&b, p, &u, NULL, True)
        if u.kind == UPD_ADAM:
            update.t = t
        self.worst_row_loss = self.work[0].worst
        return J

    def epoch(self, X, T, *, Py_ssize_t batch_size, int loss=LOSS_SQUARED_ERROR,
              int reduction=RED_MEAN, UpdateSpec update=None, order=None, buffers=None,
              sample_weight=None, Objective objective=None, after_gradient=None,
              batch_weights=None):
        """One epoch of mini-batch training, every batch in one call.

        Batch b is rows order[b·batch_size:][:batch_size] of X and T, gathered
        into ``buffers`` = (X_buf, T_buf), each of at least batch_size rows
        (order None: the rows in place, no copies).  A CSR X (as in ``step``)
        is never gathered: its rows are read through order, X_buf is None.  Its loss is reduced by
        ``reduction`` over the batch and weighted by sample_weight (each
        batch normalised by its weight sum; a batch of weight 0 is skipped),
        plus ``objective``'s terms (None: the loss alone).  After each
        batch's gradient, ``after_gradient(b)`` (a Python callable, e.g. an
        Allreduce of grads) is called, then ``update``'s step is made (an
        UpdateSpec; None: no update, e.g. after_gradient makes it).
        batch_weights: the batches' weights across all processes of a
        distributed fit (one per batch): a batch is skipped where that is 0,
        and a batch whose own weight is 0 then gives a zero gradient.

        Returns Σ_b (J_b / loss_scale + penalty_b) × the batch's weight (its
        weight sum, or its rows with weigh_by_rows; divided by its rows
        unless the reduction is "mean"): the epoch's total loss.
        """
        check_codes(loss, reduction)
        cdef Objective obj = objective if objective is not None else _LOSS_ALONE
        cdef Batch whole
        self._batch(&whole, X, T, loss, True)
        cdef Py_ssize_t n = whole.n
        cdef int L = self.n_layers, dL = self.net.size[L], k0 = self.net.size[0]
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        batch_size = min(batch_size, n)
        cdef Py_ssize_t n_batches = (n + batch_size - 1) // batch_size if n > 0 else 0
        cdef Gather g
        g.t_row = cnp.PyArray_NBYTES(<cnp.ndarray>T) // max(n, 1)
        g.x_row = k0 * sizeof(double)
        g.xs = <const char *>whole.X  # NULL for a CSR X: its rows are read in place
        g.ts = <const char *>(whole.T if whole.T != NULL else <const double *>whole.labels)
        cdef const CSR *sx = self._sx_ptr()
        cdef const int64_t *idx = NULL
        if order is not None:
            idx = <const int64_t *>cnp.PyArray_DATA(check_row_indices(order, "order", n))
            _buffers(buffers, batch_size, k0, T, g.t_row, &g.xb, &g.tb, sx != NULL)
        cdef const double *w = NULL
        if sample_weight is not None:
            w = <const double *>cnp.PyArray_DATA(check_vector(
                sample_weight, "sample_weight", cnp.NPY_DOUBLE, n, "values", False))
        cdef const double *bw = NULL
        if batch_weights is not None:
            bw = <const double *>cnp.PyArray_DATA(check_vector(
                batch_weights, "batch_weights", cnp.NPY_DOUBLE, n_batches,
                "values (one per batch)", False))
        cdef bint hook = after_gradient is not None
        if hook and not callable(after_gradient):
            raise TypeError(f"after_gradient must be callable(batch) or None, "
                            f"got {type(after_gradient).__name__}")
        cdef Py_ssize_t held = obj.held_units
        if not held < dL:
            raise ValueError(f"held_units must be in [0, {dL}), got {held}")
        cdef double alpha = obj.alpha, grad_scale = obj.grad_scale, ls = obj.loss_scale
        cdef bint by_rows = obj.weigh_by_rows, eps_first = obj.eps_before_correction
        cdef Update u
        self._update(&u, update)
        cdef double wd = u.k.weight_decay, eps = u.k.eps
        cdef long t = update.t if update is not None else 0
        cdef int kind = u.kind
        self._prepare(batch_size, self._plan(batch_size, PASS_GRAD))
        cdef double *held_w = self.params + self.net.w_off[L - 1] + (dL - held) * self.net.size[L - 1]
        cdef double *held_b = self.params + self.net.b_off[L - 1] + (dL - held)
        cdef Py_ssize_t start, mb, i_batch
        cdef Batch b
        cdef double norm, penalty, J, total = 0.0
        cdef int n_w = <int>self.n_weights, one = 1
        for i_batch in range(n_batches):
            start = i_batch * batch_size
            with nogil:
                mb = min(batch_size, n - start)
                b = batch_rows(&whole, start, mb, k0, dL)
                self.sx.row0 = start
                self.sx.rows = NULL
                if idx != NULL:  # copied in _run, each part by its own thread
                    g.idx = idx + start
                    self.sx.rows = g.idx  # (CSR: batch row i is row order[start + i])
                    if sx == NULL:
                        b.X = <const double *>g.xb
                    if b.T != NULL:
                        b.T = <const double *>g.tb
                    else:
                        b.labels = <const int64_t *>g.tb
                norm = mb
                if w != NULL:
                    norm = (row_weights_of(w, g.idx, mb, self.rowbuf) if idx != NULL
                            else row_weights_of(w + start, NULL, mb, self.rowbuf))
                    b.r = self.rowbuf
            if (bw[i_batch] == 0.0) if bw != NULL else (w != NULL and not norm > 0.0):
                continue  # nothing to learn from this batch
            with nogil:
                penalty = 0.0
                u.k.weight_decay = wd
                if alpha != 0.0:  # α/(2 N_b) ‖W‖², its gradient scaled like the loss's
                    penalty = 0.5 * alpha * ddot(&n_w, self.params, &one, self.params, &one) / norm
                    u.k.weight_decay = wd + grad_scale * alpha / norm
                if kind == UPD_ADAM:
                    t += 1
                    set_adam_step(&u, t, eps, eps_first)
                u.kind = UPD_NONE if hook else kind  # the hook's turn comes first
                if norm > 0.0:
                    J = self._run(&b, PassSpec(loss, PASS_GRAD, loss_scale(reduction, mb), sx), &u,
                                  &g if idx != NULL else NULL, hook)
                else:  # only the other processes' rows of this batch weigh
                    memset(self.grads, 0, self.n_params * sizeof(double))
                    J = 0.0
            if hook:
                after_gradient(i_batch)
                with nogil:
                    u.kind = kind
                    u.g1 = NULL
                    update_range(&u, 0, u.n, False)
            with nogil:
                if held:
                    memset(held_w, 0, held * self.net.size[L - 1] * sizeof(double))
                    memset(held_b, 0, held * sizeof(double))
                total += (J / ls + penalty) * ((mb if by_rows else norm)
                                               / (1.0 if reduction == RED_MEAN else mb))
        with nogil:
            self._whole_gradient(&u)  # grads: the last batch's gradient, whole
        if update is not None:
            update.t = t
        return total

    def forward(self, X, out):
        """out = the network's output for X (float64 rows or a CSR matrix), in
        chunks of the workspace's rows."""
        cdef Batch b
        self._batch_x(&b, X)
        cdef Py_ssize_t n = b.n, start, m
        cdef int L = self.n_layers, dL = self.net.size[L]
        cdef const double *px = b.X
        cdef const CSR *sx = self._sx_ptr()
        cdef double *po = <double *>cnp.PyArray_DATA(check_rows(out, "out", dL, n))
        if self.capacity == 0:
            self.reserve(1)
        with nogil:
            start = 0
            while start < n:
                m = min(self.capacity, n - start)
                self.sx.row0 = start
                forward_layers(&self.net, &self.work[0], px + start * self.net.size[0] if sx == NULL else NULL,
                         sx, m)
                memcpy(po + start * dL, self.work[0].A[L], m * dL * sizeof(double))
                if self.output == OUT_SOFTMAX:
                    softmax_rows(po + start * dL, m, dL)
                elif self.output == OUT_EXP:
                    fb_exp_array(po + start * dL, po + start * dL, m * dL)
                start += m
        return out

    def per_example_grad_norms(self, X, T, out, *, int loss=LOSS_SQUARED_ERROR,
                               int reduction=RED_SUM, sample_weight=None):
        """out[i] = ‖∇_θ J_i‖: J_i is example i's term of the reduced loss."""
        check_codes(loss, reduction)
        cdef Batch whole
        self._batch(&whole, X, T, loss, True)
        cdef Py_ssize_t n = whole.n, start, m, i
        cdef int dL = self.net.size[self.n_layers], k0 = self.net.size[0]
        cdef double *po = <double *>cnp.PyArray_DATA(
            check_vector(out, "out", cnp.NPY_DOUBLE, n, "values (one per row of X)", True))
        if self.capacity == 0:
            self.reserve(1)
        # the weights and the mean's 1/N are those of the whole X, not of a chunk
        cdef cnp.ndarray rw = None
        if sample_weight is not None:
            rw = cnp.PyArray_EMPTY(1, [n], cnp.NPY_DOUBLE, 0)
            check_row_weights(sample_weight, n, <double *>cnp.PyArray_DATA(rw))
            whole.r = <const double *>cnp.PyArray_DATA(rw)
        cdef PassSpec p = PassSpec(loss, PASS_NORMS, loss_scale(reduction, n), self._sx_ptr())
        cdef Batch b
        with nogil:
            for i in range(n):
                po[i] = 0.0
            start = 0
            while start < n:
                m = min(self.capacity, n - start)
                b = batch_rows(&whole, start, m, k0, dL)
                self.sx.row0 = start
                _pass(&self.net, &self.work[0], &b, p, po + start)
                start += m
            for i in range(n):
                po[i] = sqrt(po[i])
        return out


cdef int check_codes(int loss, int reduction) except -1:
    if not (LOSS_SQUARED_ERROR <= loss <= LOSS_POISSON and RED_SUM <= reduction <= RED_MEAN):
        raise ValueError(f"unknown loss code {loss} or reduction code {reduction}")
    if loss == LOSS_CROSS_ENTROPY and reduction == RED_HALF:
        raise ValueError("reduction for cross_entropy must be 'sum' or 'mean', got 'half'")
    return 0


cdef int _buffers(object buffers, Py_ssize_t rows, int k0, object T, Py_ssize_t t_row,
                  char **xb, char **tb, bint sparse) except -1:
    """The data of an epoch's (X_buf, T_buf): rows of X and of T, C-contiguous;
    sparse: X is CSR, read in place, and X_buf must be None (xb ← NULL)."""
    try:
        X_buf, T_buf = buffers
    except (TypeError, ValueError):
        raise TypeError("buffers must be a pair (X_buf, T_buf) when order is given") from None
    if sparse:
        if X_buf is not None:
            raise ValueError("X_buf must be None for a CSR X (its rows are read in place)")
    else:
        check_rows(X_buf, "X_buf", k0, -1)
    if (not cnp.PyArray_Check(T_buf)
            or (not sparse and (cnp.PyArray_DIM(X_buf, 0) < rows or not cnp.PyArray_ISWRITEABLE(X_buf)))
            or cnp.PyArray_DIM(T_buf, 0) < rows
            or cnp.PyArray_TYPE(T_buf) != cnp.PyArray_TYPE(<cnp.ndarray>T)
            or not cnp.PyArray_IS_C_CONTIGUOUS(T_buf) or not cnp.PyArray_ISWRITEABLE(T_buf)
            or cnp.PyArray_NBYTES(T_buf) // cnp.PyArray_DIM(T_buf, 0) != t_row):
        raise ValueError(f"X_buf and T_buf must hold {rows} rows of X and T "
                         f"(C-contiguous, writeable, T's dtype), got shapes "
                         f"{getattr(X_buf, 'shape', None)} and {getattr(T_buf, 'shape', None)}")
    xb[0] = NULL if sparse else <char *>cnp.PyArray_DATA(<cnp.ndarray>X_buf)
    tb[0] = <char *>cnp.PyArray_DATA(<cnp.ndarray>T_buf)
    return 0
