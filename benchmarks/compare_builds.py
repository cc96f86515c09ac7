"""Two builds of fastbp side by side: the same measurements on each, interleaved.

Given two source trees, each a repo root with an in-place build
(``python setup.py build_ext --inplace``), this runs every measurement in a
fresh subprocess with PYTHONPATH=<tree>/src, before, after, before, after
... over --rounds rounds (all measurements in every round), and prints the
median per measurement and the after/before ratio, with the range of the
per-round ratios (the noise).  Each child checks that fastbp was imported
from its tree.  The measurements use the public API only, so both trees run
the same benchmark code:

  kernels   fastbp.dense_forward, dense_backward (sigmoid) and matmul_abt at
            fastbp-bench's default shapes 8, 32x64x64, 256 (µs per call);
  networks  MLP.train_step (SGD, squared error, sigmoid hidden) on
            fastbp-bench's small and mid nets, 64-64-64-1 b32 and
            784-256-256-10 b128 (µs per step);
  sklearn   fastbp.sklearn.MLPClassifier on load_digits (adam, sgd) and
            MLPRegressor on load_diabetes (adam), defaults, random_state=0,
            fit on the whole set (ms per epoch: fit time / n_iter_).

    python benchmarks/compare_builds.py --before /work/base --after . [--rounds 5]
        [--threads 1] [--only SUBSTRING] [--quick] [--list]

A child's value is the best of several samples (each long enough for the
clock), taken after a warm-up; the table's is the median over the rounds, so
what differs from process to process (addresses, alignment) shows in it.  --threads caps every
BLAS of a child through threadpoolctl (0: the default).  Two trees with the
same code give ratios near 1: run that first to see the noise level.

A benchmark, not a test: nothing here asserts a speed.
"""

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time

KERNEL_SHAPES = ((8, 8, 8), (32, 64, 64), (256, 256, 256))
QUICK_KERNEL_SHAPES = KERNEL_SHAPES[1:]
NETS = (((64, 64, 64, 1), 32), ((784, 256, 256, 10), 128))
SKLEARN = (("MLPClassifier", "digits", {}), ("MLPClassifier", "digits", {"solver": "sgd"}),
           ("MLPRegressor", "diabetes", {}))


def measurements(quick=False):
    """name -> (kind, spec); the names are what --only matches."""
    out = {}
    for n, k, d in QUICK_KERNEL_SHAPES if quick else KERNEL_SHAPES:
        for kind in ("dense_forward", "dense_backward", "matmul_abt"):
            out[f"{kind} {n}x{k}x{d}"] = (kind, [n, k, d])
    for sizes, batch in NETS:
        out[f"train_step {'-'.join(map(str, sizes))} b{batch}"] = ("train_step", [list(sizes), batch])
    for est, data, params in SKLEARN:
        out[f"{est} {data} {params.get('solver', 'adam')}"] = ("sklearn", [est, data, params])
    return out


# ---------------------------------------------------------------- the child

def _setup(kind, spec):
    """(call, scale to the unit, unit, info) for one measurement."""
    import numpy as np
    import fastbp

    rng = np.random.default_rng(0)
    if kind in ("dense_forward", "dense_backward", "matmul_abt"):
        n, k, d = spec
        X = rng.standard_normal((n, k))
        W = rng.standard_normal((d, k)) / np.sqrt(k)
        b = 0.1 * rng.standard_normal(d)
        Y = fastbp.dense_forward(X, W, b, "sigmoid")
        dY, dX, dW, db = rng.standard_normal((n, d)), np.empty((n, k)), np.empty((d, k)), np.empty(d)
        call = {"dense_forward": lambda: fastbp.dense_forward(X, W, b, "sigmoid", out=Y),
                "dense_backward": lambda: fastbp.dense_backward(dY, X, W, Y, "sigmoid",
                                                                dX=dX, dW=dW, db=db),
                "matmul_abt": lambda: fastbp.matmul_abt(X, W, out=Y)}[kind]
        return call, 1e6, "µs", ""
    if kind == "train_step":
        sizes, batch = spec
        net = fastbp.MLP(sizes, activation="sigmoid", output_activation="identity", seed=0)
        X, T = rng.standard_normal((batch, sizes[0])), rng.standard_normal((batch, sizes[-1]))
        return (lambda: net.train_step(X, T, lr=1e-3, loss="squared_error", reduction="mean"),
                1e6, "µs", "")
    import warnings

    import fastbp.sklearn
    from sklearn.datasets import load_diabetes, load_digits
    from sklearn.exceptions import ConvergenceWarning

    warnings.simplefilter("ignore", ConvergenceWarning)
    est_name, data, params = spec
    X, y = (load_digits if data == "digits" else load_diabetes)(return_X_y=True)
    cls = getattr(fastbp.sklearn, est_name)
    epochs = cls(random_state=0, **params).fit(X, y).n_iter_
    return (lambda: cls(random_state=0, **params).fit(X, y)), 1e3 / epochs, "ms/epoch", \
        f"{epochs} epochs"


