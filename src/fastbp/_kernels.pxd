# C-level interface of the compiled core, for other compiled modules of
# fastbp (the network step, the optimisers) to cimport.  Everything here runs
# without the GIL on unchecked, C-contiguous float64 buffers: the Python entry
# points in _kernels.pyx check arguments once, before calling these.
#
cimport numpy as cnp
from libc.stdint cimport int64_t

# Shapes: A/X (n, k), B/W (d, k), b (d,), C/Z/Y (n, d).  act is one of the
# ACT_* codes below.

cdef enum:
    ACT_IDENTITY = 0
    ACT_SIGMOID = 1
    ACT_TANH = 2
    ACT_RELU = 3

# Row-major C = alpha op(A) op(B) + beta C through the BLAS (or the small
# path); trans_a/trans_b are 0 or 1.
cdef void gemm_rm(bint trans_a, bint trans_b, int m, int n, int k, double alpha,
                  const double *A, int lda, const double *B, int ldb,
                  double beta, double *C, int ldc) noexcept nogil

# gemm_rm for a caller that knows how many threads the BLAS may use for this
# call (1: the caller runs it on one of its own threads, and products OpenBLAS
# would thread are made in pieces it runs on the calling thread); 0 asks
# the BLAS.
cdef void gemm_rm_threads(bint trans_a, bint trans_b, int m, int n, int k, double alpha,
                          const double *A, int lda, const double *B, int ldb,
                          double beta, double *C, int ldc, int threads) noexcept nogil

# C = A Bᵀ
cdef void matmul_abt_kernel(const double *A, const double *B, double *C,
                            int n, int k, int d) noexcept nogil
# δA = δC B, δB = δCᵀ A; either output may be NULL (not wanted)
cdef void matmul_abt_backward_kernel(const double *dC, const double *A,
                                     const double *B, double *dA, double *dB,
                                     int n, int k, int d) noexcept nogil
# as matmul_abt_kernel, with gemm_rm_threads's threads (the fastest form of
# the product depends on it)
cdef void matmul_abt_kernel_threads(const double *A, const double *B, double *C,
                                    int n, int k, int d, int threads) noexcept nogil
# Y = g(X Wᵀ + b)
cdef void dense_forward_kernel(const double *X, const double *W, const double *b,
                               double *Y, int n, int k, int d, int act) noexcept nogil
# the same, with matmul_abt_kernel_threads's threads
cdef void dense_forward_kernel_threads(const double *X, const double *W, const double *b,
                                       double *Y, int n, int k, int d, int act,
                                       int threads) noexcept nogil
# δZ = δY ⊙ g'(Y); δb = Σ_rows δZ; δW = δZᵀ X; δX = δZ W (skipped when dX is NULL).
# dZ_work: n*d doubles of scratch, or NULL to use a per-thread cached buffer
# (identity needs none).  dZ_work may equal dY only if the caller owns dY.
# Returns 0, or -1 when no scratch memory could be had.
cdef int dense_backward_kernel(const double *dY, const double *X, const double *W,
                               const double *Y, double *dX, double *dW, double *db,
                               double *dZ_work, int n, int k, int d, int act) noexcept nogil
# the same, with gemm_rm_threads's threads
cdef int dense_backward_kernel_threads(const double *dY, const double *X, const double *W,
                                       const double *Y, double *dX, double *dW, double *db,
                                       double *dZ_work, int n, int k, int d, int act,
                                       int threads) noexcept nogil
# loss = loss_scale Σ (T − Y)², dY = grad_scale (Y − T) over m elements (dY may be NULL)
cdef double squared_error_kernel(const double *Y, const double *T, double *dY,
                                 Py_ssize_t m, double grad_scale,
                                 double loss_scale) noexcept nogil

# The boundary check of every array argument: an ndarray of native float64,
# ``ndim``-D, C-contiguous, aligned, every dimension within the BLAS's int.
# Raises TypeError / ValueError naming ``name``; returns the array.
cdef cnp.ndarray check_array(object a, str name, int ndim)


# Releasing and re-taking the GIL costs about as much as an (8, 8, 8)
# product: below this many multiply-adds a call keeps it (other threads
# would gain nothing from so short a release).
cdef inline bint worth_releasing_gil(int64_t madds) noexcept nogil:
    return madds >= 16 * 16 * 16


# Whether two C-contiguous arrays share memory: each occupies exactly
# [data, data + nbytes), so this is exact (the aliasing check of the
# kernels' outputs and of the optimisers' restrict buffers).
cdef inline bint share_memory(cnp.ndarray a, cnp.ndarray b) noexcept:
    cdef char *pa = cnp.PyArray_BYTES(a)
    cdef char *pb = cnp.PyArray_BYTES(b)
    cdef Py_ssize_t na = cnp.PyArray_NBYTES(a), nb = cnp.PyArray_NBYTES(b)
    return na > 0 and nb > 0 and pa < pb + nb and pb < pa + na


# The update loops take restrict pointers: a ValueError naming both buffers
# when two of them share memory (a pair at a time: nothing is allocated).
cdef inline int check_disjoint(object a, str name_a, object b, str name_b) except -1:
    if share_memory(<cnp.ndarray>a, <cnp.ndarray>b):
        raise ValueError(f"{name_a} and {name_b} share memory; each must be its own buffer "
                         f"(pass a copy)")
    return 0
