"""A computational graph of blocks, backpropagated as in seed 002 section 3.

Every operation on a :class:`Var` is a *block*: it computes its output in
the forward pass (which stores every intermediate value) and knows the local
derivatives of that output with respect to each of its inputs.  The backward
pass starts at the output with δ_f = 1 and visits the blocks in reverse
topological order, each once; a block with output w and inputs u, v adds
δ_w ∂w/∂u to the accumulator δ_u and δ_w ∂w/∂v to δ_v.  A variable that
forks into several blocks gets the sum of their contributions — the chain
rule in the form of seed 002's eq (1) — so when its turn comes its
accumulator holds the final ∂f/∂u.

Example::

    x, y = Var(3.0, name="x"), Var(-4.0, name="y")
    f = (x + sigmoid(y)) / (x ** 2 + y)
    f.backward()              # x.grad, y.grad now hold ∂f/∂x, ∂f/∂y

New blocks are written from their forward and their local derivatives with
the :func:`block` decorator (see ``docs/graph.md``; the built-in blocks below
are written the same way).  ``matmul_abt``, ``dense`` and ``squared_error``
are single blocks that run fastbp's compiled kernels.
"""

import inspect
import shutil
import subprocess

import numpy as np
from scipy.special import expit

from fastbp._kernels import (
    dense_backward,
    dense_forward,
    matmul_abt_backward,
    squared_error as _squared_error_kernel,
)
from fastbp._kernels import matmul_abt as _matmul_abt_kernel

__all__ = [
    "Block", "Var", "block",
    "exp", "log", "sigmoid", "tanh", "relu", "sum", "mean",
    "matmul_abt", "dense", "squared_error",
    "backpropagate", "topological_order",
]


def _as_value(v):
    """A Python float for a scalar, else a float64 ndarray (no copy if it is one)."""
    if isinstance(v, Var):
        raise TypeError("a Var cannot be the value of another Var; pass var.value")
    a = np.asarray(v, dtype=np.float64)
    return float(a) if a.ndim == 0 else a


def _shape(value):
    return () if isinstance(value, float) else value.shape


