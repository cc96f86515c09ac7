/* _fastmath.h -- vectorisable float64 activations and fused epilogues for fastbp.
 *
 * Included by _kernels.pyx and _losses.pyx; everything here runs without the GIL and touches
 * no Python API and no global state of its own.
 *
 * Why a header of our own: libm's exp/tanh are scalar calls (several ns per
 * element), so an activation over a GEMM output would cost more than the GEMM
 * for narrow layers.  The code below is branch-free, so GCC's loop vectoriser
 * turns it into SIMD code, and every API function is compiled three times
 * (AVX-512, AVX2 + FMA, baseline SSE2) with the copy chosen from the CPU at
 * run time; the wheel itself keeps the x86-64 baseline.
 *
 * Accuracy (tests/test__fastmath.py, against NumPy and mpmath): exp and
 * tanh are within 1 ulp of the correctly rounded value, sigmoid within 2 (the
 * rounding of 1/(1+e) itself, as in NumPy), and all three within 2 ulp of
 * NumPy for every double; exp has exact 0 / subnormal / +inf limits; NaN in
 * gives NaN out.  expm1 (for elu and softplus') and log1p (softplus) are
 * within a few ulp of libm's, with their own polynomials where exp(x) - 1 and
 * log(1 + x) would cancel: no libm call anywhere, everything vectorises.
 *
 * Reproducibility: fma is used only where the code says fb_madd(..., use_fma),
 * never by compiler contraction (switched off below).  So an element's result
 * depends only on its inputs, never on its position in the array or on the
 * vector width; the AVX-512 and AVX2 copies give the same bits; the SSE2 copy
 * (no fma hardware) can differ from them by an ulp or two in the activations
 * only.
 * Derivatives and reductions (bias gradient, squared error) use no fma and a
 * fixed summation order: the same bits on every CPU.
 */
#ifndef FASTBP_FASTMATH_H
#define FASTBP_FASTMATH_H

#include <math.h>   /* fabs, copysign: compiled inline as bit operations */
#include <stddef.h>
#include <stdint.h>
#include <string.h> /* memcpy for bit casts */

#include "_enums.h" /* FB_ACT_IDENTITY, FB_ACT_SIGMOID, ... */

#include "_simd.h" /* FB_INLINE, FB_MULTIVERSION, FB_FP_BEGIN ... */

FB_FP_BEGIN

FB_INLINE uint64_t fb_bits(double x) { uint64_t u; memcpy(&u, &x, sizeof u); return u; }
FB_INLINE double fb_double(uint64_t u) { double x; memcpy(&x, &u, sizeof x); return x; }

/* a*b + c; fused (one rounding) when use_fma != 0.  use_fma is a
 * compile-time constant in every copy, so the test folds away. */
FB_INLINE double fb_madd(double a, double b, double c, int use_fma)
{
#if defined(__GNUC__)
    return use_fma ? __builtin_fma(a, b, c) : a * b + c;
#else
    return use_fma ? fma(a, b, c) : a * b + c;
#endif
}

/* ==== exp ===================================================================
 * exp(x) = 2^k * exp(r),  k = round(x / ln2),  r = x - k ln2,  |r| <= ln2/2.
 *
 * - The callers clamp x first (NaN passes through the comparisons), which
 *   bounds k, so none of the integer operations below can overflow.
 * - k by the "shifter" trick: adding 0x1.8p52 = 1.5 * 2^52 rounds x/ln2 to an
 *   integer (the ulp of doubles in [2^52, 2^53) is 1) and leaves k in the low
 *   mantissa bits, so k needs no slow double -> int64 conversion.
 * - r by Cody-Waite: ln2 = LN2_HI + LN2_LO, LN2_HI with 32 significant bits,
 *   so k * LN2_HI is exact for |k| < 2^21 and x - k*LN2_HI is exact.
 * - exp(r) = 1 + r + r^2 Q(r), Q of degree 9: a Chebyshev interpolant of
 *   (exp(r)-1-r)/r^2 on |r| <= 0.3467 (fitted with mpmath), approximation
 *   error < 0.11 ulp; evaluated by Horner ending in 1 + r*(1 + r*Q...), which
 *   keeps the rounding error below about 0.8 ulp.
 * - 2^k is built from bits: shifting bits(t) left by 52 drops the shifter's
 *   bits (they vanish mod 2^64) and leaves k in the exponent field; adding
 *   bits(1.0) adds the bias 1023.  The three variants below differ only in
 *   how they keep that factor a normal double. */
