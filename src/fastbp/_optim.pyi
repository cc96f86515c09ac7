# Stubs of the compiled optimiser loops (src/fastbp/_optim.pyx).
import numpy as np
import numpy.typing as npt

_F64 = npt.NDArray[np.float64]

def sgd_update(params: _F64, grads: _F64, lr: float, weight_decay: float = 0.0,
               n_decay: int = -1) -> None: ...
def momentum_update(params: _F64, grads: _F64, velocity: _F64, lr: float, momentum: float,
                    nesterov: bool = False, weight_decay: float = 0.0, n_decay: int = -1) -> None: ...
def adam_update(params: _F64, grads: _F64, m: _F64, v: _F64, lr: float, beta1: float,
                beta2: float, eps: float, t: int, weight_decay: float = 0.0,
                n_decay: int = -1) -> None: ...
