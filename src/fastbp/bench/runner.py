"""One benchmark run: the DGEMM yardstick, then each workload in turn.

For every workload each implementation gets a fresh instance on the same
inputs; its first (cold) call is timed and its result compared with the
NumPy reference's (rtol 1e-9) before any steady-state sample is taken.
Rows are appended to a :class:`Run` as they are measured, so an interrupted
run still holds everything measured so far.
"""

import time
from dataclasses import dataclass, field

import numpy as np

from fastbp.bench import timing
from fastbp.bench.workloads import IMPL_FASTBP, IMPL_REFERENCE

RTOL = 1e-9


@dataclass
class Row:
    workload: str
    suite: str
    kind: str
    params: dict          # shape / activation, or sizes / batch
    impl: str
    flops: int
    verified: bool
    max_rel_error: float
    timing: timing.Timing
    gflops: float
    peak_fraction: float  # of the DGEMM peak measured at the start of the run
    speedup: float        # reference median / this median


@dataclass
class Run:
    env: dict
    settings: dict
    peak: dict | None = None          # {"n", "gflops", "seconds"}
    rows: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    interrupted: bool = False
    workloads_total: int = 0
    workloads_done: int = 0

    def note(self, text):
        if text not in self.notes:
            self.notes.append(text)

    @property
    def all_verified(self):
        return all(r.verified for r in self.rows)


def compare(got, want, rtol=RTOL):
    """(ok, worst normwise relative error) of arrays ``got`` against ``want``."""
    if len(got) != len(want):
        return False, float("inf")
    worst = 0.0
    for g, w in zip(got, want):
        g = np.asarray(g, dtype=np.float64)
        if g.shape != w.shape:
            return False, float("inf")
        if w.size == 0:
            continue
        # Normwise: an element that cancels to ~0 is judged on the array's
        # scale, not on its own (a pure elementwise rtol would fail it).
        scale = max(float(np.max(np.abs(w))), np.finfo(np.float64).tiny)
        err = float(np.max(np.abs(g - w))) / scale
        if np.isnan(err):
            return False, err
        worst = max(worst, err)
    return bool(worst <= rtol), worst


def _params(w):
    if w.kind == "mlp":
        return {"sizes": list(w.sizes), "batch": w.batch}
    if w.kind == "derivative":
        return {"method": w.method, "sizes": list(w.sizes), "batch": w.batch}
    p = {"shape": list(w.shape)}
    if w.activation:
        p["activation"] = w.activation
    return p


def comparable(w, arrays, seed=0):
    """What is compared: a network step is judged on the change it made to
    the weights (the weights themselves would hide a wrong small update)."""
    arrays = [np.array(a, dtype=np.float64, copy=True) for a in arrays]
    if w.kind == "mlp":
        x = w.inputs(seed)
        arrays = [a - a0 for a, a0 in zip(arrays, x["weights"] + x["biases"])]
    return arrays


def _instance(w, impl, seed=0):
    """An Instance of ``w`` for fastbp, the reference or a peer."""
    if impl in (IMPL_FASTBP, IMPL_REFERENCE):
        return w.make(impl, seed)
    from fastbp.bench import peers  # lazy: peers import heavy libraries
    return peers.make(impl, w, w.inputs(seed))


def checked_instance(w, impl, seed=0):
    """An instance of ``w`` for ``impl`` whose first call agreed with the
    reference's (AssertionError otherwise): for the pytest-benchmark suites."""
    inst, ref = _instance(w, impl, seed), w.make(IMPL_REFERENCE, seed)
    inst.run()
    ref.run()
    ok, err = compare(comparable(w, inst.result(), seed), comparable(w, ref.result(), seed))
    assert ok, f"{w.name}: {impl} differs from the NumPy reference by {err:.2e} (normwise)"
    return inst


def measure_peak(run, n):
    gflops, seconds = timing.dgemm_peak(n)
    run.peak = {"n": n, "gflops": gflops, "seconds": seconds}


def measure_workload(run, w, peers, plan, seed=0, settle=True):
    """Verify and time ``w`` for fastbp, the reference and ``peers``.

    ``settle`` (when ``w`` is threaded): let the BLAS threads of the
    implementation run before go to sleep first (see fastbp.bench.timing).
    """
    from fastbp.bench.peers import PeerSkipped  # light: imports no peer library

    settle = settle and w.threaded and plan.settle_s > 0

    instances = {IMPL_FASTBP: w.make(IMPL_FASTBP, seed),
                 IMPL_REFERENCE: w.make(IMPL_REFERENCE, seed)}
    for name in peers:
        try:
            instances[name] = _instance(w, name, seed)
        except PeerSkipped as exc:
            run.note(str(exc))

    colds, results = {}, {}
    for name, inst in list(instances.items()):
        if settle:
            time.sleep(plan.settle_s)
        try:
            colds[name] = timing.cold_call(inst.run)
        except Exception as exc:
            if name in (IMPL_FASTBP, IMPL_REFERENCE):
                raise
            run.note(f"{name}: failed on {w.name} ({type(exc).__name__}: {exc}), skipped")
            del instances[name]
            continue
        results[name] = comparable(w, inst.result(), seed)

    want = results[IMPL_REFERENCE]
    checks = {name: compare(got, want) for name, got in results.items()}
    checks[IMPL_REFERENCE] = (True, 0.0)

    timings = timing.sample_interleaved({n: i.run for n, i in instances.items()},
                                        colds, plan, settle=settle)
    ref = timings[IMPL_REFERENCE].median
    peak = run.peak["gflops"] if run.peak else None
    for name, t in timings.items():
        gflops = w.flops / t.median / 1e9
        run.rows.append(Row(
            workload=w.name, suite=w.suite, kind=w.kind, params=_params(w), impl=name,
            flops=w.flops, verified=checks[name][0], max_rel_error=checks[name][1],
            timing=t, gflops=gflops,
            peak_fraction=gflops / peak if peak else float("nan"),
            speedup=ref / t.median))
    run.workloads_done += 1


def execute(run, workloads, peers, plan, peak_n, progress=None, settle=True):
    """Measure the peak then every workload; rows accumulate in ``run``.

    KeyboardInterrupt propagates, with ``run`` holding what was measured.
    ``settle`` False skips the pauses (one BLAS thread: nothing spins).
    """
    run.workloads_total = len(workloads)
    steps = len(workloads) + 1
    if progress:
        progress.update(0, steps, f"DGEMM peak {peak_n}^3")
    measure_peak(run, peak_n)
    for i, w in enumerate(workloads, start=1):
        if progress:
            progress.update(i, steps, w.name)
        measure_workload(run, w, peers, plan, settle=settle)
    if progress:
        progress.update(steps, steps, "done")
