"""MLP.fit per step against MLP.train_step over batches made beforehand.

The fit loop's acceptance measurement: ``MLP.fit`` per step, against
``train_step`` over the same batches gathered beforehand, is within 5 %
without shuffling and within 10 % with shuffling, the gathers included.  For
each network, in one interleaved run, this times per step:

  a. fit(shuffle=False)  epochs=E, Adam, divided by E × steps per epoch;
  b. fit(shuffle=True)   the same, seeded: the fit's shuffles and gathers count;
  c. a Python loop of ``train_step(xb, tb, optimizer=opt)`` over row slices
     of X made beforehand (the batches of a), E times;
  d. the same loop over batches gathered beforehand in a shuffled order (one
     seeded permutation, each batch its own contiguous copy, replayed every
     epoch: its footprint is X's, as c's is; which rows a batch holds does not
     change the cost of a step).  Nothing of the gathering is timed here.

Samples of a, b, c and d are taken in turn, all networks in every round, the
order rotating from round to round, and the medians are compared: a/c
(target ≤ 1.05) and b/d (target ≤ 1.10).  Every sample starts from the same
weights and a fresh Adam; fit builds its own (optimizer="adam"), the loop's
is made before its clock starts.  No progress bar, no validation, no
callback: nothing in a fit call that is not the fit.

    PYTHONPATH=src python benchmarks/bench_fit.py [--repeat 15] [--threads 1] [--quick]

--threads caps the BLAS fastbp calls (fastbp.threadpool_limits); 0 leaves
the default.  Public API only (MLP, fastbp.optim.Adam,
fastbp.threadpool_limits), so the same script runs against any version.

A benchmark, not a test: nothing here asserts a speed.
"""

import argparse
import contextlib
import gc
import os
import sys
import time

import numpy as np
import threadpoolctl

import fastbp
from fastbp import MLP
from fastbp.optim import Adam

# (name, sizes, hidden activation, output activation, loss, batch, rows)
CASES = [
    ("64-64-64-1", [64, 64, 64, 1], "sigmoid", "identity", "squared_error", 32, 1600),
    ("digits 64-100-10", [64, 100, 10], "relu", "softmax", "cross_entropy", 200, 5000),
    ("784-256-256-10", [784, 256, 256, 10], "relu", "softmax", "cross_entropy", 128, 2560),
]
VARIANTS = ("fit", "fit_shuffled", "step", "step_gathered")
TARGETS = {"fit": ("step", 1.05), "fit_shuffled": ("step_gathered", 1.10)}
MAX_SAMPLE_S = 0.5  # no sample (one fit call) longer than this


class Case:
    def __init__(self, name, sizes, act, out, loss, batch, rows, seed=0):
        rng = np.random.default_rng(seed)
        self.name, self.loss, self.batch, self.rows = name, loss, batch, rows
        self.net = MLP(sizes, activation=act, output_activation=out, seed=seed)
        self.p0 = self.net.params.copy()
        self.X = rng.standard_normal((rows, sizes[0]))
        self.T = (rng.integers(0, sizes[-1], rows, dtype=np.int64) if loss == "cross_entropy"
                  else rng.standard_normal((rows, sizes[-1])))
        starts = range(0, rows, batch)
        self.steps = len(starts)
        self.sliced = [(self.X[s:s + batch], self.T[s:s + batch]) for s in starts]
        perm = np.random.default_rng(seed + 1).permutation(rows)
        self.gathered = [(self.X[perm[s:s + batch]], self.T[perm[s:s + batch]]) for s in starts]
        self.epochs = 1

    def _fit(self, shuffle):
        self.net.fit(self.X, self.T, epochs=self.epochs, batch_size=self.batch, shuffle=shuffle,
                     seed=0, optimizer="adam", loss=self.loss, progress=False)

    def _loop(self, batches):
        opt = Adam()
        step, loss = self.net.train_step, self.loss
        t0 = time.perf_counter()
        for _ in range(self.epochs):
            for xb, tb in batches:
                step(xb, tb, loss=loss, optimizer=opt)
        return time.perf_counter() - t0

    def sample(self, variant):
        """Seconds per step of one sample of ``variant``, from the initial weights."""
        self.net.params[...] = self.p0
        gc.collect()
        gc.disable()
        try:
            if variant in ("fit", "fit_shuffled"):
                t0 = time.perf_counter()
                self._fit(variant == "fit_shuffled")
                elapsed = time.perf_counter() - t0
            else:
                elapsed = self._loop(self.sliced if variant == "step" else self.gathered)
        finally:
            gc.enable()
        return elapsed / (self.epochs * self.steps)

    def same_result(self):
        """Max |Δ| of the weights after one epoch of fit(shuffle=False) and of
        the loop over the sliced batches (0.0: the same computation)."""
        saved = self.epochs
        self.epochs = 1
        try:
            self.sample("fit")
            after_fit = self.net.params.copy()
            self.sample("step")
            return float(np.max(np.abs(after_fit - self.net.params)))
        finally:
            self.epochs = saved
            self.net.params[...] = self.p0


