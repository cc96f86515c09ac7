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

from fastbp import _optim
from fastbp._enums import Update

__all__ = ["Optimizer", "SGD", "Momentum", "Adam", "make_optimizer", "OPTIMIZERS"]


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
        self._update = None  # the UpdateSpec of update_spec, made once

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

    def update_spec(self, params, lr=None):
        """This optimiser's next step as a network's compiled step makes it
        itself, fused with the pass (``fastbp._optim.UpdateSpec``: its kind,
        constants, state made for ``params`` and steps so far, which the
        step advances); None where it cannot: a subclass, whose ``step``
        may be its own.  The same object every call (nothing allocated):
        the internal interface between an optimiser and the network core."""
        if type(self) not in (SGD, Momentum, Adam):
            return None
        spec = self._spec(params)
        spec.lr = self._lr(lr)
        spec.weight_decay = self.weight_decay
        return spec

    def _spec(self, params):
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}(lr={self.lr}, weight_decay={self.weight_decay})"


class SGD(Optimizer):
    """θ ← θ − lr (g + λ θ)."""

    def step(self, params, grads, lr=None, n_decay=None):
        _optim.sgd_update(params, grads, self._lr(lr), self.weight_decay,
                          -1 if n_decay is None else n_decay)

    def _spec(self, params):
        if self._update is None:
            self._update = _optim.UpdateSpec(Update.UPD_SGD)
        return self._update


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

    def _spec(self, params):
        self._bind(params)
        if self._update is None or self._update.m is not self.velocity:
            self._update = _optim.UpdateSpec(
                Update.UPD_NESTEROV if self.nesterov else Update.UPD_MOMENTUM, m=self.velocity)
        self._update.momentum = self.momentum  # (an attribute the user may have changed)
        return self._update

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
        self._t = 0

    # the steps made, kept in the UpdateSpec once there is one (a compiled
    # step counts its own)
    @property
    def t(self):
        return self._update.t if self._update is not None else self._t

    @t.setter
    def t(self, value):
        self._t = int(value)
        if self._update is not None:
            self._update.t = self._t

    def _make_state(self, n):
        self.m = np.zeros(n)
        self.v = np.zeros(n)
        self._update = None
        self.t = 0

    def step(self, params, grads, lr=None, n_decay=None):
        self._bind(params)
        lr = self._lr(lr)
        self.t += 1
        _optim.adam_update(params, grads, self.m, self.v, lr, self.t, beta1=self.beta1,
                           beta2=self.beta2, eps=self.eps, weight_decay=self.weight_decay,
                           n_decay=-1 if n_decay is None else n_decay)

    def _spec(self, params):
        self._bind(params)
        if self._update is None or self._update.m is not self.m or self._update.v is not self.v:
            self._update = _optim.UpdateSpec(Update.UPD_ADAM, t=self.t, m=self.m, v=self.v)
        spec = self._update  # the constants as they are now (the user may have set them)
        spec.beta1, spec.beta2, spec.eps = self.beta1, self.beta2, self.eps
        return self._update

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
