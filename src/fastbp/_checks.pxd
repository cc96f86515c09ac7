# The argument checks of every compiled module, once, at the boundary: each
# raises TypeError (not an array, wrong dtype) or ValueError (shape,
# contiguity, alignment, read-only, aliasing, values) naming the argument,
# what was expected and what came.  Written with C macros, not Python
# attribute look-ups: at (8, 8, 8) a Python-level check costs more than the
# arithmetic.  Nothing is ever copied: a buffer written in place must be the
# caller's own.
cimport numpy as cnp
from libc.limits cimport INT_MAX
from libc.stdint cimport int64_t

# an ndarray of native float64, ``ndim``-D, C-contiguous, aligned, every
# dimension within the BLAS's int.  The test is inline (every kernel call
# makes several, at (8, 8, 8) each call's overhead counts); refuse_array
# raises the error that names what is wrong.
cdef inline cnp.ndarray check_array(object a, str name, int ndim):
    cdef cnp.ndarray arr
    cdef int i
    if cnp.PyArray_Check(a):
        arr = <cnp.ndarray>a
        if (cnp.PyArray_TYPE(arr) == cnp.NPY_DOUBLE and cnp.PyArray_ISNOTSWAPPED(arr)
                and cnp.PyArray_NDIM(arr) == ndim and cnp.PyArray_IS_C_CONTIGUOUS(arr)
                and cnp.PyArray_ISALIGNED(arr)):
            for i in range(ndim):
                if cnp.PyArray_DIM(arr, i) > INT_MAX:
                    return refuse_array(a, name, ndim)
            return arr
    return refuse_array(a, name, ndim)

cdef cnp.ndarray refuse_array(object a, str name, int ndim)

# check_array(a, name, 2) with ``cols`` columns and (rows >= 0) ``rows`` rows
cdef cnp.ndarray check_rows(object a, str name, Py_ssize_t cols, Py_ssize_t rows)

# an aligned, C-contiguous vector of n native ``typenum`` values (n < 0: any
# length); ``what`` names them in the message ("values", "row numbers");
# writeable: it is updated in place
cdef cnp.ndarray check_vector(object a, str name, int typenum, Py_ssize_t n, str what,
                              bint writeable)

# int64 class labels, one per row, each in [0, classes)
cdef cnp.ndarray check_labels(object a, str name, Py_ssize_t rows, int64_t classes)

# an int64 vector of n row numbers, each in [0, n)
cdef cnp.ndarray check_row_indices(object a, str name, Py_ssize_t n)

# The given out buffer, checked (shape (rows, cols), or (cols,) for ndim 1;
# writeable; sharing memory with none of ``inputs``), or a new one.
cdef cnp.ndarray check_output(object out, str name, Py_ssize_t rows, Py_ssize_t cols, int ndim,
                              tuple inputs, tuple input_names)

# check_output for any shape of up to 3 dimensions (a tuple)
cdef cnp.ndarray check_output_shape(object out, str name, tuple shape, tuple inputs,
                                    tuple input_names)

# a.shape[i] == b.shape[j], or a ValueError saying so for ``what``
cdef inline int check_same_dim(str what, str n1, cnp.ndarray a, int i, str n2, cnp.ndarray b,
                               int j) except -1:
    if cnp.PyArray_DIM(a, i) != cnp.PyArray_DIM(b, j):
        return refuse_dims(what, n1, a, i, n2, b, j)
    return 0

cdef int refuse_dims(str what, str n1, cnp.ndarray a, int i, str n2, cnp.ndarray b,
                     int j) except -1


# Whether two C-contiguous arrays share memory: each occupies exactly
# [data, data + nbytes), so this is exact.
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

# a scipy CSR matrix/array of ``cols`` columns in the form the compiled
# sparse layer reads (fastbp.inputs.as_inputs makes it): canonical (sorted
# indices, no duplicates), float64 data, int64 indices and indptr, indptr
# non-decreasing from 0, every column number in [0, cols).  Returns
# (data, indices, indptr).  O(nnz + rows).
cdef tuple check_csr(object X, str name, Py_ssize_t cols)
