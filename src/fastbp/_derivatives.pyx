# cython: language_level=3
"""Compiled derivatives of a dense network beyond the parameter gradient:
forward mode, reverse mode with a given cotangent, input and parameter
Jacobians, per-example gradients, and Hessian- and Gauss-Newton-vector
products, each one or two passes over the network core's layers.

Layers ℓ = 0..L-1 as in _network (A_0 = X, Z_ℓ = A_ℓ W_ℓᵀ + b_ℓ, A_{ℓ+1} =
g_ℓ(Z_ℓ)); ŷ = A_L, or softmax / exp of it (the core's ``output``).  A
tangent (Ȧ_0 = dX, Ẇ, ḃ) travels with the activations (DESIGN.md):
    Ż_ℓ = Ȧ_ℓ W_ℓᵀ + A_ℓ Ẇ_ℓᵀ + ḃ_ℓ,   Ȧ_{ℓ+1} = g′ ⊙ Ż_ℓ.
Pearlmutter's R-operator images the backward pass along it:
    δZ_ℓ = δ_{ℓ+1} ⊙ g′,   R(δZ_ℓ) = R(δ_{ℓ+1}) ⊙ g′ + δ_{ℓ+1} ⊙ g″ ⊙ Ż_ℓ,
    R(δW_ℓ) = R(δZ_ℓ)ᵀ A_ℓ + δZ_ℓᵀ Ȧ_ℓ,   R(δb_ℓ) = Σ_rows R(δZ_ℓ),
    δ_ℓ = δZ_ℓ W_ℓ,   R(δ_ℓ) = R(δZ_ℓ) W_ℓ + δZ_ℓ Ẇ_ℓ,
which is Hv.  The Gauss-Newton product keeps the first terms only: Gv is
the backward pass of H_u u̇ (u̇ the output's tangent, H_u the loss's
Hessian in its input).  Jacobians run the backward pass on a block of m
cotangents per example (m = D_out), each layer one GEMM over n·m rows;
row r of a block belongs to example r // m.  For Levenberg-Marquardt
(``fastbp._levmar``), the residuals e = √r_i (ŷ_i − t_i) and their Jacobian
rows come from that block: held whole, or summed block by block into JᵀJ
(DSYRK) and Jᵀe (DGEMV), so the Jacobian is never all in memory.

X is processed in chunks whose workspace fits ``budget`` doubles; sums
over the examples (Hv, Gv, a vjp's dparams) add the chunks' parts.  Large
calls are split in two halves of the rows, run on two threads (_team.h),
each with its own workspace and one-thread products, as the network core
splits a batch.  An object is not thread-safe: the MLP around it
serialises access.
"""

cimport numpy as cnp
from cpython.mem cimport PyMem_Calloc, PyMem_Free
from libc.math cimport sqrt
from libc.string cimport memcpy, memset
from libc.stdint cimport int64_t
from scipy.linalg.cython_blas cimport dgemm, dgemv, dsyrk

from fastbp._checks cimport check_output, check_output_shape, check_rows, check_vector
from fastbp._enums cimport (ACT_IDENTITY, ACT_RELU, ACT_LEAKY_RELU, ACT_SILU, LOSS_SQUARED_ERROR,
                            OUT_NONE, OUT_SOFTMAX, OUT_EXP)
from fastbp._kernels cimport (Shape, DenseGrads, LayerOut, Operand, gemm_rm_add, matmul_abt_kernel,
                              matmul_abt_backward_kernel, dense_backward_kernel,
                              dense_backward_epilogue_kernel, worth_releasing_gil)
from fastbp._losses cimport (Batch, loss_scale, loss_rows, loss_hessian_rows, softmax_rows,
                             check_row_weights)
from fastbp._network cimport (Layers, Work, NetworkCore, layer_shape, forward_layers,
                              backward_first_layer, batch_rows, check_codes)
from fastbp._sparse cimport CSR, sparse_forward_kernel, sparse_backward_kernel

cdef extern from "_fastmath.h" nogil:
    void fb_exp_array(const double *x, double *y, int64_t m)
    void fb_activation_prime(const double *Y, const double *Z, double *G, int64_t m, int act)
    void fb_activation_second(const double *Y, const double *Z, double *G2, int64_t m, int act)

cdef extern from "_derivmath.h" nogil:
    # B[r] ⊙= G[r // m], the n·m rows of width d of a block
    void fb_scale_rows(double *B, const double *G, int64_t n, int64_t m, int64_t d)
    # row r of J (stride ldj) = dZ[r] (d) ⊗ A[r // m] (k), for the n·m rows r
    void fb_outer_rows(const double *dZ, int64_t d, const double *A, int64_t k, int64_t n,
                       int64_t m, double *J, int64_t ldj)
    # B row i·d + q = c[i·d + q] W[q] ⊙ g[i] (c, g NULL: 1), W (d, k)
    void fb_diagonal_rows(const double *c, int64_t n, int64_t d, const double *W, int64_t k,
                          const double *g, double *B)
    # u ← u g1, ru ← ru g1 + u g2 zt (g2 NULL: 0)
    void fb_r_epilogue(double *u, double *ru, const double *g1, const double *g2,
                       const double *zt, int64_t count)
    # y = a ⊙ b
    void fb_mul(double *y, const double *a, const double *b, int64_t count)

cdef extern from "_team.h" nogil:
    ctypedef void (*fb_task_fn)(void *arg, int part) noexcept nogil
    int fb_team_width(void *dgemm)
    void fb_team_run(fb_task_fn fn, void *arg)

cnp.import_array()

# Doubles of workspace a chunk of rows may use: 2 MB, about one core's L2, so
# that a chunk's buffers stay in cache from one pass to the next (measured on
# the input Jacobian of [8, 64, 64, 4] at N = 1024: 0.47 ms against 0.56 ms
# with 32 MB chunks, the whole batch at once).
WORK_BUDGET = 1 << 18

# A call is split over two threads from this much work (multiply-adds of its
# passes, and the elements a Jacobian writes; below, the hand-over costs
# more than the second core gives), and only with at least SPLIT_MIN_ROWS
# rows a part.
cdef enum:
    SPLIT_MIN_MADDS = 1 << 18
    SPLIT_MIN_ROWS = 8

