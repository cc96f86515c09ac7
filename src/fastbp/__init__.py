"""fastbp: fused float64 backpropagation kernels with NumPy twins.

The compiled kernels (``matmul_abt``, ``matmul_abt_backward``,
``dense_forward``, ``dense_backward``, ``squared_error``) work on
C-contiguous float64 arrays, one example per row; ``fastbp.reference``
holds their NumPy twins with the same signatures.
"""

from fastbp._kernels import (
    ACTIVATIONS,
    REDUCTIONS,
    dense_backward,
    dense_forward,
    matmul_abt,
    matmul_abt_backward,
    squared_error,
)
from fastbp import reference

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "REDUCTIONS",
    "dense_backward",
    "dense_forward",
    "matmul_abt",
    "matmul_abt_backward",
    "reference",
    "squared_error",
]
