# The optimisers' update loops (_update.h: vectorised, the same bits as scalar
# code), for the compiled modules that run them (_optim, _network).  The
# penalty λ θ is added to the gradient on [0, n_decay) only.
from libc.stdint cimport int64_t

cdef extern from "_update.h" nogil:
    void fb_sgd_update(double *p, const double *g, int64_t n, int64_t n_decay, double lr,
                       double weight_decay)
    void fb_momentum_update(double *p, const double *g, double *v, int64_t n, int64_t n_decay,
                            double lr, double momentum, int nesterov, double weight_decay)
    void fb_adam_update(double *p, const double *g, double *m, double *v, int64_t n,
                        int64_t n_decay, double lr, double beta1, double beta2, double eps,
                        double c1, double c2, double weight_decay)
