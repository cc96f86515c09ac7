"""Cap the BLAS threads of fastbp's kernels (SciPy's BLAS), e.g. when
several processes share a machine, and see which library that is.

    python examples/thread_limits.py          # needs threadpoolctl
"""

import os
import time

import numpy as np

import fastbp
from fastbp.threads import blas_info, threadpool_limits

TINY = os.environ.get("FASTBP_EXAMPLE_TINY") == "1"


def timed_matmul(n: int) -> float:
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    t0 = time.perf_counter()
    fastbp.matmul_abt(A, B)
    return time.perf_counter() - t0


def main() -> None:
    for lib in blas_info():
        print(f"fastbp calls {lib['internal_api']} {lib['version']} at {lib['filepath']} "
              f"({lib['num_threads']} threads)")
    n = 64 if TINY else 1500
    print(f"C = A Bᵀ, {n}×{n}: {timed_matmul(n) * 1e3:.1f} ms with the default threads")
    with threadpool_limits(1):
        print(f"C = A Bᵀ, {n}×{n}: {timed_matmul(n) * 1e3:.1f} ms on one thread")
        assert all(lib["num_threads"] == 1 for lib in blas_info())


if __name__ == "__main__":
    main()
