/* _blasinfo.h -- how many threads the BLAS behind fastbp's dgemm may use now.
 *
 * OpenBLAS threads a product above 2^18 multiply-adds, except the ones its
 * small-matrix kernels take, which run on the calling thread; so which form
 * of C = A Bᵀ is fastest depends on the thread count (see matmul_abt_kernel).
 * The count is asked of the library that holds the dgemm in use, through its
 * own query (the names OpenBLAS has as SciPy and NumPy bundle it, and as
 * built); it follows threadpoolctl, OPENBLAS_NUM_THREADS and
 * openblas_set_num_threads.  A BLAS without such a query counts as one
 * thread.
 */
#ifndef FASTBP_BLASINFO_H
#define FASTBP_BLASINFO_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* dladdr */
#endif
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
#include <strings.h>

static int (*fb_blas_num_threads)(void) = NULL;
static int fb_blas_small = 0; /* products <= 10^6 madds run on the calling thread */
static void *fb_blas_dgemm = NULL;
static pthread_once_t fb_blas_once = PTHREAD_ONCE_INIT;

static void fb_blas_find_query(void)
{
    static const char *names[] = {"scipy_openblas_get_num_threads", "openblas_get_num_threads",
                                  "scipy_openblas_get_num_threads64_",
                                  "openblas_get_num_threads64_"};
    Dl_info info;
    void *lib;
    if (fb_blas_dgemm == NULL || !dladdr(fb_blas_dgemm, &info) || info.dli_fname == NULL)
        return;
    lib = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
    if (lib == NULL) return;
    static const char *core_names[] = {"scipy_openblas_get_corename", "openblas_get_corename",
                                       "scipy_openblas_get_corename64_",
                                       "openblas_get_corename64_"};
    /* OpenBLAS's dgemm small-matrix kernels (no packing, never threaded) are
     * those of these x86 cores (KERNEL.SKYLAKEX and the files that include it) */
    static const char *small_cores[] = {"SkylakeX", "Cooperlake", "SapphireRapids"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        void *f = dlsym(lib, names[i]);
        if (f != NULL) {
            *(void **)&fb_blas_num_threads = f;
            break;
        }
    }
    for (size_t i = 0; i < sizeof core_names / sizeof core_names[0]; i++) {
        char *(*corename)(void);
        *(void **)&corename = dlsym(lib, core_names[i]);
        if (corename == NULL) continue;
        const char *core = corename();
        for (size_t j = 0; core != NULL && j < sizeof small_cores / sizeof small_cores[0]; j++)
            if (strcasecmp(core, small_cores[j]) == 0) fb_blas_small = 1;
        break;
    }
    dlclose(lib); /* the library stays loaded: it is the BLAS in use */
}

/* dgemm: the BLAS routine fastbp calls (the same pointer on every call). */
static int fb_blas_threads(void *dgemm)
{
    fb_blas_dgemm = dgemm;
    pthread_once(&fb_blas_once, fb_blas_find_query);
    return fb_blas_num_threads != NULL ? fb_blas_num_threads() : 1;
}

/* Whether this BLAS runs every product of at most 10^6 multiply-adds on the
 * calling thread (OpenBLAS with small-matrix kernels); otherwise only those
 * of at most 2^18 are sure to. */
static inline int fb_blas_small_kernels(void *dgemm)
{
    fb_blas_dgemm = dgemm;
    pthread_once(&fb_blas_once, fb_blas_find_query);
    return fb_blas_small;
}

#endif /* FASTBP_BLASINFO_H */
