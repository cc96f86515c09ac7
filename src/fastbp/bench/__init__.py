"""The benchmark CLI, ``fastbp-bench`` (also ``python -m fastbp.bench``).

The workloads it times are defined once, in :mod:`fastbp.bench.workloads`,
and shared with the pytest-benchmark suites in ``benchmarks/``.
"""

from fastbp.bench.cli import main

__all__ = ["main"]
