"""Gradient checking by central finite differences.

``gradcheck(f, inputs)`` compares the gradient of a scalar function, as the
backward pass of a :mod:`fastbp.graph` computes it (or as a gradient
function you give computes it), with central differences

    D(h) = (f(x + h e_j) − f(x − h e_j)) / 2h,   ∂f/∂x_j ≈ n = (4 D(h) − D(2h)) / 3

entry by entry.  D(h) alone is off by h² f‴/6; this Richardson step cancels
that term and leaves O(h⁴) (it is the five-point stencil).  In the fast mode
for large inputs it does the same along one random unit direction u per
input, with x ± h u and x ± 2h u.

The relative error of an entry is |a − n| / max(|a|, |n|, floor): the floor
keeps gradients near zero from failing on rounding and on the error of the
differences themselves.  By default it is, per entry, the sum of three
estimates over rtol, so an entry passes when |a − n| ≤ rtol·max(|a|, |n|) or
when |a − n| is within

    24 ε S / h          rounding in f, as the differences see it
    + |D(h) − D(2h)|/3  what D(h) is known to (truncation, kinks)
    + 24 ε T_j          rounding in the backward pass's sum for this entry

S measures how much rounding enters f: for a graph, Σ over its blocks of
|value · gradient| (the first-order effect on f of one rounding error in
each block's output; it sees cancellation, as in log(1 + u²) for tiny u,
where f is far smaller than what it was computed from), and at least the
largest |f| met.  T_j is Σ |terms| of the gradient entry: the backward pass
run again with every contribution replaced by its magnitude (0 for a
gradient function, which is a black box).  Where f is smooth,
|D(h) − D(2h)| ≈ h² |f‴| / 2 is tiny beside rtol·|∂f/∂x|, so the second
term only speaks for entries the differences cannot resolve: a gradient
that vanishes where f‴ does not, or a kink.
"""

import numpy as np

from fastbp.graph import Var, backpropagate, topological_order

__all__ = ["GradcheckError", "GradcheckReport", "InputCheck", "gradcheck", "numerical_gradient"]

# Rounding noise of the stencil: 16 ulp of the scale S of f's rounding (a
# sum of many terms loses more than one ulp), times the stencil's
# Σ|coefficients| = (8 + 8 + 1 + 1) / 12h = 1.5 / h.
_NOISE_ULPS = 16.0 * 1.5
_WORST = 5  # entries listed per failing input


class GradcheckError(AssertionError):
    """Raised by ``gradcheck(..., raise_exception=True)`` (or ``report.check()``) on a mismatch."""


class InputCheck:
    """The comparison for one input.

    ``analytic`` and ``numeric`` hold the two gradients (in the fast mode,
    the two directional derivatives ∇f·u, as 0-d arrays), ``floor`` the
    floor of each entry; ``worst`` lists up to five (index, analytic,
    numeric, abs_error, rel_error) tuples, largest relative error first.
    """

    def __init__(self, position, name, shape, analytic, numeric, floor, rtol):
        self.position, self.name, self.shape = position, name, shape
        self.analytic, self.numeric, self.floor = analytic, numeric, floor
        abs_error = np.abs(analytic - numeric)
        with np.errstate(invalid="ignore", divide="ignore"):
            rel_error = abs_error / np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), floor)
        rel_error = np.where(abs_error == 0.0, 0.0, rel_error)  # 0/0 with a zero floor: equal
        rel_error = np.where(np.isnan(rel_error), np.inf, rel_error)  # NaN on either side fails
        self.abs_error, self.rel_error = abs_error, rel_error
        self.max_abs_error = float(np.max(abs_error, initial=0.0))
        self.max_rel_error = float(np.max(rel_error, initial=0.0))
        self.passed = self.max_rel_error <= rtol
        order = np.argsort(-rel_error, axis=None, kind="stable")[:_WORST]
        self.worst = [
            (tuple(int(i) for i in np.unravel_index(flat, rel_error.shape)),
             float(analytic.flat[flat]), float(numeric.flat[flat]),
             float(abs_error.flat[flat]), float(rel_error.flat[flat]))
            for flat in order]

    def __repr__(self):
        return (f"InputCheck({self.name!r}, shape={self.shape}, max_abs_error={self.max_abs_error:.3g}, "
                f"max_rel_error={self.max_rel_error:.3g}, passed={self.passed})")


