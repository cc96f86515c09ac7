/* Small-matrix GEMM path, row-major, for products too small for the BLAS
 * call overhead to pay off (a benchmark sets the threshold in _kernels.pyx).
 *
 * Every loop is written in "axpy" form: the innermost loop runs along a
 * contiguous output row, so the compiler vectorises it without reassociating
 * any sum (no -ffast-math), and every C[i, j] is summed in the fixed order
 * p = 0, 1, ..., K-1: results are deterministic.
 *
 * Compiled three times (AVX-512, AVX2+FMA, SSE2) and picked at load time, so
 * the wheel runs on any x86-64 and still uses the wide vectors where they
 * exist. */
#ifndef FASTBP_SMALLGEMM_H
#define FASTBP_SMALLGEMM_H

#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && !defined(FASTBP_NO_CLONES)
#define FB_CLONES __attribute__((target_clones("avx512f", "arch=x86-64-v3", "default")))
#else
#define FB_CLONES
#endif

/* C (m×n) = A (m×k) · Bt (k×n), where Bt is B already transposed to k×n. */
FB_CLONES static void fb_small_nn(const double *restrict A, const double *restrict Bt,
                                  double *restrict C, int64_t m, int64_t n, int64_t k)
{
    for (int64_t i = 0; i < m; i++) {
        double *restrict c = C + i * n;
        const double *restrict a = A + i * k;
        if (k == 0) { memset(c, 0, (size_t)n * sizeof(double)); continue; }
        for (int64_t j = 0; j < n; j++) c[j] = a[0] * Bt[j];
        for (int64_t p = 1; p < k; p++) {
            const double ap = a[p];
            const double *restrict b = Bt + p * n;
            for (int64_t j = 0; j < n; j++) c[j] += ap * b[j];
        }
    }
}

/* C (m×n) = Aᵀ · B with A (k×m) and B (k×n): row j of C gathers
 * Σ_p A[p, j] B[p, :], again in the order p = 0..k-1. */
FB_CLONES static void fb_small_tn(const double *restrict A, const double *restrict B,
                                  double *restrict C, int64_t m, int64_t n, int64_t k)
{
    if (k == 0) { memset(C, 0, (size_t)(m * n) * sizeof(double)); return; }
    for (int64_t j = 0; j < m; j++) {
        const double a0 = A[j];
        for (int64_t q = 0; q < n; q++) C[j * n + q] = a0 * B[q];
    }
    for (int64_t p = 1; p < k; p++) {
        const double *restrict a = A + p * m;
        const double *restrict b = B + p * n;
        for (int64_t j = 0; j < m; j++) {
            const double ap = a[j];
            double *restrict c = C + j * n;
            for (int64_t q = 0; q < n; q++) c[q] += ap * b[q];
        }
    }
}

/* Bt (k×n) = B (n×k) transposed. */
static void fb_transpose(const double *restrict B, double *restrict Bt, int64_t n, int64_t k)
{
    for (int64_t j = 0; j < n; j++)
        for (int64_t p = 0; p < k; p++)
            Bt[p * n + j] = B[j * k + p];
}

#endif
