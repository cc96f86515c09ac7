/* _fastmath.h -- vectorisable float64 activations and fused epilogues for fastbp.
 *
 * Included by _kernels.pyx; every function here runs without the GIL and
 * touches no Python API and no global state.
 *
 * Why a header of our own: libm's exp/tanh are scalar calls (about 4 ns per
 * element), and an activation over a GEMM output is then slower than the GEMM
 * itself for narrow layers.  The functions below are written branch-free so
 * that GCC's loop vectoriser turns them into SSE2 / AVX2 / AVX-512 code, and
 * GCC function multiversioning (target_clones) puts all three in one binary,
 * chosen once at load time from the CPU (the wheel keeps its x86-64 baseline).
 *
 * Accuracy (checked by benchmarks/fastmath_check.py against NumPy and against
 * mpmath): exp, sigmoid and tanh are within about 1 ulp for every double;
 * exp gives exact 0 / subnormal / +inf limits; NaN in gives NaN out.
 *
 * Reproducibility: floating-point contraction (a*b+c -> fma) is switched off
 * for this header, so every ISA variant performs the same IEEE operations in
 * the same order and returns the same bits.  Reductions (db, squared error)
 * use a fixed summation order that does not depend on the vector width.
 */
#ifndef FASTBP_FASTMATH_H
#define FASTBP_FASTMATH_H

#include <math.h>   /* fabs, copysign: compiled inline as bit operations */
#include <stddef.h>
#include <stdint.h>
#include <string.h> /* memcpy for bit casts */

enum { FB_IDENTITY = 0, FB_SIGMOID = 1, FB_TANH = 2, FB_RELU = 3 };

/* ---- compiler plumbing ------------------------------------------------- */

/* One binary, three code paths: AVX-512, AVX2(+FMA, x86-64-v3), SSE2.
 * ifunc dispatch needs GCC on x86-64 ELF/glibc; elsewhere plain functions.
 * Define FB_NO_CLONES to build a single variant (used by the check script to
 * compare the variants against each other). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && \
    defined(__linux__) && !defined(FB_NO_CLONES)
#define FB_CLONES __attribute__((target_clones("avx512f", "arch=x86-64-v3", "default")))
#else
#define FB_CLONES
#endif

#if defined(__GNUC__)
#define FB_INLINE static inline __attribute__((always_inline))
#define FB_UNUSED __attribute__((unused))
#else
#define FB_INLINE static inline
#define FB_UNUSED
#endif

/* Two local code-generation options, neither of which changes a result:
 * - fp-contract=off: no a*b+c -> fma contraction.  The AVX2/AVX-512 clones
 *   would otherwise round differently from the SSE2 clone, and a loss or a
 *   bias gradient would depend on the machine.  (GCC's default in GNU C mode
 *   is to contract.)
 * - no-trapping-math: lets GCC compute both arms of a select and blend them.
 *   Without it GCC threads the exp clamps and the tanh branch select into
 *   real branches, which it then may not if-convert (the arms could raise FP
 *   flags), and the loops stay scalar on SSE2/AVX2.  Values, NaN and signed
 *   zeros are unaffected; only FP exception flags may differ, and nothing
 *   here reads them. */
#if defined(__clang__)
#define FB_NO_CONTRACT _Pragma("clang fp contract(off)")
#else
#define FB_NO_CONTRACT
#endif
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off", "no-trapping-math")
#endif

#if defined(__cplusplus)
#define FB_RESTRICT __restrict__
#else
#define FB_RESTRICT restrict
#endif

FB_INLINE uint64_t fb_bits(double x) { uint64_t u; memcpy(&u, &x, sizeof u); return u; }
FB_INLINE double fb_double(uint64_t u) { double x; memcpy(&x, &u, sizeof x); return x; }

/* ---- exp ----------------------------------------------------------------
 * exp(x) = 2^k * exp(r),  k = round(x / ln2),  r = x - k ln2,  |r| <= ln2/2.
 *
 * - Clamp x to [-746, 710] first (NaN passes through the comparisons): below
 *   -746 exp rounds to 0, above 710 to +inf, and the clamp keeps k within
 *   [-1076, 1024] so no integer below can overflow.
 * - k by the "shifter" trick: adding 0x1.8p52 = 1.5 * 2^52 rounds x/ln2 to an
 *   integer (the ulp of numbers in [2^52, 2^53) is 1) and leaves k in the low
 *   mantissa bits, so k never goes through a slow double -> int64 conversion.
 * - r by Cody-Waite: ln2 = LN2_HI + LN2_LO with LN2_HI having 32 significant
 *   bits, so k * LN2_HI is exact for |k| < 2^21 and x - k*LN2_HI is exact.
 * - exp(r) = 1 + r + r^2 Q(r), Q a degree-9 polynomial: a Chebyshev
 *   interpolant of (exp(r)-1-r)/r^2 on |r| <= 0.3467 (fitted with mpmath),
 *   approximation error < 0.11 ulp.  Summing 1 + (r + r^2 Q) last keeps the
 *   rounding error below about 0.6 ulp.
 * - 2^k is applied in two steps, 2^k1 * 2^k2 with k1 = round(k/2): both
 *   factors are normal doubles for every k in [-1076, 1024], p * 2^k1 is exact,
 *   and the one rounding happens in the last product, so subnormal results are
 *   rounded once (correctly from p) and overflow gives +inf, with no branch. */
