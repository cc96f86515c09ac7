# cython: language_level=3
"""Levenberg-Marquardt's linear algebra: the damped Gauss-Newton system

    (JᵀJ + αΛ + μD) δ = −(Jᵀe + αΛθ)

solved by Cholesky (LAPACK dpotrf/dpotrs through scipy.linalg.cython_lapack),
e the N·D_out residuals, J = ∂e/∂θ (P columns), Λ the 0/1 diagonal of the
weights (an L2 penalty ½α‖W‖², biases free), D = I ("identity", trainlm's)
or diag(JᵀJ) ("diagonal", Marquardt's; a zero entry, a parameter nothing
depends on, counts as 1 so that the system stays definite).

Two forms of the same solve:
- "normal": JᵀJ (P × P, accumulated over row blocks of the data by the
  caller, ``fastbp._derivatives``) is factored: P³/3 flops per μ.
- "dual", for m = N·D_out < P residuals: with M = αΛ + μD (diagonal) and
  K = J M⁻¹ Jᵀ (m × m), push-through gives
      δ = −M⁻¹ (Jᵀ z + h),  (I + K) z = e − J M⁻¹ h,  h = αΛθ,
  m³/3 flops per μ and J (m × P) held instead of P².  Without α, M = μD and
  K₀ = J D⁻¹ Jᵀ is kept for every μ: (μI + K₀) z = e, δ = −D⁻¹ Jᵀ z.
  With D = I, K₀ = J Jᵀ comes from the layers when their inputs are given:
  a row's Jacobian in W_ℓ is δz ⊗ a and in b_ℓ δz, so
      J Jᵀ = Σ_ℓ (Δ_ℓ Δ_ℓᵀ) ⊙ (A_ℓ A_ℓᵀ + 1)
  (Δ_ℓ: J's columns of b_ℓ; A_ℓ: the layer's inputs, an example's row
  repeated for its D_out residuals), m² Σ d_ℓ + N² Σ k_ℓ flops instead of
  m² P (a fifth for a [10, 50, 1] net).

Row-major buffers: a row-major (P, P) JᵀJ filled in its lower triangle is
LAPACK's column-major upper triangle ('U'), which is what is factored.
"""

cimport numpy as cnp
from libc.math cimport isfinite, sqrt
from libc.string cimport memcpy, memset
from scipy.linalg.cython_blas cimport dgemv, dsyrk
from scipy.linalg.cython_lapack cimport dpotrf, dpotrs

from fastbp._checks cimport check_output, check_vector
from fastbp._enums cimport DAMP_IDENTITY, DAMP_DIAGONAL

cnp.import_array()

FORMS = ("normal", "dual")


cdef inline double _floored(double d) noexcept nogil:
    """A damping entry: diag(JᵀJ)_j, or 1 where it is 0 (or not a number)."""
    return d if d > 0.0 else 1.0