class Var:
    """A value in the graph (a Python float or a float64 array) and its gradient.

    ``Var(value, name=None, requires_grad=True)`` makes a leaf.  An array is
    kept without a copy, so updating it in place (``W.value -= lr * W.grad``)
    updates the leaf.  Numbers and arrays met in an operation are wrapped as
    constant leaves (``requires_grad=False``): they get no gradient, and a
    block skips work for them where it can (``dense`` skips δX for a data X).

    ``.grad`` has the shape of ``.value`` and is filled by :meth:`backward`.
    Like PyTorch's, it accumulates: calling ``backward()`` twice adds the
    gradients twice.  :meth:`zero_grad` clears every ``.grad`` in the graph
    below (and including) this Var.
    """

    __slots__ = ("value", "name", "requires_grad", "_grad", "_parents", "_backward", "_block", "_op")
    # NumPy defers to Var's reflected operators: ndarray + Var is a Var.
    __array_ufunc__ = None

    def __init__(self, value, name=None, requires_grad=True):
        self.value = _as_value(value)
        self.name = name
        self.requires_grad = bool(requires_grad)
        self._grad = None
        self._parents = ()
        self._backward = None  # g -> one gradient per parent (None: leaf)
        self._block = None  # the Block that made this Var (None: leaf)
        self._op = None  # the block's label, with its settings: "dense(activation='tanh')"

    @classmethod
    def _node(cls, value, parents, block, backward, op):
        out = cls(value)
        out.requires_grad = backward is not None
        out._parents, out._backward, out._block, out._op = parents, backward, block, op
        return out

    # -- gradient -----------------------------------------------------------

    @property
    def grad(self):
        """∂f/∂self summed over every backward() call so far (zeros before any)."""
        if self._grad is None:
            self._grad = 0.0 if isinstance(self.value, float) else np.zeros_like(self.value)
        return self._grad

    @property
    def shape(self):
        """The shape of ``.value`` (``()`` for a float)."""
        return _shape(self.value)

    def _add_to_grad(self, g):
        if isinstance(self.value, float):
            self._grad = (self._grad or 0.0) + float(g)
        elif self._grad is None:
            self._grad = np.array(g, dtype=np.float64)  # a copy: g may be another node's
        else:
            self._grad += g

    def backward(self, grad=None):
        """Backpropagate from this Var: fill ``.grad`` of every Var it depends on.

        ``grad`` is the seed δ of this Var; it defaults to 1, which needs a
        scalar (or size-1) output.  Nodes are visited in reverse topological
        order, once each, without recursion; each block's contributions are
        summed into its inputs' accumulators before those are propagated.
        Gradients are added to ``.grad`` (call :meth:`zero_grad` to restart).
        """
        if grad is None:
            if np.size(self.value) != 1:
                raise ValueError(
                    f"backward() without a grad needs a scalar output, got shape {self.shape}; "
                    "reduce it first (graph.sum, graph.mean) or pass grad= of that shape")
            grad = 1.0 if isinstance(self.value, float) else np.ones_like(self.value)
        elif np.shape(grad) != self.shape:
            raise ValueError(f"grad must have the shape of the value {self.shape}, got {np.shape(grad)}")
        for node, g in backpropagate(self, grad):
            node._add_to_grad(g)

    def zero_grad(self):
        """Set ``.grad`` to zero for this Var and every Var below it."""
        for node in topological_order(self, only_requiring_grad=False):
            node._grad = None

    # -- operators ------------------------------------------------------------

    def __add__(self, other):
        return _add(self, other)

    def __radd__(self, other):
        return _add(other, self)

    def __sub__(self, other):
        return _sub(self, other)

    def __rsub__(self, other):
        return _sub(other, self)

    def __mul__(self, other):
        return _mul(self, other)

    def __rmul__(self, other):
        return _mul(other, self)

    def __truediv__(self, other):
        return _div(self, other)

    def __rtruediv__(self, other):
        return _div(other, self)

    def __neg__(self):
        return _neg(self)

    def __pow__(self, exponent):
        if isinstance(exponent, Var):
            return NotImplemented
        exponent = float(exponent)
        return _pow(self, exponent=exponent)

    def __repr__(self):
        what = f"{self._op}, " if self._op is not None else ""
        name = f", name={self.name!r}" if self.name is not None else ""
        return f"Var({what}value={_brief(self.value)}, grad={_brief(self.grad)}{name})"

    # -- pictures ------------------------------------------------------------

    def to_dot(self):
        """Graphviz DOT text of the graph below this Var, drawn like seed 002's Figure 1.

        Inputs flow left to right.  Each Var is a node: a leaf is an ellipse
        with its name, a block's output a box with the block's operation, its
        name if it has one, its forward value and its gradient (arrays as
        shape and first numbers).  Edges into a block with several inputs
        carry the block's name for that input (u, v for the arithmetic).
        Constants are dashed and show no gradient.
        """
        nodes = topological_order(self, only_requiring_grad=False)
        ids = {node: f"n{i}" for i, node in enumerate(nodes)}
        lines = ["digraph fastbp {", "  rankdir=LR;",
                 '  node [fontname="Helvetica", fontsize=11];',
                 '  edge [fontname="Helvetica", fontsize=9];']
        for node in nodes:
            lines.append(f"  {ids[node]} [{_dot_attributes(node, is_output=node is self)}];")
        for node in nodes:
            names = node._block.inputs if node._block is not None else ()
            for k, parent in enumerate(node._parents):
                label = f' [label="{_dot_escape(names[k])}"]' if len(node._parents) > 1 else ""
                lines.append(f"  {ids[parent]} -> {ids[node]}{label};")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def to_svg(self, path):
        """Render :meth:`to_dot` to an SVG file with Graphviz's ``dot`` program."""
        dot = shutil.which("dot")
        if dot is None:
            raise RuntimeError(
                "Var.to_svg needs Graphviz's `dot` program, which is not on PATH. Install "
                "Graphviz (Debian/Ubuntu: apt-get install graphviz; Fedora: dnf install graphviz; "
                "macOS: brew install graphviz; conda: conda install graphviz), or save "
                "Var.to_dot() to a .dot file and render it elsewhere.")
        subprocess.run([dot, "-Tsvg", "-o", str(path)], input=self.to_dot(), text=True,
                       check=True, capture_output=True)
        return path


