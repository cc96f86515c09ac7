"""Seed 000's gradient of a linear network as a sum over paths.

For a network with identity activations, every output is a sum over the
input-to-output paths of the product of what lies on the path: the input
value x_s (or the constant 1 of a bias), then the weights (and the bias it
starts with).  With E = ½ Σ (t − y)² and δ_k = y_k − t_k, the derivative of
E with respect to one weight w is therefore

    ∂E/∂w = Σ over the paths p through w of  x_p · δ_k(p) · Π (the other weights on p),

which for a first-layer weight is seed 000's x Σ_k δ_k Σ_paths Π w.  This
module enumerates those paths one by one — no matrix products — so it is an
oracle for backprop on small linear nets, and :func:`explain` prints the
paths and their products for one weight.  The number of paths grows as the
product of the layer widths, so every function refuses a network with more
than ``limit`` paths.

Conventions (those of fastbp): ``weights[l]`` is W of layer l + 1, shaped
(D_{l+1}, D_l), one row per output neuron, so ``weights[l][j, i]`` joins
neuron i of layer l (layer 0 is the input) to neuron j of layer l + 1;
``biases[l]`` is (D_{l+1},).  ``x`` is one input (K,) or a batch (N, K), and
``t`` the matching targets; the loss of a batch is the sum over its rows.
"""

import itertools
import math
from dataclasses import dataclass

import numpy as np

from fastbp._enums import REDUCTIONS, code
from fastbp._losses import loss_scale

__all__ = ["DEFAULT_LIMIT", "REDUCTIONS", "Path", "Explanation", "TooManyPaths",
           "count", "enumerate_paths", "gradient", "bias_gradient", "explain"]

DEFAULT_LIMIT = 100_000


class TooManyPaths(ValueError):
    """The network has more input-to-output paths than the limit allows."""


@dataclass(frozen=True)
class Path:
    """One input-to-output path.

    It starts at layer ``start``: at input unit ``neurons[0]`` when start is
    0 and ``bias`` is false, or at the bias of neuron ``neurons[0]`` of layer
    ``start`` (≥ 1).  ``neurons[i]`` is the neuron it passes in layer
    start + i; the last is the output neuron k.
    """

    start: int
    neurons: tuple
    bias: bool = False

    @property
    def output(self):
        return self.neurons[-1]

    def parameters(self):
        """The parameters on the path, in order: ("b", layer, j) then ("W", layer, j, i)."""
        params = [("b", self.start - 1, self.neurons[0])] if self.bias else []
        for step, (i, j) in enumerate(zip(self.neurons, self.neurons[1:])):
            params.append(("W", self.start + step, j, i))
        return params

    def describe(self, n_layers):
        """E.g. "x[0] ─W1[1,0]→ h1[1] ─W2[0,1]→ y[0]", or "1 ─b2[0]→ y[0]" for a bias path."""
        def unit(layer):
            return "y" if layer == n_layers else f"h{layer}"
        j = self.neurons[0]
        hops = [f"1 ─b{self.start}[{j}]→ {unit(self.start)}[{j}]" if self.bias else f"x[{j}]"]
        for step, (i, j) in enumerate(zip(self.neurons, self.neurons[1:])):
            layer = self.start + step + 1
            hops.append(f"─W{layer}[{j},{i}]→ {unit(layer)}[{j}]")
        return " ".join(hops)


def _check(weights, biases):
    weights = [np.asarray(W, dtype=np.float64) for W in weights]
    if not weights:
        raise ValueError("weights must hold at least one (D_l, D_{l-1}) matrix")
    for l, W in enumerate(weights):
        if W.ndim != 2:
            raise ValueError(f"weights[{l}] must be 2-D (D_l, D_l-1), got shape {W.shape}")
        if l and W.shape[1] != weights[l - 1].shape[0]:
            raise ValueError(f"weights[{l}] has shape {W.shape}: its {W.shape[1]} columns must "
                             f"match the {weights[l - 1].shape[0]} rows of weights[{l - 1}]")
    if biases is not None:
        biases = [np.asarray(b, dtype=np.float64) for b in biases]
        if len(biases) != len(weights) or any(b.shape != (W.shape[0],) for b, W in zip(biases, weights)):
            raise ValueError(f"biases must be one (D_l,) vector per layer, shapes "
                             f"{[(W.shape[0],) for W in weights]}, got {[b.shape for b in biases]}")
    return weights, biases