# What a call computes.
cdef enum:
    K_INPUT_JACOBIAN, K_INPUT_GRADIENT, K_JVP, K_VJP, K_HVP, K_GNVP, K_PARAM_JACOBIAN, K_PER_EXAMPLE
    K_RESIDUALS     # Levenberg-Marquardt's residuals and their Jacobian, whole
    K_NORMAL        # ... summed into JᵀJ and Jᵀe block by block


# What the passes read of the network, the same for both parts of a call.
cdef struct Net:
    const Layers *layers    # the core's layers
    Layers logits           # the same with the output layer's identity (a fused loss)
    int L, d_in, d_out, output
    Py_ssize_t n_params


# One thread's workspace for chunks of ``rows`` rows (``block`` rows of
# cotangent blocks).
cdef struct DWork:
    Work w              # A[1..L] (and Z of silu layers); w.threads: the products' threads
    double **G1         # g′ at each layer's output
    double **G2         # g″
    double **Zt         # Ż_ℓ
    double **At         # Ȧ_{ℓ+1}: Ab[ℓ], or Zt[ℓ] for an identity layer
    double **Ab
    double *U0
    double *U1          # ping-pong δ buffers (rows × max_d)
    double *R0
    double *R1          # ping-pong R(δ) buffers
    double *B0
    double *B1          # ping-pong cotangent blocks (block × max_d)
    double *Yhat        # ŷ after softmax / exp (rows × d_out)
    double *P1          # a P-vector: a chunk's part of a sum
    double *P2          # the part's whole sum (part 1 of a split call)
    CSR sx              # the part's copy of the core's CSR X (its own row0)
    Py_ssize_t rows


# A call: everything it reads and writes.
cdef struct Call:
    int kind
    int loss             # (for the calls without a loss: squared error, unused)
    double s             # the reduction's scale over the whole X
    Batch whole          # X (NULL for CSR), T or labels, the row weights
    const CSR *sx        # the core's CSR X, or NULL
    const double *dX     # jvp's input tangent, or NULL
    const double *v      # jvp's dparams, hvp's v, or NULL
    const double *dY     # vjp's cotangent
    double *out          # the result (the first of two)
    double *out2         # jvp's dY, vjp's dparams, the residuals
    double *jtj          # K_NORMAL: JᵀJ (P × P, lower triangle) and Jᵀe
    double *jte
    double *block        # K_NORMAL: a chunk's Jacobian rows (rows · D_out × P)
    double **inputs      # K_RESIDUALS: each layer's inputs A_ℓ (N × size[ℓ]), or NULL
    Py_ssize_t row_cap   # rows per chunk at most (0: the budget's)
    const Net *net
    DWork *work[2]
    Py_ssize_t n0        # rows of part 0 (all of them when not split)
    Py_ssize_t rows      # rows per chunk (the workspaces hold them, in blocks too)
    double J[2]          # each part's loss


cdef inline bint _has_second(int act) noexcept nogil:
    """Whether g″ is not identically 0 (relu's kink counts as 0)."""
    return not (act == ACT_IDENTITY or act == ACT_RELU or act == ACT_LEAKY_RELU)


cdef inline bint _sums(int kind) noexcept nogil:
    """Whether the call's result is a sum over the rows (a P-vector)."""
    return kind == K_HVP or kind == K_GNVP or kind == K_VJP


cdef void _add_bias(double *Z, const double *b, Py_ssize_t n, Py_ssize_t d) noexcept nogil:
    cdef Py_ssize_t i, j
    for i in range(n):
        for j in range(d):
            Z[i * d + j] += b[j]


cdef void _add(double *dst, const double *src, Py_ssize_t m) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(m):
        dst[i] += src[i]


cdef void _output_jvp(int output, const double *Yhat, const double *T_in, double *T_out,
                      Py_ssize_t n, Py_ssize_t m, Py_ssize_t d) noexcept nogil:
    """T_out = (∂ŷ/∂u) T_in row by row (rows r of example r // m), ŷ = out(u):
    softmax p ⊙ (t − p·t) (its Jacobian is symmetric: also the vjp), exp ŷ ⊙ t.
    T_out may equal T_in."""
    cdef Py_ssize_t i, q, j
    cdef double pt
    cdef const double *p
    cdef const double *t
    cdef double *o
    for i in range(n):
        p = Yhat + i * d
        for q in range(m):
            t = T_in + (i * m + q) * d
            o = T_out + (i * m + q) * d
            if output == OUT_SOFTMAX:
                pt = 0.0
                for j in range(d):
                    pt += p[j] * t[j]
                for j in range(d):
                    o[j] = p[j] * (t[j] - pt)
            elif output == OUT_EXP:
                for j in range(d):
                    o[j] = p[j] * t[j]
            elif o != t:
                memcpy(o, t, d * sizeof(double))


# -- the passes on one chunk of n rows (X dense, or the part's CSR rows) --------

cdef void _yhat(const Net *net, DWork *dw, Py_ssize_t n) noexcept nogil:
    """Yhat = ŷ of the chunk (after the forward pass of the core's layers)."""
    cdef Py_ssize_t m = n * net.d_out
    memcpy(dw.Yhat, dw.w.A[net.L], m * sizeof(double))
    if net.output == OUT_SOFTMAX:
        softmax_rows(dw.Yhat, n, net.d_out)
    elif net.output == OUT_EXP:
        fb_exp_array(dw.Yhat, dw.Yhat, m)


cdef void _primes(const Layers *lay, DWork *dw, Py_ssize_t n, bint second) noexcept nogil:
    """G1[ℓ] = g′, and with ``second`` G2[ℓ] = g″, at every layer's output."""
    cdef int l, act
    cdef Py_ssize_t m
    for l in range(lay.L):
        act = lay.act[l]
        m = n * lay.size[l + 1]
        if act != ACT_IDENTITY:
            fb_activation_prime(dw.w.A[l + 1], dw.w.Z[l + 1], dw.G1[l], m, act)
        if second and _has_second(act):
            fb_activation_second(dw.w.A[l + 1], dw.w.Z[l + 1], dw.G2[l], m, act)