#define FB_FM_SHIFTER 0x1.8p52
#define FB_FM_LOG2E 0x1.71547652b82fep0          /* 1/ln2 */
#define FB_FM_LN2_HI 0x1.62e42fee00000p-1        /* ln2, top 32 bits */
#define FB_FM_LN2_LO 0x1.a39ef35793c76p-33       /* ln2 - LN2_HI */
#define FB_FM_EXPONENT_ONE 0x3ff0000000000000ULL /* bits of 1.0 */

/* k = round(x/ln2) as a double; *t holds k in its low bits. */
FB_INLINE double fb_exp_k(double x, double *t, int use_fma)
{
    *t = fb_madd(x, FB_FM_LOG2E, FB_FM_SHIFTER, use_fma);
    return *t - FB_FM_SHIFTER;
}

/* Q(r) = (exp(r) - 1 - r) / r^2 for |r| <= 0.3467. */
FB_INLINE double fb_exp_q(double r, int use_fma)
{
    double q = 0x1.af38c67fbb53ep-26;
    q = fb_madd(q, r, 0x1.28919ccaf9211p-22, use_fma);
    q = fb_madd(q, r, 0x1.71de0da24602dp-19, use_fma);
    q = fb_madd(q, r, 0x1.a019b8f9792eep-16, use_fma);
    q = fb_madd(q, r, 0x1.a01a01a7c73c0p-13, use_fma);
    q = fb_madd(q, r, 0x1.6c16c17890eb4p-10, use_fma);
    q = fb_madd(q, r, 0x1.11111111109afp-7, use_fma);
    q = fb_madd(q, r, 0x1.5555555553d56p-5, use_fma);
    q = fb_madd(q, r, 0x1.5555555555556p-3, use_fma);
    return fb_madd(q, r, 0x1.0000000000001p-1, use_fma); /* Q(r), ~1/2 */
}

/* exp(r), r = x - k ln2, for |r| <= ln2/2 (+ rounding). */
FB_INLINE double fb_exp_reduced(double x, double k, int use_fma)
{
    double r = fb_madd(-k, FB_FM_LN2_HI, x, use_fma);
    r = fb_madd(-k, FB_FM_LN2_LO, r, use_fma);
    double q = fb_exp_q(r, use_fma);
    q = fb_madd(q, r, 1.0, use_fma);
    return fb_madd(q, r, 1.0, use_fma);
}

/* 2^(k + offset) from t; the caller keeps k + offset in [-1022, 1023]. */
FB_INLINE double fb_pow2(double t, uint64_t offset)
{
    return fb_double((fb_bits(t) << 52) + FB_FM_EXPONENT_ONE + (offset << 52));
}

/* exp for every double.  Clamp to [-746, 710]: below -746 exp rounds to 0,
 * above 710 to +inf, and k stays in [-1076, 1024].  2^k is applied in two
 * steps, 2^k1 * 2^k2 with k1 = round(k/2): both factors are normal for every
 * such k, p * 2^k1 is exact, and the one rounding happens in the last
 * product, so subnormal results are rounded once and overflow gives +inf. */
FB_INLINE double fb_exp_core(double x, int use_fma)
{
    x = x > 710.0 ? 710.0 : x;
    x = x < -746.0 ? -746.0 : x;
    double t;
    double k = fb_exp_k(x, &t, use_fma);
    double p = fb_exp_reduced(x, k, use_fma);
    double t1 = fb_madd(k, 0.5, FB_FM_SHIFTER, use_fma); /* k1 = round(k/2), same trick */
    uint64_t k_bits = fb_bits(t), k1_bits = fb_bits(t1);
    double two_k1 = fb_double((k1_bits << 52) + FB_FM_EXPONENT_ONE);
    double two_k2 = fb_double(((k_bits - k1_bits) << 52) + FB_FM_EXPONENT_ONE);
    return (p * two_k1) * two_k2;
}

/* exp for x <= 0 (or NaN), cheaper: k is in [-1076, 0], so 2^(k+600) is
 * always normal, p * 2^(k+600) is exact, and the final * 2^-600 is the one
 * rounding (only when the result is subnormal). */
FB_INLINE double fb_exp_nonpositive(double x, int use_fma)
{
    x = x < -746.0 ? -746.0 : x;
    double t;
    double k = fb_exp_k(x, &t, use_fma);
    return (fb_exp_reduced(x, k, use_fma) * fb_pow2(t, 600)) * 0x1p-600;
}

/* exp for 0 <= x <= 44 (or NaN): k <= 64, 2^k is directly a normal double. */
FB_INLINE double fb_exp_moderate(double x, int use_fma)
{
    double t;
    double k = fb_exp_k(x, &t, use_fma);
    return fb_exp_reduced(x, k, use_fma) * fb_pow2(t, 0);
}