def backpropagate(root, seed, magnitudes=False):
    """Yield (node, δ_node) for every Var below ``root`` that needs a gradient.

    Seed 002's backward pass: nodes come in reverse topological order, each
    once, and a node's δ is final when it comes, since every block that uses
    it has already added its contribution into the accumulator.  With
    ``magnitudes``, every contribution is replaced by its absolute value:
    the same pass then yields, for each node, the sum of the magnitudes of
    the terms its gradient is a sum of (what gradcheck needs to know how far
    rounding can move the gradient).
    """
    delta = {root: seed}  # accumulators δ_u, alive only during this pass
    for node in reversed(topological_order(root, only_requiring_grad=True)):
        g = delta.pop(node, None)
        if g is None:  # every contribution to it was None
            continue
        yield node, g
        if node._backward is None:
            continue
        contributions = node._backward(g)
        if not isinstance(contributions, tuple):
            contributions = (contributions,)
        if len(contributions) != len(node._parents):
            raise ValueError(
                f"block {node._block.name!r} returned {len(contributions)} gradients "
                f"for {len(node._parents)} inputs")
        for parent, d in zip(node._parents, contributions):
            if d is None or not parent.requires_grad:
                continue
            d = _fit(np.abs(d) if magnitudes else d, parent.shape, node._block, parent)
            delta[parent] = d if parent not in delta else delta[parent] + d


def topological_order(root, only_requiring_grad):
    """Every Var below ``root``, each after all of its inputs (iterative DFS)."""
    order, seen = [], set()
    stack = [(root, False)]
    while stack:
        node, inputs_done = stack.pop()
        if inputs_done:
            order.append(node)
            continue
        if node in seen:
            continue
        seen.add(node)
        stack.append((node, True))
        for parent in node._parents:
            if parent not in seen and (parent.requires_grad or not only_requiring_grad):
                stack.append((parent, False))
    return order


def _fit(d, shape, block, parent):
    """Sum a gradient over the axes that broadcasting added, so it has ``shape``."""
    if np.shape(d) == shape:
        return float(d) if shape == () else d
    if shape == ():
        return float(np.sum(d))
    d = np.asarray(d)
    try:
        if d.ndim > len(shape):
            d = d.sum(axis=tuple(range(d.ndim - len(shape))))
        if d.ndim == len(shape):
            axes = tuple(i for i, n in enumerate(shape) if n == 1 and d.shape[i] != 1)
            if axes:
                d = d.sum(axis=axes, keepdims=True)
        return np.broadcast_to(d, shape)  # a scalar contribution to an array input
    except ValueError:
        raise ValueError(
            f"block {block.name!r} returned a gradient of shape {np.shape(d)} for an input "
            f"of shape {shape}{'' if parent.name is None else f' ({parent.name})'}") from None


def _wrap(x):
    return x if isinstance(x, Var) else Var(x, requires_grad=False)


# ---------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------