def env_lines(threads):
    lines = [f"fastbp {fastbp.__version__} from {os.path.dirname(fastbp.__file__)}; "
             f"Python {sys.version.split()[0]}, NumPy {np.__version__}; "
             f"BLAS threads for fastbp: {threads or 'default'}; load average "
             + " ".join(f"{x:.2f}" for x in os.getloadavg())]
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        lines.append(f"{var}={os.environ[var]}" if var in os.environ else f"{var} unset")
    for lib in threadpoolctl.threadpool_info():
        if lib.get("user_api") != "blas":
            continue
        owner = "scipy (fastbp's)" if "scipy" in os.path.basename(os.path.dirname(lib["filepath"])) \
            else os.path.basename(os.path.dirname(lib["filepath"]))
        lines.append(f"BLAS {owner}: {lib.get('internal_api')} {lib.get('version')}, "
                     f"{lib.get('num_threads')} threads, core type {lib.get('architecture')}, "
                     f"{os.path.basename(lib['filepath'])}")
    return lines


def calibrate(case, target_s):
    """Epochs per sample so that a fit sample lasts about target_s (< MAX_SAMPLE_S)."""
    case.epochs = 1
    for v in VARIANTS:  # warm-up: workspace, first-call costs, BLAS buffers
        case.sample(v)
    per_epoch = max(case.sample("fit"), case.sample("fit_shuffled")) * case.steps
    case.epochs = max(1, min(int(target_s / per_epoch + 0.5), int(MAX_SAMPLE_S / per_epoch)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="rounds of samples (default 15)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (0: default)")
    parser.add_argument("--quick", action="store_true", help="at most 5 rounds, shorter samples")
    args = parser.parse_args(argv)
    repeat = min(args.repeat, 5) if args.quick else args.repeat
    # short samples, many rounds: on a shared machine the noise comes in
    # bursts of a fraction of a second, which the median of many rounds skips
    target_s = 0.03 if args.quick else 0.1
    limits = fastbp.threadpool_limits(args.threads) if args.threads else contextlib.nullcontext()
    with limits:
        for line in env_lines(args.threads):
            print(line)
        cases = [Case(*c) for c in CASES]
        for case in cases:
            calibrate(case, target_s)
        times = {(c.name, v): [] for c in cases for v in VARIANTS}
        for r in range(repeat):
            order = VARIANTS[r % 4:] + VARIANTS[:r % 4]
            for case in cases:
                for v in order:
                    times[case.name, v].append(case.sample(v))
        diffs = {c.name: c.same_result() for c in cases}

    print(f"\nµs per step, median of {repeat} interleaved samples; a sample is one fit call "
          "of E epochs (or the loop's E epochs).  ratio: of the medians; range: of the "
          "per-round ratios.\n")
    print("| network | batch | rows | steps × E | fit | train_step | ratio (≤1.05) | range "
          "| fit shuffled | train_step gathered | ratio (≤1.10) | range | Δ fit/loop |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    verdicts = []
    for c in cases:
        med = {v: float(np.median(times[c.name, v])) * 1e6 for v in VARIANTS}
        cells = []
        for fit_v, (ref_v, target) in TARGETS.items():
            ratio = med[fit_v] / med[ref_v]
            per_round = np.array(times[c.name, fit_v]) / np.array(times[c.name, ref_v])
            ok = ratio <= target
            verdicts.append(ok)
            cells.append(f"{med[fit_v]:.1f} | {med[ref_v]:.1f} | {ratio:.3f} {'ok' if ok else 'OVER'} "
                         f"| {per_round.min():.2f}–{per_round.max():.2f}")
        print(f"| {c.name} | {c.batch} | {c.rows} | {c.steps} × {c.epochs} | "
              + " | ".join(cells) + f" | {diffs[c.name]:.1e} |")
    print(f"\n{sum(verdicts)} of {len(verdicts)} ratios within target (load average at the end: "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()) + ").  Δ fit/loop: max |Δ| "
          "of the weights after one epoch of fit(shuffle=False) and of the train_step loop "
          "(0: the two compute the same steps).")


if __name__ == "__main__":
    main()
