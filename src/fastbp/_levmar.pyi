# Stubs of Levenberg-Marquardt's damped solve (src/fastbp/_levmar.pyx).
import numpy as np
import numpy.typing as npt

_F64 = npt.NDArray[np.float64]

FORMS: tuple[str, ...]

class DampedSystem:
    n_params: int
    n_residuals: int
    form: str
    jtj: _F64 | None
    jte: _F64
    jacobian: _F64 | None
    residuals: _F64 | None
    sums: _F64 | None
    inputs: tuple[_F64, ...] | None
    def __init__(self, n_params: int, n_residuals: int = 0,
                 layers: list[tuple[int, int, int]] | None = None) -> None: ...
    @staticmethod
    def doubles(n_params: int, n_residuals: int = 0) -> int: ...
    def prepare(self, inputs_filled: bool = False) -> None: ...
    def solve(self, mu: float, out: _F64, *, damping: int = 0, alpha: float = 0.0,
              params: _F64 | None = None, n_weights: int = 0) -> bool: ...
