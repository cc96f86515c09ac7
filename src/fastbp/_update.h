/* _update.h -- vectorised optimiser updates (SGD, momentum, Adam) for fastbp.
 *
 * Included (through _update.pxd) by _optim.pyx alone: its update_range is
 * what the network core's fused step calls, so there is one implementation.
 * No GIL, no Python API, no global state of its own.
 *
 * Why: the same loops written in Cython stayed scalar (a j < n_decay branch
 * per element, sqrt that may set errno, buffers that may alias), and Adam
 * over a small network's parameters took a good part of its training step.
 * Here the pointers are restrict, the L2-penalised prefix [0, n_decay) and
 * the rest are two loops, and sqrt is __builtin_sqrt without errno, so GCC
 * vectorises all of them.
 *
 * Results: every expression keeps the operation order of the former scalar
 * loops and nothing is fused (fp-contract=off, no fma), and +, -, *, / and
 * sqrt are correctly rounded in every vector width; so each element gets the
 * same bits as the scalar code, on every CPU and at every array position.
 *
 * Buffers must not overlap (restrict); each is n doubles.
 */
#ifndef FASTBP_UPDATE_H
#define FASTBP_UPDATE_H

#include <stdint.h>

#include "_simd.h" /* FB_INLINE, FB_MULTIVERSION, FB_FP_BEGIN ... */

FB_FP_BEGIN

#if defined(__GNUC__)
#define FB_UP_SQRT(x) __builtin_sqrt(x)
#else
#include <math.h>
#define FB_UP_SQRT(x) sqrt(x)
#endif

/* ==== the constants of one update ======================================= */

/* What a step of each rule reads (the others are ignored): SGD lr and
 * weight_decay (λ, the L2 penalty's gradient λ θ on [0, n_decay)); momentum
 * adds momentum (μ) and nesterov; Adam beta1, beta2, eps and its bias
 * corrections c1 = 1/(1−β1ᵗ), c2 = 1/(1−β2ᵗ). */
typedef struct {
    double lr, weight_decay;
    double momentum;
    int nesterov;
    double beta1, beta2, eps, c1, c2;
} fb_update_consts;

/* ==== the loops =========================================================== */
/* Each copies the constants into a local first: read through a pointer the
 * compiler could not keep them in registers across the restrict stores. */

/* θ ← θ − lr (g + λ θ) on [0, n_decay), θ ← θ − lr g on the rest. */
FB_INLINE void fb_sgd_update_impl(double *FB_RESTRICT p, const double *FB_RESTRICT g,
                                  int64_t n, int64_t n_decay, const fb_update_consts *c,
                                  int use_fma)
{
    const double lr = c->lr, weight_decay = c->weight_decay;
    (void)use_fma;
    for (int64_t j = 0; j < n_decay; j++)
        p[j] -= lr * (g[j] + weight_decay * p[j]);
    for (int64_t j = n_decay; j < n; j++)
        p[j] -= lr * g[j];
}

/* One element given the (penalised) gradient g̃: v ← μ v + g̃, and
 * θ ← θ − lr v, or θ ← θ − lr (g̃ + μ v) with Nesterov. */
FB_INLINE void fb_momentum_1(double *FB_RESTRICT p, double *FB_RESTRICT v, double gt,
                             const fb_update_consts *k, int nesterov)
{
    *v = k->momentum * *v + gt;
    if (nesterov)
        *p -= k->lr * (gt + k->momentum * *v);
    else
        *p -= k->lr * *v;
}

/* nesterov is a constant at both call sites below, so the test folds away. */
FB_INLINE void fb_momentum_loops(double *FB_RESTRICT p, const double *FB_RESTRICT g,
                                 double *FB_RESTRICT v, int64_t n, int64_t n_decay,
                                 const fb_update_consts *c, int nesterov)
{
    const fb_update_consts k = *c;
    for (int64_t j = 0; j < n_decay; j++)
        fb_momentum_1(p + j, v + j, g[j] + k.weight_decay * p[j], &k, nesterov);
    for (int64_t j = n_decay; j < n; j++)
        fb_momentum_1(p + j, v + j, g[j], &k, nesterov);
}

FB_INLINE void fb_momentum_update_impl(double *FB_RESTRICT p, const double *FB_RESTRICT g,
                                       double *FB_RESTRICT v, int64_t n, int64_t n_decay,
                                       const fb_update_consts *c, int use_fma)
{
    (void)use_fma;
    if (c->nesterov)
        fb_momentum_loops(p, g, v, n, n_decay, c, 1);
    else
        fb_momentum_loops(p, g, v, n, n_decay, c, 0);
}

/* One element given g̃: m ← β1 m + (1−β1) g̃, v ← β2 v + (1−β2) g̃²,
 * θ ← θ − lr (m c1) / (√(v c2) + ε). */
FB_INLINE void fb_adam_1(double *FB_RESTRICT p, double *FB_RESTRICT m,
                         double *FB_RESTRICT v, double gt, const fb_update_consts *k)
{
    *m = k->beta1 * *m + (1.0 - k->beta1) * gt;
    *v = k->beta2 * *v + (1.0 - k->beta2) * gt * gt;
    *p -= k->lr * (*m * k->c1) / (FB_UP_SQRT(*v * k->c2) + k->eps);
}

FB_INLINE void fb_adam_update_impl(double *FB_RESTRICT p, const double *FB_RESTRICT g,
                                   double *FB_RESTRICT m, double *FB_RESTRICT v, int64_t n,
                                   int64_t n_decay, const fb_update_consts *c, int use_fma)
{
    const fb_update_consts k = *c;
    (void)use_fma;
    for (int64_t j = 0; j < n_decay; j++)
        fb_adam_1(p + j, m + j, v + j, g[j] + k.weight_decay * p[j], &k);
    for (int64_t j = n_decay; j < n; j++)
        fb_adam_1(p + j, m + j, v + j, g[j], &k);
}

/* ==== the API: one copy per instruction set, picked per call (_simd.h) ====
 * No fma in any copy (use_fma is unused), so all three give the same bits. */
FB_MULTIVERSION(fb_sgd_update,
                (double *FB_RESTRICT p, const double *FB_RESTRICT g, int64_t n,
                 int64_t n_decay, const fb_update_consts *c),
                (p, g, n, n_decay, c))

FB_MULTIVERSION(fb_momentum_update,
                (double *FB_RESTRICT p, const double *FB_RESTRICT g,
                 double *FB_RESTRICT v, int64_t n, int64_t n_decay, const fb_update_consts *c),
                (p, g, v, n, n_decay, c))

FB_MULTIVERSION(fb_adam_update,
                (double *FB_RESTRICT p, const double *FB_RESTRICT g,
                 double *FB_RESTRICT m, double *FB_RESTRICT v, int64_t n,
                 int64_t n_decay, const fb_update_consts *c),
                (p, g, m, v, n, n_decay, c))

FB_FP_END

#undef FB_UP_SQRT

#endif
