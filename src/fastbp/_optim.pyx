# cython: language_level=3
"""Compiled update loops of the optimisers, in place on flat float64 buffers.

Every loop runs over the whole parameter vector once, without the GIL; the
loops are in _update.h (vectorised, bitwise equal to scalar code).  The
L2 penalty λ/2 ‖θ[:n_decay]‖² adds λ θ to the gradient of the first
``n_decay`` values only (the MLP stores all weights before all biases, so
biases go unpenalised).  Nothing is allocated.

``UpdateSpec`` is the same update handed to the network core, which makes
it inside a training step (``NetworkCore.step(..., update=spec)``).
"""

cimport numpy as cnp
from libc.math cimport sqrt

from fastbp._checks cimport check_disjoint, check_vector
from fastbp._enums cimport UPD_NONE, UPD_SGD, UPD_MOMENTUM, UPD_NESTEROV, UPD_ADAM

# The loops themselves, vectorised (same bits as scalar code): see _update.h.
from fastbp._update cimport fb_update_consts, fb_sgd_update, fb_momentum_update, fb_adam_update

cnp.import_array()


cdef class UpdateSpec:
    def __init__(self, int kind=UPD_NONE, *, double lr=0.0, double weight_decay=0.0,
                 double momentum=0.0, double beta1=0.0, double beta2=0.0, double eps=0.0,
                 long t=0, m=None, v=None):
        """kind: an Update code (fastbp._enums.Update); SGD uses lr and
        weight_decay; momentum and Nesterov add ``momentum`` and the
        velocity m; Adam uses beta1, beta2, eps and its moments m, v, and t
        counts the steps made (the core adds one per update it makes)."""
        if not UPD_NONE <= kind <= UPD_ADAM:
            raise ValueError(f"unknown update code {kind}")
        self.kind = kind
        self.lr = lr
        self.weight_decay = weight_decay
        self.momentum = momentum
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.t = t
        self.m = m
        self.v = v

    def __repr__(self):
        return (f"UpdateSpec(kind={self.kind}, lr={self.lr}, weight_decay={self.weight_decay}, "
                f"momentum={self.momentum}, beta1={self.beta1}, beta2={self.beta2}, "
                f"eps={self.eps}, t={self.t})")


cdef fb_update_consts _consts(double lr, double weight_decay, double momentum, bint nesterov,
                              double beta1, double beta2, double eps) noexcept nogil:
    """The loops' constants (Adam's bias corrections c1, c2 set to 1)."""
    cdef fb_update_consts k
    k.lr = lr
    k.weight_decay = weight_decay
    k.momentum = momentum
    k.nesterov = nesterov
    k.beta1 = beta1
    k.beta2 = beta2
    k.eps = eps
    k.c1 = 1.0
    k.c2 = 1.0
    return k


cdef double *_state(object a, str name, Py_ssize_t n, object params, object grads) except NULL:
    check_vector(a, name, cnp.NPY_DOUBLE, n, "values (the size of params)", True)
    check_disjoint(a, name, params, "params")
    check_disjoint(a, name, grads, "grads")
    return <double *>cnp.PyArray_DATA(<cnp.ndarray>a)


cdef int load_update(UpdateSpec spec, Update *u, object params, object grads,
                     Py_ssize_t n_decay) except -1:
    cdef Py_ssize_t n = cnp.PyArray_DIM(<cnp.ndarray>params, 0)
    u.kind = spec.kind
    u.k = _consts(spec.lr, spec.weight_decay, spec.momentum, spec.kind == UPD_NESTEROV,
                  spec.beta1, spec.beta2, spec.eps)
    u.params = <double *>cnp.PyArray_DATA(<cnp.ndarray>params)
    u.grads = <double *>cnp.PyArray_DATA(<cnp.ndarray>grads)
    u.g1 = NULL
    u.n = n
    u.n_decay = n_decay
    u.half = n
    u.m = NULL
    u.v = NULL
    if spec.kind == UPD_MOMENTUM or spec.kind == UPD_NESTEROV or spec.kind == UPD_ADAM:
        u.m = _state(spec.m, "m", n, params, grads)
    if spec.kind == UPD_ADAM:
        if spec.t < 0:
            raise ValueError(f"t must be >= 0 (the steps made so far), got {spec.t}")
        u.v = _state(spec.v, "v", n, params, grads)
        check_disjoint(spec.m, "m", spec.v, "v")
    return 0


cdef void set_adam_step(Update *u, long t, double eps,
                        bint eps_before_correction) noexcept nogil:
    u.k.c1 = 1.0 / (1.0 - u.k.beta1 ** t)
    u.k.c2 = 1.0 / (1.0 - u.k.beta2 ** t)
    u.k.eps = eps / sqrt(1.0 - u.k.beta2 ** t) if eps_before_correction else eps


