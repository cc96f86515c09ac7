# cython: language_level=3
"""Compiled core of fastbp: fused float64 backprop kernels.

Two layers live here:

* ``cdef ... noexcept nogil`` kernels on raw, already-checked buffers (their
  declarations are in _kernels.pxd, for the other compiled modules);
* the public ``def`` entry points, which check every argument once, with C
  macros rather than Python attribute look-ups (at (8, 8, 8) a Python-level
  check would cost more than the arithmetic), then release the GIL and run
  the kernel.

Algebra (seed 002, sections 4.2 and 5.1), one example per row:
    C = A Bᵀ,            δA = δC B (26),     δB = δCᵀ A (25)
    Z = X Wᵀ + b,        Y = g(Z)
    δZ = δY ⊙ g'(Y) (21; silu: g'(Z), so a silu layer keeps Z), δb = Σ_rows δZ (22), δW = δZᵀ X (23), δX = δZ W (24)
"""

cimport numpy as cnp
from libc.stdint cimport int64_t
from libc.string cimport memset
from scipy.linalg.cython_blas cimport dgemm, dgemv

from fastbp._checks cimport check_array, check_output, check_same_dim
from fastbp._enums cimport ACT_IDENTITY, ACT_SILU, activation_code, reduction_code
from fastbp._losses cimport loss_scale

cnp.import_array()

cdef extern from "_fastmath.h" nogil:
    void fb_forward_epilogue(double *Y, double *Z, const double *b, int64_t n, int64_t d, int act)
    void fb_backward_epilogue(const double *dY, const double *Y, const double *Z, double *dZ,
                              double *db, int64_t n, int64_t d, int act)
    double fb_squared_error(const double *Y, const double *T, double *dY, int64_t m,
                            double grad_scale, double loss_scale)

cdef extern from "_scratch.h" nogil:
    double *fb_scratch(size_t n)
    double *fb_scratch_slot(int slot, size_t n)

cdef extern from "_blasinfo.h" nogil:
    int fb_blas_threads(void *dgemm)
    int fb_blas_small_kernels(void *dgemm)

# Below 10⁶ multiply-adds OpenBLAS runs unpacked small-matrix kernels, and
# the one for C = A Bᵀ on row-major operands (column-major "TN") is ~1.6×
# slower than the other forms at 64³ (it reduces across vector lanes).
# Transposing the smaller operand first (n·k or d·k copies, cheap next to
# n·k·d madds) reaches a fast form.  Measured (benchmarks/bench_abt_forms.py):
# the copy loses where the smaller of n, d is under 8 or the dot products
# are long (k > 512), so those keep the direct call; and with more than one
# BLAS thread, above 2¹⁸ madds the direct call is threaded (the small
# kernels never are), which wins where both n and d are at least 32.  An
# OpenBLAS without small-matrix kernels (OPENBLAS_CORETYPE=Haswell) packs
# every operand anyway: there the direct call is as fast or faster (64³
# 13.0 vs 15.1 µs with the copy, 100³ 43.8 vs 49.6), so no copy is made --
# except for a caller on one of its own threads (threads == 1, the two
# halves of a split step): two threads making direct calls at once were
# 1.6-2.2x slower there than with the copy (benchmarks/bench_split.py).
cdef enum:
    SMALL_ABT_MADDS = 1000000
    SMALL_ABT_MIN_ROWS = 8
    SMALL_ABT_MAX_K = 512
    BLAS_THREADED_MADDS = 262144
    THREADED_ABT_MIN_ROWS = 32


# Every product goes to the BLAS: a hand-written small-matrix path (axpy
# loops, AVX-512) was measured against it at (8,8,8) to (64,64,64) and never
# won, so there is none.


# ---------------------------------------------------------------------------
# GEMM, row-major, through the BLAS
# ---------------------------------------------------------------------------

