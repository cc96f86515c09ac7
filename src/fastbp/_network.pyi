# Stubs of the compiled network passes (src/fastbp/_network.pyx).
from typing import Any, Sequence

import numpy as np
import numpy.typing as npt

_F64 = npt.NDArray[np.float64]

LOSSES: tuple[str, ...]
REDUCTIONS: tuple[str, ...]
UPDATES: tuple[str, ...]

def activation_code(name: Any) -> int: ...
def all_finite(a: _F64) -> bool: ...
def gather_rows(src: npt.NDArray[Any], index: npt.NDArray[np.int64], start: int, count: int,
                dst: npt.NDArray[Any]) -> None: ...

class NetworkCore:
    n_layers: int
    capacity: int
    softmax_output: bool
    worst_row_loss: float
    split_steps: int
    def __init__(self, sizes: Sequence[int], act_codes: Sequence[int], params: _F64,
                 grads: _F64, softmax_output: bool = False) -> None: ...
    def reserve(self, rows: int) -> None: ...
    def step(self, X: _F64, T: Any, loss: int = 0, reduction: int = 0,
             sample_weight: Any = None, backward: bool = True, lr: float = 0.0,
             weight_decay: float = 0.0, update: int = 0, momentum: float = 0.0,
             beta1: float = 0.0, beta2: float = 0.0, eps: float = 0.0, t: int = 0,
             m: _F64 | None = None, v: _F64 | None = None) -> float: ...
    def epoch(self, X: _F64, T: Any, order: npt.NDArray[np.int64] | None, batch_size: int,
              loss: int, sample_weight: _F64 | None, X_buf: _F64, T_buf: npt.NDArray[Any],
              kind: int, lr: float, momentum: float, beta1: float, beta2: float, eps: float,
              t: int, m: _F64 | None, v: _F64 | None, alpha: float, grad_scale: float,
              loss_scale: float, held_units: int) -> tuple[float, int]: ...
    def forward(self, X: _F64, out: _F64) -> _F64: ...
    def per_example_grad_norms(self, X: _F64, T: Any, loss: int, reduction: int,
                               sample_weight: Any, out: _F64) -> _F64: ...
