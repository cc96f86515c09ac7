"""Optimisers that update a flat parameter vector in place.

Each optimiser has ``step(params, grads, lr=None, n_decay=None)``: one update
of ``params`` (a contiguous float64 vector) from ``grads`` (same size), run
by a compiled loop without the GIL (``fastbp._optim``).  Their state
(velocity, Adam moments) is made on the first step, sized like ``params``,
and reused after, so a step allocates nothing.

``weight_decay`` λ is an L2 penalty λ/2 ‖θ‖² added to the loss; its gradient
λ θ is added to ``grads`` inside the loop, on the first ``n_decay`` values
only (an MLP passes its number of weights: its biases are not penalised).
"""

import math

import numpy as np

from fastbp import _network, _optim

__all__ = ["Optimizer", "SGD", "Momentum", "Adam", "make_optimizer", "OPTIMIZERS"]

# NetworkCore.step's codes of the updates it can make itself
_UPDATE = {name: code for code, name in enumerate(_network.UPDATES)}


def _positive(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _in_unit(value, name):
    if not (0.0 <= value < 1.0):
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return float(value)


def _non_negative(value, name):
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


class Optimizer:
    """Base class: holds the learning rate and the L2 penalty."""

    default_lr = 0.01

    def __init__(self, lr=None, weight_decay=0.0):
        self.lr = _positive(self.default_lr if lr is None else lr, "lr")
        self.weight_decay = _non_negative(weight_decay, "weight_decay")
        self._size = None

    def _lr(self, lr):
        return self.lr if lr is None else _positive(lr, "lr")

    def _bind(self, params):
        """Check the size against the state's, making the state on first use."""
        n = params.shape[0] if isinstance(params, np.ndarray) and params.ndim == 1 else None
        if n is None:
            raise ValueError("params must be a 1-D float64 numpy array (a network's flat params)")
        if self._size is None:
            self._size = n
            self._make_state(n)
        elif n != self._size:
            raise ValueError(
                f"this {type(self).__name__} holds state for {self._size} parameters, got {n}; "
                "use one optimiser per network (or call reset())")

    def _make_state(self, n):
        pass

    def reset(self):
        """Forget the state (velocity, moments, step count)."""
        self._size = None

    def step(self, params, grads, lr=None, n_decay=None):
        raise NotImplementedError

    def _core_state(self, params):
        """This optimiser's update as the compiled loops make it
        (NetworkCore.step and .epoch): (update code, momentum, beta1, beta2,
        eps, steps made so far, m, v), its state made for ``params``.  Only
        for SGD, Momentum and Adam themselves (see ``_core_update``)."""
        raise NotImplementedError

    def _core_update(self, params, lr=None):
        """The arguments of a network's compiled step (NetworkCore.step, from
        ``lr`` on) with which it makes this optimiser's next step itself,
        fused with the pass, the penalty on its weights; None where it
        cannot (a subclass, whose step may be its own).  Call ``_stepped``
        after.  A tuple, not keywords: a ``**`` call would allocate in the
        step."""
        if type(self) not in (SGD, Momentum, Adam):
            return None
        lr = self._lr(lr)
        code, momentum, beta1, beta2, eps, t, m, v = self._core_state(params)
        return (lr, self.weight_decay, code, momentum, beta1, beta2, eps, t + 1, m, v)

    def _stepped(self):
        """Count a step that NetworkCore.step made (Adam's t)."""

    def __repr__(self):
        return f"{type(self).__name__}(lr={self.lr}, weight_decay={self.weight_decay})"


class SGD(Optimizer):
    """θ ← θ − lr (g + λ θ)."""

    def step(self, params, grads, lr=None, n_decay=None):
        _optim.sgd_update(params, grads, self._lr(lr), self.weight_decay,
                          -1 if n_decay is None else n_decay)

    def _core_state(self, params):
        return (_UPDATE["sgd"], 0.0, 0.0, 0.0, 0.0, 0, None, None)


class Momentum(Optimizer):
    """Heavy-ball momentum: v ← μ v + g̃, θ ← θ − lr v (g̃ = g + λ θ).

    ``nesterov=True``: θ ← θ − lr (g̃ + μ v), the look-ahead form.
    """

    def __init__(self, lr=None, momentum=0.9, nesterov=False, weight_decay=0.0):
        super().__init__(lr, weight_decay)
        self.momentum = _in_unit(momentum, "momentum")
        self.nesterov = bool(nesterov)
        self.velocity = None

    def _make_state(self, n):
        self.velocity = np.zeros(n)

    def step(self, params, grads, lr=None, n_decay=None):
        self._bind(params)
        _optim.momentum_update(params, grads, self.velocity, self._lr(lr), self.momentum,
                               self.nesterov, self.weight_decay,
                               -1 if n_decay is None else n_decay)

    def _core_state(self, params):
        self._bind(params)
        return (_UPDATE["nesterov" if self.nesterov else "momentum"], self.momentum, 0.0, 0.0,
                0.0, 0, self.velocity, None)

    def __repr__(self):
        return (f"Momentum(lr={self.lr}, momentum={self.momentum}, nesterov={self.nesterov}, "
                f"weight_decay={self.weight_decay})")


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias-corrected moments."""

    default_lr = 0.001

    def __init__(self, lr=None, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
        super().__init__(lr, weight_decay)
        self.beta1 = _in_unit(beta1, "beta1")
        self.beta2 = _in_unit(beta2, "beta2")
        self.eps = _positive(eps, "eps")
        self.m = self.v = None
        self.t = 0

    def _make_state(self, n):
        self.m = np.zeros(n)
        self.v = np.zeros(n)
        self.t = 0

    def step(self, params, grads, lr=None, n_decay=None):
        self._bind(params)
        lr = self._lr(lr)
        self.t += 1
        _optim.adam_update(params, grads, self.m, self.v, lr, self.beta1, self.beta2,
                           self.eps, self.t, self.weight_decay,
                           -1 if n_decay is None else n_decay)

    def _core_state(self, params):
        self._bind(params)
        return (_UPDATE["adam"], 0.0, self.beta1, self.beta2, self.eps, self.t, self.m, self.v)

    def _stepped(self):
        self.t += 1

    def __repr__(self):
        return (f"Adam(lr={self.lr}, beta1={self.beta1}, beta2={self.beta2}, eps={self.eps}, "
                f"weight_decay={self.weight_decay})")


OPTIMIZERS = {
    "sgd": SGD,
    "momentum": Momentum,
    "nesterov": lambda **kw: Momentum(nesterov=True, **kw),
    "adam": Adam,
}


def make_optimizer(optimizer, lr=None, weight_decay=0.0):
    """An optimiser from a name in OPTIMIZERS, or the given object itself."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, str) and optimizer in OPTIMIZERS:
        return OPTIMIZERS[optimizer](lr=lr, weight_decay=weight_decay)
    raise ValueError(
        f"optimizer must be one of {tuple(OPTIMIZERS)} or a fastbp.optim.Optimizer, got {optimizer!r}")
