# Stubs of the compiled optimiser loops (src/fastbp/_optim.pyx).
import numpy as np
import numpy.typing as npt

_F64 = npt.NDArray[np.float64]

def sgd_update(params: _F64, grads: _F64, lr: float, weight_decay: float = 0.0,
               n_decay: int = -1) -> None: ...
def momentum_update(params: _F64, grads: _F64, velocity: _F64, lr: float, momentum: float,
                    nesterov: bool = False, weight_decay: float = 0.0, n_decay: int = -1) -> None: ...
def adam_update(params: _F64, grads: _F64, m: _F64, v: _F64, lr: float, t: int, *,
                beta1: float, beta2: float, eps: float, weight_decay: float = 0.0,
                n_decay: int = -1) -> None: ...

class UpdateSpec:
    kind: int
    lr: float
    weight_decay: float
    momentum: float
    beta1: float
    beta2: float
    eps: float
    t: int
    m: _F64 | None
    v: _F64 | None
    def __init__(self, kind: int = 0, *, lr: float = 0.0, weight_decay: float = 0.0,
                 momentum: float = 0.0, beta1: float = 0.0, beta2: float = 0.0,
                 eps: float = 0.0, t: int = 0, m: _F64 | None = None,
                 v: _F64 | None = None) -> None: ...
