# C-level interface of the network core, for the derivative passes
# (_derivatives.pyx) to cimport: the layer tables, the workspace of a pass,
# the forward pass and layer 0's backward pass, and NetworkCore's fields.
from libc.stdint cimport int64_t
from fastbp._kernels cimport Shape, DenseGrads
from fastbp._losses cimport Batch
from fastbp._optim cimport Update, UpdateSpec
from fastbp._sparse cimport CSR

# The layer tables of one network and the workspace of one pass, as plain C
# structs: a pass runs on either thread of a split batch (see _plan).
cdef struct Layers:
    int L
    int *size
    int *act
    int *logit_act      # act with the output layer's identity: a fused loss's pass
    Py_ssize_t *w_off
    Py_ssize_t *b_off
    double *params

cdef struct Work:
    double **A          # A[1..L]: the activations
    double **Z          # Z[1..L]: pre-activations, kept for silu layers only (else NULL)
    double *D0          # two ping-pong δ buffers
    double *D1
    double *grads       # where δW, δb go
    double *db_scratch  # δb of the norms pass (thrown away)
    double worst        # the pass's worst row loss (cross entropy)
    int threads         # BLAS threads its products may use (0: ask the BLAS)

# What one pass does with a batch: its loss, the reduction's scale s, a mode;
# sx: the batch's X as CSR rows (then the Batch's X is NULL), or NULL.
cdef struct PassSpec:
    int loss
    int mode
    double s
    const CSR *sx


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


# One batch cut in two: rows [0, n0) on the caller with work[0], the rest
# on the team's helper with work[1] (its own activations and gradient).
cdef struct SplitPass:
    const Gather *gather      # or NULL: the rows are in place
    const Layers *net
    Work *work[2]
    Batch batch
    PassSpec spec
    Py_ssize_t n0
    double J[2]


cdef inline Shape layer_shape(const Layers *net, int l, Py_ssize_t n) noexcept nogil:
    return Shape(<int>n, net.size[l], net.size[l + 1])

# The activations w.A[1..L] (and w.Z of silu layers) of n rows: X dense, or
# sx (CSR rows) when not NULL.
cdef void forward_layers(const Layers *net, Work *w, const double *X, const CSR *sx,
                         Py_ssize_t n) noexcept nogil

# Layer 0's backward pass from dY = ∂J/∂A_1 into g, on X dense or on sx
# (CSR rows: g.dX must be NULL).
cdef void backward_first_layer(const Layers *net, Work *w, const double *dY, const double *X,
                               const CSR *sx, DenseGrads g, Py_ssize_t n) noexcept nogil

# Rows [lo, lo + m) of a batch (k0 inputs, dL targets per row)
cdef Batch batch_rows(const Batch *b, Py_ssize_t lo, Py_ssize_t m, int k0, int dL) noexcept nogil

# the loss and reduction codes a pass takes (ValueError otherwise)
cdef int check_codes(int loss, int reduction) except -1


cdef class NetworkCore:
    cdef readonly int n_layers
    cdef readonly Py_ssize_t capacity
    # what forward applies to the output layer's values (an Output code)
    cdef readonly int output
    # the largest one-row cross entropy −log P(true class) of the last pass
    # (binary cross entropy: the largest one-label loss; rows of weight 0
    # left out): lets a caller see whether any row's probability fell below
    # a threshold without another pass
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
    # the last checked X when it is CSR (sparse_x): its arrays held in _sx
    cdef CSR sx
    cdef bint sparse_x
    cdef object _sx

    cdef object _make_work(self, Work *w, Py_ssize_t n, bint own_grads)
    cdef Py_ssize_t _plan(self, Py_ssize_t n, int mode) noexcept nogil
    cdef int _prepare(self, Py_ssize_t n, Py_ssize_t n0) except -1
    cdef double _run(self, const Batch *b, PassSpec p, Update *u, const Gather *gather,
                     bint keep_grads) noexcept nogil
    cdef void _whole_gradient(self, Update *u) noexcept nogil
    cdef int _csr(self, object X) except -1
    cdef const CSR *_sx_ptr(self) noexcept nogil
    cdef int _batch_x(self, Batch *b, object X) except -1
    cdef int _update(self, Update *u, UpdateSpec spec) except -1
    cdef int _batch(self, Batch *b, object X, object T, int loss, bint whole) except -1