cdef class DampedSystem:
    """The buffers of one Gauss-Newton system and its damped solves.

    n_residuals = 0: the "normal" form, whose ``jtj`` (P, P) (lower
    triangle) and ``jte`` (P,) the caller fills; n_residuals = m > 0: the
    "dual" form, whose ``jacobian`` (m, P) and ``residuals`` (m,) the caller
    fills, then calls ``prepare`` (which makes ``jte``).  Every buffer is
    made here, once; a solve allocates nothing.
    """

    cdef readonly Py_ssize_t n_params, n_residuals
    cdef readonly str form
    cdef readonly object jtj, jte, jacobian, residuals
    # the normal form's jtj, jte and one double more (the caller's: the
    # loss) in one buffer, to be summed over processes in one collective
    cdef readonly object sums
    cdef object _factor, _scaled, _k, _d, _m, _u, _h
    cdef double *A          # normal: JᵀJ; dual: J
    cdef double *g          # Jᵀe
    cdef double *e
    cdef double *F          # the factored matrix
    cdef double *S          # dual: J M^{-1/2}
    cdef double *K          # dual: K = J W Jᵀ (upper), kept as K₀ without α
    cdef double *D          # the damping's diagonal
    cdef double *Mi         # M⁻¹ (dual), or M (normal)
    cdef double *u          # right-hand side (m or P)
    cdef double *h          # αΛθ
    cdef int k0_damping     # dual: the damping K₀ was made for (-1: none)
    cdef int d_damping      # the damping D was made for, on this system (-1: none)
    # dual, by layers: each layer's inputs (N × k_ℓ) and where its b_ℓ is in θ
    cdef readonly tuple inputs
    cdef Py_ssize_t n_rows
    cdef int n_layers
    cdef Py_ssize_t b_off[64]
    cdef Py_ssize_t d_of[64]
    cdef Py_ssize_t k_of[64]
    cdef double *in_ptr[64]
    cdef bint have_inputs

    def __init__(self, Py_ssize_t n_params, Py_ssize_t n_residuals=0, layers=None):
        """layers (the dual form only): None, or per layer (b_off, d, k), its
        bias's offset in θ, its units and inputs; then ``inputs`` holds one
        (N, k) buffer per layer (N = n_residuals / the last d) for the caller
        to fill, and ``prepare(inputs_filled=True)`` makes J Jᵀ from them."""
        if n_params < 1:
            raise ValueError(f"n_params must be >= 1, got {n_params}")
        if n_residuals < 0:
            raise ValueError(f"n_residuals must be >= 0, got {n_residuals}")
        cdef Py_ssize_t P = n_params, m = n_residuals, side = m if m > 0 else P
        self.n_params, self.n_residuals = P, m
        self.form = FORMS[1] if m > 0 else FORMS[0]
        self._d, self._m, self._h = _zeros(P), _zeros(P), _zeros(P)
        self._u = _zeros(side)
        self._factor = _zeros(side, side)
        if m > 0:
            self.jtj = self.sums = None
            self.jte = _zeros(P)
            self.jacobian, self.residuals = _zeros(m, P), _zeros(m)
            self._scaled, self._k = _zeros(m, P), _zeros(m, m)
            self.A = _ptr(self.jacobian)
            self.e = _ptr(self.residuals)
            self.S, self.K = _ptr(self._scaled), _ptr(self._k)
        else:
            self.sums = _zeros(P * P + P + 1)
            self.jtj = self.sums[:P * P].reshape(P, P)
            self.jte = self.sums[P * P:P * P + P]
            self.jacobian = self.residuals = self._scaled = self._k = None
            self.A = _ptr(self.jtj)
            self.e = self.S = self.K = NULL
        self.g, self.F, self.D = _ptr(self.jte), _ptr(self._factor), _ptr(self._d)
        self.Mi, self.u, self.h = _ptr(self._m), _ptr(self._u), _ptr(self._h)
        self.k0_damping = -1
        self.d_damping = -1
        self.inputs = None
        self.n_layers = 0
        self.have_inputs = False
        if layers is not None:
            if m == 0:
                raise ValueError("layers are for the dual form (n_residuals > 0)")
            self._layout(list(layers))

    cdef int _layout(self, list layers) except -1:
        cdef int l, L = len(layers)
        if not 0 < L <= 64:
            raise ValueError(f"layers must hold 1 to 64 layers, got {L}")
        d_out = layers[L - 1][1]
        if d_out < 1 or self.n_residuals % d_out:
            raise ValueError(f"n_residuals {self.n_residuals} is not a multiple of the last "
                             f"layer's {d_out} units")
        self.n_rows = self.n_residuals // d_out
        bufs = []
        for l in range(L):
            b_off, d, k = layers[l]
            if not (0 <= b_off and b_off + d <= self.n_params and d >= 1 and k >= 1):
                raise ValueError(f"layers[{l}] = {layers[l]!r} does not fit {self.n_params} parameters")
            self.b_off[l], self.d_of[l], self.k_of[l] = b_off, d, k
            bufs.append(_zeros(self.n_rows, k))
            self.in_ptr[l] = _ptr(bufs[l])
        self.inputs = tuple(bufs)
        self.n_layers = L
        return 0

    @staticmethod
    def doubles(Py_ssize_t n_params, Py_ssize_t n_residuals=0):
        """The doubles a system of this form holds (for a memory budget)."""
        cdef Py_ssize_t P = n_params, m = n_residuals
        if m > 0:
            return 2 * m * P + 2 * m * m + 2 * m + 4 * P
        return 2 * P * P + 5 * P + 1

    def prepare(self, bint inputs_filled=False):
        """After the dual form's ``jacobian`` and ``residuals`` are filled:
        ``jte`` = Jᵀe, and the kept K₀ is stale.  (The normal form: nothing
        to do but the latter.)  inputs_filled: ``inputs`` hold the layers'
        inputs of these rows."""
        cdef int P = <int>self.n_params, m = <int>self.n_residuals, one = 1
        cdef double a = 1.0, zero = 0.0
        self.k0_damping = self.d_damping = -1
        if inputs_filled and self.inputs is None:
            raise ValueError("inputs_filled=True needs a system made with layers=")
        self.have_inputs = inputs_filled
        if m > 0:
            with nogil:  # g = Jᵀ e: the column-major (P, m) J times e
                dgemv("N", &P, &m, &a, self.A, &P, self.e, &one, &zero, self.g, &one)

    def solve(self, double mu, out, *, int damping=DAMP_IDENTITY, double alpha=0.0,
              params=None, Py_ssize_t n_weights=0):
        """out (P,) ← δ of (JᵀJ + αΛ + μD) δ = −(Jᵀe + αΛθ), Λ the first
        ``n_weights`` parameters (θ = ``params``, needed when alpha > 0).
        Returns False (out unspecified) when the damped matrix is not
        positive definite in floating point or δ is not finite (a NaN in
        the system), else True."""
        cdef Py_ssize_t P = self.n_params, j
        if not mu > 0.0:
            raise ValueError(f"mu must be > 0, got {mu}")
        if not alpha >= 0.0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        if damping != DAMP_IDENTITY and damping != DAMP_DIAGONAL:
            raise ValueError(f"damping must be a Damping code, got {damping}")
        if not 0 <= n_weights <= P:
            raise ValueError(f"n_weights must be in [0, {P}], got {n_weights}")
        cdef double *delta = _ptr(check_output(out, "out", 0, P, 1, (params,), ("params",)))
        cdef const double *theta = NULL
        if alpha > 0.0:
            if params is None:
                raise ValueError("solve with alpha > 0 needs params (θ, for the penalty's gradient)")
            theta = <const double *>cnp.PyArray_DATA(check_vector(
                params, "params", cnp.NPY_DOUBLE, P, "values (one per parameter)", False))
        cdef int info
        with nogil:
            self._damping(damping)
            for j in range(P):
                self.h[j] = alpha * theta[j] if j < n_weights and alpha > 0.0 else 0.0
                self.Mi[j] = mu * self.D[j] + (alpha if j < n_weights else 0.0)
            if self.n_residuals > 0:
                info = self._dual(mu, damping, alpha > 0.0 and n_weights > 0, delta)
            else:
                info = self._normal(delta)
            for j in range(P):
                if not isfinite(delta[j]):
                    info = -1
                    break
        return info == 0

    # -- the two forms -----------------------------------------------------------

    cdef void _damping(self, int damping) noexcept nogil:
        """D: ones, or the diagonal of JᵀJ (dual: J's squared column norms),
        floored; made once per system and damping (not per μ tried)."""
        cdef Py_ssize_t P = self.n_params, m = self.n_residuals, j, r
        cdef double s
        if self.d_damping == damping:
            return
        self.d_damping = damping
        for j in range(P):
            if damping == DAMP_IDENTITY:
                self.D[j] = 1.0
            elif m == 0:
                self.D[j] = _floored(self.A[j * P + j])
            else:
                self.D[j] = 0.0
        if damping == DAMP_DIAGONAL and m > 0:
            for r in range(m):
                for j in range(P):
                    s = self.A[r * P + j]
                    self.D[j] += s * s
            for j in range(P):
                self.D[j] = _floored(self.D[j])

    cdef int _normal(self, double *delta) noexcept nogil:
        """δ = −(JᵀJ + M)⁻¹ (Jᵀe + h), M = Mi (here the diagonal itself)."""
        cdef int P = <int>self.n_params, one = 1, info = 0
        cdef Py_ssize_t i, j
        for i in range(P):  # the lower triangle, row by row (LAPACK's upper)
            memcpy(self.F + i * P, self.A + i * P, (i + 1) * sizeof(double))
            self.F[i * P + i] += self.Mi[i]
        dpotrf("U", &P, self.F, &P, &info)
        if info != 0:
            return info
        for j in range(P):
            delta[j] = -(self.g[j] + self.h[j])
        dpotrs("U", &P, &one, self.F, &P, delta, &P, &info)
        return info

    cdef int _dual(self, double mu, int damping, bint penalty, double *delta) noexcept nogil:
        """δ by push-through on the m × m system (see the module's docstring)."""
        cdef int P = <int>self.n_params, m = <int>self.n_residuals, one = 1, info = 0
        cdef Py_ssize_t r, j
        cdef double a = 1.0, zero = 0.0, minus = -1.0, c
        cdef double *w = self.Mi
        cdef const double *src
        # W: the diagonal K is made with; c: F = cI + J W Jᵀ
        if penalty:
            for j in range(P):
                w[j] = 1.0 / w[j]
            c = 1.0
        else:  # M = μD: K₀ = J D⁻¹ Jᵀ serves every μ
            for j in range(P):
                w[j] = 1.0 / self.D[j]
            c = mu
        if not penalty and damping == DAMP_IDENTITY and self.have_inputs:
            if self.k0_damping != damping:
                self._gram_by_layers()
                self.k0_damping = damping
        elif penalty or self.k0_damping != damping:
            src = self.A  # (D = I without a penalty: W = I, J itself)
            if penalty or damping != DAMP_IDENTITY:
                src = self.S
                for r in range(m):
                    for j in range(P):
                        self.S[r * P + j] = self.A[r * P + j] * sqrt(w[j])
            # column-major (P, m) S: K = Sᵀ S, its upper triangle
            dsyrk("U", "T", &m, &P, &a, src, &P, &zero, self.K, &m)
            self.k0_damping = -1 if penalty else damping
        memcpy(self.F, self.K, m * m * sizeof(double))
        for r in range(m):
            self.F[r * m + r] += c
        dpotrf("U", &m, self.F, &m, &info)
        if info != 0:
            return info
        # u = e − J M⁻¹ h
        memcpy(self.u, self.e, m * sizeof(double))
        if penalty:
            for j in range(P):
                delta[j] = w[j] * self.h[j]
            dgemv("T", &P, &m, &minus, self.A, &P, delta, &one, &a, self.u, &one)
        dpotrs("U", &m, &one, self.F, &m, self.u, &m, &info)
        # δ = −(W Jᵀ z + M⁻¹ h)
        dgemv("N", &P, &m, &a, self.A, &P, self.u, &one, &zero, delta, &one)
        for j in range(P):
            delta[j] = -(w[j] * delta[j] + (w[j] * self.h[j] if penalty else 0.0))
        return info


    cdef void _gram_by_layers(self) noexcept nogil:
        """K = J Jᵀ (upper) = Σ_ℓ (Δ_ℓ Δ_ℓᵀ) ⊙ (A_ℓ A_ℓᵀ + 1); scratch: F
        (m × m) for Δ Δᵀ, S (m × P ≥ N × N) for A Aᵀ."""
        cdef int P = <int>self.n_params, m = <int>self.n_residuals, n = <int>self.n_rows
        cdef int l, d, k, q = m // n
        cdef Py_ssize_t i, j
        cdef double a = 1.0, zero = 0.0
        cdef double *Kj
        cdef const double *Fj
        cdef const double *Sj
        memset(self.K, 0, m * m * sizeof(double))
        for l in range(self.n_layers):
            d = <int>self.d_of[l]
            k = <int>self.k_of[l]
            # column-major: J's rows b_off.. of the (P, m) matrix; the (k, n) inputs
            dsyrk("U", "T", &m, &d, &a, self.A + self.b_off[l], &P, &zero, self.F, &m)
            dsyrk("U", "T", &n, &k, &a, self.in_ptr[l], &k, &zero, self.S, &n)
            for j in range(m):
                Kj, Fj, Sj = self.K + j * m, self.F + j * m, self.S + (j // q) * n
                if q == 1:
                    for i in range(j + 1):
                        Kj[i] += Fj[i] * (Sj[i] + 1.0)
                else:
                    for i in range(j + 1):
                        Kj[i] += Fj[i] * (Sj[i // q] + 1.0)


cdef object _zeros(Py_ssize_t n, Py_ssize_t k=-1):
    if k < 0:
        return cnp.PyArray_ZEROS(1, [n], cnp.NPY_DOUBLE, 0)
    return cnp.PyArray_ZEROS(2, [n, k], cnp.NPY_DOUBLE, 0)


cdef inline double *_ptr(object a):
    return <double *>cnp.PyArray_DATA(a)
