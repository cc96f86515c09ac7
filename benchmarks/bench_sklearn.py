"""fastbp.sklearn against scikit-learn's own MLP estimators, fit times interleaved.

Two suites of cases, each fitted by scikit-learn's estimator and by
fastbp.sklearn's with the same parameters and random_state (so both draw
the same random numbers and the scores agree to rounding):

* ``default``: MLPClassifier on digits and MLPRegressor on diabetes (both
  bundled with scikit-learn), default parameters, and the other solvers;
* ``issue15``: what scikit-learn's MLP has and fastbp gained for it:
  multilabel (``make_multilabel_classification(1000, 20, n_classes=5)``),
  Poisson regression (1,000 × 10, ``loss="poisson"``) and a sparse fit
  (a 5,000 × 20,000 CSR at 0.5 % density, 10 classes), hidden (100,), adam.

    PYTHONPATH=src python benchmarks/bench_sklearn.py [--suite all] [--repeat 3] [--threads 1]
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_sklearn.py ...

Fit times are taken interleaved (scikit-learn, fastbp, scikit-learn, ...,
the order flipped every round) and the median of each is reported, with
the speed-up as the ratio of the medians.  ``--memory`` adds the peak
memory of each fit: every fit runs again in a fresh process, which resets
the kernel's peak-RSS mark just before ``fit`` and reads it after, so the
figure is what the fit itself added (VmHWM − VmRSS before the fit).

--threads caps every BLAS of the process (NumPy's, which scikit-learn
uses, and SciPy's, which fastbp uses) through threadpoolctl; 0 leaves the
defaults.  The header prints the OpenBLAS variables as found.

A benchmark, not a test: nothing here asserts a speed.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np
import sklearn
from scipy import sparse
from sklearn import neural_network as sk
from sklearn.datasets import load_diabetes, load_digits, make_multilabel_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

import fastbp.sklearn as fb


def _multilabel():
    return make_multilabel_classification(n_samples=1000, n_features=20, n_classes=5,
                                          random_state=0)


def _poisson():
    rs = np.random.RandomState(0)
    X = rs.normal(size=(1000, 10))
    w = rs.uniform(-0.3, 0.3, 10)
    return X, rs.poisson(np.exp(X @ w + 0.5)).astype(np.float64)


def _sparse():
    rs = np.random.RandomState(0)
    X = sparse.random(5000, 20000, density=0.005, format="csr", random_state=rs)
    # a learnable target: the class whose random direction the row is nearest
    y = np.asarray((X @ rs.normal(size=(20000, 10))).argmax(axis=1)).ravel()
    return X, y


def _loader(fn):
    return lambda: fn(return_X_y=True)


# name -> (data, estimator, params)
DATA = {"digits": _loader(load_digits), "diabetes": _loader(load_diabetes),
        "multilabel": _multilabel, "poisson": _poisson, "sparse": _sparse}
SUITES = {
    "default": [
        ("digits", "MLPClassifier", {}),
        ("digits", "MLPClassifier", {"solver": "sgd"}),
        ("diabetes", "MLPRegressor", {}),
        ("diabetes", "MLPRegressor", {"solver": "sgd", "learning_rate_init": 1e-4}),
        ("digits", "MLPClassifier", {"solver": "lbfgs"}),
        ("diabetes", "MLPRegressor", {"solver": "lbfgs"}),
    ],
    "issue15": [
        ("multilabel", "MLPClassifier", {}),
        ("poisson", "MLPRegressor", {"loss": "poisson"}),
        ("sparse", "MLPClassifier", {"max_iter": 20}),
    ],
}


def split(data):
    X, y = DATA[data]()
    return train_test_split(X, y, random_state=0)


def fit_once(lib, name, params, X, y):
    est = getattr(lib, name)(random_state=0, **params)
    t0 = time.perf_counter()
    est.fit(X, y)
    return time.perf_counter() - t0, est


def _status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def peak_fit_memory(case_index, suite, lib_name):
    """Run in a fresh process: bytes the fit added at its peak."""
    data, name, params = SUITES[suite][case_index]
    X, _, y, _ = split(data)
    lib = sk if lib_name == "sklearn" else fb
    est = getattr(lib, name)(random_state=0, **params)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    before = _status("VmRSS")
    est.fit(X, y)
    return _status("VmHWM") - before


def memory_of(case_index, suite, lib_name, threads):
    code = ("import json, sys, warnings; sys.path[:0] = [%r]; import bench_sklearn as b; "
            "warnings.simplefilter('ignore'); from threadpoolctl import threadpool_limits; "
            "ctx = threadpool_limits(%d, user_api='blas') if %d else None; "
            "print(json.dumps(b.peak_fit_memory(%d, %r, %r)))"
            % (os.path.dirname(os.path.abspath(__file__)), threads, threads, case_index,
               suite, lib_name))
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, env=os.environ.copy())
    return json.loads(out.stdout.strip().splitlines()[-1])


def header(threads, repeat):
    lines = [f"Python {sys.version.split()[0]}, NumPy {np.__version__}, "
             f"scikit-learn {sklearn.__version__}; "
             f"BLAS threads: {threads or 'default'}; median of {repeat} interleaved fits; "
             "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())]
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        lines.append(f"{var}={os.environ[var]}" if var in os.environ else f"{var} unset")
    return lines


def run(args):
    for line in header(args.threads, args.repeat):
        print(line)
    print()
    cols = ["data", "estimator", "params", "scikit-learn fit (s)", "fastbp fit (s)", "speed-up",
            "scikit-learn score", "fastbp score", "epochs"]
    if args.memory:
        cols += ["scikit-learn peak (MB)", "fastbp peak (MB)"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    suites = list(SUITES) if args.suite == "all" else [args.suite]
    for suite in suites:
        for i, (data, name, params) in enumerate(SUITES[suite]):
            X_train, X_test, y_train, y_test = split(data)
            times = {"sk": [], "fb": []}
            ests = {}
            for r in range(args.repeat):
                order = (("sk", sk), ("fb", fb)) if r % 2 == 0 else (("fb", fb), ("sk", sk))
                for key, lib in order:
                    t, ests[key] = fit_once(lib, name, params, X_train, y_train)
                    times[key].append(t)
            t_sk, t_fb = statistics.median(times["sk"]), statistics.median(times["fb"])
            row = [data, name, str(params or "defaults"), f"{t_sk:.3f}", f"{t_fb:.3f}",
                   f"{t_sk / t_fb:.1f}×", f"{ests['sk'].score(X_test, y_test):.4f}",
                   f"{ests['fb'].score(X_test, y_test):.4f}",
                   f"{ests['sk'].n_iter_} / {ests['fb'].n_iter_}"]
            if args.memory:
                row += [f"{memory_of(i, suite, lib, args.threads) / 1e6:.1f}"
                        for lib in ("sklearn", "fastbp")]
            print("| " + " | ".join(row) + " |", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=list(SUITES) + ["all"], default="default")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (0: default)")
    parser.add_argument("--memory", action="store_true",
                        help="also each fit's peak memory, from fresh processes")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", ConvergenceWarning)
    if args.threads:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(args.threads, user_api="blas"):
            return run(args)
    return run(args)


if __name__ == "__main__":
    main()