cdef void _tangent(const Layers *lay, DWork *dw, Py_ssize_t n, const double *X, const CSR *sx,
                   const double *dX, const double *dparams) noexcept nogil:
    """Zt[ℓ] = Ż_ℓ and At[ℓ] = Ȧ_{ℓ+1} along dX (or NULL: 0) and dparams (or
    NULL: 0); needs _primes."""
    cdef int l, k, d, act, th = dw.w.threads
    cdef Py_ssize_t i
    cdef const double *a_dot
    cdef const double *a
    cdef const double *W_dot
    cdef double *zt
    cdef double *into
    cdef bint first
    for l in range(lay.L):
        k = lay.size[l]
        d = lay.size[l + 1]
        act = lay.act[l]
        zt = dw.Zt[l]
        a_dot = dX if l == 0 else dw.At[l - 1]
        first = True
        if a_dot != NULL:  # Ȧ_ℓ W_ℓᵀ
            matmul_abt_kernel(a_dot, lay.params + lay.w_off[l], zt, Shape(<int>n, k, d), th)
            first = False
        if dparams != NULL:  # + A_ℓ Ẇ_ℓᵀ + ḃ_ℓ
            W_dot = dparams + lay.w_off[l]
            if l == 0 and sx != NULL:
                into = zt if first else dw.U0
                sparse_forward_kernel(sx, W_dot, dparams + lay.b_off[0], LayerOut(into, NULL),
                                      layer_shape(lay, 0, n), ACT_IDENTITY)
                if not first:
                    _add(zt, dw.U0, n * d)
            else:
                a = X if l == 0 else dw.w.A[l]
                if first:
                    matmul_abt_kernel(a, W_dot, zt, Shape(<int>n, k, d), th)
                else:
                    gemm_rm_add(<int>n, d, k, Operand(a, k, 0), Operand(W_dot, k, 1), zt, d, th)
                _add_bias(zt, dparams + lay.b_off[l], n, d)
        elif first:
            memset(zt, 0, n * d * sizeof(double))
        if act == ACT_IDENTITY:
            dw.At[l] = zt
        else:
            dw.At[l] = dw.Ab[l]
            fb_mul(dw.At[l], dw.G1[l], zt, n * d)


cdef void _backward(const Layers *lay, DWork *dw, Py_ssize_t n, double *top, const double *X,
                    const CSR *sx, double *grads, double *dX) noexcept nogil:
    """The backward pass of the cotangent top = ∂/∂A_L (n rows, consumed; U0
    or R0): the parameters' part into grads (or NULL: not wanted), the
    inputs' into dX (or NULL)."""
    cdef int l
    cdef double *cur = top
    cdef double *other = dw.U1
    cdef double *tmp
    cdef DenseGrads g
    for l in range(lay.L - 1, -1, -1):
        g.dZ_work = cur
        g.dW = grads + lay.w_off[l] if grads != NULL else NULL
        g.db = grads + lay.b_off[l] if grads != NULL else dw.R1
        g.dX = other if l > 0 else (dX if sx == NULL else NULL)
        if l > 0:
            dense_backward_kernel(cur, dw.w.A[l], lay.params + lay.w_off[l],
                                  LayerOut(dw.w.A[l + 1], dw.w.Z[l + 1]), g,
                                  layer_shape(lay, l, n), lay.act[l], dw.w.threads)
        else:
            backward_first_layer(lay, &dw.w, cur, X, sx, g, n)
            if sx != NULL and dX != NULL:  # δX = δZ_0 W_0 (cur holds δZ_0)
                matmul_abt_backward_kernel(cur, NULL, lay.params, dX, NULL,
                                           layer_shape(lay, 0, n), dw.w.threads)
        tmp = cur
        cur = other
        other = tmp


cdef void _top_rows(const Net *net, DWork *dw, Py_ssize_t n) noexcept nogil:
    """B0 (n·D_out rows of width D_out): row i·D_out + k = ∂ŷ_ik/∂A_L, the
    cotangents of the output's units (identity: e_k; softmax p_k (e_k − p);
    exp ŷ_k e_k)."""
    cdef Py_ssize_t i, k, j, d = net.d_out
    cdef double *b
    cdef const double *p
    memset(dw.B0, 0, n * d * d * sizeof(double))
    for i in range(n):
        p = dw.Yhat + i * d
        for k in range(d):
            b = dw.B0 + (i * d + k) * d
            if net.output == OUT_SOFTMAX:
                for j in range(d):
                    b[j] = -p[k] * p[j]
                b[k] += p[k]
            elif net.output == OUT_EXP:
                b[k] = p[k]
            else:
                b[k] = 1.0


cdef void _diagonal_top(const Net *net, DWork *dw, Py_ssize_t n, double *B) noexcept nogil:
    """B (n·D_out rows of width size[L−1]): row i·D_out + k = c_ik W_{L−1}[k],
    the cotangent of ŷ_ik on A_{L−1} when ∂ŷ_i/∂Z_{L−1} is diagonal, c_ik its
    entry (g′ of the output layer, 1 for identity, or ŷ_ik for exp); times
    the g′ of layer L−2 (δZ_{L−2}) when there is one."""
    cdef const Layers *lay = net.layers
    cdef int l = lay.L - 1
    cdef const double *c = NULL
    cdef const double *g = NULL
    if net.output == OUT_EXP:
        c = dw.Yhat
    elif lay.act[l] != ACT_IDENTITY:
        c = dw.G1[l]
    if l > 0 and lay.act[l - 1] != ACT_IDENTITY:
        g = dw.G1[l - 1]
    fb_diagonal_rows(c, n, net.d_out, lay.params + lay.w_off[l], lay.size[l], g, B)


cdef void _block_backward(const Layers *lay, DWork *dw, Py_ssize_t n, Py_ssize_t m, int top,
                          bint scaled, const double *X, const CSR *sx, double *J_rows,
                          Py_ssize_t P, double *J_input) noexcept nogil:
    """The backward pass from layer ``top`` down of the block B0 of n·m
    cotangents on A_{top+1} (on Z_top when ``scaled``: g′ applied; consumed):
    row r's parameter gradient into row r of J_rows (P wide; or NULL), its
    input gradient into row r of J_input (D_in wide; or NULL)."""
    cdef int l, k, d
    cdef Py_ssize_t r, i, q, p
    cdef double *cur = dw.B0
    cdef double *other = dw.B1
    cdef double *tmp
    cdef double *dst
    cdef double c
    for l in range(top, -1, -1):
        k = lay.size[l]
        d = lay.size[l + 1]
        if lay.act[l] != ACT_IDENTITY and not (scaled and l == top):
            fb_scale_rows(cur, dw.G1[l], n, m, d)
        if J_rows != NULL:
            for r in range(n * m):
                memcpy(J_rows + r * P + lay.b_off[l], cur + r * d, d * sizeof(double))
            if l == 0 and sx != NULL:  # δz_r ⊗ x_i on the stored entries
                for r in range(n * m):
                    dst = J_rows + r * P
                    memset(dst, 0, d * k * sizeof(double))
                    i = r // m
                    i = sx.rows[i] if sx.rows != NULL else sx.row0 + i
                    for q in range(d):
                        c = cur[r * d + q]
                        for p in range(sx.indptr[i], sx.indptr[i + 1]):
                            dst[q * k + sx.indices[p]] = c * sx.data[p]
            else:
                fb_outer_rows(cur, d, X if l == 0 else dw.w.A[l], k, n, m, J_rows + lay.w_off[l], P)
        if l > 0 or J_input != NULL:
            matmul_abt_backward_kernel(cur, NULL, lay.params + lay.w_off[l],
                                       other if l > 0 else J_input, NULL,
                                       Shape(<int>(n * m), k, d), dw.w.threads)
        tmp = cur
        cur = other
        other = tmp


