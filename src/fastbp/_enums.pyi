# Stubs of the compiled core's codes (src/fastbp/_enums.pyx).
from enum import IntEnum
from typing import Any, Final

class Activation(IntEnum):
    ACT_IDENTITY = 0
    ACT_SIGMOID = 1
    ACT_TANH = 2
    ACT_RELU = 3
    ACT_LEAKY_RELU = 4
    ACT_ELU = 5
    ACT_SOFTPLUS = 6
    ACT_SILU = 7

class Loss(IntEnum):
    LOSS_SQUARED_ERROR = 0
    LOSS_CROSS_ENTROPY = 1
    LOSS_BINARY_CROSS_ENTROPY = 2
    LOSS_POISSON = 3

class Output(IntEnum):
    OUT_NONE = 0
    OUT_SOFTMAX = 1
    OUT_EXP = 2

class Reduction(IntEnum):
    RED_SUM = 0
    RED_HALF = 1
    RED_MEAN = 2

class Update(IntEnum):
    UPD_NONE = 0
    UPD_SGD = 1
    UPD_MOMENTUM = 2
    UPD_NESTEROV = 3
    UPD_ADAM = 4

class Damping(IntEnum):
    DAMP_IDENTITY = 0
    DAMP_DIAGONAL = 1

ACTIVATIONS: Final[tuple[str, ...]]
LOSSES: Final[tuple[str, ...]]
OUTPUTS: Final[tuple[str, ...]]
REDUCTIONS: Final[tuple[str, ...]]
UPDATES: Final[tuple[str, ...]]
DAMPINGS: Final[tuple[str, ...]]

def code(kind: str, name: Any) -> IntEnum: ...
def codes(activation: Any = None, loss: Any = None, reduction: Any = None,
          update: Any = None) -> Any: ...
