# cython: language_level=3
"""Argument checks of the compiled modules (declared in _checks.pxd).

``check_buffer`` is the one check for Python code that hands a buffer to
compiled or MPI code to be written in place (fastbp.distributed);
``all_finite`` the one test for NaN and infinity in user data
(fastbp.inputs)."""

cimport numpy as cnp
from libc.math cimport isfinite
from libc.stdint cimport int64_t

cnp.import_array()


cdef str _shape(cnp.ndarray a):
    return str((<object>a).shape)


cdef object _strides(cnp.ndarray a):
    return (<object>a).strides


cdef cnp.ndarray _typed(object a, str name, int typenum):
    """a as an ndarray of native ``typenum``, or a TypeError."""
    if not cnp.PyArray_Check(a):
        raise TypeError(
            f"{name} must be a numpy.ndarray of {cnp.PyArray_DescrFromType(typenum)}, got "
            f"{type(a).__name__}; convert it once with "
            f"numpy.ascontiguousarray({name}, dtype=numpy.{cnp.PyArray_DescrFromType(typenum)})")
    cdef cnp.ndarray arr = <cnp.ndarray>a
    if cnp.PyArray_TYPE(arr) != typenum or not cnp.PyArray_ISNOTSWAPPED(arr):
        raise TypeError(
            f"{name} must have dtype {cnp.PyArray_DescrFromType(typenum)} (native byte order), "
            f"got {arr.dtype.str} ({arr.dtype}); convert it with "
            f"{name}.astype(numpy.{cnp.PyArray_DescrFromType(typenum)})")
    return arr


cdef int _contiguous(cnp.ndarray arr, str name, bint writeable) except -1:
    if not cnp.PyArray_IS_C_CONTIGUOUS(arr):
        raise ValueError(
            f"{name} must be C-contiguous, got strides {_strides(arr)} for shape {_shape(arr)}; "
            f"use numpy.ascontiguousarray({name})")
    if not cnp.PyArray_ISALIGNED(arr):
        raise ValueError(f"{name} must be aligned, got a misaligned buffer; copy it with {name}.copy()")
    if writeable and not cnp.PyArray_ISWRITEABLE(arr):
        raise ValueError(f"{name} is read-only; it is updated in place")
    return 0


cdef cnp.ndarray refuse_array(object a, str name, int ndim):
    """check_array's error (a passes only if it was fine after all)."""
    cdef cnp.ndarray arr = _typed(a, name, cnp.NPY_DOUBLE)
    cdef int i
    if cnp.PyArray_NDIM(arr) != ndim:
        raise ValueError(
            f"{name} must be a {ndim}-D array, got {cnp.PyArray_NDIM(arr)}-D with shape {_shape(arr)}")
    _contiguous(arr, name, False)
    for i in range(ndim):
        if cnp.PyArray_DIM(arr, i) > INT_MAX:
            raise ValueError(
                f"{name} has shape {_shape(arr)}: dimensions above {INT_MAX} do not fit the BLAS's 32-bit int")
    return arr


cdef cnp.ndarray check_rows(object a, str name, Py_ssize_t cols, Py_ssize_t rows):
    cdef cnp.ndarray arr = check_array(a, name, 2)
    if cnp.PyArray_DIM(arr, 1) != cols:
        raise ValueError(f"{name} must have {cols} columns, got shape {_shape(arr)}")
    if rows >= 0 and cnp.PyArray_DIM(arr, 0) != rows:
        raise ValueError(f"{name} must have {rows} rows (one per row of X), got shape {_shape(arr)}")
    return arr


cdef cnp.ndarray check_vector(object a, str name, int typenum, Py_ssize_t n, str what,
                              bint writeable):
    cdef cnp.ndarray arr = _typed(a, name, typenum)
    if cnp.PyArray_NDIM(arr) != 1 or (n >= 0 and cnp.PyArray_DIM(arr, 0) != n):
        raise ValueError(
            f"{name} must be a 1-D vector of {n if n >= 0 else 'any number of'} {what}, "
            f"got shape {_shape(arr)}")
    _contiguous(arr, name, writeable)
    return arr


cdef cnp.ndarray _below(cnp.ndarray arr, str name, int64_t bound, str what, str at):
    """arr (int64) with every value in [0, bound), or a ValueError naming the first other."""
    cdef const int64_t *p = <const int64_t *>cnp.PyArray_DATA(arr)
    cdef Py_ssize_t i
    for i in range(cnp.PyArray_DIM(arr, 0)):
        if p[i] < 0 or p[i] >= bound:
            raise ValueError(f"{name} holds {what} in [0, {bound}), got {p[i]} at {at}{i}")
    return arr


cdef cnp.ndarray check_labels(object a, str name, Py_ssize_t rows, int64_t classes):
    return _below(check_vector(a, f"{name} as class labels", cnp.NPY_INT64, rows,
                               "labels (one per row of X)", False),
                  name, classes, "class labels", "row ")


cdef cnp.ndarray check_row_indices(object a, str name, Py_ssize_t n):
    return _below(check_vector(a, name, cnp.NPY_INT64, n, "row numbers", False),
                  name, n, "row numbers", "")


