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
row r of a block belongs to example r // m.

X is processed in chunks whose workspace fits WORK_BUDGET doubles; sums
over the examples (Hv, Gv, a vjp's dparams) add the chunks' parts.  An
object is not thread-safe: the MLP around it serialises access.
"""

cimport numpy as cnp
from cpython.mem cimport PyMem_Calloc, PyMem_Free
from libc.string cimport memcpy, memset
from libc.stdint cimport int64_t

from fastbp._checks cimport check_output, check_output_shape, check_rows, check_vector
from fastbp._enums cimport (ACT_IDENTITY, ACT_RELU, ACT_LEAKY_RELU, ACT_SILU, LOSS_SQUARED_ERROR,
                            OUT_NONE, OUT_SOFTMAX, OUT_EXP)
from fastbp._kernels cimport (Shape, DenseGrads, LayerOut, Operand, gemm_rm, gemm_rm_add,
                              matmul_abt_kernel, matmul_abt_backward_kernel, dense_backward_kernel,
                              worth_releasing_gil)
from fastbp._losses cimport (Batch, loss_scale, loss_rows, loss_hessian_rows, softmax_rows,
                             check_row_weights)
from fastbp._network cimport (Layers, Work, NetworkCore, layer_shape, forward_layers,
                              backward_first_layer, batch_rows, check_codes)
from fastbp._sparse cimport CSR, sparse_forward_kernel, sparse_backward_kernel

cdef extern from "_fastmath.h" nogil:
    void fb_exp_array(const double *x, double *y, int64_t m)
    void fb_activation_prime(const double *Y, const double *Z, double *G, int64_t m, int act)
    void fb_activation_second(const double *Y, const double *Z, double *G2, int64_t m, int act)

cnp.import_array()

cdef enum:
    WORK_BUDGET = 1 << 22  # doubles (32 MB) of workspace a chunk of rows may use


# What a call computes, and everything it reads and writes.
cdef enum:
    K_INPUT_JACOBIAN, K_INPUT_GRADIENT, K_JVP, K_VJP, K_HVP, K_GNVP, K_PARAM_JACOBIAN, K_PER_EXAMPLE

cdef struct Call:
    int kind
    int loss             # (for the calls without a loss: squared error, unused)
    double s             # the reduction's scale over the whole X
    Batch whole          # X (NULL for CSR: sx), T or labels, the row weights
    const CSR *sx
    const double *dX     # jvp's input tangent, or NULL
    const double *v      # jvp's dparams, hvp's v, or NULL
    const double *dY     # vjp's cotangent
    double *out          # the result (the first of two)
    double *out2         # jvp's dY, vjp's dparams
    Py_ssize_t rows      # rows per chunk
    double J             # the loss, summed over the chunks


cdef inline bint _has_second(int act) noexcept nogil:
    """Whether g″ is not identically 0 (relu's kink counts as 0)."""
    return not (act == ACT_IDENTITY or act == ACT_RELU or act == ACT_LEAKY_RELU)


cdef void _scale_rows(double *B, const double *G, Py_ssize_t n, Py_ssize_t m,
                      Py_ssize_t d) noexcept nogil:
    """B[r] ⊙= G[r // m] for the n·m rows of width d of a block."""
    cdef Py_ssize_t i, q, j
    cdef double *b
    cdef const double *g
    for i in range(n):
        g = G + i * d
        for q in range(m):
            b = B + (i * m + q) * d
            for j in range(d):
                b[j] *= g[j]


cdef void _add_bias(double *Z, const double *b, Py_ssize_t n, Py_ssize_t d) noexcept nogil:
    cdef Py_ssize_t i, j
    for i in range(n):
        for j in range(d):
            Z[i * d + j] += b[j]


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


cdef void _output_rows(int output, const double *Yhat, double *B, Py_ssize_t n,
                       Py_ssize_t d) noexcept nogil:
    """B (n·d rows of width d): row i·d + k = ∂ŷ_ik/∂u_i, the cotangents of the
    output's units on u (identity: e_k; softmax p_k (e_k − p); exp ŷ_k e_k)."""
    cdef Py_ssize_t i, k, j
    cdef double *b
    cdef const double *p
    memset(B, 0, n * d * d * sizeof(double))
    for i in range(n):
        p = Yhat + i * d
        for k in range(d):
            b = B + (i * d + k) * d
            if output == OUT_SOFTMAX:
                for j in range(d):
                    b[j] = -p[k] * p[j]
                b[k] += p[k]
            elif output == OUT_EXP:
                b[k] = p[k]
            else:
                b[k] = 1.0


cdef void _add(double *dst, const double *src, Py_ssize_t m) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(m):
        dst[i] += src[i]


cdef class Derivatives:
    """The derivative passes of one NetworkCore's network, on a workspace of
    their own (made once for the largest chunk, grown, never shrunk)."""

    cdef NetworkCore core
    cdef Layers logits      # the core's layers with the output layer's identity
    cdef Work w             # A[1..L] (and Z of silu layers)
    cdef int L, max_d, d_in, d_out
    cdef Py_ssize_t n_params, rows, block
    cdef double **G1        # g′ at each layer's output (NULL: identity)
    cdef double **G2        # g″ (NULL: identically 0)
    cdef double **Zt        # Ż_ℓ
    cdef double **At        # Ȧ_{ℓ+1}: Ab[ℓ], or Zt[ℓ] for an identity layer
    cdef double **Ab
    cdef double *U0
    cdef double *U1         # ping-pong δ buffers (rows × max_d)
    cdef double *R0
    cdef double *R1         # ping-pong R(δ) buffers
    cdef double *B0
    cdef double *B1         # ping-pong cotangent blocks (block × max_d)
    cdef double *Yhat       # ŷ after softmax / exp (rows × d_out)
    cdef double *P1         # a P-vector: a chunk's part of a sum
    cdef double *rw         # the whole X's row weights
    cdef Py_ssize_t rw_cap
    cdef object _mem, _rw

    def __cinit__(self):
        self.w.A = NULL
        self.w.Z = NULL
        self.G1 = NULL
        self.G2 = NULL
        self.Zt = NULL
        self.At = NULL
        self.Ab = NULL

    def __init__(self, NetworkCore core):
        """The passes of ``core``'s network (its parameters are read in place)."""
        cdef int l
        self.core = core
        self.L = core.n_layers
        self.logits = core.net
        self.logits.act = core.net.logit_act
        self.d_in = core.net.size[0]
        self.d_out = core.net.size[self.L]
        self.max_d = core.max_d
        self.n_params = core.n_params
        self.w.A = <double **>PyMem_Calloc(self.L + 1, sizeof(double *))
        self.w.Z = <double **>PyMem_Calloc(self.L + 1, sizeof(double *))
        self.G1 = <double **>PyMem_Calloc(self.L, sizeof(double *))
        self.G2 = <double **>PyMem_Calloc(self.L, sizeof(double *))
        self.Zt = <double **>PyMem_Calloc(self.L, sizeof(double *))
        self.At = <double **>PyMem_Calloc(self.L, sizeof(double *))
        self.Ab = <double **>PyMem_Calloc(self.L, sizeof(double *))
        if not (self.w.A and self.w.Z and self.G1 and self.G2 and self.Zt and self.At and self.Ab):
            raise MemoryError("Derivatives: no memory for the layer tables")
        self.w.threads = 0
        self.rows = 0
        self.block = 0
        self.rw_cap = 0

    def __dealloc__(self):
        PyMem_Free(self.w.A)
        PyMem_Free(self.w.Z)
        PyMem_Free(self.G1)
        PyMem_Free(self.G2)
        PyMem_Free(self.Zt)
        PyMem_Free(self.At)
        PyMem_Free(self.Ab)

    # -- the workspace ---------------------------------------------------------

    cdef Py_ssize_t _per_row(self, Py_ssize_t m):
        """Doubles of workspace per example row, with blocks of m rows per example."""
        cdef Py_ssize_t total = 4 * self.max_d + self.d_out + m * 2 * self.max_d
        cdef int l
        for l in range(1, self.L + 1):
            total += 6 * self.core.net.size[l]
        return total

    cdef Py_ssize_t _chunk(self, Py_ssize_t n, Py_ssize_t m) except -1:
        """Rows per chunk for n rows with blocks of m, the workspace made for it."""
        cdef Py_ssize_t rows = max(1, min(n, WORK_BUDGET // self._per_row(m)))
        if rows > self.rows or rows * m > self.block:
            self._reserve(max(rows, self.rows), max(rows * m, self.block))
        return rows

    cdef int _reserve(self, Py_ssize_t rows, Py_ssize_t block) except -1:
        cdef Py_ssize_t total = 4 * rows * self.max_d + rows * self.d_out + 2 * block * self.max_d
        cdef Py_ssize_t d
        cdef int l
        for l in range(1, self.L + 1):
            total += 6 * rows * self.core.net.size[l]
        mem = cnp.PyArray_ZEROS(1, [total + self.n_params], cnp.NPY_DOUBLE, 0)
        cdef double *p = <double *>cnp.PyArray_DATA(mem)
        for l in range(self.L):
            d = self.core.net.size[l + 1]
            self.w.A[l + 1] = p
            p += rows * d
            self.w.Z[l + 1] = NULL
            if self.core.net.act[l] == ACT_SILU:
                self.w.Z[l + 1] = p
            p += rows * d
            self.G1[l] = p
            p += rows * d
            self.G2[l] = p
            p += rows * d
            self.Zt[l] = p
            p += rows * d
            self.Ab[l] = p
            p += rows * d
        self.U0 = p
        p += rows * self.max_d
        self.U1 = p
        p += rows * self.max_d
        self.R0 = p
        p += rows * self.max_d
        self.R1 = p
        p += rows * self.max_d
        self.Yhat = p
        p += rows * self.d_out
        self.B0 = p
        p += block * self.max_d
        self.B1 = p
        p += block * self.max_d
        self.P1 = p
        self._mem = mem
        self.rows = rows
        self.block = block
        return 0

    cdef const double *_row_weights(self, object sample_weight, Py_ssize_t n) except? NULL:
        """The whole X's row weights w_i N / Σ w (NULL without weights)."""
        if sample_weight is None:
            return NULL
        if n > self.rw_cap:
            self._rw = cnp.PyArray_ZEROS(1, [n], cnp.NPY_DOUBLE, 0)
            self.rw = <double *>cnp.PyArray_DATA(self._rw)
            self.rw_cap = n
        check_row_weights(sample_weight, n, self.rw)
        return self.rw

    # -- the passes on one chunk of n rows (X dense, or sx's rows) -----------------

    cdef void _primes(self, const Layers *net, Py_ssize_t n, bint second) noexcept nogil:
        """G1[ℓ] = g′, and with ``second`` G2[ℓ] = g″, at every layer's output."""
        cdef int l, act
        cdef Py_ssize_t m
        for l in range(self.L):
            act = net.act[l]
            m = n * net.size[l + 1]
            if act != ACT_IDENTITY:
                fb_activation_prime(self.w.A[l + 1], self.w.Z[l + 1], self.G1[l], m, act)
            if second and _has_second(act):
                fb_activation_second(self.w.A[l + 1], self.w.Z[l + 1], self.G2[l], m, act)

    cdef void _tangent(self, const Layers *net, Py_ssize_t n, const double *X, const CSR *sx,
                       const double *dX, const double *dparams) noexcept nogil:
        """Zt[ℓ] = Ż_ℓ and At[ℓ] = Ȧ_{ℓ+1} along dX (or NULL: 0) and dparams
        (or NULL: 0), not both NULL; needs _primes."""
        cdef int l, k, d, act
        cdef Py_ssize_t i
        cdef const double *a_dot
        cdef const double *a
        cdef const double *W_dot
        cdef double *zt
        cdef double *into
        cdef bint first
        for l in range(self.L):
            k = net.size[l]
            d = net.size[l + 1]
            act = net.act[l]
            zt = self.Zt[l]
            a_dot = dX if l == 0 else self.At[l - 1]
            first = True
            if a_dot != NULL:  # Ȧ_ℓ W_ℓᵀ
                matmul_abt_kernel(a_dot, net.params + net.w_off[l], zt, Shape(<int>n, k, d), 0)
                first = False
            if dparams != NULL:  # + A_ℓ Ẇ_ℓᵀ + ḃ_ℓ
                W_dot = dparams + net.w_off[l]
                if l == 0 and sx != NULL:
                    into = zt if first else self.U0
                    sparse_forward_kernel(sx, W_dot, dparams + net.b_off[0], LayerOut(into, NULL),
                                          layer_shape(net, 0, n), ACT_IDENTITY)
                    if not first:
                        _add(zt, self.U0, n * d)
                else:
                    a = X if l == 0 else self.w.A[l]
                    if first:
                        matmul_abt_kernel(a, W_dot, zt, Shape(<int>n, k, d), 0)
                    else:
                        gemm_rm_add(<int>n, d, k, Operand(a, k, 0), Operand(W_dot, k, 1), zt, d)
                    _add_bias(zt, dparams + net.b_off[l], n, d)
            elif first:
                memset(zt, 0, n * d * sizeof(double))
            if act == ACT_IDENTITY:
                self.At[l] = zt
            else:
                self.At[l] = self.Ab[l]
                for i in range(n * d):
                    self.At[l][i] = self.G1[l][i] * zt[i]

    cdef void _backward(self, const Layers *net, Py_ssize_t n, double *top, const double *X,
                        const CSR *sx, double *grads, double *dX) noexcept nogil:
        """The backward pass of the cotangent top = ∂/∂A_L (n rows, consumed):
        the parameters' part into grads (or NULL: not wanted), the inputs'
        into dX (or NULL)."""
        cdef int l, k, d
        cdef double *cur = top
        cdef double *other = self.U1 if top == self.U0 else self.U0
        cdef double *tmp
        cdef DenseGrads g
        for l in range(self.L - 1, -1, -1):
            k = net.size[l]
            d = net.size[l + 1]
            g.dZ_work = cur
            g.dW = grads + net.w_off[l] if grads != NULL else NULL
            g.db = grads + net.b_off[l] if grads != NULL else self.R1
            g.dX = other if l > 0 else (dX if sx == NULL else NULL)
            if l > 0:
                dense_backward_kernel(cur, self.w.A[l], net.params + net.w_off[l],
                                      LayerOut(self.w.A[l + 1], self.w.Z[l + 1]), g,
                                      layer_shape(net, l, n), net.act[l], 0)
            else:
                backward_first_layer(net, &self.w, cur, X, sx, g, n)
                if sx != NULL and dX != NULL:  # δX = δZ_0 W_0 (cur holds δZ_0)
                    matmul_abt_backward_kernel(cur, NULL, net.params, dX, NULL,
                                               layer_shape(net, 0, n), 0)
            tmp = cur
            cur = other
            other = tmp

    cdef void _block_backward(self, const Layers *net, Py_ssize_t n, Py_ssize_t m, double *blk,
                              const double *X, const CSR *sx, double *J_rows,
                              double *J_input) noexcept nogil:
        """The backward pass of a block of n·m cotangents on A_L (consumed):
        row r's parameter gradient into row r of J_rows (P wide; or NULL),
        its input gradient into row r of J_input (D_in wide; or NULL)."""
        cdef int l, k, d
        cdef Py_ssize_t r, i, q, j, p
        cdef double *cur = blk
        cdef double *other = self.B1 if blk == self.B0 else self.B0
        cdef double *tmp
        cdef double *row
        cdef double *dst
        cdef const double *a
        cdef const double *dz
        cdef double c
        for l in range(self.L - 1, -1, -1):
            k = net.size[l]
            d = net.size[l + 1]
            if net.act[l] != ACT_IDENTITY:
                _scale_rows(cur, self.G1[l], n, m, d)
            if J_rows != NULL:
                for r in range(n * m):
                    i = r // m
                    row = J_rows + r * self.n_params
                    dz = cur + r * d
                    memcpy(row + net.b_off[l], dz, d * sizeof(double))
                    dst = row + net.w_off[l]
                    if l == 0 and sx != NULL:  # δz_r ⊗ x_i on the stored entries
                        memset(dst, 0, d * k * sizeof(double))
                        i = sx.rows[i] if sx.rows != NULL else sx.row0 + i
                        for q in range(d):
                            c = dz[q]
                            for p in range(sx.indptr[i], sx.indptr[i + 1]):
                                dst[q * k + sx.indices[p]] = c * sx.data[p]
                    else:
                        a = (X if l == 0 else self.w.A[l]) + i * k
                        for q in range(d):
                            c = dz[q]
                            for j in range(k):
                                dst[q * k + j] = c * a[j]
            if l > 0:
                matmul_abt_backward_kernel(cur, NULL, net.params + net.w_off[l], other, NULL,
                                           Shape(<int>(n * m), k, d), 0)
            elif J_input != NULL:
                matmul_abt_backward_kernel(cur, NULL, net.params, J_input, NULL,
                                           Shape(<int>(n * m), k, d), 0)
            tmp = cur
            cur = other
            other = tmp

    cdef void _yhat(self, Py_ssize_t n) noexcept nogil:
        """Yhat = ŷ of the chunk (after the forward pass of the core's layers)."""
        cdef Py_ssize_t m = n * self.d_out
        memcpy(self.Yhat, self.w.A[self.L], m * sizeof(double))
        if self.core.output == OUT_SOFTMAX:
            softmax_rows(self.Yhat, n, self.d_out)
        elif self.core.output == OUT_EXP:
            fb_exp_array(self.Yhat, self.Yhat, m)

    cdef void _hessian_backward(self, const Layers *net, Py_ssize_t n, const double *X,
                                const CSR *sx, const double *v, double *Hv) noexcept nogil:
        """Hv of the chunk: U0 = δ_L and R0 = R(δ_L) in, the R-op's backward pass."""
        cdef int l, k, d, act
        cdef Py_ssize_t i
        cdef double *u = self.U0
        cdef double *ru = self.R0
        cdef double *u_next = self.U1
        cdef double *ru_next = self.R1
        cdef double *tmp
        cdef double *HvW
        cdef double *Hvb
        cdef const double *g1
        cdef const double *g2
        cdef const double *zt
        cdef const double *a
        cdef const double *W
        cdef double du
        cdef Shape s
        for l in range(self.L - 1, -1, -1):
            k = net.size[l]
            d = net.size[l + 1]
            act = net.act[l]
            s = Shape(<int>n, k, d)
            W = net.params + net.w_off[l]
            HvW = Hv + net.w_off[l]
            Hvb = Hv + net.b_off[l]
            if act != ACT_IDENTITY:  # δZ = δ ⊙ g′, R(δZ) = R(δ) ⊙ g′ + δ ⊙ g″ ⊙ Ż
                g1 = self.G1[l]
                g2 = self.G2[l]
                zt = self.Zt[l]
                if _has_second(act):
                    for i in range(n * d):
                        du = u[i]
                        u[i] = du * g1[i]
                        ru[i] = ru[i] * g1[i] + du * g2[i] * zt[i]
                else:
                    for i in range(n * d):
                        u[i] = u[i] * g1[i]
                        ru[i] = ru[i] * g1[i]
            # R(δW) = R(δZ)ᵀ A + δZᵀ Ȧ, R(δb) = Σ_rows R(δZ)
            if l == 0 and sx != NULL:
                sparse_backward_kernel(ru, sx, LayerOut(NULL, NULL), DenseGrads(NULL, HvW, Hvb, NULL),
                                       s, ACT_IDENTITY)
            else:
                a = X if l == 0 else self.w.A[l]
                matmul_abt_backward_kernel(ru, a, W, NULL, HvW, s, 0)
                memset(Hvb, 0, d * sizeof(double))
                for i in range(n):
                    _add(Hvb, ru + i * d, d)
            if l > 0:
                gemm_rm_add(d, k, <int>n, Operand(u, d, 1), Operand(self.At[l - 1], k, 0), HvW, k)
                # δ below = δZ W, R(δ) below = R(δZ) W + δZ Ẇ
                matmul_abt_backward_kernel(u, NULL, W, u_next, NULL, s, 0)
                matmul_abt_backward_kernel(ru, NULL, W, ru_next, NULL, s, 0)
                gemm_rm_add(<int>n, k, d, Operand(u, d, 0), Operand(v + net.w_off[l], k, 0),
                            ru_next, k)
                tmp = u
                u = u_next
                u_next = tmp
                tmp = ru
                ru = ru_next
                ru_next = tmp

    cdef void _jacobian_forward(self, Py_ssize_t n, double *J) noexcept nogil:
        """J (n, D_out, D_in) in forward mode: D_in tangents e_j per example,
        block row i·D_in + j, each layer one product over the block."""
        cdef const Layers *net = &self.core.net
        cdef Py_ssize_t m = self.d_in, i, j, q
        cdef int l, k, d
        cdef double *cur = self.B0
        cdef double *other = self.B1
        cdef double *tmp
        cdef const double *W0 = net.params
        d = net.size[1]
        for i in range(n):  # Ż_0 = e_j W_0ᵀ: column j of W_0
            for j in range(m):
                for q in range(d):
                    cur[(i * m + j) * d + q] = W0[q * m + j]
        for l in range(self.L):
            k = net.size[l]
            d = net.size[l + 1]
            if l > 0:
                matmul_abt_kernel(cur, net.params + net.w_off[l], other, Shape(<int>(n * m), k, d), 0)
                tmp = cur
                cur = other
                other = tmp
            if net.act[l] != ACT_IDENTITY:
                _scale_rows(cur, self.G1[l], n, m, d)
        _output_jvp(self.core.output, self.Yhat, cur, cur, n, m, self.d_out)
        d = self.d_out
        for i in range(n):  # J[i, q, j] = block row i·m + j, column q
            for j in range(m):
                for q in range(d):
                    J[(i * d + q) * m + j] = cur[(i * m + j) * d + q]

    cdef void _run(self, Call *c) noexcept nogil:
        """The call's passes, chunk by chunk over its rows."""
        cdef const Layers *net = &self.logits if c.loss != LOSS_SQUARED_ERROR else &self.core.net
        cdef Py_ssize_t n = c.whole.n, start = 0, m, P = self.n_params
        cdef int k0 = self.d_in, dL = self.d_out
        cdef Batch b
        cdef double worst
        cdef double *sum_to
        cdef const double *X
        cdef const double *dX
        c.J = 0.0
        while start < n:
            m = min(c.rows, n - start)
            b = batch_rows(&c.whole, start, m, k0, dL)
            X = b.X
            dX = c.dX + start * k0 if c.dX != NULL else NULL
            if c.sx != NULL:
                self.core.sx.row0 = start
            sum_to = c.out if start == 0 else self.P1  # (a sum over the rows: chunks add)
            forward_layers(net, &self.w, X, c.sx, m)
            if c.kind != K_VJP and c.kind != K_INPUT_GRADIENT:
                self._primes(net, m, c.kind == K_HVP)
            if c.kind == K_INPUT_JACOBIAN:
                self._yhat(m)
                if self.d_in < self.d_out:
                    self._jacobian_forward(m, c.out + start * dL * k0)
                else:
                    _output_rows(self.core.output, self.Yhat, self.B0, m, dL)
                    self._block_backward(net, m, dL, self.B0, X, c.sx, NULL,
                                         c.out + start * dL * k0)
            elif c.kind == K_PARAM_JACOBIAN:
                self._yhat(m)
                _output_rows(self.core.output, self.Yhat, self.B0, m, dL)
                self._block_backward(net, m, dL, self.B0, X, c.sx, c.out + start * dL * P, NULL)
            elif c.kind == K_JVP:
                self._tangent(net, m, X, c.sx, dX, c.v)
                self._yhat(m)
                memcpy(c.out + start * dL, self.Yhat, m * dL * sizeof(double))
                _output_jvp(self.core.output, self.Yhat, self.At[self.L - 1], c.out2 + start * dL,
                            m, 1, dL)
            elif c.kind == K_VJP:
                self._yhat(m)
                _output_jvp(self.core.output, self.Yhat, c.dY + start * dL, self.U0, m, 1, dL)
                sum_to = c.out2 if start == 0 else self.P1
                self._backward(net, m, self.U0, X, c.sx, sum_to, c.out + start * k0)
                if start > 0:
                    _add(c.out2, self.P1, P)
            elif c.kind == K_INPUT_GRADIENT:
                c.J += loss_rows(c.loss, self.w.A[self.L], self.U0, dL, &b, c.s, &worst)
                self._backward(net, m, self.U0, X, c.sx, NULL, c.out + start * k0)
            elif c.kind == K_PER_EXAMPLE:
                c.J += loss_rows(c.loss, self.w.A[self.L], self.B0, dL, &b, c.s, &worst)
                self._block_backward(net, m, 1, self.B0, X, c.sx, c.out + start * P, NULL)
            else:  # K_HVP, K_GNVP: the tangent along v, δ_L, R(δ_L) = H_u u̇
                self._tangent(net, m, X, c.sx, NULL, c.v)
                c.J += loss_rows(c.loss, self.w.A[self.L], self.U0, dL, &b, c.s, &worst)
                loss_hessian_rows(c.loss, self.w.A[self.L], self.At[self.L - 1], self.R0, dL, &b, c.s)
                if c.kind == K_HVP:
                    self._hessian_backward(net, m, X, c.sx, c.v, sum_to)
                else:
                    self._backward(net, m, self.R0, X, c.sx, sum_to, NULL)
                if start > 0:
                    _add(c.out, self.P1, P)
            start += m

    cdef int _go(self, Call *c, Py_ssize_t m) except -1:
        """Run the call (its whole batch set) with chunks of blocks of m."""
        c.sx = self.core._sx_ptr()
        c.rows = self._chunk(c.whole.n, m)
        if worth_releasing_gil(c.whole.n * m * self.core.madds_per_row):
            with nogil:
                self._run(c)
        else:
            self._run(c)
        return 0

    cdef int _inputs(self, Call *c, object X, object T, int loss, int reduction,
                     object sample_weight, int kind) except -1:
        """c ← a call of ``kind`` on X (and T, for a loss: checked, with the
        row weights of the whole X)."""
        c.kind = kind
        c.loss = loss
        c.dX = NULL
        c.dY = NULL
        c.v = NULL
        c.out2 = NULL
        if T is None:
            self.core._batch_x(&c.whole, X)
            c.whole.T = NULL
            c.whole.labels = NULL
            c.whole.r = NULL
            c.loss = LOSS_SQUARED_ERROR  # (no loss: the core's own layers)
            return 0
        check_codes(loss, reduction)
        self.core._batch(&c.whole, X, T, loss, True)
        c.whole.r = self._row_weights(sample_weight, c.whole.n)
        c.s = loss_scale(reduction, c.whole.n)
        return 0

    cdef const double *_params_vector(self, object v, str name) except? NULL:
        return <const double *>cnp.PyArray_DATA(check_vector(
            v, name, cnp.NPY_DOUBLE, self.n_params, "values (one per parameter)", False))

    # -- Python entry points (the arguments checked; codes from fastbp._enums) --

    def input_jacobian(self, X, out=None):
        """out (N, D_out, D_in) = ∂ŷ_i/∂x_i for every row of X; returned."""
        cdef Call c
        self._inputs(&c, X, None, 0, 0, None, K_INPUT_JACOBIAN)
        J = check_output_shape(out, "out", (c.whole.n, self.d_out, self.d_in), (_array(X),), ("X",))
        c.out = <double *>cnp.PyArray_DATA(J)
        self._go(&c, min(self.d_in, self.d_out))
        return J

    def input_gradient(self, X, T, out=None, *, int loss=LOSS_SQUARED_ERROR, int reduction=0,
                       sample_weight=None):
        """(J, out = ∂J/∂X (N, D_in)) of the loss on (X, T)."""
        cdef Call c
        self._inputs(&c, X, T, loss, reduction, sample_weight, K_INPUT_GRADIENT)
        dX = check_output(out, "out", c.whole.n, self.d_in, 2, (_array(X), T), ("X", "T"))
        c.out = <double *>cnp.PyArray_DATA(dX)
        self._go(&c, 1)
        return c.J, dX

    def jvp(self, X, dX=None, dparams=None, out=None):
        """(Y, dY): ŷ of X and its tangent along dX (N, D_in) and/or dparams
        (P,); out: a pair of (N, D_out) buffers, or None."""
        cdef Call c
        if dX is None and dparams is None:
            raise ValueError("jvp needs a tangent: dX (N, D_in) and/or dparams (P,), got neither")
        self._inputs(&c, X, None, 0, 0, None, K_JVP)
        if dX is not None:
            c.dX = <const double *>cnp.PyArray_DATA(check_rows(dX, "dX", self.d_in, c.whole.n))
        if dparams is not None:
            c.v = self._params_vector(dparams, "dparams")
        Y_out, dY_out = _pair(out)
        Y = check_output(Y_out, "out[0]", c.whole.n, self.d_out, 2, (_array(X), dX, dparams),
                         ("X", "dX", "dparams"))
        dY = check_output(dY_out, "out[1]", c.whole.n, self.d_out, 2,
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
        c.dY = <const double *>cnp.PyArray_DATA(check_rows(dY, "dY", self.d_out, c.whole.n))
        dX_out, dp_out = _pair(out)
        dX = check_output(dX_out, "out[0]", c.whole.n, self.d_in, 2, (_array(X), dY), ("X", "dY"))
        dp = check_output(dp_out, "out[1]", 0, self.n_params, 1, (_array(X), dY, dX),
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
        Hv = check_output(out, "out", 0, self.n_params, 1, (_array(X), T, v), ("X", "T", "v"))
        c.out = <double *>cnp.PyArray_DATA(Hv)
        if c.whole.n == 0:
            Hv[...] = 0.0
        self._go(&c, 1)
        return Hv

    def param_jacobian(self, X, out=None):
        """out (N·D_out, P): row i·D_out + k = ∂ŷ_ik/∂θ; returned."""
        cdef Call c
        self._inputs(&c, X, None, 0, 0, None, K_PARAM_JACOBIAN)
        J = check_output(out, "out", c.whole.n * self.d_out, self.n_params, 2, (_array(X),), ("X",))
        c.out = <double *>cnp.PyArray_DATA(J)
        self._go(&c, self.d_out)
        return J

    def per_example_gradients(self, X, T, out=None, *, int loss=LOSS_SQUARED_ERROR,
                              int reduction=0, sample_weight=None):
        """out (N, P): row i = ∂(s r_i ℓ_i)/∂θ, example i's term of the reduced
        loss; returned."""
        cdef Call c
        self._inputs(&c, X, T, loss, reduction, sample_weight, K_PER_EXAMPLE)
        G = check_output(out, "out", c.whole.n, self.n_params, 2, (_array(X), T), ("X", "T"))
        c.out = <double *>cnp.PyArray_DATA(G)
        self._go(&c, 1)
        return G


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
