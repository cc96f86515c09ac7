# Stubs of the compiled network core (src/fastbp/_network.pyx).
from typing import Any, Callable, Sequence

import numpy as np
import numpy.typing as npt

from fastbp._optim import UpdateSpec

_F64 = npt.NDArray[np.float64]

class Objective:
    alpha: float
    grad_scale: float
    loss_scale: float
    held_units: int
    weigh_by_rows: bool
    eps_before_correction: bool
    def __init__(self, *, alpha: float = 0.0, grad_scale: float = 1.0, loss_scale: float = 1.0,
                 held_units: int = 0, weigh_by_rows: bool = False,
                 eps_before_correction: bool = False) -> None: ...

class NetworkCore:
    n_layers: int
    capacity: int
    output: int
    worst_row_loss: float
    split_steps: int
    def __init__(self, sizes: Sequence[int], activations: Sequence[int], params: _F64,
                 grads: _F64, *, output: int = 0) -> None: ...
    def reserve(self, rows: int) -> None: ...
    def step(self, X: Any, T: Any, *, loss: int = 0, reduction: int = 0,
             sample_weight: _F64 | None = None, backward: bool = True,
             update: UpdateSpec | None = None) -> float: ...
    def epoch(self, X: Any, T: Any, *, batch_size: int, loss: int = 0, reduction: int = 2,
              update: UpdateSpec | None = None, order: npt.NDArray[np.int64] | None = None,
              buffers: tuple[_F64 | None, npt.NDArray[Any]] | None = None,
              sample_weight: _F64 | None = None, objective: Objective | None = None,
              after_gradient: Callable[[int], Any] | None = None,
              batch_weights: _F64 | None = None) -> float: ...
    def forward(self, X: Any, out: _F64) -> _F64: ...
    def per_example_grad_norms(self, X: Any, T: Any, out: _F64, *, loss: int = 0,
                               reduction: int = 0, sample_weight: _F64 | None = None) -> _F64: ...
