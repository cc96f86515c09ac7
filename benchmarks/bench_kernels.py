"""pytest-benchmark suite of the kernels: fastbp and its NumPy reference.

The workloads are those of ``fastbp-bench`` (fastbp.bench.workloads): for
each, two benchmarks in one group, fastbp and the reference, both on inputs
and output buffers made beforehand, both checked against the reference
before they are timed.

    pytest benchmarks/bench_kernels.py --benchmark-only
    pytest benchmarks/bench_kernels.py --benchmark-only -k "256x256x256"
"""

import pytest

from fastbp.bench.runner import checked_instance
from fastbp.bench.workloads import (IMPL_FASTBP, IMPL_REFERENCE, KERNEL_SHAPES,
                                    kernel_workloads)

WORKLOADS = kernel_workloads(KERNEL_SHAPES)


@pytest.mark.parametrize("impl", [IMPL_FASTBP, IMPL_REFERENCE])
@pytest.mark.parametrize("workload", WORKLOADS, ids=[w.name.replace(" ", "-") for w in WORKLOADS])
def test_kernel(benchmark, workload, impl):
    inst = checked_instance(workload, impl)
    benchmark.group = workload.name
    benchmark.extra_info.update(flops=workload.flops, impl=impl)
    benchmark(inst.run)
