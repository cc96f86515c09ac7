"""C = A Bᵀ on row-major operands in the three forms a BLAS can be asked for.

fastbp.matmul_abt (and every dense forward pass) picks between them; this
script shows why.  For each (n, k, d) it times, in one interleaved run:

  direct   the column-major "TN" call on A and B as they are;
  copy A   Aᵀ copied to a contiguous buffer first, then a "TT" call;
  copy B   Bᵀ copied first, then an "NN" call;
  fastbp   fastbp.matmul_abt with its preallocated out.

The copies are made with NumPy inside the timed call, so "copy A/B" include
what the transposition costs.  A benchmark, not a test: nothing is asserted.

    PYTHONPATH=src python benchmarks/bench_abt_forms.py [--threads 1]
"""

import argparse
import time

import numpy as np
from scipy.linalg import blas

import fastbp

SHAPES = [(8, 8, 8), (4, 64, 64), (8, 64, 64), (32, 64, 64), (64, 64, 64), (128, 64, 64),
          (100, 100, 100), (200, 100, 10), (128, 256, 10), (32, 128, 128), (16, 300, 100),
          (32, 784, 10), (64, 1000, 10), (200, 64, 100), (32, 256, 256)]


def best_us(f, repeat=7):
    f()
    t0 = time.perf_counter()
    f()
    number = max(1, int(2e-3 / max(time.perf_counter() - t0, 1e-7)))
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            f()
        best = min(best, (time.perf_counter() - t0) / number)
    return best * 1e6


def forms(A, B, C):
    # f2py takes Fortran-ordered arrays as they are: pass each operand as the
    # Fortran view of its row-major memory, so the flags below are exactly the
    # BLAS call (C's Fortran view is Cᵀ = B Aᵀ, d × n).
    Cf = C.T
    return {
        "direct": lambda: blas.dgemm(1.0, B.T, A.T, 0.0, Cf, trans_a=1, overwrite_c=1),
        "copy A": lambda: blas.dgemm(1.0, B.T, np.ascontiguousarray(A.T).T, 0.0, Cf,
                                     trans_a=1, trans_b=1, overwrite_c=1),
        "copy B": lambda: blas.dgemm(1.0, np.ascontiguousarray(B.T).T, A.T, 0.0, Cf,
                                     overwrite_c=1),
        "fastbp": lambda: fastbp.matmul_abt(A, B, out=C),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (0: default)")
    args = parser.parse_args(argv)
    if args.threads:
        from threadpoolctl import threadpool_limits
        with threadpool_limits(args.threads, user_api="blas"):
            return run()
    return run()


def run():
    rng = np.random.default_rng(0)
    print("| n × k × d | direct (µs) | copy A (µs) | copy B (µs) | fastbp (µs) |")
    print("|---|---|---|---|---|")
    for n, k, d in SHAPES:
        A, B, C = rng.random((n, k)), rng.random((d, k)), np.empty((n, d))
        want = A @ B.T
        for f in forms(A, B, C).values():  # every form computes the same product
            f()
            np.testing.assert_allclose(C, want, rtol=1e-12)
        t = {name: best_us(f) for name, f in forms(A, B, C).items()}
        print(f"| {n}×{k}×{d} | {t['direct']:.2f} | {t['copy A']:.2f} | {t['copy B']:.2f} "
              f"| {t['fastbp']:.2f} |")


if __name__ == "__main__":
    main()
