# Stubs of the compiled derivative passes (src/fastbp/_derivatives.pyx).
from typing import Any

import numpy as np
import numpy.typing as npt

from fastbp._network import NetworkCore

_F64 = npt.NDArray[np.float64]

WORK_BUDGET: int

class Derivatives:
    budget: int
    split_calls: int
    def __init__(self, core: NetworkCore, *, budget: int = 262144) -> None: ...
    def input_jacobian(self, X: Any, out: _F64 | None = None) -> _F64: ...
    def input_gradient(self, X: Any, T: Any, out: _F64 | None = None, *, loss: int = 0,
                       reduction: int = 0, sample_weight: _F64 | None = None) -> tuple[float, _F64]: ...
    def jvp(self, X: Any, dX: _F64 | None = None, dparams: _F64 | None = None,
            out: tuple[_F64, _F64] | None = None) -> tuple[_F64, _F64]: ...
    def vjp(self, X: Any, dY: _F64, out: tuple[_F64, _F64] | None = None) -> tuple[_F64, _F64]: ...
    def hvp(self, X: Any, T: Any, v: _F64, out: _F64 | None = None, *, loss: int = 0,
            reduction: int = 0, sample_weight: _F64 | None = None,
            gauss_newton: bool = False) -> _F64: ...
    def param_jacobian(self, X: Any, out: _F64 | None = None) -> _F64: ...
    def per_example_gradients(self, X: Any, T: Any, out: _F64 | None = None, *, loss: int = 0,
                              reduction: int = 0, sample_weight: _F64 | None = None) -> _F64: ...
    def residual_jacobian(self, X: Any, T: Any, J: _F64 | None, e: _F64 | None, *,
                          sample_weight: _F64 | None = None, weight_scale: float = 0.0,
                          inputs: Any = None) -> float: ...
    def normal_equations(self, X: Any, T: Any, jtj: _F64 | None, jte: _F64 | None, *,
                         sample_weight: _F64 | None = None, weight_scale: float = 0.0,
                         block_rows: int = 0) -> float: ...
