/* _lossmath.h -- vectorisable helpers of the fused losses (_losses.pyx).
 *
 * Kept apart from _fastmath.h (the layers' activations and epilogues): the
 * same conventions (_simd.h's multiversioning and floating-point pragmas,
 * fma only where the code says fb_madd(..., use_fma), from _fastmath.h).
 *
 * Binary cross entropy takes log(1 + e) for e = exp(-|z|) in [0, 1] per
 * element; libm's log1p is a scalar call of ~15 ns, several times the rest of
 * the loss, so it is computed here in a loop GCC vectorises.
 */
#ifndef FASTBP_LOSSMATH_H
#define FASTBP_LOSSMATH_H

#include <stdint.h>

#include "_fastmath.h" /* fb_madd, and through it _simd.h: FB_INLINE, FB_MULTIVERSION, ... */

FB_FP_BEGIN

/* ==== log1p on [0, 1] =======================================================
 * u = 1 + x rounded, c = x - (u - 1) its rounding error (exact: u - 1 is
 * exact for u in [1, 2], and so is the difference), so log(1 + x) =
 * log(u) + log(1 + c/u) = log(u) + c/u to within 2^-106.
 * log(u) = k ln2 + log(m), m = u or u/2 in [sqrt(2)/2, sqrt(2)], f = m - 1
 * exact (Sterbenz), then fdlibm's e_log.c: s = f/(2+f), log(1+f) =
 * f - (f^2/2 - s (f^2/2 + R(s^2))), R its degree-7 polynomial in s^2 (error
 * < 2^-58.45), ln2 split in a high part with 32 bits (k ln2_hi exact) and the
 * rest.  Within 1 ulp of NumPy's log1p on [0, 1] (tests/test__losses.py, on
 * 40 000 points and the edges of the halving); NaN gives NaN.  Branch-free: both halvings are
 * computed and one is selected. */
#define FB_LM_LN2_HI 6.93147180369123816490e-01 /* 0x3fe62e42fee00000 */
#define FB_LM_LN2_LO 1.90821492927058770002e-10 /* 0x3dea39ef35793c76 */
#define FB_LM_SQRT2 1.41421356237309514547      /* 0x3ff6a09e667f3bcd */

FB_INLINE double fb_log1p_unit_core(double x, int use_fma)
{
    double u = 1.0 + x;
    double c = x - (u - 1.0);
    int big = u > FB_LM_SQRT2;
    double m = big ? 0.5 * u : u;
    double k = big ? 1.0 : 0.0;
    double f = m - 1.0;
    double s = f / (2.0 + f);
    double z = s * s;
    double w = z * z;
    double t1 = w * fb_madd(w, fb_madd(w, 1.531383769920937332e-01, 2.222219843214978396e-01,
                                             use_fma),
                               3.999999999940941908e-01, use_fma);
    double t2 = z * fb_madd(w, fb_madd(w, fb_madd(w, 1.479819860511658591e-01,
                                                           1.818357216161805012e-01, use_fma),
                                             2.857142874366239149e-01, use_fma),
                               6.666666666666735130e-01, use_fma);
    double R = t2 + t1;
    double hfsq = 0.5 * f * f;
    /* k ln2_lo and the rounding of u join the small terms */
    double small = fb_madd(k, FB_LM_LN2_LO, c / u, use_fma);
    return k * FB_LM_LN2_HI - ((hfsq - (s * (hfsq + R) + small)) - f);
}

FB_INLINE void fb_log1p_unit_array_impl(const double *x, double *y, int64_t m, int use_fma)
{
    for (int64_t i = 0; i < m; i++) y[i] = fb_log1p_unit_core(x[i], use_fma);
}

/* y[i] = log(1 + x[i]) for x[i] in [0, 1] (outside: not accurate); x may equal y. */
FB_MULTIVERSION(fb_log1p_unit_array, (const double *x, double *y, int64_t m), (x, y, m))

FB_FP_END

#undef FB_LM_LN2_HI
#undef FB_LM_LN2_LO
#undef FB_LM_SQRT2

#endif /* FASTBP_LOSSMATH_H */
