# C-level interface of the sparse first layer, for the network core
# (_network.pyx) to cimport: X is CSR, its rows selected per batch.
from libc.stdint cimport int64_t
from fastbp._kernels cimport Shape, DenseGrads, LayerOut

# A CSR matrix of ``k`` columns (canonical: sorted, no duplicate column in a
# row; int64 indices, made so once at the API boundary), and the rows of the
# current batch: batch row i is row rows[i] (rows NULL: row row0 + i).
cdef struct CSR:
    const double *data
    const int64_t *indices
    const int64_t *indptr
    const int64_t *rows
    Py_ssize_t row0
    int k

# out.Y = g(X Wᵀ + b) for the batch's s.n rows of X, W (d, k) row-major;
# out.Z = X Wᵀ + b too when not NULL (silu).
cdef void sparse_forward_kernel(const CSR *X, const double *W, const double *b, LayerOut out,
                                Shape s, int act) noexcept nogil

# δZ = δY ⊙ g'(out.Y) (silu: g'(out.Z)); δb = Σ_rows δZ; δW = δZᵀ X (g.dX must be NULL: a sparse
# X is the network's input, whose δ nobody needs).  0, or -1 without scratch.
cdef int sparse_backward_kernel(const double *dY, const CSR *X, LayerOut out,
                                DenseGrads g, Shape s, int act) noexcept nogil

# Σ_p x_p² over the stored entries of batch row i
cdef double sparse_row_sq(const CSR *X, Py_ssize_t i) noexcept nogil
