# cython: language_level=3
"""Compiled update loops of the optimisers, in place on flat float64 buffers.

Every loop runs over the whole parameter vector once, without the GIL; the
loops are in _update.h (vectorised, bitwise equal to scalar code).  The
L2 penalty λ/2 ‖θ[:n_decay]‖² adds λ θ to the gradient of the first
``n_decay`` values only (the MLP stores all weights before all biases, so
biases go unpenalised).  Nothing is allocated.
"""

cimport numpy as cnp
from libc.stdint cimport int64_t

from fastbp._kernels cimport check_disjoint

# The loops themselves, vectorised (same bits as scalar code): see _update.h.
from fastbp._update cimport fb_sgd_update, fb_momentum_update, fb_adam_update

cnp.import_array()


cdef double *_vec(object a, str name, Py_ssize_t n, bint writeable) except? NULL:
    if not cnp.PyArray_Check(a):
        raise TypeError(f"{name} must be a numpy.ndarray of float64, got {type(a).__name__}")
    cdef cnp.ndarray arr = <cnp.ndarray>a
    if cnp.PyArray_TYPE(arr) != cnp.NPY_DOUBLE or not cnp.PyArray_ISNOTSWAPPED(arr):
        raise TypeError(f"{name} must have dtype float64, got {arr.dtype}")
    if cnp.PyArray_NDIM(arr) != 1 or not cnp.PyArray_IS_C_CONTIGUOUS(arr) or not cnp.PyArray_ISALIGNED(arr):
        raise ValueError(f"{name} must be a contiguous 1-D array, got shape {(<object>arr).shape}")
    if n >= 0 and cnp.PyArray_DIM(arr, 0) != n:
        raise ValueError(f"{name} must have {n} values (the size of params), got {cnp.PyArray_DIM(arr, 0)}")
    if writeable and not cnp.PyArray_ISWRITEABLE(arr):
        raise ValueError(f"{name} is read-only; it is updated in place")
    cdef double *p = <double *>cnp.PyArray_DATA(arr)
    return p


cdef int _disjoint(tuple arrays, tuple names) except -1:
    """The loops take restrict pointers: no two buffers may share memory."""
    cdef Py_ssize_t i, j
    for i in range(len(arrays)):
        for j in range(i + 1, len(arrays)):
            check_disjoint(arrays[i], names[i], arrays[j], names[j])
    return 0


cdef inline Py_ssize_t _size(object a):
    return cnp.PyArray_DIM(<cnp.ndarray>a, 0)


cdef Py_ssize_t _decay_count(Py_ssize_t n_decay, Py_ssize_t n) except -1:
    if n_decay < 0 or n_decay > n:
        raise ValueError(f"n_decay must be in [0, {n}], got {n_decay}")
    return n_decay


def sgd_update(params, grads, double lr, double weight_decay=0.0, Py_ssize_t n_decay=-1):
    """θ ← θ − lr (g + λ θ)."""
    cdef double *p = _vec(params, "params", -1, True)
    cdef Py_ssize_t n = _size(params)
    cdef const double *g = _vec(grads, "grads", n, False)
    cdef Py_ssize_t nd = _decay_count(n if n_decay < 0 else n_decay, n)
    if weight_decay == 0.0:
        nd = 0
    _disjoint((params, grads), ("params", "grads"))
    with nogil:
        fb_sgd_update(p, g, n, nd, lr, weight_decay)


def momentum_update(params, grads, velocity, double lr, double momentum,
                    bint nesterov=False, double weight_decay=0.0, Py_ssize_t n_decay=-1):
    """v ← μ v + g̃ with g̃ = g + λ θ; θ ← θ − lr v, or with Nesterov
    θ ← θ − lr (g̃ + μ v) (the look-ahead form PyTorch uses)."""
    cdef double *p = _vec(params, "params", -1, True)
    cdef Py_ssize_t n = _size(params)
    cdef const double *g = _vec(grads, "grads", n, False)
    cdef double *v = _vec(velocity, "velocity", n, True)
    cdef Py_ssize_t nd = _decay_count(n if n_decay < 0 else n_decay, n)
    _disjoint((params, grads, velocity), ("params", "grads", "velocity"))
    with nogil:
        fb_momentum_update(p, g, v, n, nd, lr, momentum, nesterov, weight_decay)


def adam_update(params, grads, m, v, double lr, double beta1, double beta2, double eps,
                long t, double weight_decay=0.0, Py_ssize_t n_decay=-1):
    """Adam (Kingma & Ba), step t ≥ 1, L2 penalty added to the gradient:
    m ← β1 m + (1−β1) g̃, v ← β2 v + (1−β2) g̃²,
    θ ← θ − lr m̂ / (√v̂ + ε), m̂ = m / (1−β1ᵗ), v̂ = v / (1−β2ᵗ)."""
    if t < 1:
        raise ValueError(f"t must be >= 1, got {t}")
    cdef double *p = _vec(params, "params", -1, True)
    cdef Py_ssize_t n = _size(params)
    cdef const double *g = _vec(grads, "grads", n, False)
    cdef double *pm = _vec(m, "m", n, True)
    cdef double *pv = _vec(v, "v", n, True)
    cdef Py_ssize_t nd = _decay_count(n if n_decay < 0 else n_decay, n)
    cdef double c1 = 1.0 / (1.0 - beta1 ** t), c2 = 1.0 / (1.0 - beta2 ** t)
    _disjoint((params, grads, m, v), ("params", "grads", "m", "v"))
    with nogil:
        fb_adam_update(p, g, pm, pv, n, nd, lr, beta1, beta2, eps, c1, c2, weight_decay)
