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

static int (*fb_blas_num_threads)(void) = NULL;
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
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        void *f = dlsym(lib, names[i]);
        if (f != NULL) {
            *(void **)&fb_blas_num_threads = f;
            break;
        }
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

#endif /* FASTBP_BLASINFO_H */
