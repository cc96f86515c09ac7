# Losses on a network's output and the softmax, for the network core
# (_network.pyx); running without the GIL on checked buffers.
from libc.stdint cimport int64_t

# The rows a loss is taken over: inputs X (n × k), targets as T (n × d) rows
# or, for cross entropy, int64 labels (T NULL), and per-row weights r
# (NULL: all ones), normalised to w_i n / Σ w.
cdef struct Batch:
    const double *X
    const double *T
    const int64_t *labels
    const double *r
    Py_ssize_t n

# J's scale: 1 ("sum"), ½ ("half"), 1/n ("mean"; 1 for an empty batch)
cpdef double loss_scale(int reduction, Py_ssize_t n) noexcept nogil

# J = s Σ_i r_i Σ_j (T − Y)², δY = 2 s r_i (Y − T) over the batch's rows of width d
cdef double squared_error_rows(const double *Y, double *dY, Py_ssize_t d, const Batch *b,
                               double s) noexcept nogil

# softmax fused with cross entropy on logits Z: J = s Σ_i r_i J_i, δZ = s r_i ∂J_i/∂z;
# *worst = the largest J_i of a row with weight > 0 (−inf if none)
cdef double cross_entropy_rows(const double *Z, double *dZ, Py_ssize_t d, const Batch *b,
                               double s, double *worst) noexcept nogil

# binary cross entropy on logits Z, σ fused in: J = s Σ_i r_i Σ_j J_ij,
# J_ij = log(1 + e^{−|z|}) + max(z, 0) − t z, δZ = s r_i (σ(Z) − T); *worst =
# the largest J_ij of a row with weight > 0 (−inf if none)
cdef double binary_cross_entropy_rows(const double *Z, double *dZ, Py_ssize_t d,
                                      const Batch *b, double s, double *worst) noexcept nogil

# half Poisson deviance on logits Z, ŷ = exp(Z): J = s Σ_i r_i Σ_j [exp(z) − t z
# + t log t − t], δZ = s r_i (exp(Z) − T); T >= 0 (checked by the caller)
cdef double poisson_rows(const double *Z, double *dZ, Py_ssize_t d, const Batch *b,
                         double s) noexcept nogil

# The loss code's J on the network's output U (the logits for a fused loss)
# and δU = ∂J/∂U, as the four *_rows above; *worst as theirs (−inf for the
# losses that keep none)
cdef double loss_rows(int loss, const double *U, double *dU, Py_ssize_t d, const Batch *b,
                      double s, double *worst) noexcept nogil

# out = (∂²J/∂U²) dU row by row, the loss's Hessian in U times a tangent dU
# (out must not alias U or dU)
cdef void loss_hessian_rows(int loss, const double *U, const double *dU, double *out,
                            Py_ssize_t d, const Batch *b, double s) noexcept nogil

# Z ← softmax(Z) row by row, in place
cdef void softmax_rows(double *Z, Py_ssize_t n, Py_ssize_t d) noexcept nogil

# dst_i = w_i n / Σ w for the n rows idx[i] of w (idx NULL: rows 0..n-1);
# returns Σ w (in row order); dst is written only when it is > 0
cdef double row_weights_of(const double *w, const int64_t *idx, Py_ssize_t n,
                           double *dst) noexcept nogil

# row_weights_of for a user's sample_weight of n rows, checked first: a
# float64 vector of finite weights >= 0 with a positive sum
cdef int check_row_weights(object sample_weight, Py_ssize_t n, double *dst) except -1