def count(weights, biases=None):
    """The number of input-to-output paths: K·D_1···D_L, plus the paths from each bias."""
    weights, biases = _check(weights, biases)
    widths = [weights[0].shape[1]] + [W.shape[0] for W in weights]
    total = math.prod(widths)
    if biases is not None:
        total += sum(math.prod(widths[m:]) for m in range(1, len(widths)))
    return total


def enumerate_paths(weights, biases=None, limit=DEFAULT_LIMIT):
    """Yield every input-to-output :class:`Path` (bias paths too when biases are given)."""
    weights, biases = _check(weights, biases)
    _refuse(weights, biases, limit)
    return _paths(weights, biases)


def _refuse(weights, biases, limit):
    n = count(weights, biases)
    if limit is not None and n > limit:
        raise TooManyPaths(
            f"this network has {n:,} input-to-output paths, more than limit={limit:,}; the path "
            "sum enumerates every one: use a smaller network or pass a larger limit")


def _paths(weights, biases):
    widths = [weights[0].shape[1]] + [W.shape[0] for W in weights]
    starts = [(0, False)] + ([(m, True) for m in range(1, len(widths))] if biases is not None else [])
    for start, bias in starts:
        for neurons in itertools.product(*(range(n) for n in widths[start:])):
            yield Path(start, neurons, bias)


def _value(param, weights, biases):
    if param[0] == "b":
        return biases[param[1]][param[2]]
    _, l, j, i = param
    return weights[l][j, i]


def _deltas(weights, biases, x, t, reduction):
    """y by the forward pass and δ_k = ∂E/∂y_k, as a batch (N, D_L)."""
    red = code("reduction", reduction)  # a ValueError naming the choices
    X = np.atleast_2d(np.asarray(x, dtype=np.float64))
    T = np.atleast_2d(np.asarray(t, dtype=np.float64))
    if X.ndim != 2 or X.shape[1] != weights[0].shape[1]:
        raise ValueError(f"x must be (K,) or (N, K) with K = {weights[0].shape[1]}, got {np.shape(x)}")
    Y = X
    for l, W in enumerate(weights):  # identity activations
        Y = Y @ W.T + (biases[l] if biases is not None else 0.0)
    if T.shape != Y.shape:
        raise ValueError(f"t must have the shape of the output {Y.shape[1:] if np.ndim(x) == 1 else Y.shape}, "
                         f"got {np.shape(t)}")
    # δ = ∂E/∂y = 2 s (y − t), s the reduction's scale, as in fastbp.squared_error
    scale = 2.0 * loss_scale(red, len(Y))
    return X, scale * (Y - T)


def _source_times_delta(path, X, delta):
    """Σ_n (source value of the path) · δ_k over the examples: x_s δ_k, or δ_k for a bias path."""
    source = 1.0 if path.bias else X[:, path.neurons[0]]
    return float(np.sum(source * delta[:, path.output]))


def _accumulate(weights, biases, x, t, reduction, limit):
    weights, biases = _check(weights, biases)
    _refuse(weights, biases, limit)
    X, delta = _deltas(weights, biases, x, t, reduction)
    grad_w = [np.zeros_like(W) for W in weights]
    grad_b = [np.zeros_like(b) for b in biases] if biases is not None else None
    for path in _paths(weights, biases):
        params = path.parameters()
        values = [_value(p, weights, biases) for p in params]
        front = _source_times_delta(path, X, delta)
        for n, p in enumerate(params):
            others = math.prod(values[:n] + values[n + 1:])  # ∂(path product)/∂p
            if p[0] == "b":
                grad_b[p[1]][p[2]] += front * others
            else:
                grad_w[p[1]][p[2], p[3]] += front * others
    return grad_w, grad_b