class GradcheckReport:
    """What :func:`gradcheck` found: one :class:`InputCheck` per input.

    ``passed`` is true when every input passed; the report is truthy exactly
    then, so ``assert gradcheck(...)`` works, and ``check()`` raises a
    :class:`GradcheckError` that lists the worst entries.  ``floor`` is the
    floor that was given, or the rounding part of the automatic one.
    """

    def __init__(self, inputs, mode, eps, rtol, floor, automatic_floor, f_value):
        self.inputs, self.mode = inputs, mode
        self.eps, self.rtol, self.floor, self.f_value = eps, rtol, floor, f_value
        self.automatic_floor = automatic_floor

    @property
    def passed(self):
        return all(check.passed for check in self.inputs)

    @property
    def max_abs_error(self):
        return max((c.max_abs_error for c in self.inputs), default=0.0)

    @property
    def max_rel_error(self):
        return max((c.max_rel_error for c in self.inputs), default=0.0)

    def __bool__(self):
        return self.passed

    def __getitem__(self, key):
        """The check of one input, by position or by name."""
        if isinstance(key, str):
            for check in self.inputs:
                if check.name == key:
                    return check
            raise KeyError(key)
        return self.inputs[key]

    def check(self):
        """Raise :class:`GradcheckError` (an AssertionError) unless every input passed."""
        if not self.passed:
            raise GradcheckError(str(self))
        return self

    def __str__(self):
        what = "directional derivatives along one random u per input" if self.mode == "fast" \
            else "every entry"
        floor = (f"floor ≥ {self.floor:.3g} (per entry: estimated error of each side / rtol)"
                 if self.automatic_floor else f"floor = {self.floor:.3g}")
        lines = [
            f"gradcheck {'passed' if self.passed else 'FAILED'}: {what}; f = {self.f_value:.6g}, "
            f"eps = {self.eps:g}, rtol = {self.rtol:g}, {floor}",
            f"  {'input':<12} {'shape':<14} {'max abs err':>12} {'max rel err':>12}  result",
        ]
        for c in self.inputs:
            lines.append(f"  {c.name:<12} {str(c.shape):<14} {c.max_abs_error:>12.3g} "
                         f"{c.max_rel_error:>12.3g}  {'ok' if c.passed else 'FAIL'}")
        for c in self.inputs:
            if c.passed:
                continue
            lines.append(f"  worst entries of {c.name}:")
            lines.append(f"    {'index':<14} {'backward':>14} {'finite diff':>14} "
                         f"{'abs err':>10} {'rel err':>10}")
            for index, a, n, ae, re in c.worst:
                if re <= self.rtol:
                    break
                where = "u·∇" if self.mode == "fast" else str(index)
                lines.append(f"    {where:<14} {a:>14.8g} {n:>14.8g} {ae:>10.3g} {re:>10.3g}")
        return "\n".join(lines)

    def __repr__(self):
        return f"<GradcheckReport {'passed' if self.passed else 'FAILED'} max_rel_error={self.max_rel_error:.3g}>"


def _scalar(out, what):
    if isinstance(out, Var):
        out = out.value
    a = np.asarray(out, dtype=np.float64)
    if a.size != 1:
        raise ValueError(f"{what} must return a scalar, got shape {a.shape}")
    return float(a.reshape(()))


def _values_and_names(inputs):
    if isinstance(inputs, (Var, np.ndarray, float, int, np.floating)):
        inputs = [inputs]
    values, names = [], []
    for i, x in enumerate(inputs):
        name = x.name if isinstance(x, Var) and x.name is not None else f"input {i}"
        x = x.value if isinstance(x, Var) else x
        a = np.array(x, dtype=np.float64)  # our own copy: the perturbations never touch yours
        values.append(float(a) if a.ndim == 0 else a)
        names.append(name)
    return values, names


