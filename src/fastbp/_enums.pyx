# cython: language_level=3
"""The names and codes of activations, losses, outputs, reductions, updates
and dampings.

The codes are defined once, in _enums.h; _enums.pxd declares them, and
Cython makes each enum a Python IntEnum here (``Activation.ACT_RELU``).
The names users write are the members' names without the prefix, in code
order, so ``ACTIVATIONS[code]`` is a code's name:

    ACTIVATIONS = ("identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu",
                   "softplus", "silu")
    LOSSES      = ("squared_error", "cross_entropy", "binary_cross_entropy", "poisson")
    OUTPUTS     = ("none", "softmax", "exp")
    REDUCTIONS  = ("sum", "half", "mean")
    UPDATES     = ("none", "sgd", "momentum", "nesterov", "adam")
    DAMPINGS    = ("identity", "diagonal")

``codes(activation=..., loss=..., reduction=...)`` looks names up, with an
error that lists the choices; ``code(kind, name)`` looks up one.
"""


cdef tuple _names(object enum):
    members = sorted(enum, key=int)
    assert [int(m) for m in members] == list(range(len(members))), enum  # codes index the tuple
    return tuple(m.name.split("_", 1)[1].lower() for m in members)


ACTIVATIONS = _names(Activation)
LOSSES = _names(Loss)
OUTPUTS = _names(Output)  # inference's function of the logits (NetworkCore's output=)
REDUCTIONS = _names(Reduction)
UPDATES = _names(Update)
DAMPINGS = _names(Damping)  # Levenberg-Marquardt's D

cdef dict _TABLES = {
    "activation": (ACTIVATIONS, dict(zip(ACTIVATIONS, sorted(Activation, key=int)))),
    "loss": (LOSSES, dict(zip(LOSSES, sorted(Loss, key=int)))),
    "output": (OUTPUTS, dict(zip(OUTPUTS, sorted(Output, key=int)))),
    "reduction": (REDUCTIONS, dict(zip(REDUCTIONS, sorted(Reduction, key=int)))),
    "update": (UPDATES, dict(zip(UPDATES, sorted(Update, key=int)))),
    "damping": (DAMPINGS, dict(zip(DAMPINGS, sorted(Damping, key=int)))),
}


# the same lookups to plain C ints, for the kernels' hot paths
cdef dict _ACTIVATION_INT = {name: int(c) for name, c in _TABLES["activation"][1].items()}
cdef dict _REDUCTION_INT = {name: int(c) for name, c in _TABLES["reduction"][1].items()}


cdef int activation_code(object name) except -1:
    cdef object c = _ACTIVATION_INT.get(name) if isinstance(name, str) else None
    return <int>c if c is not None else <int>code("activation", name)


cdef int reduction_code(object name) except -1:
    cdef object c = _REDUCTION_INT.get(name) if isinstance(name, str) else None
    return <int>c if c is not None else <int>code("reduction", name)


cpdef object code(str kind, object name):
    """The code of one name of ``kind``: code("loss", "cross_entropy") is
    Loss.LOSS_CROSS_ENTROPY (positional, for hot paths)."""
    names, table = _TABLES[kind]
    try:
        return table[name]
    except (KeyError, TypeError):
        raise ValueError(f"{kind} must be one of {names}, got {name!r}") from None


def codes(activation=None, loss=None, reduction=None, update=None):
    """The codes (IntEnum members) of the names given, in this order:
    ``codes(loss="cross_entropy", reduction="mean")`` is
    ``(Loss.LOSS_CROSS_ENTROPY, Reduction.RED_MEAN)``; one name gives one
    code.  An unknown name raises ValueError listing the choices."""
    found = tuple(code(kind, name) for kind, name in (
        ("activation", activation), ("loss", loss), ("reduction", reduction), ("update", update))
        if name is not None)
    if not found:
        raise TypeError("codes() needs a name: activation=, loss=, reduction= or update=")
    return found[0] if len(found) == 1 else found