/* ==== sigmoid ===============================================================
 * The stable form, exactly as the NumPy reference writes it:
 *   e = exp(-|z|);  s = z >= 0 ? 1/(1+e) : e/(1+e).
 * e is in [0, 1], so nothing overflows even for |z| = 1e308 or inf; NaN gives
 * NaN.  Selecting the numerator first costs one division instead of two and
 * gives the same bits. */
FB_INLINE double fb_sigmoid_core(double z, int use_fma)
{
    double e = fb_exp_nonpositive(-fabs(z), use_fma);
    return (z >= 0.0 ? 1.0 : e) / (1.0 + e);
}

/* ==== tanh ==================================================================
 * Cephes-style split on a = |x|, sign restored at the end (tanh(-0) = -0):
 * - a < 0.625: tanh(a) = a + a z R(z), z = a^2, R of degree 11: a Chebyshev
 *   interpolant of (tanh(a) - a)/a^3 on z in [0, 0.390625] (fitted with
 *   mpmath), approximation error < 0.06 ulp of tanh.
 * - a >= 0.625: tanh(a) = 1 - 2/(exp(2a) + 1).  a is clamped to 22 first:
 *   2/(exp(44)+1) < 2^-60, so the result is exactly 1 from there on, and
 *   exp(2a) never overflows (no inf/inf for a = 1e308 or inf).
 * Both branches are computed and one is selected (branch-free); the
 * polynomial is fed min(a, 0.625) so it never sees huge values. */
FB_INLINE double fb_tanh_core(double x, int use_fma)
{
    double a = fabs(x);

    double as = a < 0.625 ? a : 0.625;
    double z = as * as;
    double R = 0x1.b33642a122cddp-18;
    R = fb_madd(R, z, -0x1.05bbdae896297p-15, use_fma);
    R = fb_madd(R, z, 0x1.8445870f6fe41p-14, use_fma);
    R = fb_madd(R, z, -0x1.f243823c8c981p-13, use_fma);
    R = fb_madd(R, z, 0x1.3526e9ed54da1p-11, use_fma);
    R = fb_madd(R, z, -0x1.7d9f6f23e8682p-10, use_fma);
    R = fb_madd(R, z, 0x1.d6d39ae3905e2p-9, use_fma);
    R = fb_madd(R, z, -0x1.226e3473dce5cp-7, use_fma);
    R = fb_madd(R, z, 0x1.664f487e0a749p-6, use_fma);
    R = fb_madd(R, z, -0x1.ba1ba1ba0f126p-5, use_fma);
    R = fb_madd(R, z, 0x1.11111111110a8p-3, use_fma);
    R = fb_madd(R, z, -0x1.5555555555555p-2, use_fma); /* ~ -1/3 */
    double small = fb_madd(as, z * R, as, use_fma);

    double al = a > 22.0 ? 22.0 : a; /* NaN passes through */
    double large = 1.0 - 2.0 / (fb_exp_moderate(al + al, use_fma) + 1.0);

    return copysign(a < 0.625 ? small : large, x);
}

/* relu written so that NaN propagates, as numpy.maximum(z, 0) does. */
FB_INLINE double fb_relu(double z) { return z < 0.0 ? 0.0 : z; }

/* ==== expm1 =================================================================
 * exp(x) - 1 cancels near 0, so |x| <= 0.34 takes x + x^2 Q(x) with exp's own
 * polynomial Q (no reduction: k = 0), within about 1 ulp; beyond, |exp(x) - 1|
 * >= 0.28 and exp's 1 ulp costs at most 3 ulp of the difference.  Branch-free
 * (both computed, one selected), so it vectorises; NaN gives NaN, expm1(-inf)
 * = -1, expm1(inf) = inf. */
FB_INLINE double fb_expm1_core(double x, int use_fma)
{
    double xs = x < -0.34 ? -0.34 : (x > 0.34 ? 0.34 : x); /* NaN passes */
    double small = fb_madd(xs * xs, fb_exp_q(xs, use_fma), xs, use_fma);
    double large = fb_exp_core(x, use_fma) - 1.0;
    return fabs(x) > 0.34 ? large : small;
}

/* ==== leaky relu, elu, softplus, silu ======================================
 * Written as the NumPy reference writes them (fastbp.reference), so NaN gives
 * NaN and no finite z overflows:
 * - leaky relu: z < 0 ? 0.01 z : z
 * - elu (alpha = 1): z > 0 ? z : expm1(z)
 * - softplus: max(z, 0) + log1p(exp(-|z|)), with fb_log1p_unit below.
 * - silu: z sigmoid(z) */
