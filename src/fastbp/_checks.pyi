# Stubs of the compiled argument checks (src/fastbp/_checks.pyx).
import numpy as np
import numpy.typing as npt

def check_buffer(buf: npt.NDArray[np.float64], name: str) -> npt.NDArray[np.float64]: ...