#define FB_SHIFTER 0x1.8p52
#define FB_LOG2E 0x1.71547652b82fep0        /* 1/ln2 */
#define FB_LN2_HI 0x1.62e42fee00000p-1      /* ln2, top 32 bits */
#define FB_LN2_LO 0x1.a39ef35793c76p-33     /* ln2 - FB_LN2_HI */
#define FB_EXP_ONE_BITS 0x3ff0000000000000ULL  /* bits of 1.0: exponent bias 1023 */

FB_INLINE double fb_exp_core(double x)
{
    FB_NO_CONTRACT
    x = x > 710.0 ? 710.0 : x;
    x = x < -746.0 ? -746.0 : x;

    double t = x * FB_LOG2E + FB_SHIFTER;   /* bits(t) = bits(1.5*2^52) + k */
    double k = t - FB_SHIFTER;
    double r = (x - k * FB_LN2_HI) - k * FB_LN2_LO;

    double q = 0x1.af38c67fbb53ep-26;
    q = q * r + 0x1.28919ccaf9211p-22;
    q = q * r + 0x1.71de0da24602dp-19;
    q = q * r + 0x1.a019b8f9792eep-16;
    q = q * r + 0x1.a01a01a7c73c0p-13;
    q = q * r + 0x1.6c16c17890eb4p-10;
    q = q * r + 0x1.11111111109afp-7;
    q = q * r + 0x1.5555555553d56p-5;
    q = q * r + 0x1.5555555555556p-3;
    q = q * r + 0x1.0000000000001p-1;
    double p = 1.0 + (r + (r * r) * q);     /* exp(r), in [0.7, 1.42] */

    /* k1 = round(k/2) by the same trick; k2 = k - k1 from the integer bits.
     * Shifting left by 52 drops the shifter's bits (they vanish mod 2^64), so
     * (bits << 52) + bits(1.0) is the double 2^k1. */
    double t1 = k * 0.5 + FB_SHIFTER;
    uint64_t k_bits = fb_bits(t), k1_bits = fb_bits(t1);
    double two_k1 = fb_double((k1_bits << 52) + FB_EXP_ONE_BITS);
    double two_k2 = fb_double(((k_bits - k1_bits) << 52) + FB_EXP_ONE_BITS);
    return (p * two_k1) * two_k2;
}

/* ---- sigmoid --------------------------------------------------------------
 * The stable form, exactly as the NumPy reference writes it:
 *   e = exp(-|z|);  s = z >= 0 ? 1/(1+e) : e/(1+e).
 * e is in [0, 1], so nothing overflows even for |z| = 1e308 or inf; NaN gives
 * NaN.  Selecting the numerator first costs one division instead of two and
 * gives the same bits. */
FB_INLINE double fb_sigmoid_core(double z)
{
    FB_NO_CONTRACT
    double e = fb_exp_core(-fabs(z));
    return (z >= 0.0 ? 1.0 : e) / (1.0 + e);
}

/* ---- tanh ---------------------------------------------------------------
 * Cephes-style split on a = |x|, sign restored at the end (so tanh(-0) = -0):
 * - a < 0.625: tanh(a) = a + a z R(z), z = a^2, R a degree-11 polynomial: a
 *   Chebyshev interpolant of (tanh(a) - a)/a^3 on z in [0, 0.390625] (fitted
 *   with mpmath), approximation error < 0.06 ulp of tanh.
 * - a >= 0.625: tanh(a) = 1 - 2/(exp(2a) + 1).  a is clamped to 22 first:
 *   2/(exp(44)+1) < 2^-60, so the result is exactly 1 from there on and
 *   exp(2a) never overflows (no inf/inf for a = 1e308 or inf).
 * Both branches are computed and one is selected (branch-free, vectorises);
 * the polynomial branch is fed min(a, 0.625) so it never sees huge values. */