def _evaluator(f, graph_mode):
    """Return value_of(values) -> float, calling f on Vars (graph) or on raw values."""
    if graph_mode:
        return lambda values: _scalar(f(*(Var(v, requires_grad=False) for v in values)), "f")
    return lambda values: _scalar(f(*values), "f")


def numerical_gradient(f, inputs, eps=1e-6):
    """Central differences of the scalar f(*inputs) for every entry of every input.

    ``f`` takes the inputs' values (floats or float64 arrays) and returns a
    number.  Returns one gradient per input, shaped like it, from the
    five-point stencil (4 D(h) − D(2h)) / 3 with h = eps.
    """
    values, _ = _values_and_names(inputs)
    grads, _, _ = _differences(_evaluator(f, graph_mode=False), values, eps)
    return [float(g) if np.ndim(v) == 0 else g for g, v in zip(grads, values)]


def _stencil(f_at, h):
    """(4 D(h) − D(2h)) / 3, |D(h) − D(2h)|, and the largest |f| met.

    D is the central difference.  ``f_at(step)`` returns f at x + step
    (along an entry or a direction) and the step the floats actually took,
    which D divides by.
    """
    d, seen = [], 0.0
    for step in (h, 2.0 * h):
        (f_plus, s_plus), (f_minus, s_minus) = f_at(step), f_at(-step)
        d.append((f_plus - f_minus) / (s_plus - s_minus))
        seen = max(seen, abs(f_plus), abs(f_minus))
    return (4.0 * d[0] - d[1]) / 3.0, abs(d[0] - d[1]), seen


def _differences(value_of, values, eps):
    """The stencil for every entry of every input: derivatives, spreads, largest |f|."""
    grads, spreads, scale = [], [], 0.0
    for i, v in enumerate(values):
        x = np.array(v, dtype=np.float64, ndmin=1)  # our copy to perturb, even of a scalar
        g, spread = np.empty(x.shape), np.empty(x.shape)
        for j in range(x.size):
            orig = x.flat[j]

            def f_at(step):
                x.flat[j] = orig + step
                taken = x.flat[j] - orig
                value = value_of(_with(values, i, x, v))
                x.flat[j] = orig
                return value, taken

            g.flat[j], spread.flat[j], seen = _stencil(f_at, eps)
            scale = max(scale, seen)
        grads.append(g.reshape(np.shape(v)))
        spreads.append(spread.reshape(np.shape(v)))
    return grads, spreads, scale


def _rounding_scale(out):
    """Σ over the blocks below ``out`` of |value · gradient|, after out.backward().

    A rounding error of relative size ε in a block's output w changes f by
    about ε |w ∂f/∂w|: the sum bounds, to first order, what rounding does to f.
    """
    total = 0.0
    with np.errstate(all="ignore"):
        for node in topological_order(out, only_requiring_grad=True):
            if node._block is not None:
                total += float(np.sum(np.abs(np.multiply(node.value, node.grad))))
    return total if np.isfinite(total) else 0.0


def _gradient_terms(out, leaves):
    """For each leaf, Σ |terms| of its gradient: the backward pass in magnitude mode."""
    seed = 1.0 if isinstance(out.value, float) else np.ones_like(out.value)
    found = {id(node): g for node, g in backpropagate(out, seed, magnitudes=True)}
    return [found.get(id(leaf), 0.0) for leaf in leaves]


def _with(values, i, x, original):
    """``values`` with the i-th replaced by x (a float again if it was one)."""
    return values[:i] + [float(x[0]) if np.ndim(original) == 0 else x] + values[i + 1:]