#define FB_FM_LEAKY_SLOPE 0.01

/* log1p(e) for 0 <= e <= 1 (or NaN), branch-free, within a few ulp:
 * u = 1 + e rounded; log1p(e) = log(u) + (e - (u - 1)) / u, the second term
 * restoring what the rounding of u lost (u - 1 is exact), so tiny e keep
 * every digit.  log(u) = k ln2 + log(m), u = 2^k m, m in [0.707, 1.415]
 * (k is 0 or 1), log(m) = 2 atanh(s), s = (m - 1)/(m + 1), |s| <= 0.1716:
 * 2s (1 + w P(w)), w = s^2, P the atanh series 1/3 + w/5 + ... + w^10/23
 * (truncation < 1e-19 relative). */
FB_INLINE double fb_log1p_unit(double e, int use_fma)
{
    double u = 1.0 + e;
    double big = u > 0x1.6a09e667f3bcdp0 ? 1.0 : 0.0; /* u > sqrt(2): k = 1 */
    double m = big != 0.0 ? 0.5 * u : u;               /* exact */
    double s = (m - 1.0) / (m + 1.0);
    double w = s * s;
    double P = 1.0 / 23;
    P = fb_madd(P, w, 1.0 / 21, use_fma);
    P = fb_madd(P, w, 1.0 / 19, use_fma);
    P = fb_madd(P, w, 1.0 / 17, use_fma);
    P = fb_madd(P, w, 1.0 / 15, use_fma);
    P = fb_madd(P, w, 1.0 / 13, use_fma);
    P = fb_madd(P, w, 1.0 / 11, use_fma);
    P = fb_madd(P, w, 1.0 / 9, use_fma);
    P = fb_madd(P, w, 1.0 / 7, use_fma);
    P = fb_madd(P, w, 1.0 / 5, use_fma);
    P = fb_madd(P, w, 1.0 / 3, use_fma);
    double r = s + s;
    double log_m = fb_madd(r, w * P, r, use_fma);
    double c = (e - (u - 1.0)) / u;
    return fb_madd(big, FB_FM_LN2_HI, log_m + fb_madd(big, FB_FM_LN2_LO, c, use_fma), use_fma);
}

FB_INLINE double fb_leaky_relu_core(double z, int use_fma)
{
    (void)use_fma;
    return z < 0.0 ? FB_FM_LEAKY_SLOPE * z : z;
}

FB_INLINE double fb_elu_core(double z, int use_fma)
{
    double e = fb_expm1_core(z, use_fma);
    return z > 0.0 ? z : e;
}

FB_INLINE double fb_softplus_core(double z, int use_fma)
{
    return fb_relu(z) + fb_log1p_unit(fb_exp_nonpositive(-fabs(z), use_fma), use_fma);
}

FB_INLINE double fb_silu_core(double z, int use_fma) { return z * fb_sigmoid_core(z, use_fma); }

/* ==== elementwise array loops ===============================================
 * Separate in-place and out-of-place loops: the out-of-place one can promise
 * no aliasing (restrict), the in-place one needs no runtime alias check. */
#define FB_FM_ARRAY_LOOPS(name, core)                                                       \
    FB_INLINE void name##_inplace(double *y, int64_t m, int use_fma)                     \
    {                                                                                       \
        for (int64_t i = 0; i < m; i++) y[i] = core(y[i], use_fma);                         \
    }                                                                                       \
    FB_INLINE void name##_copy(const double *FB_RESTRICT x,                           \
                                  double *FB_RESTRICT y, int64_t m, int use_fma)         \
    {                                                                                       \
        for (int64_t i = 0; i < m; i++) y[i] = core(x[i], use_fma);                         \
    }                                                                                       \
    FB_INLINE void name##_array_impl(const double *x, double *y, int64_t m, int use_fma) \
    {                                                                                       \
        if (x == y) name##_inplace(y, m, use_fma);                                          \
        else name##_copy(x, y, m, use_fma);                                                 \
    }

FB_FM_ARRAY_LOOPS(fb_exp, fb_exp_core)
FB_FM_ARRAY_LOOPS(fb_sigmoid, fb_sigmoid_core)
FB_FM_ARRAY_LOOPS(fb_tanh, fb_tanh_core)
FB_FM_ARRAY_LOOPS(fb_expm1, fb_expm1_core)
FB_FM_ARRAY_LOOPS(fb_leaky_relu, fb_leaky_relu_core)
FB_FM_ARRAY_LOOPS(fb_elu, fb_elu_core)
FB_FM_ARRAY_LOOPS(fb_softplus, fb_softplus_core)
FB_FM_ARRAY_LOOPS(fb_silu, fb_silu_core)