cdef void _gemm_beta(int m, int n, int k, Operand A, Operand B, double beta, double *C,
                     int ldc) noexcept nogil:
    """Row-major C (m×n) = op(A) op(B) + beta C.

    A row-major matrix is its own transpose in column-major, so the BLAS is
    asked for Cᵀ = op(B)ᵀ op(A)ᵀ: swap the operands, keep the trans flags.
    """
    cdef int i
    cdef char ta = b'T' if A.trans else b'N'
    cdef char tb = b'T' if B.trans else b'N'
    cdef double one = 1.0
    if m == 0 or n == 0:
        return
    if k == 0:  # an empty sum, and never reach BLAS with ld = 0
        if beta == 0.0:
            for i in range(m):
                memset(C + <Py_ssize_t>i * ldc, 0, n * sizeof(double))
        return
    dgemm(&tb, &ta, &n, &m, &k, &one, <double *>B.p, &B.ld, <double *>A.p, &A.ld,
          &beta, C, &ldc)




cdef void _gemm_rm_beta(int m, int n, int k, Operand A, Operand B, double beta, double *C,
                        int ldc, int threads) noexcept nogil:
    """_gemm_beta; with threads == 1 (the caller runs it on one of its own
    threads), a product OpenBLAS would spread over its pool is made in
    pieces of at most 2¹⁸ madds, which it keeps on the calling thread.

    The pool is left alone where the small-matrix kernels take the product
    (they never thread): up to 10⁶ madds, except the column-major "TN" form
    (row-major A Bᵀ), which they take only when C is tiny."""
    cdef int64_t madds = <int64_t>m * n * k
    cdef int64_t pieces
    cdef int step, lo
    cdef Operand part
    if (threads != 1 or madds <= BLAS_THREADED_MADDS
            or (madds <= SMALL_ABT_MADDS and not (B.trans and not A.trans)
                and fb_blas_small_kernels(<void *>dgemm))):
        _gemm_beta(m, n, k, A, B, beta, C, ldc)
        return
    pieces = (madds + BLAS_THREADED_MADDS - 1) // BLAS_THREADED_MADDS
    lo = 0
    if m >= pieces:  # bands of C's rows: rows of op(A)
        step = <int>((m + pieces - 1) // pieces)
        part = A
        while lo < m:
            part.p = A.p + (lo if A.trans else <Py_ssize_t>lo * A.ld)
            _gemm_beta(min(step, m - lo), n, k, part, B, beta, C + <Py_ssize_t>lo * ldc, ldc)
            lo += step
    elif n >= pieces:  # bands of C's columns: columns of op(B)
        step = <int>((n + pieces - 1) // pieces)
        part = B
        while lo < n:
            part.p = B.p + (<Py_ssize_t>lo * B.ld if B.trans else lo)
            _gemm_beta(m, min(step, n - lo), k, A, part, beta, C + lo, ldc)
            lo += step
    else:  # (so long a sum that no band is small: left to the BLAS)
        _gemm_beta(m, n, k, A, B, beta, C, ldc)


cdef void gemm_rm(int m, int n, int k, Operand A, Operand B, double *C, int ldc,
                  int threads) noexcept nogil:
    _gemm_rm_beta(m, n, k, A, B, 0.0, C, ldc, threads)


cdef void gemm_rm_add(int m, int n, int k, Operand A, Operand B, double *C, int ldc,
                      int threads) noexcept nogil:
    _gemm_rm_beta(m, n, k, A, B, 1.0, C, ldc, threads)


cdef inline bint _release(int64_t n, int64_t k, int64_t d) noexcept nogil:
    return worth_releasing_gil(n * k * d)


cdef void _transpose(const double *A, double *T, int n, int k) noexcept nogil:
    # T (k×n, row-major) = Aᵀ for a row-major n×k A, in 8×8 tiles so that
    # both the reads and the writes stay within a few cache lines
    cdef int i0, j0, i, j, i1, j1
    for i0 in range(0, n, 8):
        i1 = min(i0 + 8, n)
        for j0 in range(0, k, 8):
            j1 = min(j0 + 8, k)
            for i in range(i0, i1):
                for j in range(j0, j1):
                    T[<Py_ssize_t>j * n + i] = A[<Py_ssize_t>i * k + j]


# A product with one row or one column is a matrix-vector product, and one
# with an inner dimension of 1 an outer product: DGEMV and a plain loop do
# them without DGEMM's set-up (OpenBLAS's Haswell kernels take ~10 µs for a
# 200 × 100 × 1 DGEMM, DGEMV ~1 µs).
cdef void _gemv_rm(bint trans, int m, int n, const double *A, int lda, const double *x,
                   double *y) noexcept nogil:
    """y = A x (trans 0) or Aᵀ x (trans 1), A row-major m × n."""
    cdef char t = b'N' if trans else b'T'  # a row-major A is a column-major Aᵀ
    cdef double one = 1.0, zero = 0.0
    cdef int inc = 1
    if (m if trans else n) == 0:  # an empty sum: the BLAS would leave y as it was
        memset(y, 0, (n if trans else m) * sizeof(double))
        return
    dgemv(&t, &n, &m, &one, <double *>A, &lda, <double *>x, &inc, &zero, y, &inc)


cdef void _outer(const double *u, const double *v, double *C, int m, int n) noexcept nogil:
    """C (m × n) = u vᵀ: each entry one product, as DGEMM with k = 1 gives it."""
    cdef Py_ssize_t i, j
    for i in range(m):
        for j in range(n):
            C[i * n + j] = u[i] * v[j]


# C = A Bᵀ
cdef void matmul_abt_kernel(const double *A, const double *B, double *C, Shape s,
                            int threads) noexcept nogil:
    cdef double *t
    cdef int n = s.n, k = s.k, d = s.d
    cdef int64_t madds = <int64_t>n * k * d
    if k >= 1 and d == 1:  # C (n) = A b
        _gemv_rm(0, n, k, A, k, B, C)
        return
    if k >= 1 and n == 1:  # C (1 × d) = B a
        _gemv_rm(0, d, k, B, k, A, C)
        return
    if (SMALL_ABT_MIN_ROWS <= min(n, d) and 1 < k <= SMALL_ABT_MAX_K
            and madds <= SMALL_ABT_MADDS and (threads == 1 or fb_blas_small_kernels(<void *>dgemm))
            and not (madds > BLAS_THREADED_MADDS and min(n, d) >= THREADED_ABT_MIN_ROWS
                     and (threads if threads > 0 else fb_blas_threads(<void *>dgemm)) > 1)):
        if n <= d:
            t = fb_scratch_slot(1, <size_t>n * k)
            if t != NULL:  # C = (Aᵀ)ᵀ Bᵀ
                _transpose(A, t, n, k)
                gemm_rm(n, d, k, Operand(t, n, 1), Operand(B, k, 1), C, d, threads)
                return
        else:
            t = fb_scratch_slot(1, <size_t>d * k)
            if t != NULL:  # C = A (Bᵀ)
                _transpose(B, t, d, k)
                gemm_rm(n, d, k, Operand(A, k, 0), Operand(t, d, 0), C, d, threads)
                return
    gemm_rm(n, d, k, Operand(A, k, 0), Operand(B, k, 1), C, d, threads)


# δA = δC B, δB = δCᵀ A; either output may be NULL (not wanted)
cdef void matmul_abt_backward_kernel(const double *dC, const double *A, const double *B,
                                     double *dA, double *dB, Shape s, int threads) noexcept nogil:
    cdef int n = s.n, k = s.k, d = s.d
    if dA != NULL:  # δA (n×k) = δC (n×d) B (d×k)
        if d == 1:
            _outer(dC, B, dA, n, k)
        elif n == 1 and k >= 1:
            _gemv_rm(1, d, k, B, k, dC, dA)
        else:
            gemm_rm(n, k, d, Operand(dC, d, 0), Operand(B, k, 0), dA, k, threads)
    if dB != NULL:  # δB (d×k) = δCᵀ (d×n) A (n×k)
        if n == 1:
            _outer(dC, A, dB, d, k)
        elif d == 1 and k >= 1:
            _gemv_rm(1, n, k, A, k, dC, dB)
        else:
            gemm_rm(d, k, n, Operand(dC, d, 1), Operand(A, k, 0), dB, k, threads)


cdef void dense_forward_kernel(const double *X, const double *W, const double *b, LayerOut out,
                               Shape s, int act, int threads) noexcept nogil:
    # Z = X Wᵀ lands in Y; one fused pass then adds b and applies g in place.
    matmul_abt_kernel(X, W, out.Y, s, threads)
    fb_forward_epilogue(out.Y, out.Z, b, s.n, s.d, act)


cdef void dense_epilogue_kernel(const double *b, LayerOut out, Shape s, int act) noexcept nogil:
    fb_forward_epilogue(out.Y, out.Z, b, s.n, s.d, act)


cdef void dense_backward_epilogue_kernel(const double *dY, LayerOut out, double *dZ, double *db,
                                         Shape s, int act) noexcept nogil:
    fb_backward_epilogue(dY, out.Y, out.Z, dZ, db, s.n, s.d, act)


cdef int dense_backward_kernel(const double *dY, const double *X, const double *W,
                               LayerOut out, DenseGrads g, Shape s, int act,
                               int threads) noexcept nogil:
    cdef const double *dZ = dY  # identity: δZ = δY, no temporary
    cdef double *dZ_work = g.dZ_work
    if act != ACT_IDENTITY:
        if dZ_work == NULL:
            dZ_work = fb_scratch(<size_t>s.n * s.d)
            if dZ_work == NULL:
                return -1
        dZ = dZ_work
    # one pass: δZ = δY ⊙ g'(Y) and δb = Σ_rows δZ
    fb_backward_epilogue(dY, out.Y, out.Z, dZ_work if act != ACT_IDENTITY else NULL, g.db,
                         s.n, s.d, act)
    # δW = δZᵀ X and δX = δZ W are the two gradients of the matmul C = X Wᵀ
    matmul_abt_backward_kernel(dZ, X, W, g.dX, g.dW, s, threads)
    return 0


cdef double squared_error_kernel(const double *Y, const double *T, double *dY,
                                 Py_ssize_t m, double grad_scale,
                                 double loss_scale) noexcept nogil:
    return fb_squared_error(Y, T, dY, m, grad_scale, loss_scale)


# ---------------------------------------------------------------------------
# Public kernels
# ---------------------------------------------------------------------------

def matmul_abt(A, B, out=None):
    """C = A Bᵀ.  A (N, K), B (D, K) -> C (N, D), all float64, C-contiguous.

    ``out``, if given, must be a writeable (N, D) float64 array that shares no
    memory with A or B; it is written in place and returned.
    """
    cdef cnp.ndarray a = check_array(A, "A", 2), b = check_array(B, "B", 2)
    check_same_dim("matmul_abt", "A", a, 1, "B", b, 1)
    cdef int n = a.shape[0], k = a.shape[1], d = b.shape[0]
    cdef cnp.ndarray c = check_output(out, "out", n, d, 2, (a, b), ("A", "B"))
    cdef const double *pa = <double *>cnp.PyArray_DATA(a)
    cdef const double *pb = <double *>cnp.PyArray_DATA(b)
    cdef double *pc = <double *>cnp.PyArray_DATA(c)
    if _release(n, k, d):
        with nogil:
            matmul_abt_kernel(pa, pb, pc, Shape(n, k, d), 0)
    else:
        matmul_abt_kernel(pa, pb, pc, Shape(n, k, d), 0)
    return c


def matmul_abt_backward(dC, A, B, dA=None, dB=None):
    """δA = δC B (eq 26) and δB = δCᵀ A (eq 25) for C = A Bᵀ.

    dC (N, D), A (N, K), B (D, K) -> (dA (N, K), dB (D, K)).  Given output
    buffers are written in place and returned.
    """
    cdef cnp.ndarray dc = check_array(dC, "dC", 2), a = check_array(A, "A", 2), b = check_array(B, "B", 2)
    check_same_dim("matmul_abt_backward", "A", a, 1, "B", b, 1)
    check_same_dim("matmul_abt_backward", "dC", dc, 0, "A", a, 0)
    check_same_dim("matmul_abt_backward", "dC", dc, 1, "B", b, 0)
    cdef int n = a.shape[0], k = a.shape[1], d = b.shape[0]
    cdef cnp.ndarray da = check_output(dA, "dA", n, k, 2, (dc, a, b), ("dC", "A", "B"))
    cdef cnp.ndarray db = check_output(dB, "dB", d, k, 2, (dc, a, b, da), ("dC", "A", "B", "dA"))
    cdef const double *pdc = <double *>cnp.PyArray_DATA(dc)
    cdef const double *pa = <double *>cnp.PyArray_DATA(a)
    cdef const double *pb = <double *>cnp.PyArray_DATA(b)
    cdef double *pda = <double *>cnp.PyArray_DATA(da)
    cdef double *pdb = <double *>cnp.PyArray_DATA(db)
    if _release(n, k, d):
        with nogil:
            matmul_abt_backward_kernel(pdc, pa, pb, pda, pdb, Shape(n, k, d), 0)
    else:
        matmul_abt_backward_kernel(pdc, pa, pb, pda, pdb, Shape(n, k, d), 0)
    return da, db


def dense_forward(X, W, b, activation="identity", out=None, *, Z=None):
    """Y = g(X Wᵀ + b): the dense layer's forward pass, bias and g fused.

    X (N, K), W (D, K) (one row per output neuron), b (D,) -> Y (N, D).
    ``activation`` is one of fastbp.ACTIVATIONS.  Only Y is kept: the
    backward pass takes g' from Y -- except for "silu", whose g' needs the
    pre-activation: give ``Z``, an (N, D) float64 buffer, to have
    Z = X Wᵀ + b written into it for ``dense_backward``.  ``Z`` is for
    "silu" only (a ValueError otherwise).
    """
    cdef int act = activation_code(activation)
    cdef cnp.ndarray x = check_array(X, "X", 2), w = check_array(W, "W", 2), bb = check_array(b, "b", 1)
    check_same_dim("dense_forward", "X", x, 1, "W", w, 1)
    check_same_dim("dense_forward", "b", bb, 0, "W", w, 0)
    cdef int n = x.shape[0], k = x.shape[1], d = w.shape[0]
    cdef cnp.ndarray y = check_output(out, "out", n, d, 2, (x, w, bb), ("X", "W", "b"))
    cdef cnp.ndarray z = None
    if Z is not None:
        if act != ACT_SILU:
            raise ValueError(f"dense_forward: Z is kept for activation 'silu' only "
                             f"(g' of {activation!r} comes from Y); pass Z=None")
        z = check_output(Z, "Z", n, d, 2, (x, w, bb, y), ("X", "W", "b", "out"))
    cdef const double *px = <double *>cnp.PyArray_DATA(x)
    cdef const double *pw = <double *>cnp.PyArray_DATA(w)
    cdef const double *pb = <double *>cnp.PyArray_DATA(bb)
    cdef LayerOut o
    o.Y = <double *>cnp.PyArray_DATA(y)
    o.Z = <double *>cnp.PyArray_DATA(z) if z is not None else NULL
    if _release(n, k, d):
        with nogil:
            dense_forward_kernel(px, pw, pb, o, Shape(n, k, d), act, 0)
    else:
        dense_forward_kernel(px, pw, pb, o, Shape(n, k, d), act, 0)
    return y


def dense_backward(dY, X, W, Y, activation="identity", dX=None, dW=None, db=None,
                   need_dX=True, *, Z=None):
    """Backward pass of Y = g(X Wᵀ + b), eqs 21-24 of seed 002.

    δZ = δY ⊙ g'(Y), δb = Σ_rows δZ, δW = δZᵀ X, δX = δZ W.  Returns
    (dX, dW, db); dX is None when ``need_dX`` is false (the first layer of a
    network needs no δX).  Given output buffers are written in place.
    "silu" takes g' from the pre-activation ``Z`` (as kept by
    ``dense_forward(..., Z=...)``), which it requires; the other activations
    refuse it.
    """
    cdef int act = activation_code(activation)
    cdef cnp.ndarray dy = check_array(dY, "dY", 2), x = check_array(X, "X", 2)
    cdef cnp.ndarray w = check_array(W, "W", 2), y = check_array(Y, "Y", 2)
    check_same_dim("dense_backward", "X", x, 1, "W", w, 1)
    check_same_dim("dense_backward", "dY", dy, 0, "X", x, 0)
    check_same_dim("dense_backward", "dY", dy, 1, "W", w, 0)
    if cnp.PyArray_DIM(y, 0) != cnp.PyArray_DIM(dy, 0) or cnp.PyArray_DIM(y, 1) != cnp.PyArray_DIM(dy, 1):
        raise ValueError(f"dense_backward: Y must have the shape of dY {dY.shape}, got {Y.shape}")
    cdef cnp.ndarray z = None
    if act == ACT_SILU:
        if Z is None:
            raise ValueError("dense_backward: activation 'silu' needs Z, the pre-activation "
                             "X Wᵀ + b (its g' is no function of Y): keep it with "
                             "dense_forward(..., Z=buffer)")
        z = check_array(Z, "Z", 2)
        if cnp.PyArray_DIM(z, 0) != cnp.PyArray_DIM(dy, 0) or cnp.PyArray_DIM(z, 1) != cnp.PyArray_DIM(dy, 1):
            raise ValueError(f"dense_backward: Z must have the shape of dY {dY.shape}, got {Z.shape}")
    elif Z is not None:
        raise ValueError(f"dense_backward: Z is for activation 'silu' only (g' of "
                         f"{activation!r} comes from Y); pass Z=None")
    cdef int n = x.shape[0], k = x.shape[1], d = w.shape[0]
    ins = (dy, x, w, y, z)
    names = ("dY", "X", "W", "Y", "Z")
    cdef cnp.ndarray dx = None
    if need_dX:
        dx = check_output(dX, "dX", n, k, 2, ins, names)
    elif dX is not None:
        raise ValueError("dX was given but need_dX is False; pass dX=None or need_dX=True")
    cdef cnp.ndarray dw = check_output(dW, "dW", d, k, 2, ins + (dx,), names + ("dX",))
    cdef cnp.ndarray dbb = check_output(db, "db", 0, d, 1, ins + (dx, dw), names + ("dX", "dW"))
    cdef const double *pdy = <double *>cnp.PyArray_DATA(dy)
    cdef const double *px = <double *>cnp.PyArray_DATA(x)
    cdef const double *pw = <double *>cnp.PyArray_DATA(w)
    cdef LayerOut o
    o.Y = <double *>cnp.PyArray_DATA(y)
    o.Z = <double *>cnp.PyArray_DATA(z) if z is not None else NULL
    cdef DenseGrads grads
    grads.dX = <double *>cnp.PyArray_DATA(dx) if dx is not None else NULL
    grads.dW = <double *>cnp.PyArray_DATA(dw)
    grads.db = <double *>cnp.PyArray_DATA(dbb)
    grads.dZ_work = NULL
    cdef int status
    if _release(n, k, d):
        with nogil:
            status = dense_backward_kernel(pdy, px, pw, o, grads, Shape(n, k, d), act, 0)
    else:
        status = dense_backward_kernel(pdy, px, pw, o, grads, Shape(n, k, d), act, 0)
    if status != 0:
        raise MemoryError(f"dense_backward: no memory for the ({n}, {d}) temporary δZ")
    return dx, dw, dbb


def squared_error(Y, T, reduction="sum", out=None):
    """Squared-error loss and its gradient δY.

    "sum":  J = Σ (T − Y)²,   δY = 2 (Y − T)   (seeds 001, 002)
    "half": E = ½ Σ (T − Y)², δY = Y − T       (seed 000)
    "mean": J / N and δY / N over the N rows; an empty batch gives loss 0.
    Returns (loss, dY); the sum runs in a fixed order (deterministic).
    """
    cdef int red = reduction_code(reduction)
    cdef cnp.ndarray y = check_array(Y, "Y", 2), t = check_array(T, "T", 2)
    if cnp.PyArray_DIM(y, 0) != cnp.PyArray_DIM(t, 0) or cnp.PyArray_DIM(y, 1) != cnp.PyArray_DIM(t, 1):
        raise ValueError(f"squared_error: T must have the shape of Y {Y.shape}, got {T.shape}")
    cdef Py_ssize_t n = y.shape[0], d = y.shape[1]
    cdef double scale = loss_scale(red, n)
    cdef cnp.ndarray dy = check_output(out, "out", n, d, 2, (y, t), ("Y", "T"))
    cdef const double *py = <double *>cnp.PyArray_DATA(y)
    cdef const double *pt = <double *>cnp.PyArray_DATA(t)
    cdef double *pdy = <double *>cnp.PyArray_DATA(dy)
    cdef double loss
    if _release(n, d, 1):
        with nogil:
            loss = fb_squared_error(py, pt, pdy, n * d, 2.0 * scale, scale)
    else:
        loss = fb_squared_error(py, pt, pdy, n * d, 2.0 * scale, scale)
    return loss, dy

