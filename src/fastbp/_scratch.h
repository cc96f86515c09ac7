/* Per-thread scratch memory for the kernels' temporaries (slot 0: δZ in the
 * dense backward pass; slot 1: a transposed GEMM operand).
 *
 * Each thread keeps one grow-only buffer per slot, freed when the thread exits, so a
 * steady training loop allocates nothing, and threads calling kernels at the
 * same time never share a temporary.  Returns NULL when memory runs out. */
#ifndef FASTBP_SCRATCH_H
#define FASTBP_SCRATCH_H

#include <pthread.h>
#include <stdlib.h>

enum { FB_SCRATCH_SLOTS = 2 };
typedef struct { double *data[FB_SCRATCH_SLOTS]; size_t size[FB_SCRATCH_SLOTS]; } fb_scratch_buf;

static pthread_key_t fb_scratch_key;
static pthread_once_t fb_scratch_once = PTHREAD_ONCE_INIT;

static void fb_scratch_release(void *p)
{
    fb_scratch_buf *buf = (fb_scratch_buf *)p;
    for (int s = 0; s < FB_SCRATCH_SLOTS; s++) free(buf->data[s]);
    free(buf);
}

static void fb_scratch_make_key(void)
{
    (void)pthread_key_create(&fb_scratch_key, fb_scratch_release);
}

/* At least n doubles (n >= 1) owned by the calling thread, valid until its
 * next call of fb_scratch_slot with the same slot (0 <= slot < FB_SCRATCH_SLOTS). */
static double *fb_scratch_slot(int slot, size_t n)
{
    fb_scratch_buf *buf;
    if (n == 0) n = 1;
    pthread_once(&fb_scratch_once, fb_scratch_make_key);
    buf = (fb_scratch_buf *)pthread_getspecific(fb_scratch_key);
    if (buf == NULL) {
        buf = (fb_scratch_buf *)calloc(1, sizeof *buf);
        if (buf == NULL) return NULL;
        if (pthread_setspecific(fb_scratch_key, buf) != 0) { free(buf); return NULL; }
    }
    if (buf->size[slot] < n) {
        free(buf->data[slot]);
        buf->data[slot] = (double *)malloc(n * sizeof(double));
        buf->size[slot] = buf->data[slot] ? n : 0;
    }
    return buf->data[slot];
}

static double *fb_scratch(size_t n) { return fb_scratch_slot(0, n); }

#endif