cdef void _jacobian_forward(const Net *net, DWork *dw, Py_ssize_t n, double *J) noexcept nogil:
    """J (n, D_out, D_in) in forward mode: D_in tangents e_j per example,
    block row i·D_in + j, each layer one product over the block."""
    cdef const Layers *lay = net.layers
    cdef Py_ssize_t m = net.d_in, i, j, q
    cdef int l, k, d
    cdef double *cur = dw.B0
    cdef double *other = dw.B1
    cdef double *tmp
    d = lay.size[1]
    for i in range(n):  # Ż_0 = e_j W_0ᵀ: column j of W_0
        for j in range(m):
            for q in range(d):
                cur[(i * m + j) * d + q] = lay.params[q * m + j]
    for l in range(lay.L):
        k = lay.size[l]
        d = lay.size[l + 1]
        if l > 0:
            matmul_abt_kernel(cur, lay.params + lay.w_off[l], other, Shape(<int>(n * m), k, d),
                              dw.w.threads)
            tmp = cur
            cur = other
            other = tmp
        if lay.act[l] != ACT_IDENTITY:
            fb_scale_rows(cur, dw.G1[l], n, m, d)
    _output_jvp(net.output, dw.Yhat, cur, cur, n, m, net.d_out)
    d = net.d_out
    for i in range(n):  # J[i, q, j] = block row i·m + j, column q
        for j in range(m):
            for q in range(d):
                J[(i * d + q) * m + j] = cur[(i * m + j) * d + q]


cdef void _hessian_backward(const Layers *lay, DWork *dw, Py_ssize_t n, const double *X,
                            const CSR *sx, const double *v, double *Hv) noexcept nogil:
    """Hv of the chunk: U0 = δ_L and R0 = R(δ_L) in, the R-op's backward pass."""
    cdef int l, k, d, act, th = dw.w.threads
    cdef double *u = dw.U0
    cdef double *ru = dw.R0
    cdef double *u_next = dw.U1
    cdef double *ru_next = dw.R1
    cdef double *tmp
    cdef double *HvW
    cdef double *Hvb
    cdef const double *W
    cdef Shape s
    for l in range(lay.L - 1, -1, -1):
        k = lay.size[l]
        d = lay.size[l + 1]
        act = lay.act[l]
        s = Shape(<int>n, k, d)
        W = lay.params + lay.w_off[l]
        HvW = Hv + lay.w_off[l]
        Hvb = Hv + lay.b_off[l]
        if act != ACT_IDENTITY:  # δZ = δ ⊙ g′, R(δZ) = R(δ) ⊙ g′ + δ ⊙ g″ ⊙ Ż
            fb_r_epilogue(u, ru, dw.G1[l], dw.G2[l] if _has_second(act) else NULL, dw.Zt[l], n * d)
        # R(δW) = R(δZ)ᵀ A + δZᵀ Ȧ, R(δb) = Σ_rows R(δZ)
        if l == 0 and sx != NULL:
            sparse_backward_kernel(ru, sx, LayerOut(NULL, NULL), DenseGrads(NULL, HvW, Hvb, NULL),
                                   s, ACT_IDENTITY)
        else:
            matmul_abt_backward_kernel(ru, X if l == 0 else dw.w.A[l], W, NULL, HvW, s, th)
            # (identity's epilogue: the column sums alone)
            dense_backward_epilogue_kernel(ru, LayerOut(NULL, NULL), NULL, Hvb, s, ACT_IDENTITY)
        if l > 0:
            gemm_rm_add(d, k, <int>n, Operand(u, d, 1), Operand(dw.At[l - 1], k, 0), HvW, k, th)
            # δ below = δZ W, R(δ) below = R(δZ) W + δZ Ẇ
            matmul_abt_backward_kernel(u, NULL, W, u_next, NULL, s, th)
            matmul_abt_backward_kernel(ru, NULL, W, ru_next, NULL, s, th)
            gemm_rm_add(<int>n, k, d, Operand(u, d, 0), Operand(v + lay.w_off[l], k, 0),
                        ru_next, k, th)
            tmp = u
            u = u_next
            u_next = tmp
            tmp = ru
            ru = ru_next
            ru_next = tmp


cdef double _residuals(const Batch *b, const double *Yhat, Py_ssize_t n, Py_ssize_t d,
                       double *J, Py_ssize_t P, double *e) noexcept nogil:
    """e = √r_i (ŷ_i − t_i) and example i's d Jacobian rows (P wide) times
    √r_i (r NULL: 1); returns Σ r_i ‖ŷ_i − t_i‖²."""
    cdef Py_ssize_t i, k, j
    cdef double w, q, total = 0.0, part
    for i in range(n):
        w = b.r[i] if b.r != NULL else 1.0
        q = sqrt(w)
        part = 0.0
        for k in range(d):
            e[i * d + k] = Yhat[i * d + k] - b.T[i * d + k]
            part += e[i * d + k] * e[i * d + k]
            e[i * d + k] *= q
        total += w * part
        if b.r != NULL:
            for j in range(d * P):
                J[i * d * P + j] *= q
    return total


cdef void _accumulate(Call *c, Py_ssize_t rows, bint first, const double *e) noexcept nogil:
    """JᵀJ (+)= Bᵀ B and Jᵀe (+)= Bᵀ e for the chunk's block B (rows × P,
    row-major: column-major P × rows) and its residuals e."""
    cdef int P = <int>c.net.n_params, k = <int>rows, one = 1
    cdef double a = 1.0, beta = 0.0 if first else 1.0
    dsyrk("U", "N", &P, &k, &a, c.block, &P, &beta, c.jtj, &P)
    dgemv("N", &P, &k, &a, c.block, &P, e, &one, &beta, c.jte, &one)


