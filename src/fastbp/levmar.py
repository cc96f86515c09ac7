"""Levenberg-Marquardt training of an MLP on the squared error: ``MLP.lm_step``
and ``MLP.fit(optimizer="lm")``.

Each iteration solves the damped Gauss-Newton system of the residuals
e_ik = √r_i (ŷ_ik − t_ik) (r_i the row weights, J = ∂e/∂θ):

    (JᵀJ + αΛ + μD) δ = −(Jᵀe + αΛθ)

by Cholesky (``fastbp._levmar``), Λ the weights (an L2 penalty, biases
free), D = I ("identity", MATLAB trainlm's) or diag(JᵀJ) ("diagonal",
Marquardt's).  A step that lowers the loss is taken and μ ← μ·mu_dec;
otherwise μ ← μ·mu_inc and the system is solved again, the parameters
untouched.  The options and their defaults are trainlm's.

Memory: JᵀJ is summed over row blocks of the data (``_derivatives``:
DSYRK per block), so the Jacobian is never whole: 2 P² doubles (JᵀJ and its
factor) plus a block.  Where the data has fewer residuals than there are
parameters (m = N·D_out < P) on one process, the "dual" form holds J
(m × P) and factors an m × m matrix instead, the same δ.  A net whose
system does not fit ``lm_memory`` is refused.  Practical range: P up to a
few thousand (P = 5000 needs 400 MB and about 40 GFLOP per Cholesky).

Over MPI (``comm=``) each rank sums its shard's JᵀJ and Jᵀe, one reduction
adds them (reduced on rank 0 and broadcast, so every rank holds bitwise the
same system and takes the same δ), and the losses are summed the same way.
"""

import math

import numpy as np

from fastbp._enums import Loss, Reduction, code
from fastbp._levmar import DampedSystem
from fastbp._losses import loss_scale
from fastbp.distributed import FitSync
from fastbp.inputs import as_inputs, as_sample_weight, as_targets, is_sparse
from fastbp.sync import LocalSync
from fastbp.training import (EarlyStopping, check_callback, check_count, checked_weights,
                             dataset_loss, progress_bar, validation_pair)

__all__ = ["LM_MEMORY", "LM_OPTIONS", "TRAINLM_DEFAULTS", "MemoryBudgetError", "lm_step", "fit"]

# The memory the system may take by default, in bytes (JᵀJ, its factor, a
# row block of J): P up to about 5 700 in the normal form.
LM_MEMORY = 512 * 2 ** 20

# A row block's Jacobian at most, in doubles (8 MB): DSYRK's k is then about
# 1 700 rows at P = 600, past which a larger k gains nothing.
BLOCK_DOUBLES = 1 << 20

# MATLAB trainlm's options and defaults (max_fail: with validation data).
TRAINLM_DEFAULTS = {"mu": 1e-3, "mu_dec": 0.1, "mu_inc": 10.0, "mu_max": 1e10, "min_grad": 1e-7,
                    "goal": 0.0, "max_fail": 6}
# every option of fit(optimizer="lm") and its default
LM_OPTIONS = {**TRAINLM_DEFAULTS, "damping": "identity", "lm_memory": LM_MEMORY}

# μ never falls below this after a good step (trainlm's floor).
MU_MIN = 1e-20


class MemoryBudgetError(ValueError):
    """The Levenberg-Marquardt system of this network does not fit the memory budget."""


def _mib(n_bytes):
    return f"{n_bytes / 2 ** 20:.1f} MiB"


