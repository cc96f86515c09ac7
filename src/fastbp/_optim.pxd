# The optimisers' compiled update, for the network core (_network.pyx),
# which makes it inside a training step, on the whole parameter vector or,
# after a batch split over two threads, half of it on each thread.
from fastbp._update cimport fb_update_consts

# One update's constants and buffers, filled from an UpdateSpec by load_update.
cdef struct Update:
    int kind            # an Update code (fastbp._enums): UPD_NONE .. UPD_ADAM
    fb_update_consts k  # its constants (Adam's c1, c2: set_adam_step)
    double *m           # Adam's first moment, or the velocity
    double *v           # Adam's second moment
    double *params
    double *grads
    double *g1          # a second part's gradient, summed in first; or NULL
    Py_ssize_t n, n_decay
    Py_ssize_t half     # where the helper's half starts (after a split)


cdef class UpdateSpec:
    """What an optimiser hands the network core: the kind of update, its
    constants, its state vectors and the steps made so far (t)."""
    cdef public int kind
    cdef public double lr, weight_decay, momentum, beta1, beta2, eps
    cdef public long t
    cdef public object m, v


# u ← spec's update of params from grads (n values, the penalty on the first
# n_decay), with spec's state checked: the caller's own contiguous vectors,
# sharing no memory with each other, params or grads.  Allocates nothing.
cdef int load_update(UpdateSpec spec, Update *u, object params, object grads,
                     Py_ssize_t n_decay) except -1

# Adam's constants for step t (from 1): the bias corrections, and ε as given
# or, with eps_before_correction (scikit-learn's placement, ε added to √v
# before the correction), ε / √(1 − β2ᵗ)
cdef void set_adam_step(Update *u, long t, double eps,
                        bint eps_before_correction) noexcept nogil

# The update of params[lo:hi), after the two parts' gradients are summed
# there (u.g1 not NULL) into grads or, with sum_in_g1, into g1.
cdef void update_range(Update *u, Py_ssize_t lo, Py_ssize_t hi, bint sum_in_g1) noexcept nogil