cdef double _rows(Call *c, DWork *dw, Py_ssize_t lo, Py_ssize_t hi, double *sum) noexcept nogil:
    """Rows [lo, hi) of the call, chunk by chunk, on the workspace dw; a sum
    over the rows (Hv, Gv, a vjp's dparams) goes to ``sum``.  Returns the
    rows' loss."""
    cdef const Net *net = c.net
    cdef const Layers *lay = &net.logits if c.loss != LOSS_SQUARED_ERROR else net.layers
    cdef Py_ssize_t start = lo, m, P = net.n_params
    cdef int k0 = net.d_in, dL = net.d_out, kind = c.kind
    cdef Batch b
    cdef double worst, J = 0.0
    cdef double *sum_to
    cdef double *Jr
    cdef int l
    cdef const double *X
    cdef const double *dX
    cdef const CSR *sx = &dw.sx if c.sx != NULL else NULL
    while start < hi:
        m = min(c.rows, hi - start)
        b = batch_rows(&c.whole, start, m, k0, dL)
        X = b.X
        dX = c.dX + start * k0 if c.dX != NULL else NULL
        dw.sx.row0 = start
        sum_to = sum if start == lo else dw.P1  # (later chunks add theirs)
        forward_layers(lay, &dw.w, X, sx, m)
        if kind != K_VJP and kind != K_INPUT_GRADIENT:
            _primes(lay, dw, m, kind == K_HVP)
        if kind == K_INPUT_JACOBIAN:
            _yhat(net, dw, m)
            if k0 < dL:
                _jacobian_forward(net, dw, m, c.out + start * dL * k0)
            elif net.output != OUT_SOFTMAX:  # a diagonal output: its rows of W_{L-1}, no product
                _diagonal_top(net, dw, m, c.out + start * dL * k0 if lay.L == 1 else dw.B0)
                if lay.L > 1:
                    _block_backward(lay, dw, m, dL, lay.L - 2, True, X, sx, NULL, P,
                                    c.out + start * dL * k0)
            else:
                _top_rows(net, dw, m)
                _block_backward(lay, dw, m, dL, lay.L - 1, False, X, sx, NULL, P,
                                c.out + start * dL * k0)
        elif kind == K_PARAM_JACOBIAN:
            _yhat(net, dw, m)
            _top_rows(net, dw, m)
            _block_backward(lay, dw, m, dL, lay.L - 1, False, X, sx, c.out + start * dL * P, P, NULL)
        elif kind == K_JVP:
            _tangent(lay, dw, m, X, sx, dX, c.v)
            _yhat(net, dw, m)
            memcpy(c.out + start * dL, dw.Yhat, m * dL * sizeof(double))
            _output_jvp(net.output, dw.Yhat, dw.At[lay.L - 1], c.out2 + start * dL, m, 1, dL)
        elif kind == K_VJP:
            _yhat(net, dw, m)
            _output_jvp(net.output, dw.Yhat, c.dY + start * dL, dw.U0, m, 1, dL)
            _backward(lay, dw, m, dw.U0, X, sx, sum_to, c.out + start * k0)
        elif kind == K_INPUT_GRADIENT:
            J += loss_rows(c.loss, dw.w.A[lay.L], dw.U0, dL, &b, c.s, &worst)
            _backward(lay, dw, m, dw.U0, X, sx, NULL, c.out + start * k0)
        elif kind == K_RESIDUALS or kind == K_NORMAL:  # (no output function: ŷ = A_L)
            _top_rows(net, dw, m)
            Jr = c.out + start * dL * P if kind == K_RESIDUALS else c.block
            _block_backward(lay, dw, m, dL, lay.L - 1, False, X, sx, Jr, P, NULL)
            J += _residuals(&b, dw.w.A[lay.L], m, dL, Jr, P,
                            c.out2 + start * dL if kind == K_RESIDUALS else dw.U0)
            if kind == K_NORMAL:
                _accumulate(c, m * dL, start == lo, dw.U0)
            elif c.inputs != NULL:  # (for the Jacobian's Gram matrix layer by layer)
                for l in range(lay.L):
                    memcpy(c.inputs[l] + start * lay.size[l], X if l == 0 else dw.w.A[l],
                           m * lay.size[l] * sizeof(double))
        elif kind == K_PER_EXAMPLE:
            J += loss_rows(c.loss, dw.w.A[lay.L], dw.B0, dL, &b, c.s, &worst)
            _block_backward(lay, dw, m, 1, lay.L - 1, False, X, sx, c.out + start * P, P, NULL)
        else:  # K_HVP, K_GNVP: the tangent along v, δ_L, R(δ_L) = H_u u̇
            _tangent(lay, dw, m, X, sx, NULL, c.v)
            J += loss_rows(c.loss, dw.w.A[lay.L], dw.U0, dL, &b, c.s, &worst)
            loss_hessian_rows(c.loss, dw.w.A[lay.L], dw.At[lay.L - 1], dw.R0, dL, &b, c.s)
            if kind == K_HVP:
                _hessian_backward(lay, dw, m, X, sx, c.v, sum_to)
            else:
                _backward(lay, dw, m, dw.R0, X, sx, sum_to, NULL)
        if _sums(kind) and start > lo:
            _add(sum, dw.P1, P)
        start += m
    return J


cdef void _part(void *arg, int part) noexcept nogil:
    """Part 0 (rows [0, n0)) or part 1 (the rest) of a call."""
    cdef Call *c = <Call *>arg
    cdef DWork *dw = c.work[part]
    cdef double *sum = c.out2 if c.kind == K_VJP else c.out
    if part == 0:
        c.J[0] = _rows(c, dw, 0, c.n0, sum)
    else:
        c.J[1] = _rows(c, dw, c.n0, c.whole.n, dw.P2)