def gradcheck(f, inputs, eps=1e-6, rtol=1e-6, *, grad=None, fast=False, floor=None,
              seed=0, raise_exception=False):
    """Check a gradient against central finite differences; return a :class:`GradcheckReport`.

    f, inputs
        ``inputs`` is a list of floats, arrays or :class:`fastbp.graph.Var`
        (whose values and names are used); a single array or number is one
        input.  They are copied: perturbations never touch your arrays.
    grad
        None (graph mode): ``f`` takes one Var per input and returns a
        scalar Var; the analytic gradient is that graph's backward pass.
        Otherwise ``f`` takes the raw values and returns a number, and
        ``grad`` takes the same values and returns the gradient (one array
        per input, or a single array for a single input).
    eps, rtol
        The difference step h and the relative tolerance.
    floor
        The relative error of an entry is |a − n| / max(|a|, |n|, floor).
        None (default): per entry, the error the differences themselves
        carry, over rtol (see the module's doc); a number: that floor for
        every entry (0 for a purely relative check).
    fast
        Compare, per input, one directional derivative along a random unit
        vector u (drawn from ``seed``): four evaluations of f per input
        instead of four per entry; vᵀ J u with v = 1 for a scalar f.
    raise_exception
        Raise :class:`GradcheckError` (an AssertionError listing the worst
        entries) when any input fails, instead of only reporting it.

    In graph mode, Vars that ``f`` closes over also get the gradients of
    the one backward pass gradcheck runs.
    """
    values, names = _values_and_names(inputs)
    graph_mode = grad is None
    if graph_mode:
        leaves = [Var(v) for v in values]
        out = f(*leaves)
        if not isinstance(out, Var):
            raise TypeError(
                f"f returned {type(out).__name__}, not a fastbp.graph.Var: in graph mode f must "
                "build its result from the Vars it is given; to check a gradient function, "
                "pass grad=")
        f_value = _scalar(out, "f")
        out.backward()
        analytic = [np.array(leaf.grad, dtype=np.float64) for leaf in leaves]
        rounding_scale = _rounding_scale(out)
        terms = _gradient_terms(out, leaves)
    else:
        f_value = _scalar(f(*values), "f")
        rounding_scale, terms = 0.0, [0.0] * len(values)  # a gradient function is a black box
        analytic = _given_gradient(grad, values, names)
    value_of = _evaluator(f, graph_mode)

    if fast:
        rng = np.random.default_rng(seed)
        numeric, spreads, projected, scale = [], [], [], abs(f_value)
        for i, (v, a) in enumerate(zip(values, analytic)):
            u = rng.standard_normal(np.shape(v))
            u /= np.linalg.norm(u) or 1.0

            def along_u(step):
                return value_of(_with(values, i, np.atleast_1d(v + step * u), v)), step

            n, spread, seen = _stencil(along_u, eps)
            scale = max(scale, seen)
            numeric.append(np.array(n))
            spreads.append(np.array(spread))
            projected.append(np.array(np.sum(a * u)))
            terms[i] = np.sum(np.abs(terms[i] * u))
        analytic = projected
    else:
        numeric, spreads, scale = _differences(value_of, values, eps)
        scale = max(scale, abs(f_value))

    automatic = floor is None
    if automatic:
        # below the smallest normal float, the spacing of floats no longer shrinks
        scale = max(scale, rounding_scale, np.finfo(np.float64).tiny)
        noise = _NOISE_ULPS * np.finfo(np.float64).eps * scale / eps
        floor = noise / rtol
        ulps = _NOISE_ULPS * np.finfo(np.float64).eps
        floors = [(noise + s / 3.0 + ulps * t) / rtol for s, t in zip(spreads, terms)]
    else:
        floor = float(floor)
        floors = [floor] * len(values)

    checks = [InputCheck(i, name, np.shape(v), np.asarray(a, dtype=np.float64),
                         np.asarray(n, dtype=np.float64), fl, rtol)
              for i, (name, v, a, n, fl) in enumerate(zip(names, values, analytic, numeric, floors))]
    report = GradcheckReport(checks, "fast" if fast else "full", eps, rtol, floor, automatic, f_value)
    if raise_exception:
        report.check()
    return report


def _given_gradient(grad, values, names):
    given = grad(*values)
    if len(values) == 1 and not isinstance(given, (list, tuple)):
        given = [given]
    if len(given) != len(values):
        raise ValueError(f"grad returned {len(given)} gradients for {len(values)} inputs")
    analytic = []
    for name, v, a in zip(names, values, given):
        a = np.array(a, dtype=np.float64)
        if a.shape != np.shape(v):
            raise ValueError(f"grad's gradient for {name} has shape {a.shape}, "
                             f"the input has shape {np.shape(v)}")
        analytic.append(a)
    return analytic