/* y = g(y) in place over m elements (relu and identity too). */
FB_INLINE void fb_activation_inplace(double *y, int64_t m, int act, int use_fma)
{
    switch (act) {
    case FB_ACT_SIGMOID: fb_sigmoid_inplace(y, m, use_fma); break;
    case FB_ACT_TANH: fb_tanh_inplace(y, m, use_fma); break;
    case FB_ACT_RELU: for (int64_t i = 0; i < m; i++) y[i] = fb_relu(y[i]); break;
    case FB_ACT_LEAKY_RELU: fb_leaky_relu_inplace(y, m, use_fma); break;
    case FB_ACT_ELU: fb_elu_inplace(y, m, use_fma); break;
    case FB_ACT_SOFTPLUS: fb_softplus_inplace(y, m, use_fma); break;
    case FB_ACT_SILU: fb_silu_inplace(y, m, use_fma); break;
    default: break;
    }
}

/* ==== forward epilogue ======================================================
 * Rows of at least FB_FM_WIDE_ROW elements: one fused loop over j per row,
 * y[j] = g(y[j] + b[j]), which vectorises across j.  Narrower rows (a d = 1
 * output layer, say) would leave that loop nearly empty, so sigmoid and tanh
 * work on blocks of about FB_FM_BLOCK elements that stay in L1: add the bias
 * row by row, then apply g to the block as one contiguous array.  Either way
 * memory is traversed once, and each element gets the same bits as from
 * fb_sigmoid_array / fb_tanh_array on Z + b. */
#define FB_FM_WIDE_ROW 32
#define FB_FM_BLOCK 512

FB_INLINE void fb_forward_row(double *FB_RESTRICT y, const double *FB_RESTRICT b,
                                 int64_t d, int act, int use_fma)
{
    int64_t j;
    switch (act) {
    case FB_ACT_SIGMOID: for (j = 0; j < d; j++) y[j] = fb_sigmoid_core(y[j] + b[j], use_fma); break;
    case FB_ACT_TANH:    for (j = 0; j < d; j++) y[j] = fb_tanh_core(y[j] + b[j], use_fma); break;
    case FB_ACT_RELU:    for (j = 0; j < d; j++) y[j] = fb_relu(y[j] + b[j]); break;
    case FB_ACT_LEAKY_RELU:
        for (j = 0; j < d; j++) y[j] = fb_leaky_relu_core(y[j] + b[j], use_fma);
        break;
    case FB_ACT_ELU:      for (j = 0; j < d; j++) y[j] = fb_elu_core(y[j] + b[j], use_fma); break;
    case FB_ACT_SOFTPLUS: for (j = 0; j < d; j++) y[j] = fb_softplus_core(y[j] + b[j], use_fma); break;
    case FB_ACT_SILU:     for (j = 0; j < d; j++) y[j] = fb_silu_core(y[j] + b[j], use_fma); break;
    default:         for (j = 0; j < d; j++) y[j] = y[j] + b[j]; break;
    }
}

FB_INLINE void fb_forward_epilogue_impl(double *Y, double *Z, const double *b, int64_t n,
                                           int64_t d, int act, int use_fma)
{
    if (n <= 0 || d <= 0) return;
    if (Z != NULL) { /* keep z = Z + b for the backward pass (silu), then g in place */
        for (int64_t i = 0; i < n; i++) fb_forward_row(Y + i * d, b, d, FB_ACT_IDENTITY, use_fma);
        memcpy(Z, Y, (size_t)(n * d) * sizeof *Y);
        fb_activation_inplace(Y, n * d, act, use_fma);
        return;
    }
    if (d >= FB_FM_WIDE_ROW || act == FB_ACT_IDENTITY || act == FB_ACT_RELU
        || act == FB_ACT_LEAKY_RELU) {
        /* identity and (leaky) relu are cheap enough per element to stay row-wise */
        for (int64_t i = 0; i < n; i++) fb_forward_row(Y + i * d, b, d, act, use_fma);
        return;
    }
    int64_t rows = FB_FM_BLOCK / d; /* d < FB_FM_WIDE_ROW, so rows >= 16 */
    for (int64_t i0 = 0; i0 < n; i0 += rows) {
        int64_t nr = n - i0 < rows ? n - i0 : rows;
        double *blk = Y + i0 * d;
        for (int64_t i = 0; i < nr; i++) fb_forward_row(blk + i * d, b, d, FB_ACT_IDENTITY, use_fma);
        fb_activation_inplace(blk, nr * d, act, use_fma);
    }
}

