"""pytest-benchmark suite of one SGD training step (forward, squared error,
backward, update): ``MLP.train_step`` against the plain NumPy step composed
from fastbp.reference.

The workloads are those of ``fastbp-bench --suite networks``
(fastbp.bench.workloads.NETWORKS: [64,64,64,1] b32, [784,256,256,10] b128,
[1024,1024,1024,1024] b1024, sigmoid hidden, identity output), each checked
against the reference before it is timed.  numpy's DGEMM at 2048³ is timed
too: the large net is measured against its GEMM flops (forward, δW, and δX
except the first layer's) divided by that rate.

    pytest benchmarks/bench_network.py --benchmark-only -s   # -s prints the ratios
"""

import numpy as np
import pytest

from fastbp.bench.runner import checked_instance
from fastbp.bench.workloads import IMPL_FASTBP, IMPL_REFERENCE, NETWORKS, network_workloads

WORKLOADS = network_workloads(NETWORKS)
_best = {}  # (workload name, impl) -> best seconds, for the summary


def _rounds(w):
    return max(3, min(200, int(2e9 / w.flops)))


def test_dgemm_2048(benchmark):
    rng = np.random.default_rng(0)
    A, B = rng.normal(size=(2048, 2048)), rng.normal(size=(2048, 2048))
    C = np.empty((2048, 2048))
    benchmark.group = "dgemm 2048^3"
    benchmark.pedantic(np.matmul, args=(A, B), kwargs={"out": C}, rounds=3, warmup_rounds=1)
    _best[("dgemm", "numpy")] = benchmark.stats.stats.min


@pytest.mark.parametrize("impl", [IMPL_FASTBP, IMPL_REFERENCE])
@pytest.mark.parametrize("workload", WORKLOADS, ids=[w.name.replace(" ", "-") for w in WORKLOADS])
def test_train_step(benchmark, workload, impl):
    inst = checked_instance(workload, impl)
    benchmark.group = workload.name
    benchmark.extra_info.update(flops=workload.flops, impl=impl)
    benchmark.pedantic(inst.run, rounds=_rounds(workload), iterations=1, warmup_rounds=1)
    _best[(workload.name, impl)] = benchmark.stats.stats.min


@pytest.fixture(scope="module", autouse=True)
def summary():
    """After the module: speed-ups, and the large net's share of the DGEMM bound."""
    yield
    lines = []
    for w in WORKLOADS:
        fb, npy = _best.get((w.name, IMPL_FASTBP)), _best.get((w.name, IMPL_REFERENCE))
        if fb and npy:
            lines.append(f"{w.name}: fastbp {fb * 1e6:.1f} us, numpy {npy * 1e6:.1f} us, "
                         f"speed-up {npy / fb:.2f}x, {w.flops / fb / 1e9:.1f} GFLOP/s")
    dgemm, big = _best.get(("dgemm", "numpy")), WORKLOADS[-1]
    if dgemm and (big.name, IMPL_FASTBP) in _best:
        rate = 2 * 2048 ** 3 / dgemm
        share = big.flops / rate / _best[(big.name, IMPL_FASTBP)]
        lines.append(f"DGEMM 2048^3: {rate / 1e9:.1f} GFLOP/s; {big.name} at "
                     f"{100 * share:.1f}% of the DGEMM bound")
    if lines:
        print("\n" + "\n".join(lines))
