"""A training step on one BLAS thread and on two, for networks small enough
that OpenBLAS runs their products on the calling thread.

With two BLAS threads fastbp splits such a batch over a helper thread of its
own (docs/threads.md); with one it does not.  For each network this times
``MLP.train_step`` (Adam, the update inside the compiled step) both ways,
interleaved, and prints the median of each and whether the step was split.

    PYTHONPATH=src python benchmarks/bench_split.py [--repeat 7]

A benchmark, not a test: nothing here asserts a speed.
"""

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

from fastbp.network import MLP

# (sizes, activation, batch rows, loss): scikit-learn's default digits and
# diabetes networks, the benchmark suite's small net, and deeper ones
CASES = [
    ([64, 100, 10], "relu", 200, "cross_entropy"),
    ([64, 100, 10], "relu", 100, "cross_entropy"),
    ([64, 100, 10], "relu", 64, "cross_entropy"),
    ([32, 64, 64, 10], "tanh", 64, "cross_entropy"),
    ([10, 100, 1], "relu", 200, "squared_error"),
    ([10, 100, 1], "relu", 131, "squared_error"),
    ([8, 32, 1], "tanh", 128, "squared_error"),
    ([16, 64, 4], "tanh", 64, "squared_error"),
    ([64, 64, 64, 1], "sigmoid", 32, "squared_error"),
    ([60, 60, 60, 60, 60, 10], "tanh", 128, "cross_entropy"),
    ([784, 128, 10], "relu", 64, "cross_entropy"),
]


def time_us(step, number):
    t0 = time.perf_counter()
    for _ in range(number):
        step()
    return (time.perf_counter() - t0) / number * 1e6


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print("| network | batch | 1 thread (µs) | 2 threads (µs) | ratio | split |")
    print("|---|---|---|---|---|---|")
    for sizes, act, rows, loss in CASES:
        out = "softmax" if loss == "cross_entropy" else "identity"
        net = MLP(sizes, activation=act, output_activation=out, seed=0)
        X = rng.standard_normal((rows, sizes[0]))
        T = (rng.integers(0, sizes[-1], rows) if loss == "cross_entropy"
             else rng.standard_normal((rows, sizes[-1])))

        def step():
            net.train_step(X, T, loss=loss, optimizer="adam")

        step()
        t0 = time.perf_counter()
        step()
        number = max(1, int(0.02 / max(time.perf_counter() - t0, 1e-7)))
        times = {1: [], 2: []}
        splits = 0
        for _ in range(args.repeat):
            for threads in (1, 2):
                with threadpool_limits(threads, user_api="blas"):
                    before = net.split_steps
                    step()  # settle
                    times[threads].append(time_us(step, number))
                    if threads == 2:
                        splits = net.split_steps - before
        one, two = (float(np.median(times[t])) for t in (1, 2))
        print(f"| {'-'.join(map(str, sizes))} {act} | {rows} | {one:.1f} | {two:.1f} | "
              f"{one / two:.2f}× | {'yes' if splits else 'no'} |")


if __name__ == "__main__":
    main()