/* ==== backward epilogue =====================================================
 * One row: dz = dy * g'(y) with g' from the output y, and db += dz, in one
 * loop that vectorises across j.  relu' = (y > 0): NaN gives factor 0, and
 * the factor is multiplied (never selected), so NaN/Inf in dY still give NaN
 * exactly as dY * (Y > 0) does in NumPy.  db must not alias the other
 * arrays; dz may equal dy (in place).
 * From y: leaky relu' = y > 0 ? 1 : 0.01; elu' = y > 0 ? 1 : y + 1;
 * softplus' = sigmoid(z) = 1 - exp(-y) = -expm1(-y) (accurate for small y).
 * silu needs z (its g' has no form in y): s = sigmoid(z), g' = s (1 + z (1 - s)).
 * exp inside (softplus, silu) without fma: the same bits on every CPU. */
FB_INLINE void fb_backward_row(const double *dy, const double *y, const double *z, double *dz,
                                  double *FB_RESTRICT db, int64_t d, int act)
{
    int64_t j;
    double g;
    switch (act) {
    case FB_ACT_SIGMOID:
        for (j = 0; j < d; j++) { g = dy[j] * (y[j] * (1.0 - y[j])); dz[j] = g; db[j] += g; }
        break;
    case FB_ACT_TANH:
        for (j = 0; j < d; j++) { g = dy[j] * (1.0 - y[j] * y[j]); dz[j] = g; db[j] += g; }
        break;
    case FB_ACT_RELU:
        for (j = 0; j < d; j++) { g = dy[j] * (y[j] > 0.0 ? 1.0 : 0.0); dz[j] = g; db[j] += g; }
        break;
    case FB_ACT_LEAKY_RELU:
        for (j = 0; j < d; j++) {
            g = dy[j] * (y[j] > 0.0 ? 1.0 : FB_FM_LEAKY_SLOPE); dz[j] = g; db[j] += g;
        }
        break;
    case FB_ACT_ELU:
        for (j = 0; j < d; j++) { g = dy[j] * (y[j] > 0.0 ? 1.0 : y[j] + 1.0); dz[j] = g; db[j] += g; }
        break;
    case FB_ACT_SOFTPLUS:
        for (j = 0; j < d; j++) { g = dy[j] * -fb_expm1_core(-y[j], 0); dz[j] = g; db[j] += g; }
        break;
    case FB_ACT_SILU:
        for (j = 0; j < d; j++) {
            double s = fb_sigmoid_core(z[j], 0);
            g = dy[j] * (s * (1.0 + z[j] * (1.0 - s))); dz[j] = g; db[j] += g;
        }
        break;
    default:
        for (j = 0; j < d; j++) { g = dy[j]; dz[j] = g; db[j] += g; }
        break;
    }
}

/* ==== g' and g'' alone (the derivative passes: fastbp._derivatives) =======
 * G[i] = g'(z_i) from Y (silu: from Z), the same expressions as
 * fb_backward_row; G2[i] = g''(z_i), likewise from Y (silu: Z):
 * sigmoid (1 - 2y) y (1 - y); tanh -2y (1 - y^2); elu (y <= 0) y + 1;
 * softplus s (1 - s), s = sigmoid(z) = -expm1(-y); silu s (1 - s)(2 + z (1 - 2s));
 * identity, relu, leaky relu 0 (relu's kink: 0, almost everywhere).  No fma,
 * as in the backward epilogue. */
FB_INLINE void fb_activation_prime_impl(const double *Y, const double *Z, double *G, int64_t m,
                                           int act, int use_fma)
{
    int64_t i;
    (void)use_fma;
    switch (act) {
    case FB_ACT_SIGMOID: for (i = 0; i < m; i++) G[i] = Y[i] * (1.0 - Y[i]); break;
    case FB_ACT_TANH: for (i = 0; i < m; i++) G[i] = 1.0 - Y[i] * Y[i]; break;
    case FB_ACT_RELU: for (i = 0; i < m; i++) G[i] = Y[i] > 0.0 ? 1.0 : 0.0; break;
    case FB_ACT_LEAKY_RELU:
        for (i = 0; i < m; i++) G[i] = Y[i] > 0.0 ? 1.0 : FB_FM_LEAKY_SLOPE;
        break;
    case FB_ACT_ELU: for (i = 0; i < m; i++) G[i] = Y[i] > 0.0 ? 1.0 : Y[i] + 1.0; break;
    case FB_ACT_SOFTPLUS: for (i = 0; i < m; i++) G[i] = -fb_expm1_core(-Y[i], 0); break;
    case FB_ACT_SILU:
        for (i = 0; i < m; i++) {
            double s = fb_sigmoid_core(Z[i], 0);
            G[i] = s * (1.0 + Z[i] * (1.0 - s));
        }
        break;
    default: for (i = 0; i < m; i++) G[i] = 1.0; break;
    }
}