cdef class Derivatives:
    """The derivative passes of one NetworkCore's network, on workspaces of
    their own (made once for the largest chunk, grown, never shrunk)."""

    cdef NetworkCore core
    cdef Net net
    cdef DWork work[2]
    cdef Py_ssize_t block[2], max_d
    cdef readonly Py_ssize_t budget
    # calls split over two threads so far
    cdef readonly Py_ssize_t split_calls
    cdef double *rw         # the whole X's row weights
    cdef Py_ssize_t rw_cap, block_cap
    cdef object _mem, _rw, _block

    def __cinit__(self):
        cdef int t
        for t in range(2):
            self.work[t].w.A = NULL
            self.work[t].w.Z = NULL
            self.work[t].G1 = NULL
            self.work[t].G2 = NULL
            self.work[t].Zt = NULL
            self.work[t].At = NULL
            self.work[t].Ab = NULL
            self.work[t].rows = 0
            self.block[t] = 0
        self._mem = [None, None]

    def __init__(self, NetworkCore core, *, Py_ssize_t budget=WORK_BUDGET):
        """The passes of ``core``'s network (its parameters are read in place);
        budget: the doubles of workspace a chunk of X's rows may use."""
        cdef int L = core.n_layers, t
        cdef DWork *dw
        if budget < 1:
            raise ValueError(f"budget must be >= 1 (doubles), got {budget}")
        self.budget = budget
        self.core = core
        self.net.layers = &core.net
        self.net.logits = core.net
        self.net.logits.act = core.net.logit_act
        self.net.L = L
        self.net.d_in = core.net.size[0]
        self.net.d_out = core.net.size[L]
        self.net.output = core.output
        self.net.n_params = core.n_params
        self.max_d = core.max_d
        for t in range(2):
            dw = &self.work[t]
            dw.w.A = <double **>PyMem_Calloc(L + 1, sizeof(double *))
            dw.w.Z = <double **>PyMem_Calloc(L + 1, sizeof(double *))
            dw.G1 = <double **>PyMem_Calloc(L, sizeof(double *))
            dw.G2 = <double **>PyMem_Calloc(L, sizeof(double *))
            dw.Zt = <double **>PyMem_Calloc(L, sizeof(double *))
            dw.At = <double **>PyMem_Calloc(L, sizeof(double *))
            dw.Ab = <double **>PyMem_Calloc(L, sizeof(double *))
            if not (dw.w.A and dw.w.Z and dw.G1 and dw.G2 and dw.Zt and dw.At and dw.Ab):
                raise MemoryError("Derivatives: no memory for the layer tables")
            dw.w.threads = 0
        self.split_calls = 0
        self.rw_cap = 0
        self.block_cap = 0

    def __dealloc__(self):
        cdef int t
        for t in range(2):
            PyMem_Free(self.work[t].w.A)
            PyMem_Free(self.work[t].w.Z)
            PyMem_Free(self.work[t].G1)
            PyMem_Free(self.work[t].G2)
            PyMem_Free(self.work[t].Zt)
            PyMem_Free(self.work[t].At)
            PyMem_Free(self.work[t].Ab)

    # -- the workspaces --------------------------------------------------------

    cdef Py_ssize_t _per_row(self, Py_ssize_t m):
        """Doubles of workspace per row, with blocks of m rows per example."""
        cdef Py_ssize_t total = 4 * self.max_d + self.net.d_out + m * 2 * self.max_d
        cdef int l
        for l in range(1, self.net.L + 1):
            total += 6 * self.core.net.size[l]
        return total

    cdef int _reserve(self, int t, Py_ssize_t rows, Py_ssize_t block) except -1:
        """Workspace t for chunks of at least ``rows`` rows and ``block`` block rows."""
        cdef DWork *dw = &self.work[t]
        cdef Py_ssize_t d, total
        cdef int l
        rows = max(rows, dw.rows)
        block = max(block, self.block[t])
        if rows == dw.rows and block == self.block[t]:
            return 0
        total = 4 * rows * self.max_d + rows * self.net.d_out + 2 * block * self.max_d
        for l in range(1, self.net.L + 1):
            total += 6 * rows * self.core.net.size[l]
        mem = cnp.PyArray_ZEROS(1, [total + 2 * self.net.n_params], cnp.NPY_DOUBLE, 0)
        cdef double *p = <double *>cnp.PyArray_DATA(mem)
        for l in range(self.net.L):
            d = self.core.net.size[l + 1]
            dw.w.A[l + 1] = p
            p += rows * d
            dw.w.Z[l + 1] = p if self.core.net.act[l] == ACT_SILU else NULL
            p += rows * d
            dw.G1[l] = p
            p += rows * d
            dw.G2[l] = p
            p += rows * d
            dw.Zt[l] = p
            p += rows * d
            dw.Ab[l] = p
            p += rows * d
        dw.U0 = p
        p += rows * self.max_d
        dw.U1 = p
        p += rows * self.max_d
        dw.R0 = p
        p += rows * self.max_d
        dw.R1 = p
        p += rows * self.max_d
        dw.Yhat = p
        p += rows * self.net.d_out
        dw.B0 = p
        p += block * self.max_d
        dw.B1 = p
        p += block * self.max_d
        dw.P1 = p
        p += self.net.n_params
        dw.P2 = p
        self._mem[t] = mem
        dw.rows = rows
        self.block[t] = block
        return 0

    cdef const double *_row_weights(self, object sample_weight, Py_ssize_t n,
                                    double scale=0.0) except? NULL:
        """The whole X's row weights w_i N / Σ w, or scale · w_i when scale > 0
        (NULL without weights)."""
        cdef Py_ssize_t i
        cdef const double *w
        if sample_weight is None:
            return NULL
        if n > self.rw_cap:
            self._rw = cnp.PyArray_ZEROS(1, [n], cnp.NPY_DOUBLE, 0)
            self.rw = <double *>cnp.PyArray_DATA(self._rw)
            self.rw_cap = n
        check_row_weights(sample_weight, n, self.rw)  # (and the checks)
        if scale > 0.0:
            w = <const double *>cnp.PyArray_DATA(sample_weight)
            for i in range(n):
                self.rw[i] = scale * w[i]
        return self.rw

    cdef int _go(self, Call *c, Py_ssize_t m) except -1:
        """Run the call (its whole batch set; blocks of m rows per example):
        split over two threads when it is worth it."""
        cdef Py_ssize_t n = c.whole.n, P = self.net.n_params
        cdef int64_t madds = <int64_t>n * m * self.core.madds_per_row
        # a Jacobian's writes count as work too (they cost as much as madds)
        cdef int64_t work = madds + (<int64_t>n * m * P if c.kind == K_PARAM_JACOBIAN
                                     or c.kind == K_PER_EXAMPLE else 0)
        # (the normal equations' sums are one accumulator: BLAS's threads instead)
        cdef bint split = (work >= SPLIT_MIN_MADDS and n >= 2 * SPLIT_MIN_ROWS
                           and fb_team_width(<void *>dgemm) >= 2 and c.kind != K_NORMAL)
        cdef int t
        c.n0 = (n + 1) // 2 if split else n
        c.rows = max(1, min(c.n0, self.budget // self._per_row(m)))
        if c.row_cap > 0:  # (the normal equations' blocks: the caller's, for DSYRK's k)
            c.rows = min(c.n0, c.row_cap)
        if c.kind == K_NORMAL and c.rows * m * P > self.block_cap:
            self._block = cnp.PyArray_ZEROS(1, [c.rows * m * P], cnp.NPY_DOUBLE, 0)
            self.block_cap = c.rows * m * P
        c.block = <double *>cnp.PyArray_DATA(self._block) if c.kind == K_NORMAL else NULL
        c.net = &self.net
        c.sx = self.core._sx_ptr()
        c.J[0] = 0.0
        c.J[1] = 0.0
        for t in range(2 if split else 1):
            self._reserve(t, c.rows, c.rows * m)
            self.work[t].w.threads = 1 if split else 0  # each part's products on its own thread
            if c.sx != NULL:
                self.work[t].sx = c.sx[0]
            c.work[t] = &self.work[t]
        if split:
            self.split_calls += 1
            with nogil:
                fb_team_run(_part, c)
                if _sums(c.kind):
                    _add(c.out2 if c.kind == K_VJP else c.out, self.work[1].P2, P)
        elif worth_releasing_gil(madds):
            with nogil:
                _part(c, 0)
        else:
            _part(c, 0)
        return 0

    cdef int _inputs(self, Call *c, object X, object T, int loss, int reduction,
                     object sample_weight, int kind) except -1:
        """c ← a call of ``kind`` on X (and T, for a loss: checked, with the
        row weights of the whole X)."""
        c.kind = kind
        c.row_cap = 0
        c.inputs = NULL
        c.loss = LOSS_SQUARED_ERROR  # (no loss: the core's own layers)
        c.s = 1.0
        c.dX = NULL
        c.dY = NULL
        c.v = NULL
        c.out2 = NULL
        if T is None:
            self.core._batch_x(&c.whole, X)
            c.whole.T = NULL
            c.whole.labels = NULL
            c.whole.r = NULL
            return 0
        check_codes(loss, reduction)
        c.loss = loss
        self.core._batch(&c.whole, X, T, loss, True)
        c.whole.r = self._row_weights(sample_weight, c.whole.n)
        c.s = loss_scale(reduction, c.whole.n)
        return 0

    cdef const double *_params_vector(self, object v, str name) except? NULL:
        return <const double *>cnp.PyArray_DATA(check_vector(
            v, name, cnp.NPY_DOUBLE, self.net.n_params, "values (one per parameter)", False))

    # -- Python entry points (the arguments checked; codes from fastbp._enums) --

    def input_jacobian(self, X, out=None):
        """out (N, D_out, D_in) = ∂ŷ_i/∂x_i for every row of X; returned."""
        cdef Call c
        self._inputs(&c, X, None, 0, 0, None, K_INPUT_JACOBIAN)
        J = check_output_shape(out, "out", (c.whole.n, self.net.d_out, self.net.d_in),
                               (_array(X),), ("X",))
        c.out = <double *>cnp.PyArray_DATA(J)
        self._go(&c, min(self.net.d_in, self.net.d_out))
        return J

    def input_gradient(self, X, T, out=None, *, int loss=LOSS_SQUARED_ERROR, int reduction=0,
                       sample_weight=None):
        """(J, out = ∂J/∂X (N, D_in)) of the loss on (X, T)."""
        cdef Call c
        self._inputs(&c, X, T, loss, reduction, sample_weight, K_INPUT_GRADIENT)
        dX = check_output(out, "out", c.whole.n, self.net.d_in, 2, (_array(X), T), ("X", "T"))
        c.out = <double *>cnp.PyArray_DATA(dX)
        self._go(&c, 1)
        return c.J[0] + c.J[1], dX

    def jvp(self, X, dX=None, dparams=None, out=None):
        """(Y, dY): ŷ of X and its tangent along dX (N, D_in) and/or dparams
        (P,); out: a pair of (N, D_out) buffers, or None."""
        cdef Call c
        if dX is None and dparams is None:
            raise ValueError("jvp needs a tangent: dX (N, D_in) and/or dparams (P,), got neither")
        self._inputs(&c, X, None, 0, 0, None, K_JVP)
        if dX is not None:
            c.dX = <const double *>cnp.PyArray_DATA(check_rows(dX, "dX", self.net.d_in, c.whole.n))
        if dparams is not None:
            c.v = self._params_vector(dparams, "dparams")
        Y_out, dY_out = _pair(out)
        Y = check_output(Y_out, "out[0]", c.whole.n, self.net.d_out, 2, (_array(X), dX, dparams),
                         ("X", "dX", "dparams"))
        dY = check_output(dY_out, "out[1]", c.whole.n, self.net.d_out, 2,
                          (_array(X), dX, dparams, Y), ("X", "dX", "dparams", "out[0]"))
        c.out = <double *>cnp.PyArray_DATA(Y)
        c.out2 = <double *>cnp.PyArray_DATA(dY)
        self._go(&c, 1)
        return Y, dY

    def vjp(self, X, dY, out=None):
        """(dX, dparams) = the cotangent dY (N, D_out) on ŷ pulled back to X
        (N, D_in) and to the parameters (P,); out: a pair of buffers, or None."""
        cdef Call c
        self._inputs(&c, X, None, 0, 0, None, K_VJP)
        c.dY = <const double *>cnp.PyArray_DATA(check_rows(dY, "dY", self.net.d_out, c.whole.n))
        dX_out, dp_out = _pair(out)
        dX = check_output(dX_out, "out[0]", c.whole.n, self.net.d_in, 2, (_array(X), dY),
                          ("X", "dY"))
        dp = check_output(dp_out, "out[1]", 0, self.net.n_params, 1, (_array(X), dY, dX),
                          ("X", "dY", "out[0]"))
        c.out = <double *>cnp.PyArray_DATA(dX)
        c.out2 = <double *>cnp.PyArray_DATA(dp)
        if c.whole.n == 0:
            dp[...] = 0.0
        self._go(&c, 1)
        return dX, dp

    def hvp(self, X, T, v, out=None, *, int loss=LOSS_SQUARED_ERROR, int reduction=0,
            sample_weight=None, bint gauss_newton=False):
        """out (P,) = H v, H the Hessian of the loss on (X, T) in the
        parameters (Pearlmutter's R-op), or with ``gauss_newton`` the
        Gauss-Newton matrix J_uᵀ H_u J_u; returned."""
        cdef Call c
        self._inputs(&c, X, T, loss, reduction, sample_weight, K_GNVP if gauss_newton else K_HVP)
        c.v = self._params_vector(v, "v")
        Hv = check_output(out, "out", 0, self.net.n_params, 1, (_array(X), T, v), ("X", "T", "v"))
        c.out = <double *>cnp.PyArray_DATA(Hv)
        if c.whole.n == 0:
            Hv[...] = 0.0
        self._go(&c, 1)
        return Hv

    def param_jacobian(self, X, out=None):
        """out (N·D_out, P): row i·D_out + k = ∂ŷ_ik/∂θ; returned."""
        cdef Call c
        self._inputs(&c, X, None, 0, 0, None, K_PARAM_JACOBIAN)
        J = check_output(out, "out", c.whole.n * self.net.d_out, self.net.n_params, 2,
                         (_array(X),), ("X",))
        c.out = <double *>cnp.PyArray_DATA(J)
        self._go(&c, self.net.d_out)
        return J

    def per_example_gradients(self, X, T, out=None, *, int loss=LOSS_SQUARED_ERROR,
                              int reduction=0, sample_weight=None):
        """out (N, P): row i = ∂(s r_i ℓ_i)/∂θ, example i's term of the reduced
        loss; returned."""
        cdef Call c
        self._inputs(&c, X, T, loss, reduction, sample_weight, K_PER_EXAMPLE)
        G = check_output(out, "out", c.whole.n, self.net.n_params, 2, (_array(X), T), ("X", "T"))
        c.out = <double *>cnp.PyArray_DATA(G)
        self._go(&c, 1)
        return G


    # -- Levenberg-Marquardt's residuals (squared error on ŷ = A_L) -------------

    cdef int _residual_call(self, Call *c, object X, object T, object sample_weight,
                            double weight_scale, int kind) except -1:
        if self.net.output != OUT_NONE:
            raise ValueError("Levenberg-Marquardt's residuals ŷ − T need an output without "
                             "softmax or exp (a squared error network)")
        self._inputs(c, X, T, LOSS_SQUARED_ERROR, 0, None, kind)
        c.whole.r = self._row_weights(sample_weight, c.whole.n, weight_scale)
        return 0

    def residual_jacobian(self, X, T, J, e, *, sample_weight=None, double weight_scale=0.0,
                          inputs=None):
        """J (N·D_out, P) ← ∂e/∂θ and e (N·D_out,) ← the residuals
        e_ik = √r_i (ŷ_ik − t_ik), r_i = w_i N / Σ w (weight_scale · w_i when
        weight_scale > 0; 1 without sample_weight).  inputs: None, or a
        sequence of L arrays (N, size[ℓ]) ← every layer's input A_ℓ (a dense X
        only).  Returns Σ r_i ‖ŷ_i − t_i‖²."""
        cdef Call c
        cdef int l, L = self.net.L
        self._residual_call(&c, X, T, sample_weight, weight_scale, K_RESIDUALS)
        cdef Py_ssize_t m = c.whole.n * self.net.d_out
        Jo = check_output(J, "J", m, self.net.n_params, 2, (_array(X), T), ("X", "T"))
        eo = check_output(e, "e", 0, m, 1, (_array(X), T, Jo), ("X", "T", "J"))
        c.out = <double *>cnp.PyArray_DATA(Jo)
        c.out2 = <double *>cnp.PyArray_DATA(eo)
        cdef double *table[64]
        c.inputs = NULL
        if inputs is not None:
            if self.core._sx_ptr() != NULL:
                raise ValueError("inputs are copied from a dense X only, got a CSR X")
            if len(inputs) != L or L > 64:
                raise ValueError(f"inputs must be {L} arrays (one per layer), got {len(inputs)}")
            for l in range(L):
                table[l] = <double *>cnp.PyArray_DATA(check_output(
                    inputs[l], f"inputs[{l}]", c.whole.n, self.core.net.size[l], 2,
                    (_array(X), T, Jo, eo), ("X", "T", "J", "e")))
            c.inputs = table
        self._go(&c, self.net.d_out)
        return c.J[0] + c.J[1]

    def normal_equations(self, X, T, jtj, jte, *, sample_weight=None, double weight_scale=0.0,
                         Py_ssize_t block_rows=0):
        """jtj (P, P) ← JᵀJ in its lower triangle (the upper is not written)
        and jte (P,) ← Jᵀe, e and J as ``residual_jacobian``'s, summed over
        blocks of X's rows (``block_rows`` at most; 0: the workspace budget's):
        the Jacobian is never whole.  Returns Σ r_i ‖ŷ_i − t_i‖²."""
        cdef Call c
        cdef Py_ssize_t P = self.net.n_params
        if block_rows < 0:
            raise ValueError(f"block_rows must be >= 0 (0: the budget's), got {block_rows}")
        self._residual_call(&c, X, T, sample_weight, weight_scale, K_NORMAL)
        A = check_output(jtj, "jtj", P, P, 2, (_array(X), T), ("X", "T"))
        g = check_output(jte, "jte", 0, P, 1, (_array(X), T, A), ("X", "T", "jtj"))
        c.jtj = <double *>cnp.PyArray_DATA(A)
        c.jte = <double *>cnp.PyArray_DATA(g)
        c.row_cap = block_rows
        if c.whole.n == 0:
            A[...] = 0.0
            g[...] = 0.0
        self._go(&c, self.net.d_out)
        return c.J[0] + c.J[1]


cdef object _array(object X):
    """X when it is an ndarray (for the aliasing checks), else None."""
    return X if cnp.PyArray_Check(X) else None


cdef tuple _pair(object out):
    if out is None:
        return None, None
    try:
        first, second = out
    except (TypeError, ValueError):
        raise TypeError(f"out must be a pair of arrays or None, got {type(out).__name__}") from None
    return first, second