class _Solver:
    """The LM system of one network and one data size: its form, its
    buffers (made once, kept on the network for the next call of the same
    size) and the row blocks of the normal form."""

    def __init__(self, net, n_rows, memory, distributed):
        P, d_out = net.n_params, net.sizes[-1]
        m = n_rows * d_out
        sizes = net.sizes
        # the dual form's J Jᵀ by layers: (b_ℓ's offset, units, inputs) of each
        offsets = np.cumsum([net.n_weights] + list(sizes[1:-1]))
        self.layers = [(int(o), sizes[l + 1], sizes[l]) for l, o in enumerate(offsets)]
        dual_bytes = 8 * (DampedSystem.doubles(P, m) + n_rows * sum(sizes[:-1]))
        if not distributed and 0 < m < P and dual_bytes <= memory:
            self.form, self.block_rows = "dual", 0
            size = m
        else:
            need = 8 * (DampedSystem.doubles(P) + d_out * P)
            if need > memory:
                raise MemoryBudgetError(
                    f"Levenberg-Marquardt needs the {P}×{P} matrix JᵀJ and its Cholesky factor "
                    f"for this network's P = {P} parameters: {_mib(need)} with one row block, "
                    f"over the memory budget lm_memory={memory} ({_mib(memory)}). Give a larger "
                    f"lm_memory, or train with a first-order method: optimizer=\"adam\" (the "
                    f"scikit-learn estimators: solver=\"lbfgs\")")
            rows = min((memory - 8 * DampedSystem.doubles(P)) // 8, BLOCK_DOUBLES) // (d_out * P)
            self.form, self.block_rows = "normal", int(max(1, min(rows, n_rows)))
            size = 0
        cached = getattr(net, "_lm_system", None)
        if cached is None or (cached.n_params, cached.n_residuals) != (P, size):
            cached = net._lm_system = DampedSystem(P, size, self.layers if size else None)
        self.system = cached

    def build(self, derivatives, X, T, w, weight_scale):
        """The system at the network's parameters; returns E = Σ r_i ‖ŷ_i − t_i‖²."""
        s = self.system
        dense = not is_sparse(X)
        if self.form == "dual":
            E = derivatives.residual_jacobian(X, T, s.jacobian, s.residuals, sample_weight=w,
                                              weight_scale=weight_scale,
                                              inputs=s.inputs if dense else None)
        else:
            E = derivatives.normal_equations(X, T, s.jtj, s.jte, sample_weight=w,
                                             weight_scale=weight_scale, block_rows=self.block_rows)
        s.prepare(inputs_filled=dense and self.form == "dual")
        return E

    def solve(self, mu, out, damping, alpha, params, n_weights):
        return self.system.solve(mu, out, damping=damping, alpha=alpha, params=params,
                                 n_weights=n_weights)


def _number(value, name, low, low_open=False):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not (value > low if low_open else value >= low) or math.isnan(value):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value}")
    return value


def _squared_error_data(net, X, T, check_finite, names=("X", "T")):
    """X and T checked as ``fit`` checks them, for the squared error."""
    net.loss_codes("squared_error", "sum")  # the output must suit the squared error
    X = as_inputs(X, net.sizes[0], names[0], check_finite)
    T = as_targets(T, X.shape[0], net.sizes[-1], "squared_error", names[1], check_finite)
    return X, T


def lm_step(net, X, T, mu, damping, sample_weight, out, *, alpha, lm_memory):
    """See MLP.lm_step."""
    mu = _number(mu, "mu", 0.0, low_open=True)
    alpha = _number(alpha, "alpha", 0.0)
    dc = code("damping", damping)
    X, T = _squared_error_data(net, X, T, check_finite=False)
    w = as_sample_weight(sample_weight, X.shape[0])
    memory = _memory(lm_memory)
    if out is None:
        out = np.empty(net.n_params)
    with net.in_use("lm_step"):
        solver = _Solver(net, X.shape[0], memory, distributed=False)
        solver.build(net.derivative_core, X, T, w, 0.0)
        if not solver.solve(mu, out, dc, alpha, net.params, net.n_weights):
            raise np.linalg.LinAlgError(
                f"no finite step at mu={mu} (damping={damping!r}): the damped matrix JᵀJ + μD is "
                f"not positive definite in floating point (take a larger mu), or the residuals "
                f"or their Jacobian are not finite (check the parameters)")
    return out