def child(name, quick, threads, tree):
    kind, spec = measurements(quick)[name]
    import contextlib

    import threadpoolctl
    import fastbp

    src = os.path.realpath(os.path.join(tree, "src")) + os.sep
    if not os.path.realpath(fastbp.__file__).startswith(src):
        sys.exit(f"fastbp imported from {fastbp.__file__}, not from {src}")
    if kind == "sklearn":  # load its libraries before the limits are set
        import fastbp.sklearn  # noqa: F401
        import sklearn.datasets  # noqa: F401
    limits = threadpoolctl.threadpool_limits(threads) if threads else contextlib.nullcontext()
    with limits:
        call, scale, unit, info = _setup(kind, spec)
        sample_s, budget_s = (0.005, 0.1) if quick else (0.02, 0.3)
        t0 = time.perf_counter()
        call()
        number = max(1, int(sample_s / max(time.perf_counter() - t0, 1e-7)))
        t0 = time.perf_counter()
        for _ in range(number):  # warm-up, and the length of a sample
            call()
        per_sample = time.perf_counter() - t0
        samples = []
        gc.disable()
        for _ in range(max(3, min(15, int(budget_s / max(per_sample, 1e-7))))):
            t0 = time.perf_counter()
            for _ in range(number):
                call()
            samples.append((time.perf_counter() - t0) / number)
        gc.enable()
    # the best of the child's samples: what the code costs when nothing else
    # runs (another process's burst hits one sample, not the minimum)
    print(json.dumps({"value": min(samples) * scale, "unit": unit, "info": info}))


# --------------------------------------------------------------- the parent

def describe(tree):
    def git(*args):
        r = subprocess.run(["git", "-C", tree, *args], capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else "?"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"{tree}: {git('log', '-1', '--format=%h %s')[:70]}" + (" (modified)" if dirty else "")


def run_child(tree, name, args, workdir):
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.abspath(tree), "src"))
    cmd = [sys.executable, os.path.abspath(__file__), "--child", name, "--tree",
           os.path.abspath(tree), "--threads", str(args.threads)] + (["--quick"] if args.quick else [])
    r = subprocess.run(cmd, env=env, cwd=workdir, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{name} on {tree} failed:\n{r.stderr.strip()}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _load():
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def median(values):
    v = sorted(values)
    return (v[len(v) // 2] + v[(len(v) - 1) // 2]) / 2


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="repo root of the 'before' build")
    parser.add_argument("--after", help="repo root of the 'after' build")
    parser.add_argument("--rounds", type=int, default=5, help="before/after pairs (default 5)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (0: default)")
    parser.add_argument("--only", action="append", default=[], metavar="SUBSTRING",
                        help="only measurements whose name contains this (repeatable)")
    parser.add_argument("--quick", action="store_true",
                        help="3 rounds, shorter samples, no 8x8x8 kernels")
    parser.add_argument("--list", action="store_true", help="list the measurements and exit")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--tree", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.quick, args.threads, args.tree)
    names = [n for n in measurements(args.quick)
             if not args.only or any(s in n for s in args.only)]
    if args.list:
        print("\n".join(names))
        return 0
    if not (args.before and args.after):
        parser.error("--before DIR and --after DIR are required")
    for tree in (args.before, args.after):
        if not os.path.isfile(os.path.join(tree, "src", "fastbp", "__init__.py")):
            parser.error(f"{tree} is not a fastbp repo root (no src/fastbp/__init__.py)")
    if not names:
        parser.error("--only matched no measurement (see --list)")
    rounds = min(args.rounds, 3) if args.quick else args.rounds
    trees = {"before": args.before, "after": args.after}
    print("before: " + describe(args.before) + "\nafter:  " + describe(args.after))
    print(f"BLAS threads: {args.threads or 'default'}; {rounds} rounds, each measurement "
          f"in a fresh process, before and after in turn; load average {_load()}\n", flush=True)
    got = {(n, side): [] for n in names for side in trees}
    units, infos = {}, {}
    with tempfile.TemporaryDirectory() as workdir:  # a cwd with nothing importable
        for r in range(rounds):
            for n in names:
                for side, tree in trees.items():
                    out = run_child(tree, n, args, workdir)
                    got[n, side].append(out["value"])
                    units[n] = out["unit"]
                    infos[n, side] = out["info"]
            print(f"round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    print(f"load average at the end: {_load()}\n")
    print("| measurement | unit | before | after | after/before | range of the rounds' ratios |")
    print("|---|---|---|---|---|---|")
    for n in names:
        b, a = median(got[n, "before"]), median(got[n, "after"])
        ratios = [x / y for x, y in zip(got[n, "after"], got[n, "before"])]
        note = ""
        if infos[n, "before"] != infos[n, "after"]:
            note = f" ({infos[n, 'before']} / {infos[n, 'after']})"
        elif infos[n, "before"]:
            note = f" ({infos[n, 'before']})"
        print(f"| {n}{note} | {units[n]} | {b:.4g} | {a:.4g} | {a / b:.3f} "
              f"| {min(ratios):.2f}–{max(ratios):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
