"""fastbp: fused float64 backpropagation kernels with NumPy twins.

The compiled kernels (``matmul_abt``, ``matmul_abt_backward``,
``dense_forward``, ``dense_backward``, ``squared_error``) work on
C-contiguous float64 arrays, one example per row; ``fastbp.reference``
holds their NumPy twins with the same signatures.

On top of them: ``fastbp.MLP`` (networks and training on the fused
kernels, Levenberg-Marquardt among its trainers), ``fastbp.graph`` (seed 002's computational graph of
blocks), ``fastbp.gradcheck`` (finite differences against a backward pass)
and ``fastbp.paths`` (seed 000's gradient as a sum over paths).
"""

from fastbp._enums import ACTIVATIONS, REDUCTIONS
from fastbp._kernels import (
    dense_backward,
    dense_forward,
    matmul_abt,
    matmul_abt_backward,
    squared_error,
)
from fastbp import distributed, graph, optim, paths, reference  # distributed imports mpi4py only when used
from fastbp.checkpoint import CheckpointError
from fastbp.finite_diff import gradcheck
from fastbp.levmar import MemoryBudgetError
from fastbp.network import MLP
from fastbp.training import DivergenceError
from fastbp.threads import threadpool_limits

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "CheckpointError",
    "DivergenceError",
    "MLP",
    "MemoryBudgetError",
    "REDUCTIONS",
    "dense_backward",
    "dense_forward",
    "distributed",
    "gradcheck",
    "graph",
    "matmul_abt",
    "matmul_abt_backward",
    "optim",
    "paths",
    "reference",
    "squared_error",
    "threadpool_limits",
]
