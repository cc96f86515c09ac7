"""One SGD training step (forward, squared error, backward, update):
``MLP.train_step`` against a plain NumPy step composed from fastbp.reference.

Workloads (issue 3): sigmoid hidden layers, identity output,
    [64, 64, 64, 1]         batch 32
    [784, 256, 256, 10]     batch 128
    [1024, 1024, 1024, 1024] batch 1024
plus numpy's DGEMM at 2048³, the bound the large net is measured against:
its GEMM flops per step (forward, δW, and δX except the first layer's)
divided by the DGEMM rate of the same run.

    pytest benchmarks/bench_network.py --benchmark-only
    pytest benchmarks/bench_network.py --benchmark-only -s   # prints the ratios
"""

import numpy as np
import pytest

from fastbp import reference as ref
from fastbp.network import MLP

WORKLOADS = [
    ("64x64x64x1-b32", [64, 64, 64, 1], 32, 200),
    ("784x256x256x10-b128", [784, 256, 256, 10], 128, 30),
    ("1024x1024x1024x1024-b1024", [1024, 1024, 1024, 1024], 1024, 3),
]
LR = 1e-3
_results = {}  # name -> best seconds, for the ratios printed at the end


def gemm_flops(sizes, n):
    """2 n k d per product: forward and δW for every layer, δX for all but the first."""
    pairs = list(zip(sizes[:-1], sizes[1:]))
    return sum(2 * n * k * d * (2 if l == 0 else 3) for l, (k, d) in enumerate(pairs))


def numpy_step(Ws, bs, acts, X, T, lr):
    """The same step from the reference kernels, as a NumPy user would write it."""
    A = [X]
    for W, b, a in zip(Ws, bs, acts):
        A.append(ref.dense_forward(A[-1], W, b, a))
    J, dY = ref.squared_error(A[-1], T, "mean")
    for l in reversed(range(len(Ws))):
        dX, dW, db = ref.dense_backward(dY, A[l], Ws[l], A[l + 1], acts[l], need_dX=l > 0)
        Ws[l] -= lr * dW
        bs[l] -= lr * db
        dY = dX
    return J


def make(sizes, n):
    rng = np.random.default_rng(0)
    net = MLP(sizes, activation="sigmoid", output_activation="identity", seed=0)
    X = rng.normal(size=(n, sizes[0]))
    T = rng.normal(size=(n, sizes[-1]))
    return net, X, T


def _blas_threads():
    """Threads of each BLAS in the process (threadpoolctl is optional)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    return {i["filepath"].rsplit("/", 1)[-1]: i["num_threads"] for i in threadpool_info()
            if i.get("user_api") == "blas"}


def _record(benchmark, name, impl, flops):
    benchmark.extra_info["blas_threads"] = _blas_threads()
    best = benchmark.stats.stats.min
    _results[(name, impl)] = best
    benchmark.extra_info["gflops_per_s"] = flops / best / 1e9


def test_dgemm_2048(benchmark):
    rng = np.random.default_rng(0)
    A, B = rng.normal(size=(2048, 2048)), rng.normal(size=(2048, 2048))
    C = np.empty((2048, 2048))
    benchmark.group = "dgemm 2048^3"
    benchmark.pedantic(np.matmul, args=(A, B), kwargs={"out": C}, rounds=3, warmup_rounds=1)
    _record(benchmark, "dgemm", "numpy", 2 * 2048 ** 3)


@pytest.mark.parametrize("name, sizes, n, rounds", WORKLOADS, ids=[w[0] for w in WORKLOADS])
@pytest.mark.parametrize("impl", ["fastbp", "numpy"])
def test_train_step(benchmark, impl, name, sizes, n, rounds):
    net, X, T = make(sizes, n)
    acts = list(net.activations)
    Ws, bs = [W.copy() for W in net.weights], [b.copy() for b in net.biases]
    # both steps agree before they are timed
    J_np = numpy_step([W.copy() for W in Ws], [b.copy() for b in bs], acts, X, T, LR)
    probe = MLP(sizes, activation="sigmoid", seed=0)
    assert probe.train_step(X, T, lr=LR) == pytest.approx(J_np, rel=1e-10)
    benchmark.group = f"train step {name}"
    benchmark.extra_info["flops"] = gemm_flops(sizes, n)
    if impl == "fastbp":
        benchmark.pedantic(net.train_step, args=(X, T), kwargs={"lr": LR},
                           rounds=rounds, iterations=1, warmup_rounds=1)
    else:
        benchmark.pedantic(numpy_step, args=(Ws, bs, acts, X, T, LR),
                           rounds=rounds, iterations=1, warmup_rounds=1)
    _record(benchmark, name, impl, gemm_flops(sizes, n))


@pytest.fixture(scope="module", autouse=True)
def summary():
    """After the module: print the speed-ups and the large net's fraction of
    the DGEMM bound (run with -s to see it)."""
    yield
    lines = []
    for name, sizes, n, _ in WORKLOADS:
        fb, npy = _results.get((name, "fastbp")), _results.get((name, "numpy"))
        if fb is None or npy is None:
            continue
        lines.append(f"{name}: fastbp {fb * 1e6:.1f} us, numpy {npy * 1e6:.1f} us, "
                     f"speed-up {npy / fb:.2f}x, {gemm_flops(sizes, n) / fb / 1e9:.1f} GFLOP/s")
    dgemm = _results.get(("dgemm", "numpy"))
    big = WORKLOADS[-1]
    if dgemm and (big[0], "fastbp") in _results:
        rate = 2 * 2048 ** 3 / dgemm
        bound = gemm_flops(big[1], big[2]) / rate
        lines.append(f"DGEMM 2048^3: {rate / 1e9:.1f} GFLOP/s; large net at "
                     f"{100 * bound / _results[(big[0], 'fastbp')]:.1f}% of the DGEMM bound")
    if lines:
        print("\n" + "\n".join(lines))