class Block:
    """A graph operation made from a function that returns (value, backward).

    Made by the :func:`block` decorator; calling it on Vars, numbers or
    arrays returns a new Var.  ``name`` labels the operation in
    :meth:`Var.to_dot`; ``inputs`` are the names of its input parameters.
    """

    def __init__(self, fn, name=None):
        self.fn = fn
        self.name = name or fn.__name__
        self._signature = inspect.signature(fn)
        params = self._signature.parameters.values()
        self.inputs = tuple(
            p.name for p in params
            if p.default is p.empty and p.name != "needs_grad"
            and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
        self._wants_needs_grad = "needs_grad" in self._signature.parameters
        # what callers see (help(), inspect): needs_grad is the graph's to pass
        self.__signature__ = self._signature.replace(
            parameters=[p for p in params if p.name != "needs_grad"])
        self.__doc__, self.__name__, self.__wrapped__ = fn.__doc__, fn.__name__, fn

    def __call__(self, *args, **kwargs):
        settings, op = {}, self.name
        if kwargs or len(args) != len(self.inputs):  # the quick path skips the binding
            bound = self._signature.bind(*args, **kwargs)
            args = [bound.arguments[name] for name in self.inputs]
            settings = {k: v for k, v in bound.arguments.items() if k not in self.inputs}
            if settings:
                op += "(" + ", ".join(f"{k}={v!r}" for k, v in settings.items()) + ")"
        inputs = tuple(_wrap(a) for a in args)
        needs_grad = tuple(u.requires_grad for u in inputs)
        if self._wants_needs_grad:
            settings["needs_grad"] = needs_grad
        value, backward = self.fn(*(u.value for u in inputs), **settings)
        return Var._node(value, inputs, self, backward if any(needs_grad) else None, op)

    def __repr__(self):
        return f"<graph block {self.name}({', '.join(self.inputs)})>"


def block(fn=None, *, name=None):
    """Make a graph block from a function that knows its forward and local derivatives.

    The function takes the input *values* (floats or float64 arrays) and
    returns ``(output_value, backward)``; ``backward(g)`` receives
    g = ∂f/∂output (the output's finished accumulator) and returns, for each
    input u in order, its contribution g·∂output/∂u — shaped like the input,
    or like the output where numpy broadcasting made them differ (the graph
    sums it back to the input's shape) — or None for no contribution.  A
    single-input block may return the contribution itself instead of a
    1-tuple.

    Parameters without a default value are the inputs; parameters with one
    are settings passed through unchanged (``activation="identity"``).  A
    parameter named ``needs_grad`` receives a tuple of booleans, one per
    input, so the block can skip gradients nobody needs.

    Example (seed 002's recipe, a softplus block)::

        @graph.block
        def softplus(x):
            y = np.logaddexp(0.0, x)             # forward: log(1 + eˣ)
            def backward(g):
                return g * scipy.special.expit(x)  # ∂y/∂x = σ(x)
            return y, backward
    """
    if fn is None:
        return lambda f: Block(f, name=name)
    return Block(fn, name=name)


@block(name="+")
def _add(u, v):
    return u + v, lambda g: (g, g)


@block(name="−")
def _sub(u, v):
    return u - v, lambda g: (g, -g)


@block(name="×")
def _mul(u, v):
    return u * v, lambda g: (g * v, g * u)


@block(name="÷")
def _div(u, v):
    w = u / v
    return w, lambda g: (g / v, -g * w / v)  # ∂(u/v)/∂v = −u/v²


@block(name="neg")
def _neg(u):
    return -u, lambda g: -g


@block(name="pow")
def _pow(u, exponent=1.0):
    def backward(g):
        return g * exponent * u ** (exponent - 1.0)
    return u ** exponent, backward


@block
def exp(x):
    """eˣ, elementwise; ∂/∂x = eˣ."""
    y = np.exp(x)
    return y, lambda g: g * y


@block
def log(x):
    """Natural logarithm, elementwise; ∂/∂x = 1/x."""
    return np.log(x), lambda g: g / x


@block
def sigmoid(x):
    """σ(x) = 1 / (1 + e⁻ˣ), elementwise and overflow-free; ∂/∂x = σ(1 − σ)."""
    y = expit(x)
    return y, lambda g: g * y * (1.0 - y)


@block
def tanh(x):
    """tanh, elementwise; ∂/∂x = 1 − tanh²."""
    y = np.tanh(x)
    return y, lambda g: g * (1.0 - y * y)


@block
def relu(x):
    """max(x, 0), elementwise; ∂/∂x = [x > 0] (0 at the kink, as in the kernels)."""
    return np.maximum(x, 0.0), lambda g: g * (np.asarray(x) > 0.0)


def _expand(g, shape, axis):
    """Broadcast the gradient of a reduction over ``axis`` back to ``shape``."""
    if axis is not None:
        g = np.expand_dims(g, axis)
    return np.broadcast_to(g, shape)


@block
def sum(x, axis=None):  # noqa: A001 (graph.sum, as numpy.sum)
    """Σ of the entries (over ``axis`` if given); each entry's derivative is 1."""
    return np.sum(x, axis=axis), lambda g: _expand(g, _shape(x), axis)


@block
def mean(x, axis=None):
    """Mean of the entries (over ``axis`` if given); each entry's derivative is 1/count."""
    count = np.size(x) if axis is None else np.shape(x)[axis]
    return np.mean(x, axis=axis), lambda g: _expand(np.divide(g, count), _shape(x), axis)


def _contiguous(a):
    return np.ascontiguousarray(a) if isinstance(a, np.ndarray) else a


@block
def matmul_abt(A, B):
    """C = A Bᵀ with the compiled kernel; δA = δC B, δB = δCᵀ A (seed 002 eqs 25, 26)."""
    A, B = _contiguous(A), _contiguous(B)
    def backward(g):
        return matmul_abt_backward(np.ascontiguousarray(g), A, B)
    return _matmul_abt_kernel(A, B), backward


@block
def dense(X, W, b, activation="identity", needs_grad=None):
    """Y = g(X Wᵀ + b), one fused block over the compiled kernels (seed 002 eqs 10-11, 21-24).

    X (N, K), W (D, K), b (D,).  The backward pass calls
    ``fastbp.dense_backward``, skipping δX when X needs no gradient; for
    "silu" the block keeps the pre-activation Z that its g' needs.
    """
    X, W, b = _contiguous(X), _contiguous(W), _contiguous(b)
    Z = np.empty((X.shape[0], W.shape[0])) if activation == "silu" else None
    Y = dense_forward(X, W, b, activation, Z=Z)
    def backward(g):
        return dense_backward(np.ascontiguousarray(g), X, W, Y, activation,
                              need_dX=needs_grad[0], Z=Z)
    return Y, backward


def _dense_jvp(X, W, b, dX=None, dW=None, db=None, activation="identity"):
    """(Y, Ẏ): the dense block's value on arrays X, W, b and its tangent
    along (dX, dW, db) (None: 0), forward mode: Ż = Ẋ Wᵀ + X Ẇᵀ + ḃ,
    Ẏ = g′ ⊙ Ż.  Made by the compiled tangent pass of the one-layer network
    W, b (``fastbp.network.MLP.jvp``), so the graph and the network agree."""
    from fastbp.network import MLP  # (the same layer of the house; no cycle)

    X, W, b = (np.ascontiguousarray(a, dtype=np.float64) for a in (X, W, b))
    if dX is None and dW is None and db is None:
        raise ValueError("dense.jvp needs a tangent: dX, dW and/or db, got none")
    net = MLP([W.shape[1], W.shape[0]], output_activation=activation)
    net.weights = [W]
    net.biases = [b]
    dparams = None
    if dW is not None or db is not None:
        dparams = np.concatenate([np.zeros(W.size) if dW is None else np.ravel(dW),
                                  np.zeros(b.size) if db is None else np.ravel(db)])
    return net.jvp(X, None if dX is None else np.ascontiguousarray(dX, dtype=np.float64),
                   dparams)


dense.jvp = _dense_jvp


@block
def squared_error(Y, T, reduction="sum", needs_grad=None):
    """Loss Σ (T − Y)² ("sum"), ½ Σ ("half") or Σ / N ("mean"), with the compiled kernel.

    Its gradient δY comes from the same kernel call; δT = −δY.
    """
    loss, dY = _squared_error_kernel(_contiguous(Y), _contiguous(T), reduction)
    def backward(g):
        return g * dY, (-g * dY if needs_grad[1] else None)
    return loss, backward


# ---------------------------------------------------------------------------
# DOT helpers
# ---------------------------------------------------------------------------


def _number(x):
    return f"{x:.4g}"


def _brief(value, count=3):
    """A float as 4 significant digits; an array as its shape and first few entries."""
    if isinstance(value, (float, np.floating)) or np.ndim(value) == 0:
        return _number(float(value))
    flat = np.ravel(value)
    first = ", ".join(_number(x) for x in flat[:count])
    more = ", …" if flat.size > count else ""
    return f"{value.shape} [{first}{more}]"


def _dot_escape(text):
    return str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _dot_attributes(node, is_output):
    value = _brief(node.value)
    if node._block is not None:
        head, shape = (node._op if node.name is None else f"{node.name} = {node._op}"), "box"
    else:
        head, shape = (node.name or ("input" if node.requires_grad else None)), "ellipse"
    lines = [value] if head is None else [head, f"value {value}"]  # an unnamed constant: its value
    if node.requires_grad:
        lines.append(f"grad {_brief(node.grad)}")
    label = "\\n".join(_dot_escape(line) for line in lines)
    attrs = [f'label="{label}"', f"shape={shape}"]
    if not node.requires_grad:
        attrs.append("style=dashed")
    if is_output:
        attrs.append("peripheries=2")
    return ", ".join(attrs)

