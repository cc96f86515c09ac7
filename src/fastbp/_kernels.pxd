# C-level interface of the kernels, for the network core (_network.pyx) to
# cimport.  Everything here runs without the GIL on unchecked, C-contiguous
# float64 buffers: the Python entry points in _kernels.pyx check arguments
# once (fastbp._checks), before calling these.
from libc.stdint cimport int64_t

# A product's or a dense layer's shape: A/X (n, k), B/W (d, k), b (d,),
# C/Z/Y (n, d).
cdef struct Shape:
    int n
    int k
    int d

# The outputs of a dense layer's backward pass (any may be NULL: not wanted;
# identity needs no dZ_work), and dZ_work: n*d doubles of scratch, or NULL
# to use a per-thread cached buffer.  dZ_work may equal dY only if the
# caller owns dY.
cdef struct DenseGrads:
    double *dX
    double *dW
    double *db
    double *dZ_work

# What a dense layer's forward pass keeps for its backward pass: Y = g(Z),
# and Z = X Wᵀ + b itself only where g' is no function of Y (silu); Z is
# NULL otherwise (and may be NULL in a forward pass that is not followed by
# a backward one).
cdef struct LayerOut:
    double *Y
    double *Z

# One operand of a row-major product: op(M) is M, or Mᵀ when trans; ld its
# row stride.
cdef struct Operand:
    const double *p
    int ld
    bint trans

# Row-major C (m×n, row stride ldc) = op(A) op(B) through DGEMM; threads as below.
cdef void gemm_rm(int m, int n, int k, Operand A, Operand B, double *C, int ldc,
                  int threads) noexcept nogil

# Row-major C += op(A) op(B); threads as gemm_rm's.
cdef void gemm_rm_add(int m, int n, int k, Operand A, Operand B, double *C, int ldc,
                      int threads) noexcept nogil

# ``threads``: how many threads the BLAS may use for a call; 0 asks the BLAS,
# 1 says the caller runs it on one of its own threads (then products OpenBLAS
# would thread are made in pieces it runs on the calling thread, and the
# fastest form of C = A Bᵀ is chosen for one thread).

# out.Y = g(X Wᵀ + b) (and out.Z = X Wᵀ + b when out.Z is not NULL), act an
# Activation code (fastbp._enums)
cdef void dense_forward_kernel(const double *X, const double *W, const double *b, LayerOut out,
                               Shape s, int act, int threads) noexcept nogil

# The bias and activation epilogue alone, on Z = X Wᵀ already in out.Y (for a
# caller that made the product itself): out.Y = g(out.Y + b), out.Z as above.
cdef void dense_epilogue_kernel(const double *b, LayerOut out, Shape s, int act) noexcept nogil

# C = A Bᵀ, A (n, k), B (d, k), by the fastest form for the shape
cdef void matmul_abt_kernel(const double *A, const double *B, double *C, Shape s,
                            int threads) noexcept nogil

# δA = δC B, δB = δCᵀ A; either output may be NULL (not wanted)
cdef void matmul_abt_backward_kernel(const double *dC, const double *A, const double *B,
                                     double *dA, double *dB, Shape s, int threads) noexcept nogil

# The derivative epilogue alone: dZ = dY ⊙ g'(out.Y) (silu: g'(out.Z)) and
# db = Σ_rows dZ (db overwritten; dZ NULL for identity: db = Σ_rows dY).
cdef void dense_backward_epilogue_kernel(const double *dY, LayerOut out, double *dZ, double *db,
                                         Shape s, int act) noexcept nogil

# δZ = δY ⊙ g'(Y) (silu: g'(Z), from out.Z); δb = Σ_rows δZ; δW = δZᵀ X;
# δX = δZ W.  Returns 0, or -1 when no scratch memory could be had.
cdef int dense_backward_kernel(const double *dY, const double *X, const double *W,
                               LayerOut out, DenseGrads g, Shape s, int act,
                               int threads) noexcept nogil

# loss = loss_scale Σ (T − Y)², dY = grad_scale (Y − T) over m elements (dY may be NULL)
cdef double squared_error_kernel(const double *Y, const double *T, double *dY,
                                 Py_ssize_t m, double grad_scale,
                                 double loss_scale) noexcept nogil


# Releasing and re-taking the GIL costs about as much as an (8, 8, 8)
# product: below this many multiply-adds a call keeps it (other threads
# would gain nothing from so short a release).
cdef inline bint worth_releasing_gil(int64_t madds) noexcept nogil:
    return madds >= 16 * 16 * 16