cdef void update_range(Update *u, Py_ssize_t lo, Py_ssize_t hi, bint sum_in_g1) noexcept nogil:
    cdef Py_ssize_t i, m = hi - lo
    cdef Py_ssize_t nd = min(max(u.n_decay - lo, 0), m)
    cdef double *g = u.g1 if sum_in_g1 else u.grads
    cdef const double *other = u.grads if sum_in_g1 else u.g1
    if u.g1 != NULL:
        for i in range(lo, hi):
            g[i] += other[i]
    if u.kind == UPD_SGD:
        fb_sgd_update(u.params + lo, g + lo, m, nd if u.k.weight_decay != 0.0 else 0, &u.k)
    elif u.kind == UPD_MOMENTUM or u.kind == UPD_NESTEROV:
        fb_momentum_update(u.params + lo, g + lo, u.m + lo, m, nd, &u.k)
    elif u.kind == UPD_ADAM:
        fb_adam_update(u.params + lo, g + lo, u.m + lo, u.v + lo, m, nd, &u.k)


# -- the loops on their own, for fastbp.optim's step ---------------------------

cdef double *_vec(object a, str name, Py_ssize_t n, bint writeable) except NULL:
    cdef cnp.ndarray arr = check_vector(a, name, cnp.NPY_DOUBLE, n,
                                        "values (the size of params)", writeable)
    return <double *>cnp.PyArray_DATA(arr)


cdef int _disjoint(tuple arrays, tuple names) except -1:
    """The loops take restrict pointers: no two buffers may share memory."""
    cdef Py_ssize_t i, j
    for i in range(len(arrays)):
        for j in range(i + 1, len(arrays)):
            check_disjoint(arrays[i], names[i], arrays[j], names[j])
    return 0


cdef Py_ssize_t _decay_count(Py_ssize_t n_decay, Py_ssize_t n) except -1:
    if n_decay < 0 or n_decay > n:
        raise ValueError(f"n_decay must be in [0, {n}], got {n_decay}")
    return n_decay


def sgd_update(params, grads, double lr, double weight_decay=0.0, Py_ssize_t n_decay=-1):
    """θ ← θ − lr (g + λ θ)."""
    cdef double *p = _vec(params, "params", -1, True)
    cdef Py_ssize_t n = cnp.PyArray_DIM(<cnp.ndarray>params, 0)
    cdef const double *g = _vec(grads, "grads", n, False)
    cdef Py_ssize_t nd = _decay_count(n if n_decay < 0 else n_decay, n)
    if weight_decay == 0.0:
        nd = 0
    _disjoint((params, grads), ("params", "grads"))
    cdef fb_update_consts k = _consts(lr, weight_decay, 0.0, False, 0.0, 0.0, 0.0)
    with nogil:
        fb_sgd_update(p, g, n, nd, &k)


def momentum_update(params, grads, velocity, double lr, double momentum,
                    bint nesterov=False, double weight_decay=0.0, Py_ssize_t n_decay=-1):
    """v ← μ v + g̃ with g̃ = g + λ θ; θ ← θ − lr v, or with Nesterov
    θ ← θ − lr (g̃ + μ v) (the look-ahead form PyTorch uses)."""
    cdef double *p = _vec(params, "params", -1, True)
    cdef Py_ssize_t n = cnp.PyArray_DIM(<cnp.ndarray>params, 0)
    cdef const double *g = _vec(grads, "grads", n, False)
    cdef double *v = _vec(velocity, "velocity", n, True)
    cdef Py_ssize_t nd = _decay_count(n if n_decay < 0 else n_decay, n)
    _disjoint((params, grads, velocity), ("params", "grads", "velocity"))
    cdef fb_update_consts k = _consts(lr, weight_decay, momentum, nesterov, 0.0, 0.0, 0.0)
    with nogil:
        fb_momentum_update(p, g, v, n, nd, &k)


def adam_update(params, grads, m, v, double lr, long t, *, double beta1, double beta2,
                double eps, double weight_decay=0.0, Py_ssize_t n_decay=-1):
    """Adam (Kingma & Ba), step t ≥ 1, L2 penalty added to the gradient:
    m ← β1 m + (1−β1) g̃, v ← β2 v + (1−β2) g̃²,
    θ ← θ − lr m̂ / (√v̂ + ε), m̂ = m / (1−β1ᵗ), v̂ = v / (1−β2ᵗ)."""
    if t < 1:
        raise ValueError(f"t must be >= 1, got {t}")
    cdef double *p = _vec(params, "params", -1, True)
    cdef Py_ssize_t n = cnp.PyArray_DIM(<cnp.ndarray>params, 0)
    cdef const double *g = _vec(grads, "grads", n, False)
    cdef double *pm = _vec(m, "m", n, True)
    cdef double *pv = _vec(v, "v", n, True)
    cdef Py_ssize_t nd = _decay_count(n if n_decay < 0 else n_decay, n)
    _disjoint((params, grads, m, v), ("params", "grads", "m", "v"))
    cdef fb_update_consts k = _consts(lr, weight_decay, 0.0, False, beta1, beta2, eps)
    k.c1 = 1.0 / (1.0 - beta1 ** t)
    k.c2 = 1.0 / (1.0 - beta2 ** t)
    with nogil:
        fb_adam_update(p, g, pm, pv, n, nd, &k)