FB_INLINE double fb_tanh_core(double x)
{
    FB_NO_CONTRACT
    double a = fabs(x);

    double as = a < 0.625 ? a : 0.625;
    double z = as * as;
    double R = 0x1.b33642a122cddp-18;
    R = R * z - 0x1.05bbdae896297p-15;
    R = R * z + 0x1.8445870f6fe41p-14;
    R = R * z - 0x1.f243823c8c981p-13;
    R = R * z + 0x1.3526e9ed54da1p-11;
    R = R * z - 0x1.7d9f6f23e8682p-10;
    R = R * z + 0x1.d6d39ae3905e2p-9;
    R = R * z - 0x1.226e3473dce5cp-7;
    R = R * z + 0x1.664f487e0a749p-6;
    R = R * z - 0x1.ba1ba1ba0f126p-5;
    R = R * z + 0x1.11111111110a8p-3;
    R = R * z - 0x1.5555555555555p-2;
    double small = as + as * (z * R);

    double al = a > 22.0 ? 22.0 : a;        /* NaN passes through */
    double large = 1.0 - 2.0 / (fb_exp_core(al + al) + 1.0);

    return copysign(a < 0.625 ? small : large, x);
}

/* Derivatives from the activation OUTPUT y (the forward pass keeps only Y).
 * relu' = (y > 0): NaN gives factor 0; the caller multiplies (never selects),
 * so NaN/Inf in dY still give NaN, as dY * (Y > 0) does in NumPy. */
FB_INLINE double fb_relu(double z) { return z < 0.0 ? 0.0 : z; } /* NaN stays NaN, like np.maximum */

/* ---- elementwise array loops ---------------------------------------------
 * Written as separate in-place and out-of-place loops so that the
 * out-of-place one can promise no aliasing (restrict) and the in-place one
 * needs no runtime alias check. */
#define FB_DEFINE_ARRAY_LOOPS(name, core)                                        \
    FB_INLINE void name##_inplace(double *y, int64_t m)                          \
    {                                                                            \
        for (int64_t i = 0; i < m; i++) y[i] = core(y[i]);                       \
    }                                                                            \
    FB_INLINE void name##_copy(const double *FB_RESTRICT x, double *FB_RESTRICT y, \
                               int64_t m)                                        \
    {                                                                            \
        for (int64_t i = 0; i < m; i++) y[i] = core(x[i]);                       \
    }                                                                            \
    FB_INLINE void name##_loop(const double *x, double *y, int64_t m)            \
    {                                                                            \
        if (x == y) name##_inplace(y, m);                                        \
        else name##_copy(x, y, m);                                               \
    }

FB_DEFINE_ARRAY_LOOPS(fb_exp, fb_exp_core)
FB_DEFINE_ARRAY_LOOPS(fb_sigmoid, fb_sigmoid_core)
FB_DEFINE_ARRAY_LOOPS(fb_tanh, fb_tanh_core)
#undef FB_DEFINE_ARRAY_LOOPS

/* y[i] = exp(x[i]); x may equal y (but must not partially overlap it). */
FB_CLONES FB_UNUSED static void fb_exp_array(const double *x, double *y, int64_t m)
{
    fb_exp_loop(x, y, m);
}

/* y[i] = sigmoid(x[i]); x may equal y. */
FB_CLONES FB_UNUSED static void fb_sigmoid_array(const double *x, double *y, int64_t m)
{
    fb_sigmoid_loop(x, y, m);
}

/* y[i] = tanh(x[i]); x may equal y. */
FB_CLONES FB_UNUSED static void fb_tanh_array(const double *x, double *y, int64_t m)
{
    fb_tanh_loop(x, y, m);
}

/* ---- fused epilogues -----------------------------------------------------
 * Rows of at least FB_WIDE_ROW elements are handled one row at a time with
 * the whole epilogue in one loop over j (that loop vectorises across j).
 * Narrower rows (a d = 1 output layer, say) would leave the vector loop
 * nearly empty, so they are handled in blocks of about FB_BLOCK elements that
 * stay in L1: first the per-row step, then the elementwise step over the
 * block as one contiguous array.  Either way memory is traversed once. */
#define FB_WIDE_ROW 32
#define FB_BLOCK 512

/* y[j] = g(y[j] + b[j]) for one row (fused, vectorises across j). */
FB_INLINE void fb_forward_row(double *FB_RESTRICT y, const double *FB_RESTRICT b,
                              int64_t d, int act)
{
    FB_NO_CONTRACT
    int64_t j;
    switch (act) {
    case FB_SIGMOID: for (j = 0; j < d; j++) y[j] = fb_sigmoid_core(y[j] + b[j]); break;
    case FB_TANH:    for (j = 0; j < d; j++) y[j] = fb_tanh_core(y[j] + b[j]); break;
    case FB_RELU:    for (j = 0; j < d; j++) y[j] = fb_relu(y[j] + b[j]); break;
    default:         for (j = 0; j < d; j++) y[j] = y[j] + b[j]; break;
    }
}

