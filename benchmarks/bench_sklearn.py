"""fastbp.sklearn against scikit-learn's own MLP estimators, default sizes.

Fits MLPClassifier on digits and MLPRegressor on diabetes (both bundled with
scikit-learn) with the default parameters and the same random_state, and
prints fit time (best of --repeat) and test score for each.  With the same
seed both draw the same random numbers, so the scores agree to rounding.

    PYTHONPATH=src python benchmarks/bench_sklearn.py [--repeat 3] [--threads 1]

--threads caps every BLAS of the process (NumPy's, which scikit-learn
uses, and SciPy's, which fastbp uses) through threadpoolctl; 0 leaves the
defaults.

A benchmark, not a test: nothing here asserts a speed.
"""

import argparse
import time
import warnings

from sklearn import neural_network as sk
from sklearn.datasets import load_diabetes, load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

import fastbp.sklearn as fb

CASES = [
    ("digits", load_digits, "MLPClassifier", {}),
    ("digits", load_digits, "MLPClassifier", {"solver": "sgd"}),
    ("diabetes", load_diabetes, "MLPRegressor", {}),
    ("diabetes", load_diabetes, "MLPRegressor", {"solver": "sgd", "learning_rate_init": 1e-4}),
    ("digits", load_digits, "MLPClassifier", {"solver": "lbfgs"}),
    ("diabetes", load_diabetes, "MLPRegressor", {"solver": "lbfgs"}),
]


def best_fit(cls, params, X, y, repeat):
    best, est = float("inf"), None
    for _ in range(repeat):
        est = cls(random_state=0, **params)
        t0 = time.perf_counter()
        est.fit(X, y)
        best = min(best, time.perf_counter() - t0)
    return best, est


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (0: default)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", ConvergenceWarning)
    if args.threads:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(args.threads, user_api="blas"):
            return run(args)
    return run(args)


def run(args):
    print(f"BLAS threads: {args.threads or 'default'}; fit time is the best of {args.repeat}\n")
    print("| data | estimator | params | scikit-learn fit (s) | fastbp fit (s) | speed-up "
          "| scikit-learn score | fastbp score | epochs |")
    print("|---|---|---|---|---|---|---|---|---|")
    for data, load, name, params in CASES:
        X, y = load(return_X_y=True)
        X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
        t_sk, e_sk = best_fit(getattr(sk, name), params, X_train, y_train, args.repeat)
        t_fb, e_fb = best_fit(getattr(fb, name), params, X_train, y_train, args.repeat)
        print(f"| {data} | {name} | {params or 'defaults'} | {t_sk:.3f} | {t_fb:.3f} | "
              f"{t_sk / t_fb:.1f}× | {e_sk.score(X_test, y_test):.4f} | "
              f"{e_fb.score(X_test, y_test):.4f} | {e_sk.n_iter_} / {e_fb.n_iter_} |")


if __name__ == "__main__":
    main()
