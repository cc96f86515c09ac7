# Stubs of the compiled losses and softmax (src/fastbp/_losses.pyx).
import numpy as np
import numpy.typing as npt

def loss_scale(reduction: int, n: int) -> float: ...
def softmax(Z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]: ...
def binary_cross_entropy(Z: npt.NDArray[np.float64], T: npt.NDArray[np.float64],
                         reduction: str = "sum",
                         sample_weight: npt.NDArray[np.float64] | None = None,
                         out: npt.NDArray[np.float64] | None = None,
                         ) -> tuple[float, npt.NDArray[np.float64]]: ...
def poisson(Z: npt.NDArray[np.float64], T: npt.NDArray[np.float64], reduction: str = "sum",
            sample_weight: npt.NDArray[np.float64] | None = None,
            out: npt.NDArray[np.float64] | None = None,
            ) -> tuple[float, npt.NDArray[np.float64]]: ...
