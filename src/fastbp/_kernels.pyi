# Type stubs of the compiled core (src/fastbp/_kernels.pyx).
# tests/test_typing.py holds every signature here to the compiled one.
from typing import Literal

import numpy as np
import numpy.typing as npt

_F64 = npt.NDArray[np.float64]
_Activation = Literal["identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus",
                      "silu"]
_Reduction = Literal["sum", "half", "mean"]

def matmul_abt(A: _F64, B: _F64, out: _F64 | None = None) -> _F64: ...
def matmul_abt_backward(
    dC: _F64,
    A: _F64,
    B: _F64,
    dA: _F64 | None = None,
    dB: _F64 | None = None,
) -> tuple[_F64, _F64]: ...
def dense_forward(
    X: _F64,
    W: _F64,
    b: _F64,
    activation: _Activation | str = "identity",
    out: _F64 | None = None,
    *,
    Z: _F64 | None = None,
) -> _F64: ...
def dense_backward(
    dY: _F64,
    X: _F64,
    W: _F64,
    Y: _F64,
    activation: _Activation | str = "identity",
    dX: _F64 | None = None,
    dW: _F64 | None = None,
    db: _F64 | None = None,
    need_dX: bool = True,
    *,
    Z: _F64 | None = None,
) -> tuple[_F64 | None, _F64, _F64]: ...
def squared_error(
    Y: _F64,
    T: _F64,
    reduction: _Reduction | str = "sum",
    out: _F64 | None = None,
) -> tuple[float, _F64]: ...
