# Stubs of the compiled sparse first layer (src/fastbp/_sparse.pyx).
from typing import Any

import numpy as np
import numpy.typing as npt

_F64 = npt.NDArray[np.float64]

def csr_forward(X: Any, W: _F64, b: _F64, activation: str = "identity",
                out: _F64 | None = None, *, Z: _F64 | None = None) -> _F64: ...
def csr_backward(dY: _F64, X: Any, Y: _F64, activation: str = "identity", *,
                 Z: _F64 | None = None) -> tuple[_F64, _F64]: ...