FB_INLINE void fb_activation_second_impl(const double *Y, const double *Z, double *G2,
                                            int64_t m, int act, int use_fma)
{
    int64_t i;
    (void)use_fma;
    switch (act) {
    case FB_ACT_SIGMOID:
        for (i = 0; i < m; i++) G2[i] = (1.0 - 2.0 * Y[i]) * (Y[i] * (1.0 - Y[i]));
        break;
    case FB_ACT_TANH: for (i = 0; i < m; i++) G2[i] = -2.0 * Y[i] * (1.0 - Y[i] * Y[i]); break;
    case FB_ACT_ELU: for (i = 0; i < m; i++) G2[i] = Y[i] > 0.0 ? 0.0 : Y[i] + 1.0; break;
    case FB_ACT_SOFTPLUS:
        for (i = 0; i < m; i++) {
            double s = -fb_expm1_core(-Y[i], 0);
            G2[i] = s * (1.0 - s);
        }
        break;
    case FB_ACT_SILU:
        for (i = 0; i < m; i++) {
            double s = fb_sigmoid_core(Z[i], 0);
            G2[i] = s * (1.0 - s) * (2.0 + Z[i] * (1.0 - 2.0 * s));
        }
        break;
    default: for (i = 0; i < m; i++) G2[i] = 0.0; break;
    }
}

/* db[j] is added in row order i = 0..n-1 starting from +0.0.  For narrow rows
 * the j loop is short, but nothing here is costly enough to restructure for,
 * and the order of db must stay as it is.  No fma (the use_fma argument is
 * unused): the derivatives are the same bits on every CPU. */
FB_INLINE void fb_backward_epilogue_impl(const double *dY, const double *Y, const double *Z,
                                            double *dZ, double *db, int64_t n, int64_t d, int act,
                                            int use_fma)
{
    (void)use_fma;
    if (d <= 0) return;
    for (int64_t j = 0; j < d; j++) db[j] = 0.0;
    if (n <= 0) return;
    if (dZ == NULL) { /* identity only: db = column sums of dY */
        for (int64_t i = 0; i < n; i++) {
            const double *dy = dY + i * d;
            for (int64_t j = 0; j < d; j++) db[j] += dy[j];
        }
        return;
    }
    for (int64_t i = 0; i < n; i++)
        fb_backward_row(dY + i * d, Y + i * d, Z ? Z + i * d : NULL, dZ + i * d, db, d, act);
}

/* ==== squared error =========================================================
 * Element i is added to accumulator i mod 8 (acc[j] sums elements 8k+j in
 * increasing k, the last m mod 8 elements included); at the end
 * ((a0+a1)+(a2+a3)) + ((a4+a5)+(a6+a7)).  The order is written out, so SSE2
 * (4 x 2 lanes), AVX2 (2 x 4) and AVX-512 (1 x 8) give the same bits.
 * (T-Y)^2 is computed as (Y-T)^2: negation is exact. */
#if defined(__GNUC__)
/* GCC vector extension: the eight lanes are the eight accumulators, lowered
 * to whatever register width the copy has.  aligned(8): loads are unaligned. */
typedef double fb_v8d __attribute__((vector_size(64), aligned(8)));
#endif