/* Y[i*d+j] = g(Y[i*d+j] + b[j]) on a row-major n x d block, in place. */
FB_CLONES FB_UNUSED static void fb_forward_epilogue(double *Y, const double *b, int64_t n,
                                                    int64_t d, int act)
{
    FB_NO_CONTRACT
    if (n <= 0 || d <= 0) return;
    if (d >= FB_WIDE_ROW || act == FB_IDENTITY || act == FB_RELU) {
        /* identity and relu are cheap enough per element to stay fused */
        for (int64_t i = 0; i < n; i++) fb_forward_row(Y + i * d, b, d, act);
        return;
    }
    int64_t rows = FB_BLOCK / d;            /* d < FB_WIDE_ROW, so rows >= 16 */
    for (int64_t i0 = 0; i0 < n; i0 += rows) {
        int64_t nr = n - i0 < rows ? n - i0 : rows;
        double *blk = Y + i0 * d;
        for (int64_t i = 0; i < nr; i++) fb_forward_row(blk + i * d, b, d, FB_IDENTITY);
        if (act == FB_SIGMOID) fb_sigmoid_inplace(blk, nr * d);
        else fb_tanh_inplace(blk, nr * d);
    }
}

/* dZ = dY * g'(Y) for one row, db += dZ (fused, vectorises across j).
 * db must not alias the other arrays; dZ may equal dY (in place). */
FB_INLINE void fb_backward_row(const double *dy, const double *y, double *dz,
                               double *FB_RESTRICT db, int64_t d, int act)
{
    FB_NO_CONTRACT
    int64_t j;
    double g;
    switch (act) {
    case FB_SIGMOID:
        for (j = 0; j < d; j++) { g = dy[j] * (y[j] * (1.0 - y[j])); dz[j] = g; db[j] += g; }
        break;
    case FB_TANH:
        for (j = 0; j < d; j++) { g = dy[j] * (1.0 - y[j] * y[j]); dz[j] = g; db[j] += g; }
        break;
    case FB_RELU:
        for (j = 0; j < d; j++) { g = dy[j] * (y[j] > 0.0 ? 1.0 : 0.0); dz[j] = g; db[j] += g; }
        break;
    default:
        for (j = 0; j < d; j++) { g = dy[j]; dz[j] = g; db[j] += g; }
        break;
    }
}

/* dZ[i*d+j] = dY[i*d+j] * g'(Y[i*d+j]);  db[j] = sum_i dZ[i*d+j], added in
 * row order i = 0..n-1 starting from +0.0 (deterministic, db overwritten).
 * dZ == NULL (identity only): db = column sums of dY, same order. */
FB_CLONES FB_UNUSED static void fb_backward_epilogue(const double *dY, const double *Y,
                                                     double *dZ, double *db, int64_t n,
                                                     int64_t d, int act)
{
    FB_NO_CONTRACT
    if (d <= 0) return;
    for (int64_t j = 0; j < d; j++) db[j] = 0.0;
    if (n <= 0) return;
    if (dZ == NULL) {
        for (int64_t i = 0; i < n; i++) {
            const double *dy = dY + i * d;
            for (int64_t j = 0; j < d; j++) db[j] += dy[j];
        }
        return;
    }
    /* Narrow rows: the per-row j loop is too short to vectorise, and there is
     * nothing expensive to vectorise anyway; the fixed order of db is kept. */
    for (int64_t i = 0; i < n; i++)
        fb_backward_row(dY + i * d, Y + i * d, dZ + i * d, db, d, act);
}

/* ---- squared error -------------------------------------------------------
 * dY[i] = grad_scale * (Y[i] - T[i]);  returns loss_scale * sum (T[i]-Y[i])^2.
 * Element i is added to accumulator i mod 8 (acc[j] sums elements 8k+j in
 * increasing k); at the end ((a0+a1)+(a2+a3)) + ((a4+a5)+(a6+a7)).  That
 * order is written out explicitly, so SSE2 (4 x 2 lanes), AVX2 (2 x 4) and
 * AVX-512 (1 x 8) all produce the same bits.  dY may be NULL (loss only) and
 * may equal Y or T (in place). */
#if defined(__GNUC__)
typedef double fb_v8d __attribute__((vector_size(64), aligned(8)));
#endif

FB_CLONES FB_UNUSED static double fb_squared_error(const double *Y, const double *T, double *dY,
                                                   int64_t m, double grad_scale,
                                                   double loss_scale)
{
    FB_NO_CONTRACT
    double acc[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
    int64_t m8 = m > 0 ? m - m % 8 : 0;
    int64_t i = 0;
#if defined(__GNUC__)
    /* GCC vector extension: eight lanes = the eight accumulators, lowered to
     * whatever register width the clone has. */
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
    for (; i < m; i++) {                    /* tail: element i -> acc[i - m8] */
        double e = Y[i] - T[i];
        acc[i - m8] += e * e;
        if (dY) dY[i] = grad_scale * e;
    }
    double sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    return loss_scale * sum;
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

#endif /* FASTBP_FASTMATH_H */
