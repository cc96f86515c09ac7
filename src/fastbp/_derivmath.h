/* _derivmath.h -- the vectorised loops of the derivative passes
 * (fastbp._derivatives): a block's rows scaled by their example's g', the
 * rows' outer products of a parameter Jacobian, the R-op's derivative
 * epilogue.  Same conventions as _fastmath.h (FB_MULTIVERSION copies, fp
 * contraction off: the same bits on every CPU). */
#ifndef FASTBP_DERIVMATH_H
#define FASTBP_DERIVMATH_H

#include <stdint.h>
#include "_simd.h"

FB_FP_BEGIN

/* B[r][j] *= G[r / m][j] for the n*m rows of width d of a block (row r of the
 * block belongs to example r / m). */
FB_INLINE void fb_scale_rows_impl(double *FB_RESTRICT B, const double *FB_RESTRICT G, int64_t n,
                                     int64_t m, int64_t d, int use_fma)
{
    (void)use_fma;
    for (int64_t i = 0; i < n; i++) {
        const double *g = G + i * d;
        for (int64_t q = 0; q < m; q++) {
            double *b = B + (i * m + q) * d;
            for (int64_t j = 0; j < d; j++) b[j] *= g[j];
        }
    }
}

/* Row r of J (row stride ldj), from column 0: the outer product dZ[r] (d)
 * times A[r / m] (k), row-major d x k, for the n*m rows r. */
FB_INLINE void fb_outer_rows_impl(const double *FB_RESTRICT dZ, int64_t d,
                                     const double *FB_RESTRICT A, int64_t k, int64_t n, int64_t m,
                                     double *FB_RESTRICT J, int64_t ldj, int use_fma)
{
    (void)use_fma;
    for (int64_t r = 0; r < n * m; r++) {
        const double *a = A + (r / m) * k;
        const double *dz = dZ + r * d;
        double *dst = J + r * ldj;
        for (int64_t q = 0; q < d; q++) {
            double c = dz[q];
            for (int64_t j = 0; j < k; j++) dst[q * k + j] = c * a[j];
        }
    }
}

/* B[(i d + q) k + j] = c[i d + q] W[q k + j] g[i k + j] (c, g NULL: 1) for
 * i < n, q < d, j < k: row q of W (d x k) scaled by example i's c_q, the
 * cotangents of the units of an output whose Jacobian in its pre-activation
 * is diagonal, and by the g' of the layer below (g). */
FB_INLINE void fb_diagonal_rows_impl(const double *c, int64_t n, int64_t d,
                                        const double *FB_RESTRICT W, int64_t k, const double *g,
                                        double *FB_RESTRICT B, int use_fma)
{
    (void)use_fma;
    for (int64_t r = 0; r < n * d; r++) {
        double cr = c ? c[r] : 1.0;
        const double *w = W + (r % d) * k;
        double *b = B + r * k;
        if (g == NULL) {
            for (int64_t j = 0; j < k; j++) b[j] = cr * w[j];
        } else {
            const double *gi = g + (r / d) * k;
            for (int64_t j = 0; j < k; j++) b[j] = (cr * w[j]) * gi[j];
        }
    }
}

/* The R-op's derivative epilogue on `count` elements, from u = delta and
 * ru = R(delta) in place: u <- u g1, ru <- ru g1 + u g2 zt (g2 NULL: g'' = 0). */
FB_INLINE void fb_r_epilogue_impl(double *FB_RESTRICT u, double *FB_RESTRICT ru,
                                     const double *FB_RESTRICT g1, const double *g2,
                                     const double *zt, int64_t count, int use_fma)
{
    (void)use_fma;
    if (g2 == NULL) {
        for (int64_t i = 0; i < count; i++) { u[i] *= g1[i]; ru[i] *= g1[i]; }
        return;
    }
    for (int64_t i = 0; i < count; i++) {
        double du = u[i];
        u[i] = du * g1[i];
        ru[i] = ru[i] * g1[i] + du * g2[i] * zt[i];
    }
}

/* y[i] = a[i] * b[i] */
FB_INLINE void fb_mul_impl(double *FB_RESTRICT y, const double *FB_RESTRICT a,
                              const double *FB_RESTRICT b, int64_t count, int use_fma)
{
    (void)use_fma;
    for (int64_t i = 0; i < count; i++) y[i] = a[i] * b[i];
}

FB_MULTIVERSION(fb_scale_rows, (double *B, const double *G, int64_t n, int64_t m, int64_t d),
                   (B, G, n, m, d))
FB_MULTIVERSION(fb_outer_rows,
                   (const double *dZ, int64_t d, const double *A, int64_t k, int64_t n, int64_t m,
                    double *J, int64_t ldj),
                   (dZ, d, A, k, n, m, J, ldj))
FB_MULTIVERSION(fb_diagonal_rows,
                   (const double *c, int64_t n, int64_t d, const double *W, int64_t k,
                    const double *g, double *B),
                   (c, n, d, W, k, g, B))
FB_MULTIVERSION(fb_r_epilogue,
                   (double *u, double *ru, const double *g1, const double *g2, const double *zt,
                    int64_t count),
                   (u, ru, g1, g2, zt, count))
FB_MULTIVERSION(fb_mul, (double *y, const double *a, const double *b, int64_t count),
                   (y, a, b, count))

FB_FP_END

#endif /* FASTBP_DERIVMATH_H */