cdef cnp.ndarray check_output(object out, str name, Py_ssize_t rows, Py_ssize_t cols, int ndim,
                              tuple inputs, tuple input_names):
    cdef tuple shape = (<object>rows, <object>cols) if ndim == 2 else (<object>cols,)
    return check_output_shape(out, name, shape, inputs, input_names)


cdef cnp.ndarray check_output_shape(object out, str name, tuple shape, tuple inputs,
                                    tuple input_names):
    cdef int ndim = len(shape), i
    cdef cnp.npy_intp dims[3]
    cdef cnp.ndarray arr
    if out is None:
        for i in range(ndim):
            dims[i] = shape[i]
        return cnp.PyArray_EMPTY(ndim, dims, cnp.NPY_DOUBLE, 0)
    if not cnp.PyArray_Check(out):
        raise TypeError(f"{name} must be a numpy.ndarray of float64 or None, got {type(out).__name__}")
    arr = <cnp.ndarray>out
    if cnp.PyArray_TYPE(arr) != cnp.NPY_DOUBLE or not cnp.PyArray_ISNOTSWAPPED(arr):
        raise ValueError(f"{name} must have dtype float64, got {arr.dtype}")
    if (<object>arr).shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {_shape(arr)}")
    if not cnp.PyArray_IS_C_CONTIGUOUS(arr) or not cnp.PyArray_ISALIGNED(arr):
        raise ValueError(f"{name} must be C-contiguous and aligned, got strides {_strides(arr)}")
    if not cnp.PyArray_ISWRITEABLE(arr):
        raise ValueError(f"{name} is read-only; pass a writeable array or None")
    for i in range(len(inputs)):
        if inputs[i] is not None and share_memory(arr, <cnp.ndarray>inputs[i]):
            raise ValueError(
                f"{name} shares memory with {input_names[i]}; outputs must not alias inputs or each other")
    return arr


cdef int refuse_dims(str what, str n1, cnp.ndarray a, int i, str n2, cnp.ndarray b,
                     int j) except -1:
    if cnp.PyArray_DIM(a, i) != cnp.PyArray_DIM(b, j):
        raise ValueError(
            f"{what}: {n1}.shape[{i}] must equal {n2}.shape[{j}], got {n1} {_shape(a)} and {n2} {_shape(b)}")
    return 0


def all_finite(cnp.ndarray a):
    """True when every element of a C-contiguous float64 array is finite."""
    cdef Py_ssize_t i, m = cnp.PyArray_SIZE(a)
    cdef const double *p = <const double *>cnp.PyArray_DATA(a)
    cdef bint ok = True
    with nogil:
        for i in range(m):
            if not isfinite(p[i]):
                ok = False
                break
    return ok


def check_buffer(buf, name):
    """buf, checked to be a writeable, C-contiguous, aligned float64 ndarray
    (any shape): a buffer written in place, never a copy."""
    _contiguous(_typed(buf, name, cnp.NPY_DOUBLE), name, True)
    return buf


cdef tuple check_csr(object X, str name, Py_ssize_t cols):
    if getattr(X, "format", None) != "csr" or not hasattr(X, "indptr"):
        raise TypeError(f"{name} must be a numpy.ndarray or a scipy.sparse CSR matrix/array, got "
                        f"{type(X).__name__}; pass it through fastbp.inputs.as_inputs once")
    shape = X.shape
    if len(shape) != 2 or shape[1] != cols:
        raise ValueError(f"{name} must have {cols} columns, got shape {shape}")
    if not X.has_canonical_format:
        raise ValueError(f"{name} must be canonical CSR (sorted indices, no duplicates); "
                         f"use {name}.sum_duplicates() on a copy, or fastbp.inputs.as_inputs")
    cdef cnp.ndarray data = _typed(X.data, f"{name}.data", cnp.NPY_DOUBLE)
    cdef cnp.ndarray indices = _typed(X.indices, f"{name}.indices", cnp.NPY_INT64)
    cdef cnp.ndarray indptr = _typed(X.indptr, f"{name}.indptr", cnp.NPY_INT64)
    _contiguous(data, f"{name}.data", False)
    _contiguous(indices, f"{name}.indices", False)
    _contiguous(indptr, f"{name}.indptr", False)
    cdef Py_ssize_t n = shape[0], i
    cdef Py_ssize_t nnz = cnp.PyArray_DIM(indices, 0)
    cdef const int64_t *ip = <const int64_t *>cnp.PyArray_DATA(indptr)
    cdef const int64_t *ix = <const int64_t *>cnp.PyArray_DATA(indices)
    cdef bint ok = (cnp.PyArray_NDIM(indptr) == 1 and cnp.PyArray_DIM(indptr, 0) == n + 1
                    and cnp.PyArray_DIM(data, 0) == nnz)
    if ok:
        ok = ip[0] == 0 and ip[n] <= nnz
        for i in range(n):
            if ip[i + 1] < ip[i]:
                ok = False
                break
    if not ok:
        raise ValueError(f"{name} has an inconsistent CSR structure (indptr of {n + 1} "
                         f"non-decreasing offsets from 0 into {nnz} entries expected)")
    for i in range(ip[n]):
        if not 0 <= ix[i] < cols:
            raise ValueError(f"{name}.indices holds column {ix[i]}, outside [0, {cols})")
    return data, indices, indptr
