"""Timing: the cold call, warm-up, interleaved sampling, summary statistics.

Samples of the implementations are taken in turn, A B A B …, so that the
machine's drift (other processes, frequency changes) hits all of them alike;
a sample is ``number`` back-to-back calls, with ``number`` chosen so that a
sample lasts at least ``Plan.sample_s`` and the clock's resolution and the
loop's overhead stay small next to it.  The garbage collector is off while
sampling, as in :mod:`timeit`.

Settling.  fastbp's GEMMs run on SciPy's OpenBLAS, the reference's on
NumPy's: two libraries, each with its own pool of worker threads, and
OpenBLAS's workers spin for about 0.1 s after a call before they sleep.
Alternating call by call, one library's spinning threads take the cores the
other's need (seen on 2 cores: fastbp at 256³ 1.1 ms alone, 3.3 ms
alternating with NumPy; with the workers told to sleep at once, the same in
both).  So for workloads whose BLAS calls are threaded, each visit to an
implementation starts with a pause of ``Plan.settle_s`` (the other pool goes
to sleep) and one untimed call, then takes several samples in a row; the
visits still alternate A B A B.
"""

import gc
import math
import statistics
import time
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Plan:
    warmup_s: float = 0.1     # warm-up per implementation (at least one call)
    sample_s: float = 0.005   # shortest sample
    budget_s: float = 1.0     # sampling time per workload, all implementations
    min_samples: int = 5
    max_samples: int = 41
    settle_s: float = 0.15    # pause before each visit when settling (see above)
    visits: int = 5           # visits per implementation when settling


DEFAULT_PLAN = Plan()
QUICK_PLAN = Plan(warmup_s=0.01, sample_s=0.001, budget_s=0.1, min_samples=3,
                  max_samples=11, visits=3)


@dataclass(frozen=True)
class Timing:
    """Seconds per call of one implementation of one workload."""

    cold: float      # the very first call
    median: float
    min: float
    max: float
    samples: int     # number of samples the statistics are taken over
    number: int      # calls per sample


def cold_call(run, clock=time.perf_counter):
    """Seconds taken by one call: used on the first call of an instance."""
    t0 = clock()
    run()
    return clock() - t0


def _per_call(run, number, clock):
    t0 = clock()
    for _ in range(number):
        run()
    return (clock() - t0) / number


def warm_up(run, seconds, clock=time.perf_counter):
    """Call ``run`` for about ``seconds`` (at least once); seconds per call."""
    calls, t0 = 0, clock()
    while True:
        run()
        calls += 1
        elapsed = clock() - t0
        if elapsed >= seconds:
            return elapsed / calls


def sample_interleaved(runs, colds, plan=DEFAULT_PLAN, settle=False,
                       clock=time.perf_counter, sleep=time.sleep):
    """Time every callable of ``runs`` (name → run) in turn; name → Timing.

    ``colds`` (name → seconds) holds the first calls, measured beforehand.
    Without ``settle`` one sample per visit, A B A B …; with it, ``plan.visits``
    visits each made of a pause, an untimed call and a run of samples.
    """
    names = list(runs)
    per_call = {n: max(warm_up(runs[n], plan.warmup_s, clock), 1e-9) for n in names}
    number = {n: max(1, math.ceil(plan.sample_s / per_call[n])) for n in names}
    if settle:
        visits = plan.visits
        visit_s = plan.budget_s / (visits * len(names))
        in_row = {n: min(plan.max_samples, max(1, int(visit_s / (number[n] * per_call[n]))))
                  for n in names}
    else:
        round_s = sum(number[n] * per_call[n] for n in names)
        visits = min(plan.max_samples, max(plan.min_samples, int(plan.budget_s / round_s)))
        in_row = dict.fromkeys(names, 1)
    samples = {n: [] for n in names}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(visits):
            for n in names:
                if settle:
                    sleep(plan.settle_s)
                    if per_call[n] < plan.settle_s:
                        runs[n]()  # own threads awake, caches warm again
                for _ in range(in_row[n]):
                    samples[n].append(_per_call(runs[n], number[n], clock))
    finally:
        if gc_was_enabled:
            gc.enable()
    return {n: Timing(cold=colds[n], median=statistics.median(samples[n]),
                      min=min(samples[n]), max=max(samples[n]),
                      samples=len(samples[n]), number=number[n])
            for n in names}


def dgemm_peak(n, repeats=3, clock=time.perf_counter):
    """Best GFLOP/s of NumPy's ``A @ B`` at n×n×n: the run's yardstick.

    Returns (gflops, seconds of the best call).
    """
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    C = np.empty((n, n))
    np.matmul(A, B, out=C)  # warm-up: threads started, pages touched
    best = min(cold_call(lambda: np.matmul(A, B, out=C), clock) for _ in range(repeats))
    return 2.0 * n ** 3 / best / 1e9, best
