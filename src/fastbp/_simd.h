/* _simd.h -- compiler plumbing shared by fastbp's vectorised C headers
 * (_fastmath.h: activations and epilogues; _update.h: optimiser loops).
 *
 * - FB_MULTIVERSION(name, params, args) compiles name##_impl three times on
 *   x86-64 with GCC or clang -- AVX-512, AVX2 + FMA, baseline SSE2 -- and
 *   defines name(params), which runs the best copy the CPU has (a few ns to
 *   choose).  name##_impl takes the arguments plus a last int use_fma:
 *   1 in the AVX copies, 0 in SSE2 (which has no fma hardware).
 *   -DFASTBP_NO_CLONES builds one copy for the compiler's target instead.
 * - FB_FP_BEGIN / FB_FP_END bracket the code whose floating-point code
 *   generation is pinned down (see below).  Values do not depend on them
 *   except through fp-contract, which is off precisely so that they don't.
 */
#ifndef FASTBP_SIMD_H
#define FASTBP_SIMD_H

#if defined(__GNUC__)
#define FB_INLINE static inline __attribute__((always_inline))
#define FB_UNUSED __attribute__((unused))
#else
#define FB_INLINE static inline
#define FB_UNUSED
#endif

#if defined(__cplusplus)
#define FB_RESTRICT __restrict__
#else
#define FB_RESTRICT restrict
#endif

#if defined(__GNUC__) && defined(__x86_64__) && !defined(FASTBP_NO_CLONES)
#define FB_DISPATCH 1
#define FB_AVX512 __attribute__((target("avx512f,avx2,fma")))
#define FB_AVX2 __attribute__((target("avx2,fma")))
#endif
#if defined(__FP_FAST_FMA)
#define FB_HAVE_FMA 1 /* single-copy build for a target with fma */
#else
#define FB_HAVE_FMA 0
#endif

/* Which copy runs here: 2 AVX-512F, 1 AVX2 + FMA, 0 baseline (or no
 * dispatch on this platform), from the CPU description the compiler's
 * runtime library keeps. */
FB_UNUSED static int fb_simd_level(void)
{
#ifdef FB_DISPATCH
    __builtin_cpu_init(); /* returns at once once done */
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return __builtin_cpu_supports("avx512f") ? 2 : 1;
#endif
    return 0;
}

#define FB_ARGS(...) __VA_ARGS__
#ifdef FB_DISPATCH
#define FB_MULTIVERSION(name, params, args)                                    \
    FB_AVX512 FB_UNUSED static void name##_avx512 params                       \
    {                                                                          \
        name##_impl(FB_ARGS args, 1);                                          \
    }                                                                          \
    FB_AVX2 FB_UNUSED static void name##_avx2 params                           \
    {                                                                          \
        name##_impl(FB_ARGS args, 1);                                          \
    }                                                                          \
    FB_UNUSED static void name##_sse2 params { name##_impl(FB_ARGS args, 0); } \
    FB_UNUSED static void name params                                          \
    {                                                                          \
        switch (fb_simd_level()) {                                             \
        case 2: name##_avx512 args; break;                                     \
        case 1: name##_avx2 args; break;                                       \
        default: name##_sse2 args; break;                                      \
        }                                                                      \
    }
#else
#define FB_MULTIVERSION(name, params, args) \
    FB_UNUSED static void name params { name##_impl(FB_ARGS args, FB_HAVE_FMA); }
#endif

/* Code generation between FB_FP_BEGIN and FB_FP_END:
 * - fp-contract=off: no a*b+c -> fma by the compiler.  GCC contracts some
 *   loops and not others (the vector epilogue of an AVX-512 loop, say), which
 *   made an element's bits depend on its position; fma is used only where
 *   the code asks for it.
 * - no-trapping-math: lets GCC compute both arms of a select and blend them.
 *   Without it GCC turns clamps and selects into real branches that it may
 *   not if-convert (an arm could raise an FP flag), and loops stay scalar on
 *   SSE2/AVX2.  Only FP exception flags may differ; nothing here reads them.
 * - no-math-errno: sqrt is the bare instruction, which vectorises (GCC
 *   settles a builtin's errno behaviour per file, so setup.py passes
 *   -fno-math-errno as well).
 * - tree-vectorize with the dynamic cost model: the loops vectorise at -O2
 *   too (GCC 12's -O2 cost model would reject them), not only at -O3. */
#if defined(__clang__)
#define FB_FP_BEGIN _Pragma("float_control(push)") _Pragma("clang fp contract(off)")
#define FB_FP_END _Pragma("float_control(pop)")
#elif defined(__GNUC__)
/* (one string literal: _Pragma does not join adjacent ones) */
#define FB_FP_BEGIN \
    _Pragma("GCC push_options") \
    _Pragma("GCC optimize(\"fp-contract=off\", \"no-trapping-math\", \"no-math-errno\", \"tree-vectorize\", \"vect-cost-model=dynamic\")")
#define FB_FP_END _Pragma("GCC pop_options")
#else
#define FB_FP_BEGIN
#define FB_FP_END
#endif

#endif /* FASTBP_SIMD_H */