def _memory(value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"lm_memory must be an int (bytes), got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"lm_memory must be >= 1 (bytes), got {value}")
    return int(value)


def check_options(optimizer, options):
    """The LM options (``options``: name -> value as fit got them) checked;
    for another optimizer, a value that is not the default is an error."""
    if optimizer != "lm":
        given = [k for k, v in options.items() if v != LM_OPTIONS[k]]
        if given:
            raise ValueError(f"{', '.join(sorted(given))} {'is an option' if len(given) == 1 else 'are options'}"
                             f" of optimizer=\"lm\" (Levenberg-Marquardt), got optimizer={optimizer!r}")
        return None
    checked = {name: _number(options[name], name, 0.0, low_open=name in ("mu", "mu_inc", "mu_max"))
               for name in ("mu", "mu_dec", "mu_inc", "mu_max", "min_grad", "goal")}
    if not checked["mu_dec"] < 1.0 or not checked["mu_dec"] > 0.0:
        raise ValueError(f"mu_dec must be in (0, 1), got {checked['mu_dec']}")
    if not checked["mu_inc"] > 1.0:
        raise ValueError(f"mu_inc must be > 1, got {checked['mu_inc']}")
    checked["max_fail"] = check_count(options["max_fail"], "max_fail", 1)
    checked["damping"] = code("damping", options["damping"])
    checked["lm_memory"] = _memory(options["lm_memory"])
    return checked


class LMObjective:
    """L(θ) = c · (E(θ) + α ‖W‖²), E = Σ r_i ‖ŷ_i − t_i‖², r_i = scale · w_i
    (scale 0: w_i N / Σ w); the system is Gauss-Newton's on ½ (E + α‖W‖²)."""

    def __init__(self, c, alpha, weight_scale, n_weights):
        self.c, self.alpha, self.weight_scale, self.n_weights = c, alpha, weight_scale, n_weights

    def value(self, E, params):
        W = params[:self.n_weights]
        return self.c * (E + self.alpha * float(np.dot(W, W))) if self.alpha else self.c * E

    def gradient_norm(self, jte, params):
        """‖∇L‖ = 2c ‖Jᵀe + αΛθ‖."""
        g = jte.copy()
        if self.alpha:
            g[:self.n_weights] += self.alpha * params[:self.n_weights]
        return 2.0 * self.c * float(np.linalg.norm(g))


def fit(net, X, T, *, comm=None, **kwargs):
    """See MLP.fit (optimizer="lm")."""
    sync = LocalSync() if comm is None else FitSync(comm)
    if sync.rank != 0:
        kwargs["progress"] = False
    with sync.guard():
        return _fit(net, X, T, sync, **kwargs)


def _fit(net, X, T, sync, *, epochs, options, reduction, weight_decay, validation_data,
         restore_best_weights, callback, progress, check_finite, sample_weight=None,
         objective=None):
    """Levenberg-Marquardt on one process or on one rank of an MPI job.

    objective: None (fit's: the loss with ``reduction`` plus weight_decay/2 ‖W‖²),
    or an ``LMObjective`` (the scikit-learn estimator's), then with its raw weights."""
    rc = code("reduction", reduction)
    epochs = check_count(epochs, "epochs", 0)
    check_callback(callback)
    X, T = _squared_error_data(net, X, T, check_finite)
    n = X.shape[0]
    if n == 0:
        raise ValueError("X must have at least one row, got shape (0, ...)")
    w = checked_weights(sample_weight, n)
    if validation_data is not None:
        X_val, T_val = _squared_error_data(net, *validation_pair(validation_data), check_finite,
                                           ("X_val", "T_val"))
    lc = code("loss", "squared_error")
    with net.in_use("fit") as core:
        solver = _Solver(net, n, options["lm_memory"], distributed=sync.size > 1)
        sync.start(net.params, [n], dict(epochs=epochs, loss="squared_error", reduction=reduction,
                                          n_params=net.n_params, optimizer="lm",
                                          validation=validation_data is not None,
                                          sample_weight=w is not None, form=solver.form, **options))
        # the totals every rank needs: rows, weights, validation rows
        totals = np.array([n, n if w is None else float(w.sum()),
                           0 if validation_data is None else X_val.shape[0]], dtype=np.float64)
        sync.sum_all(totals)
        n_all, w_all, n_val = totals
        if objective is None:
            s = loss_scale(rc, int(n_all))
            objective = LMObjective(s, weight_decay / (2.0 * s), n_all / w_all if w is not None else 0.0,
                                   net.n_weights)
        loop = _Loop(net, core, solver, sync, objective, X, T, w, options)
        history = {"loss": [], "mu": []}
        if validation_data is not None:
            history["val_loss"] = []
        val_loss = None if validation_data is None else (
            lambda: loop.summed(dataset_loss(core, X_val, T_val, lc, Reduction.RED_SUM))
            * loss_scale(rc, int(n_val)))
        # trainlm's validation stop: max_fail iterations without a new best
        best = (EarlyStopping(options["max_fail"], 0.0, restore_best_weights, net.params)
                if validation_data is not None else None)
        bar = progress_bar(progress, epochs, 1)
        try:
            history["stop"] = loop.run(epochs, history, val_loss, best, callback, bar)
        finally:
            if bar is not None:
                bar.close()
        if best is not None:
            best.finish()
        return history


class _Loop:
    """The iterations of one fit: build the system, solve, try, accept or damp more."""

    def __init__(self, net, core, solver, sync, objective, X, T, w, options):
        self.net, self.core, self.solver, self.sync = net, core, solver, sync
        self.objective, self.X, self.T, self.w = objective, X, T, w
        self.options = options
        self.params = net.params
        self.saved = np.empty_like(self.params)
        self.delta = np.empty_like(self.params)
        self.one = np.zeros(1)
        # Σ w_i ‖ŷ_i − t_i‖² to E = Σ r_i ‖ŷ_i − t_i‖²
        scale = objective.weight_scale
        self.rescale = 1.0 if w is None else scale if scale > 0.0 else X.shape[0] / float(w.sum())

    def summed(self, value):
        """A number's sum over the processes (the same on every one)."""
        self.one[0] = value
        self.sync.sum_all(self.one)
        return float(self.one[0])

    def build(self):
        """The system at the parameters, summed over the processes; returns L."""
        E = self.solver.build(self.net.derivative_core, self.X, self.T, self.w,
                              self.objective.weight_scale)
        system = self.solver.system
        if self.sync.size > 1:  # (the normal form: one buffer, one reduction)
            system.sums[-1] = E
            self.sync.sum_all(system.sums)
            E = float(system.sums[-1])
        return self.objective.value(E, self.params)

    def trial_loss(self):
        """L at the parameters (forward only), summed over the processes."""
        return self.objective.value(self.summed(self.rescale * dataset_loss(
            self.core, self.X, self.T, Loss.LOSS_SQUARED_ERROR, Reduction.RED_SUM, self.w)),
            self.params)

    def run(self, epochs, history, val_loss, best, callback, bar):
        """The iterations; returns why they stopped."""
        o = self.options
        mu, params = o["mu"], self.params
        L = self.build()
        system = self.solver.system
        it = 0
        while True:
            if L <= o["goal"]:
                return "goal"
            if self.objective.gradient_norm(system.jte, params) <= o["min_grad"]:
                return "min_grad"
            if it == epochs:
                return "epochs"
            np.copyto(self.saved, params)
            while True:
                if mu > o["mu_max"]:
                    return "mu_max"
                if self.solver.solve(mu, self.delta, o["damping"], self.objective.alpha, params,
                                     self.net.n_weights):
                    np.add(self.saved, self.delta, out=params)
                    L_new = self.trial_loss()
                    if L_new < L:  # (a NaN loss is never taken)
                        mu = max(mu * o["mu_dec"], MU_MIN)
                        break
                    np.copyto(params, self.saved)
                mu *= o["mu_inc"]
            L = L_new
            history["loss"].append(L)
            history["mu"].append(mu)
            stop = None
            if val_loss is not None:
                history["val_loss"].append(val_loss())
                if best.update(history["val_loss"][-1]):
                    stop = "max_fail"
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=L, mu=mu)
            if callback is not None and callback(it, history) is True and stop is None:
                stop = "callback"
            it += 1
            if self.sync.decide(stop is not None):  # (rank 0's callback decides)
                return stop or "callback"
            L = self.build()
