/* _team.h -- a second thread for the batches OpenBLAS leaves on one core.
 *
 * OpenBLAS runs every product under 2^18 multiply-adds on the calling thread
 * (and, on AVX-512 cores, every one under 10^6 that its small-matrix kernels
 * take), so a small network's whole training step uses one core of a machine
 * that has more.  The network step splits such a batch in two parts and runs
 * part 1 on one helper thread while the caller runs part 0 (see
 * NetworkCore._plan), then the update the same way, half of the parameters
 * each.  Each part writes only its own buffers, so the result does not
 * depend on which thread ran part 1.
 *
 * - The helper is started on first use and spins for FB_TEAM_SPIN_NS after
 *   each task (250 µs: a wake-up through the kernel costs more than a task), then
 *   sleeps on a condition variable.
 * - Whoever comes first takes part 1: a caller done with part 0 before the
 *   helper picked part 1 up (no free core, or the helper asleep) runs it
 *   itself, so a loaded machine costs the serial time, not a wait.
 * - One caller at a time: a caller that finds the helper busy (another
 *   Python thread inside a step) runs both parts itself.
 * - Width 2 only while the BLAS may use more than one thread: limiting the
 *   BLAS to one thread (fastbp.threadpool_limits(1), threadpoolctl,
 *   OPENBLAS_NUM_THREADS=1) keeps all of fastbp on the calling thread, and
 *   FASTBP_NO_TEAM=1 in the environment turns the helper off.
 * - After fork() the child has no helper; it starts a new one when needed.
 */
#ifndef FASTBP_TEAM_H
#define FASTBP_TEAM_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* sched_getaffinity */
#endif
#include "_blasinfo.h"
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>

typedef void (*fb_task_fn)(void *arg, int part);

#define FB_TEAM_SPIN_NS 250000L

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int state;            /* 0 not started, 1 running, -1 unavailable */
    int sleeping;         /* the helper waits on `wake` */
    unsigned long posted; /* tasks posted; the helper runs each once */
    unsigned long claimed; /* the last task someone took (helper or caller) */
    unsigned long done;   /* the last task the helper finished */
    int busy;             /* a caller owns the helper */
    fb_task_fn fn;
    void *arg;
} fb_team = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, 0, 0, NULL, NULL};

/* Take task p (exactly one of the helper and the caller gets it). */
static inline int fb_team_claim(unsigned long p)
{
    unsigned long expected = p - 1;
    return __atomic_compare_exchange_n(&fb_team.claimed, &expected, p, 0, __ATOMIC_ACQ_REL,
                                       __ATOMIC_ACQUIRE);
}

static int fb_team_cpus = 0;

static inline void fb_team_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static long fb_team_now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

static void *fb_team_main(void *unused)
{
    unsigned long seen = 0, p;
    (void)unused;
    for (;;) {
        long start = fb_team_now_ns();
        int spins = 0;
        while ((p = __atomic_load_n(&fb_team.posted, __ATOMIC_SEQ_CST)) == seen) {
            /* spin, but yield now and then: OpenBLAS's own workers (which
             * yield too) may need this core more than we do */
            if (++spins % 64) { fb_team_relax(); continue; }
            sched_yield();
            if (fb_team_now_ns() - start < FB_TEAM_SPIN_NS) continue;
            pthread_mutex_lock(&fb_team.lock);
            __atomic_store_n(&fb_team.sleeping, 1, __ATOMIC_SEQ_CST);
            while (__atomic_load_n(&fb_team.posted, __ATOMIC_SEQ_CST) == seen)
                pthread_cond_wait(&fb_team.wake, &fb_team.lock);
            __atomic_store_n(&fb_team.sleeping, 0, __ATOMIC_SEQ_CST);
            pthread_mutex_unlock(&fb_team.lock);
            start = fb_team_now_ns();
        }
        seen = p;
        if (fb_team_claim(p)) {
            fb_team.fn(fb_team.arg, 1);
            __atomic_store_n(&fb_team.done, p, __ATOMIC_RELEASE);
        }
    }
    return NULL;
}

/* In a child after fork(): the helper did not come along. */
static void fb_team_after_fork(void)
{
    pthread_mutex_init(&fb_team.lock, NULL);
    pthread_cond_init(&fb_team.wake, NULL);
    fb_team.state = 0;
    fb_team.sleeping = 0;
    fb_team.posted = fb_team.claimed = fb_team.done = 0;
    fb_team.busy = 0;
}

static pthread_once_t fb_team_once = PTHREAD_ONCE_INIT;

static void fb_team_init(void)
{
    cpu_set_t set;
    const char *off = getenv("FASTBP_NO_TEAM");
    if (off != NULL && off[0] != '\0' && off[0] != '0') {
        fb_team.state = -1;
        return;
    }
    fb_team_cpus = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
    if (fb_team_cpus < 2) fb_team.state = -1;
    pthread_atfork(NULL, NULL, fb_team_after_fork);
}

/* 2 when the work may be split now, else 1.  dgemm: the BLAS in use. */
static int fb_team_width(void *dgemm)
{
    pthread_once(&fb_team_once, fb_team_init);
    if (fb_team.state < 0) return 1;
    return fb_blas_threads(dgemm) > 1 ? 2 : 1;
}

static int fb_team_start(void)
{
    pthread_attr_t attr;
    pthread_t thread;
    int ok;
    pthread_mutex_lock(&fb_team.lock);
    if (fb_team.state == 0) {
        ok = pthread_attr_init(&attr) == 0;
        if (ok) {
            pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
            ok = pthread_create(&thread, &attr, fb_team_main, NULL) == 0;
            pthread_attr_destroy(&attr);
        }
        fb_team.state = ok ? 1 : -1;
    }
    pthread_mutex_unlock(&fb_team.lock);
    return fb_team.state == 1;
}

/* fn(arg, 0) on the caller and fn(arg, 1) on the helper, back when both
 * are done; both on the caller when the helper is busy or unavailable. */
static void fb_team_run(fb_task_fn fn, void *arg)
{
    unsigned long p;
    long spins = 0;
    if (fb_team.state < 0 || __atomic_exchange_n(&fb_team.busy, 1, __ATOMIC_ACQUIRE)) {
        /* (counted nowhere: the counters belong to the helper's owner) */
        fn(arg, 0);
        fn(arg, 1);
        return;
    }
    if (fb_team.state == 0 && !fb_team_start()) {
        __atomic_store_n(&fb_team.busy, 0, __ATOMIC_RELEASE);
        fn(arg, 0);
        fn(arg, 1);
        return;
    }
    fb_team.fn = fn;
    fb_team.arg = arg;
    p = fb_team.posted + 1;
    __atomic_store_n(&fb_team.posted, p, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&fb_team.sleeping, __ATOMIC_SEQ_CST)) {
        pthread_mutex_lock(&fb_team.lock);
        pthread_cond_signal(&fb_team.wake);
        pthread_mutex_unlock(&fb_team.lock);
    }
    fn(arg, 0);
    if (fb_team_claim(p)) {
        /* the helper has not started it (no free core, or asleep): do it
         * here, so a loaded machine costs at most the serial time */
        fn(arg, 1);
    } else {
        while (__atomic_load_n(&fb_team.done, __ATOMIC_ACQUIRE) != p) {
            /* yield once the wait is long: the helper lost its core mid-task */
            if (++spins > 20000) sched_yield();
            else fb_team_relax();
        }
    }
    __atomic_store_n(&fb_team.busy, 0, __ATOMIC_RELEASE);
}

#endif /* FASTBP_TEAM_H */