FB_INLINE double fb_squared_error_impl(const double *Y, const double *T, double *dY,
                                          int64_t m, double grad_scale, double loss_scale)
{
    double acc[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
    int64_t m8 = m > 0 ? m - m % 8 : 0;
    int64_t i = 0;
#if defined(__GNUC__)
    fb_v8d vacc = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
    for (; i < m8; i += 8) {
        fb_v8d y, t, e;
        memcpy(&y, Y + i, sizeof y);
        memcpy(&t, T + i, sizeof t);
        e = y - t;
        vacc += e * e;
        if (dY) { fb_v8d g = grad_scale * e; memcpy(dY + i, &g, sizeof g); }
    }
    memcpy(acc, &vacc, sizeof acc);
#else
    for (; i < m8; i += 8) {
        for (int j = 0; j < 8; j++) {
            double e = Y[i + j] - T[i + j];
            acc[j] += e * e;
            if (dY) dY[i + j] = grad_scale * e;
        }
    }
#endif
    for (; i < m; i++) { /* tail: element i -> acc[i - m8] */
        double e = Y[i] - T[i];
        acc[i - m8] += e * e;
        if (dY) dY[i] = grad_scale * e;
    }
    double sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    return loss_scale * sum;
}

/* ==== the API: one copy per instruction set, picked per call ================
 * name(params) runs name##_impl(args, use_fma) compiled for the best instruction
 * set the CPU has (the check costs a few ns). */
/* y[i] = exp(x[i]); x may equal y (but must not partially overlap it). */
FB_MULTIVERSION(fb_exp_array, (const double *x, double *y, int64_t m), (x, y, m))

/* y[i] = sigmoid(x[i]); x may equal y. */
FB_MULTIVERSION(fb_sigmoid_array, (const double *x, double *y, int64_t m), (x, y, m))

/* y[i] = tanh(x[i]); x may equal y. */
FB_MULTIVERSION(fb_tanh_array, (const double *x, double *y, int64_t m), (x, y, m))

/* Y[i*d+j] = g(Y[i*d+j] + b[j]) on a row-major n x d block, in place.
 * Z != NULL (silu's backward needs it): Z = Y + b, the pre-activation, too
 * (the same bits of Y either way). */
FB_MULTIVERSION(fb_forward_epilogue,
                   (double *Y, double *Z, const double *b, int64_t n, int64_t d, int act),
                   (Y, Z, b, n, d, act))

/* dZ[i*d+j] = dY[i*d+j] * g'(Y[i*d+j]) (silu: g'(Z[i*d+j]), Z the
 * pre-activation; Z is read for silu only and may be NULL otherwise);
 * db[j] = sum over i of dZ[i*d+j] in row order (deterministic; db is
 * overwritten).  dZ == NULL (identity only): db = column sums of dY.  dZ may
 * equal dY. */
FB_MULTIVERSION(fb_backward_epilogue,
                   (const double *dY, const double *Y, const double *Z, double *dZ, double *db,
                    int64_t n, int64_t d, int act),
                   (dY, Y, Z, dZ, db, n, d, act))

/* G[i] = g'(z_i), G2[i] = g''(z_i), from Y (silu: from Z, which may be NULL
 * otherwise); m elements. */
FB_MULTIVERSION(fb_activation_prime,
                   (const double *Y, const double *Z, double *G, int64_t m, int act),
                   (Y, Z, G, m, act))
FB_MULTIVERSION(fb_activation_second,
                   (const double *Y, const double *Z, double *G2, int64_t m, int act),
                   (Y, Z, G2, m, act))

/* dY[i] = grad_scale * (Y[i] - T[i]);  returns loss_scale * sum (T[i]-Y[i])^2
 * in the fixed order above.  dY may be NULL (loss only) and may equal Y or T. */
#ifdef FB_DISPATCH
FB_AVX512 FB_UNUSED static double fb_squared_error_avx512(
    const double *Y, const double *T, double *dY, int64_t m, double grad_scale, double loss_scale)
{
    return fb_squared_error_impl(Y, T, dY, m, grad_scale, loss_scale);
}
FB_AVX2 FB_UNUSED static double fb_squared_error_avx2(
    const double *Y, const double *T, double *dY, int64_t m, double grad_scale, double loss_scale)
{
    return fb_squared_error_impl(Y, T, dY, m, grad_scale, loss_scale);
}
#endif
FB_UNUSED static double fb_squared_error(const double *Y, const double *T, double *dY,
                                            int64_t m, double grad_scale, double loss_scale)
{
#ifdef FB_DISPATCH
    switch (fb_simd_level()) {
    case 2: return fb_squared_error_avx512(Y, T, dY, m, grad_scale, loss_scale);
    case 1: return fb_squared_error_avx2(Y, T, dY, m, grad_scale, loss_scale);
    default: break;
    }
#endif
    return fb_squared_error_impl(Y, T, dY, m, grad_scale, loss_scale);
}

FB_FP_END

#undef FB_FM_SHIFTER
#undef FB_FM_LOG2E
#undef FB_FM_LN2_HI
#undef FB_FM_LN2_LO
#undef FB_FM_EXPONENT_ONE
#undef FB_FM_ARRAY_LOOPS
#undef FB_FM_WIDE_ROW
#undef FB_FM_BLOCK
#undef FB_FM_LEAKY_SLOPE

#endif /* FASTBP_FASTMATH_H */