def gradient(weights, x, t, biases=None, *, reduction="half", limit=DEFAULT_LIMIT):
    """∂E/∂W for every weight, by enumerating every path: a list shaped like ``weights``.

    E = ½ Σ (t − y)² (``reduction="half"``, seed 000; "sum" is Σ (t − y)²,
    seeds 001 and 002; "mean" that sum over the N rows of a batch).  Raises :class:`TooManyPaths` (a ValueError stating
    the count) when the network has more than ``limit`` paths.
    """
    return _accumulate(weights, biases, x, t, reduction, limit)[0]


def bias_gradient(weights, x, t, biases, *, reduction="half", limit=DEFAULT_LIMIT):
    """∂E/∂b for every bias, the same way: each bias is the first factor of its paths."""
    if biases is None:
        raise ValueError("bias_gradient needs the biases")
    return _accumulate(weights, biases, x, t, reduction, limit)[1]


@dataclass
class Explanation:
    """The paths through one weight and what each adds to its gradient (``str()`` prints them)."""

    layer: int
    j: int
    k: int
    weight: float
    rows: list  # (path, source·δ summed over examples, Π of the other weights, term)
    gradient: float
    n_layers: int
    reduction: str
    batch: bool

    def __str__(self):
        l = self.layer
        delta = {"half": "δ_k = y_k − t_k", "sum": "δ_k = 2 (y_k − t_k)",
                 "mean": "δ_k = 2 (y_k − t_k) / N"}[self.reduction]
        loss = {"half": "E = ½ Σ (t − y)²", "sum": "E = Σ (t − y)²",
                "mean": "E = Σ (t − y)² / N"}[self.reduction]
        source = "Σₙ source·δ_k" if self.batch else "source·δ_k"
        lines = [
            f"∂E/∂W{l + 1}[{self.j},{self.k}] (weights[{l}][{self.j}, {self.k}] = {self.weight:.6g}, "
            f"from neuron {self.k} of layer {l} to neuron {self.j} of layer {l + 1})",
            f"{loss}, {delta}; each path through the weight adds source · δ_k · Π(other weights on it)",
            f"{len(self.rows)} paths:",
        ]
        width = max((len(r[0].describe(self.n_layers)) for r in self.rows), default=4)
        lines.append(f"  {'path':<{width}}  {source:>16}  {'Π other weights':>16}  {'term':>14}")
        for path, front, others, term in self.rows:
            lines.append(f"  {path.describe(self.n_layers):<{width}}  {front:>16.6g}  {others:>16.6g}  {term:>14.6g}")
        lines.append(f"sum = ∂E/∂W{l + 1}[{self.j},{self.k}] = {self.gradient:.10g}")
        return "\n".join(lines)


def explain(weights, x, t, layer, j, k, biases=None, *, reduction="half", limit=DEFAULT_LIMIT):
    """The paths through ``weights[layer][j, k]`` and their products, as an :class:`Explanation`.

    ``layer`` counts from 0 (``weights[0]`` is seed 000's W¹); the weight
    joins neuron k of layer ``layer`` to neuron j of layer ``layer + 1``.
    ``print(explain(...))`` shows one row per path: its source value times
    δ_k, the product of the other weights on it, and their product, whose
    sum is the gradient.
    """
    weights, biases = _check(weights, biases)
    _refuse(weights, biases, limit)
    if not 0 <= layer < len(weights):
        raise IndexError(f"layer must be in 0..{len(weights) - 1}, got {layer}")
    W = weights[layer]
    if not (0 <= j < W.shape[0] and 0 <= k < W.shape[1]):
        raise IndexError(f"weights[{layer}] has shape {W.shape}, no entry [{j}, {k}]")
    X, delta = _deltas(weights, biases, x, t, reduction)
    target = ("W", layer, j, k)
    rows, total = [], 0.0
    for path in _paths(weights, biases):
        params = path.parameters()
        if target not in params:
            continue
        n = params.index(target)
        values = [_value(p, weights, biases) for p in params]
        front = _source_times_delta(path, X, delta)
        others = math.prod(values[:n] + values[n + 1:])
        rows.append((path, front, others, front * others))
        total += front * others
    return Explanation(layer, j, k, float(W[j, k]), rows, total, len(weights), reduction,
                       batch=np.ndim(x) == 2)
