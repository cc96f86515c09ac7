# The optimisers' update loops (_update.h: vectorised, the same bits as scalar
# code), for _optim.pyx, which runs them for fastbp.optim and for the network
# core.  The penalty λ θ is added to the gradient on [0, n_decay) only.
from libc.stdint cimport int64_t

cdef extern from "_update.h" nogil:
    # what a step of each rule reads (the others are ignored)
    ctypedef struct fb_update_consts:
        double lr, weight_decay
        double momentum
        int nesterov
        double beta1, beta2, eps, c1, c2

    void fb_sgd_update(double *p, const double *g, int64_t n, int64_t n_decay,
                       const fb_update_consts *c)
    void fb_momentum_update(double *p, const double *g, double *v, int64_t n, int64_t n_decay,
                            const fb_update_consts *c)
    void fb_adam_update(double *p, const double *g, double *m, double *v, int64_t n,
                        int64_t n_decay, const fb_update_consts *c)
