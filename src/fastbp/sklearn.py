"""scikit-learn estimators trained by fastbp: drop-ins for MLPRegressor and
MLPClassifier (solvers "sgd", "adam" and "lbfgs"; and the regressor's "lm",
Levenberg-Marquardt, which scikit-learn does not have).

They take scikit-learn's parameters where the meaning matches, minimise the
same objective, draw the same random numbers in the same order from
``random_state`` (initialisation, validation split, epoch shuffles) and
expose the fitted attributes in scikit-learn's layout (``coefs_[i]`` is
(fan_in, fan_out)).  For the same parameters and seed they fit the same
network as scikit-learn, to rounding.  The network under them is a
:class:`fastbp.network.MLP`, trained by its compiled core: the stochastic
solvers run every batch of an epoch in one ``NetworkCore.epoch`` call, with
scikit-learn's objective given as an ``Objective``; L-BFGS takes the loss and
gradient from ``NetworkCore.step``:

* regression: identity output, loss ½·mean Σ (T − Y)² (fastbp's "mean"
  squared error is twice that, so SGD's step and Adam's ε are scaled to
  match);
* classification, several classes: softmax fused with the log-loss
  (``loss="cross_entropy"``);
* classification, two classes: scikit-learn's single logistic unit with the
  binary log-loss.  fastbp trains it as a softmax over (z, 0): a second
  output unit whose weights and bias are held at zero, so P(class 1) =
  σ(z) and ∂J/∂z = σ(z) − t, exactly the logistic unit's;
* multilabel classification (a 0/1 indicator y): one logistic unit per
  label, σ fused with the binary log-loss (``loss="binary_cross_entropy"``),
  ``predict`` thresholds the probabilities at 0.5;
* regression with ``loss="poisson"``: exponential output, exp fused with
  half the Poisson deviance (fastbp's ``loss="poisson"``), the loss_
  scikit-learn reports (y log(y/ŷ) − y + ŷ, averaged over rows and summed
  over outputs); y must be >= 0.

Both add the L2 penalty alpha/(2·batch) ‖W‖² (weights, not biases), and
Adam's ε is applied where scikit-learn applies it (to √v before the bias
correction).  "lbfgs" is SciPy's L-BFGS-B on the whole-data loss and
gradient from one compiled pass, as scikit-learn runs it.  scikit-learn's
log-loss (binary or not) clips probabilities at 2.2e-16: fastbp's exact loss
is replaced by the clipped one where a probability is that small for L-BFGS (whose
line search reads the loss), not in the stochastic solvers' reported
``loss_curve_`` (whose first entries can then differ; the gradients, and so
the weights, are the same).
float32 X gives float32 ``coefs_``, ``intercepts_`` and predictions, as
scikit-learn's, while the core computes in float64: X is converted once,
the network keeps float64 parameters and ``coefs_`` / ``intercepts_`` are
float32 copies of them published at the end of every fit (with float64 X
they are live views).  The stopping rules are scikit-learn's
(ConvergenceWarning at ``max_iter``, ``n_iter_no_change=np.inf``, a
diverging fit going on with a NaN loss and validation score).
``MLPClassifier(class_weight=...)`` is fastbp's addition.
``_optimizer.learning_rate`` and ``_loss_grad_lbfgs`` are compatibility
shims for scikit-learn's private names, which its own tests read.
scikit-learn is needed at import time of this module only: ``import
fastbp`` does not load it.
"""

import math
import warnings

import numpy as np
from scipy.special import expit

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import LabelBinarizer
    from sklearn.utils import check_random_state
    from sklearn.utils.class_weight import compute_class_weight
    from sklearn.utils.multiclass import check_classification_targets, type_of_target
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.optimize import _check_optimize_result
    from sklearn.utils.validation import _check_sample_weight, check_is_fitted, column_or_1d
except ImportError as exc:  # pragma: no cover - exercised without sklearn
    raise ImportError(
        "fastbp.sklearn needs scikit-learn; install it with `pip install scikit-learn` "
        "(or `pip install 'fastbp[sklearn]'`)") from exc

from fastbp._enums import Loss, Reduction
from fastbp._kernels import dense_forward
from fastbp._losses import softmax
from fastbp._network import Objective
from fastbp._sparse import csr_forward
from fastbp import levmar
from fastbp.inputs import as_sparse_inputs, is_sparse, take_rows
from fastbp.network import MLP
from fastbp.training import dataset_loss
from fastbp.optim import SGD, Adam, Momentum

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover - older scikit-learn
    def _validate_data(est, *args, **kwargs):
        return est._validate_data(*args, **kwargs)

__all__ = ["MLPClassifier", "MLPRegressor"]

# scikit-learn's activation names -> fastbp's
_ACTIVATION = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu",
               # beyond scikit-learn's four (fastbp's names)
               "leaky_relu": "leaky_relu", "elu": "elu", "softplus": "softplus", "silu": "silu"}
_SOLVERS = ("lbfgs", "sgd", "adam")
_STOCHASTIC = ("sgd", "adam")
_LM = "lm"  # MLPRegressor's Levenberg-Marquardt (fastbp's addition)
_CURVED = _STOCHASTIC + (_LM,)  # solvers with a loss_curve_
_SCHEDULES = ("constant", "invscaling", "adaptive")  # learning_rate, for solver="sgd"

# scikit-learn's log-loss clips probabilities to [eps, 1 − eps]: a row's loss
# differs from the exact −log p once p < eps, i.e. above −log eps
_EPS = float(np.finfo(np.float64).eps)
_CLIPPED_LOG_LOSS = -math.log(_EPS)


def _clipped_log_loss(net, X, labels, sw):
    """The mean log-loss with scikit-learn's clipping (one more forward pass)."""
    p = softmax(net.forward(X))[np.arange(len(labels)), labels]
    return float(np.average(-np.log(np.clip(p, _EPS, 1.0 - _EPS)), weights=sw))


def _clipped_binary_log_loss(net, X, T, sw):
    """scikit-learn's binary log-loss of a multilabel fit, with its clipping:
    the mean over rows of the sum over labels (one more forward pass)."""
    p = np.clip(net.forward(X), _EPS, 1.0 - _EPS)  # the sigmoids
    per = -(T * np.log(p) + (1.0 - T) * np.log(1.0 - p))
    return float(np.average(per, weights=sw, axis=0).sum())


def _require_finite(net):
    if not np.isfinite(net.params).all():
        raise ValueError(
            "Solver produced non-finite parameter weights. The input data may contain "
            "large values and need to be preprocessed.")


def _check_number(value, name, low, high=None, low_open=False, high_open=False, integer=False):
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, kinds):
        what = "an int" if integer else "a number"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    bad_low = value <= low if low_open else value < low
    bad_high = high is not None and (value >= high if high_open else value > high)
    if bad_low or bad_high or not np.isfinite(value):
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        raise ValueError(f"{name} must be in {lo}{low}, {'inf' if high is None else high}{hi}, got {value!r}")


def _check_bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")


class _Optimizer:
    """A stochastic solver's optimiser as the estimator keeps it (``_optimizer``).

    ``optimizer`` is the fastbp optimiser the compiled epoch steps with;
    ``grad_scale`` c is fastbp's gradient over scikit-learn's (its SGD
    learning rate is 1/c of scikit-learn's).  ``learning_rate`` is a
    compatibility shim: the value scikit-learn's ``_optimizer.learning_rate``
    holds (SGD's current rate; Adam's bias-corrected step size
    lr·√(1−β₂ᵗ)/(1−β₁ᵗ) after t steps, lr before the first), which
    scikit-learn's own tests read; setting it sets SGD's rate in
    scikit-learn's terms.
    """

    def __init__(self, optimizer, grad_scale):
        self.optimizer = optimizer
        self.grad_scale = grad_scale

    @property
    def learning_rate(self):
        opt = self.optimizer
        if isinstance(opt, Adam):
            t = opt.t
            if t == 0:
                return opt.lr
            return opt.lr * math.sqrt(1.0 - opt.beta2 ** t) / (1.0 - opt.beta1 ** t)
        return opt.lr * self.grad_scale

    @learning_rate.setter
    def learning_rate(self, lr):
        # scikit-learn's velocity v = μ v − lr g has lr inside; fastbp's
        # v = μ v + g has it outside, so v is rescaled to keep the step
        opt = self.optimizer
        if isinstance(opt, Adam):  # as scikit-learn's, derived from the steps taken
            raise AttributeError("Adam's learning_rate is derived from learning_rate_init "
                                 "and the steps taken; it cannot be set")
        new = lr / self.grad_scale
        velocity = getattr(opt, "velocity", None)
        if velocity is not None and new != opt.lr and new > 0.0:
            velocity *= opt.lr / new
        opt.lr = new


class _BaseMLP(BaseEstimator):
    """Parameters, training loop and prediction shared by both estimators."""

    # gradient of fastbp's loss / gradient of scikit-learn's (set by subclasses)
    _grad_scale = 1.0
    _solvers = _SOLVERS

    def _keep(self, params):
        """Store the constructor's parameters (its ``locals()``) as attributes
        and do nothing else, as scikit-learn requires of ``__init__``.  Each
        estimator lists its parameters in its own signature, which
        ``get_params`` reads (no ``**kwargs``: scikit-learn forbids them).
        ``max_fun`` is lbfgs's bound on loss evaluations."""
        for name, value in params.items():
            if name not in ("self", "__class__"):
                setattr(self, name, value)

    # -- parameters ----------------------------------------------------------

    def _hidden_sizes(self):
        h = self.hidden_layer_sizes
        sizes = [h] if isinstance(h, (int, np.integer)) and not isinstance(h, bool) else h
        try:
            sizes = [int(s) if isinstance(s, (int, np.integer)) and not isinstance(s, bool) else None
                     for s in sizes]
        except TypeError:
            sizes = [None]
        if any(s is None or s < 1 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be positive ints, got {h!r}")
        return sizes

    def _check_params(self):
        if self.activation not in _ACTIVATION:
            raise ValueError(f"activation must be one of {tuple(_ACTIVATION)}, got {self.activation!r}")
        if self.solver not in self._solvers:
            raise ValueError(
                f"solver must be one of {self._solvers}, got {self.solver!r}")
        _check_number(self.alpha, "alpha", 0.0)
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            _check_number(self.batch_size, "batch_size", 1, integer=True)
        if self.learning_rate not in _SCHEDULES:
            raise ValueError(
                f"learning_rate must be one of {_SCHEDULES}, got {self.learning_rate!r}")
        _check_number(self.learning_rate_init, "learning_rate_init", 0.0, low_open=True)
        _check_number(self.power_t, "power_t", 0.0)
        _check_number(self.max_fun, "max_fun", 1, integer=True)
        _check_number(self.max_iter, "max_iter", 1, integer=True)
        _check_number(self.tol, "tol", 0.0)
        _check_number(self.momentum, "momentum", 0.0, 1.0, high_open=True)
        _check_number(self.validation_fraction, "validation_fraction", 0.0, 1.0, high_open=True)
        _check_number(self.beta_1, "beta_1", 0.0, 1.0, high_open=True)
        _check_number(self.beta_2, "beta_2", 0.0, 1.0, high_open=True)
        _check_number(self.epsilon, "epsilon", 0.0, low_open=True)
        if not (isinstance(self.n_iter_no_change, (float, np.floating))
                and self.n_iter_no_change == np.inf):  # inf: never stop on it, as scikit-learn
            _check_number(self.n_iter_no_change, "n_iter_no_change", 1, integer=True)
        for name in ("shuffle", "nesterovs_momentum", "early_stopping", "warm_start"):
            _check_bool(getattr(self, name), name)
        return self._hidden_sizes()

    # -- the network -----------------------------------------------------------

    def _initialize(self, n_features, n_out, hidden, rs, dtype):
        """A new network with scikit-learn's Glorot-uniform draws, in its order."""
        self.n_iter_ = 0
        self.t_ = 0
        self.n_layers_ = len(hidden) + 2
        units = [n_features] + hidden + [n_out]
        net = MLP(units[:-1] + [n_out + self._extra_units], activation=_ACTIVATION[self.activation],
                  output_activation=self._net_output(), seed=0)
        factor = 2.0 if self.activation == "logistic" else 6.0
        for W, b, fan_in, fan_out in zip(net.weights, net.biases, units[:-1], units[1:]):
            bound = np.sqrt(factor / (fan_in + fan_out))
            W[:fan_out] = rs.uniform(-bound, bound, (fan_in, fan_out)).T
            b[:fan_out] = rs.uniform(-bound, bound, fan_out)
            W[fan_out:] = 0.0  # the binary case's held-at-zero unit
            b[fan_out:] = 0.0
        self._adopt(net, dtype)
        self._best_params = net.params.copy()
        if self.solver not in _CURVED:  # as scikit-learn's lbfgs: no curve, no stopping state
            return
        self.loss_curve_ = []
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.validation_scores_ = None
            self.best_validation_score_ = None
            self.best_loss_ = np.inf

    def _views(self, net):
        """``net``'s parameters in scikit-learn's layout: (coefs, intercepts),
        float64 views without the binary case's held unit."""
        return self._views_of(net, net.weights, net.biases)

    def _views_of(self, net, weights, biases):
        """Per-layer (W, b) arrays of ``net`` (its parameters or gradients)
        as scikit-learn's (coefs, intercepts) views."""
        n_out = net.sizes[-1] - self._extra_units
        coefs = [W.T for W in weights[:-1]] + [weights[-1][:n_out].T]
        return coefs, list(biases[:-1]) + [biases[-1][:n_out]]

    def _adopt(self, net, dtype=np.float64):
        """Make ``net`` the estimator's network and publish its parameters
        as coefs_ / intercepts_ of ``dtype``."""
        self._net = net
        self._publish(dtype)

    def _publish(self, dtype=None):
        """coefs_ / intercepts_ from the network: for float64, views of its
        parameters (live); for float32 (a float32 X was fitted), float32
        copies, made again at the end of every fit and partial_fit.  The
        network itself stays float64: the core computes in float64."""
        dtype = self.coefs_[0].dtype if dtype is None else np.dtype(dtype)
        coefs, intercepts = self._views(self._net)
        if dtype != np.float64:
            coefs = [c.astype(dtype) for c in coefs]
            intercepts = [b.astype(dtype) for b in intercepts]
        self.coefs_, self.intercepts_ = coefs, intercepts

    def _net_matches(self, net):
        """Whether coefs_ / intercepts_ are still ``net``'s: its views, or
        float32 copies equal to its parameters rounded (not reassigned nor
        edited since published)."""
        coefs, intercepts = self._views(net)
        for mine, its in zip(self.coefs_ + self.intercepts_, coefs + intercepts):
            if mine.shape != its.shape:
                return False
            if mine.dtype == np.float64:
                if not (np.shares_memory(mine, net.params) and mine.strides == its.strides
                        and mine.__array_interface__["data"] == its.__array_interface__["data"]):
                    return False
            elif not np.array_equal(mine, its.astype(mine.dtype)):
                return False
        return len(self.coefs_) == len(coefs)

    def _ensure_net(self):
        """The network behind coefs_: kept while they are still its (so a
        float32 estimator keeps training from the float64 parameters),
        rebuilt from them after unpickling, reassignment or an edit."""
        net = getattr(self, "_net", None)
        if net is not None and net.output_activation == self._net_output() \
                and self._net_matches(net):
            return net
        dtype = self.coefs_[0].dtype
        units = [self.coefs_[0].shape[0]] + [c.shape[1] for c in self.coefs_]
        net = MLP(units[:-1] + [units[-1] + self._extra_units],
                  activation=_ACTIVATION[self.activation], output_activation=self._net_output(),
                  seed=0)
        for W, b, c, i in zip(net.weights, net.biases, self.coefs_, self.intercepts_):
            W[...] = 0.0
            b[...] = 0.0
            W[:c.shape[1]] = c.T
            b[:c.shape[1]] = i
        self._adopt(net, dtype)
        return net

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # CSR / CSC X (see _SPARSE)
        return tags

    def __getstate__(self):
        # the compiled network is rebuilt from coefs_ when next trained
        state = super().__getstate__()
        state.pop("_net", None)
        return state

    def _net_output(self):
        """The output activation of the fastbp network: "sigmoid" (multilabel)
        and "exp" (Poisson) are fused into their losses, the binary and
        multiclass softmax into cross entropy on identity logits."""
        return {"multilabel": "sigmoid", "exp": "exp"}.get(self._output_kind(), "identity")

    def _output_kind(self):
        return getattr(self, "out_activation_", "identity")

    def _result_dtype(self, X):
        """The predictions' dtype: float32 when X and coefs_ are (scikit-learn's
        result type of X @ coefs_), else float64."""
        return np.float32 if X.dtype == np.float32 == self.coefs_[0].dtype else np.float64

    def _forward(self, X):
        """Output-layer pre-activations (float64) for the checked X, from coefs_."""
        A = _core_X(X)
        act = _ACTIVATION[self.activation]
        last = len(self.coefs_) - 1
        for i, (c, b) in enumerate(zip(self.coefs_, self.intercepts_)):
            layer = csr_forward if i == 0 and is_sparse(A) else dense_forward
            A = layer(A, np.ascontiguousarray(c.T, dtype=np.float64),
                      np.ascontiguousarray(b, dtype=np.float64), "identity" if i == last else act)
        return A

    # -- training --------------------------------------------------------------

    def _make_optimizer(self):
        c = self._grad_scale
        if self.solver == "adam":
            # a gradient c times larger with ε c times larger is the same Adam step
            opt = Adam(lr=self.learning_rate_init, beta1=self.beta_1, beta2=self.beta_2,
                       eps=self.epsilon * c)
        elif self.momentum > 0:
            opt = Momentum(lr=self.learning_rate_init / c, momentum=self.momentum,
                           nesterov=self.nesterovs_momentum)
        else:
            opt = SGD(lr=self.learning_rate_init / c)
        return _Optimizer(opt, c)

    def _fit(self, X, y, incremental, sample_weight=None):
        hidden = self._check_params()
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        first = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, T, y_score, strat = self._validate_training_data(X, y, incremental, reset=first)
        # float32 X: float32 coefs_ and predictions, as scikit-learn's; the
        # core computes in float64 (X converted once)
        dtype = X.dtype
        X = _core_X(X)
        sw = self._sample_weight(X, y_score, sample_weight, incremental)
        self._random_state = rs = check_random_state(self.random_state)
        n_out = self.n_outputs_
        if first:
            self._initialize(X.shape[1], n_out, hidden, rs, dtype)
        elif self.coefs_[-1].shape[1] != n_out:
            raise ValueError(
                f"y has {n_out} outputs but the fitted network has {self.coefs_[-1].shape[1]}; "
                "fit again with warm_start=False")
        net = self._ensure_net()
        try:
            if self.solver == "lbfgs":
                self._fit_lbfgs(net, X, T, sw)
            elif self.solver == _LM:
                self._fit_lm(net, X, T, y_score, sw, strat, rs)
            else:
                if not incremental or not hasattr(self, "_optimizer"):
                    self._optimizer = self._make_optimizer()
                self._fit_stochastic(net, X, T, y_score, sw, strat, incremental, rs)
        finally:
            self._publish()
        _require_finite(net)
        return self

    def _sample_weight(self, X, y, sample_weight, incremental):
        """fit's sample_weight checked, float64 (None for none)."""
        if sample_weight is None:
            return None
        return np.ascontiguousarray(_check_sample_weight(
            sample_weight, X, dtype=np.float64, ensure_non_negative=True))

    def _fit_lbfgs(self, net, X, T, sw):
        """scikit-learn's full-batch L-BFGS-B (SciPy) on the same objective,
        with the loss and its gradient from one compiled pass over X.

        L-BFGS only takes dot products and elementwise steps of the
        parameter vector, so fastbp's order of the parameters gives the same
        iterates as scikit-learn's, up to rounding."""
        from scipy.optimize import minimize
        loss_and_gradient = self._lbfgs_objective(net, X, T, sw)
        params = net.params
        res = minimize(loss_and_gradient, params.copy(), method="L-BFGS-B", jac=True,
                       options={"maxfun": self.max_fun, "maxiter": self.max_iter,
                                "gtol": self.tol})
        self.n_iter_ = _check_optimize_result("lbfgs", res, self.max_iter)
        self.loss_ = float(res.fun)
        params[...] = res.x

    def _fit_lm(self, net, X, T, y_score, sw, strat, rs):
        """Levenberg-Marquardt (``fastbp.levmar``) on scikit-learn's objective
        ½·mean Σ (y − ŷ)² + α/(2n) ‖W‖², which times n·D_out is ½ Σ w_i ‖e_i‖²
        + ½ α D_out ‖W‖² (raw weights: a weight is a repetition): α D_out joins
        the normal equations.  One iteration is one solve that lowered the loss
        (trainlm's defaults for μ); ``max_iter`` bounds them, ``tol`` and
        ``n_iter_no_change`` stop as for the stochastic solvers, on the
        training loss or, with early_stopping, the validation score."""
        if self.loss != "squared_error":
            raise ValueError(f"solver='lm' minimises a sum of squares: loss must be "
                             f"'squared_error', got {self.loss!r}")
        X_val = y_val = sw_val = None
        if self.early_stopping:
            X, T, sw, X_val, y_val, sw_val = self._split(X, T, y_score, sw, strat, rs)
        n, d = T.shape
        norm = n if sw is None else float(sw.sum())
        objective = levmar.LMObjective(1.0 / (2.0 * norm * d), float(self.alpha) * d,
                                      0.0 if sw is None else 1.0, net.n_weights)

        def after_iteration(epoch, history):
            self.n_iter_ += 1
            self.loss_ = history["loss"][-1]
            self.loss_curve_.append(self.loss_)
            if self.verbose:
                print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))
            self._update_no_improvement(X_val, y_val, sw_val, net)
            return self._no_improvement_count > self.n_iter_no_change

        self.n_iter_ = 0
        options = levmar.check_options(_LM, levmar.LM_OPTIONS)
        hist = levmar.fit(net, X, T, epochs=self.max_iter, options=options, reduction="mean",
                          weight_decay=0.0, validation_data=None, restore_best_weights=False,
                          callback=after_iteration, progress=False, check_finite=False,
                          sample_weight=sw, objective=objective)
        if not hist["loss"]:  # stopped before a step: the loss where it stands
            self.loss_ = objective.value(dataset_loss(net.core, X, T, Loss.LOSS_SQUARED_ERROR,
                                                       Reduction.RED_SUM, sw), net.params)
        if hist["stop"] == "callback" and self.verbose:
            what = "Validation score" if self.early_stopping else "Training loss"
            print(f"{what} did not improve more than tol={self.tol:f} for "
                  f"{self.n_iter_no_change} consecutive iterations. Stopping.")
        if hist["stop"] == "epochs" and self.max_iter > 0:
            warnings.warn(f"Levenberg-Marquardt: Maximum iterations ({self.max_iter}) reached and "
                          "the optimization hasn't converged yet.", ConvergenceWarning)
        if self.early_stopping:
            net.params[...] = self._best_params

    def _lbfgs_objective(self, net, X, T, sw):
        """theta (in ``net.params``' layout) -> (scikit-learn's objective,
        its gradient): the whole-data loss plus α/(2n)‖W‖², from one
        compiled pass; ``net.params`` is left at theta and ``net.grads``
        holds the gradient."""
        c, alpha = self._grad_scale, float(self.alpha)
        params, grads, n_w = net.params, net.grads, net.n_weights
        w_flat = params[:n_w]
        loss, scale = self._objective(T)
        lc, rc = net.loss_codes(loss, "mean")
        core = net.core
        # sklearn's log-losses clip, its squared error and Poisson deviance not
        clipped = {"cross_entropy": _clipped_log_loss,
                   "binary_cross_entropy": _clipped_binary_log_loss}.get(loss)
        norm = X.shape[0] if sw is None else float(sw.sum())
        n_real = net.weights[-1].shape[0] - self._extra_units
        held = (net.grad_weights[-1][n_real:], net.grad_biases[-1][n_real:])

        def loss_and_gradient(theta):
            params[...] = theta
            J = core.step(X, T, loss=lc, reduction=rc, sample_weight=sw)
            value = J / scale
            if clipped is not None and core.worst_row_loss > _CLIPPED_LOG_LOSS:
                value = clipped(net, X, T, sw)  # what scikit-learn reports
            np.divide(grads, c, out=grads)
            grads[:n_w] += (alpha / norm) * w_flat
            for g in held:  # the binary case's second logit stays at 0
                g[...] = 0.0
            return value + 0.5 * alpha * float(np.dot(w_flat, w_flat)) / norm, grads.copy()

        return loss_and_gradient

    def _loss_grad_lbfgs(self, packed_coef_inter, X, y, sample_weight, activations, deltas,
                         coef_grads, intercept_grads):
        """Compatibility shim for scikit-learn's private method of this name,
        which its tests call (test_gradient): the objective and its gradient
        at ``packed_coef_inter`` (scikit-learn's packing: every coefs_[i]
        raveled, then every intercepts_[i]), for X and the binarised targets
        y (``LabelBinarizer`` output for a classifier).  As scikit-learn's,
        it sets coefs_ / intercepts_ to the packed values and fills
        ``coef_grads`` / ``intercept_grads`` (lists of arrays in coefs_'
        shapes) with the gradient; ``activations`` and ``deltas`` are not
        written (fastbp's compiled pass keeps its own).  Computed by the
        same compiled pass as ``fit``'s L-BFGS."""
        theta = np.asarray(packed_coef_inter, dtype=np.float64)
        start = 0
        for a in self.coefs_ + self.intercepts_:  # scikit-learn's _unpack
            a[...] = theta[start:start + a.size].reshape(a.shape)
            start += a.size
        net = self._ensure_net()
        X = _core_X(X)
        T = self._targets_of_binarized(np.asarray(y))
        sw = None if sample_weight is None else np.ascontiguousarray(sample_weight, np.float64)
        value, _ = self._lbfgs_objective(net, X, T, sw)(net.params.copy())
        g_coefs, g_intercepts = self._views_of(net, net.grad_weights, net.grad_biases)
        for out, g in zip(list(coef_grads) + list(intercept_grads), g_coefs + g_intercepts):
            out[...] = g
        return value, np.concatenate([g.ravel() for g in g_coefs + g_intercepts])

    def _split(self, X, T, y_score, sw, strat, rs):
        idx = np.arange(X.shape[0])
        train, val = train_test_split(idx, random_state=rs, test_size=self.validation_fraction,
                                      stratify=strat)
        if val.shape[0] < 2:
            raise ValueError(
                "The validation set is too small. Increase 'validation_fraction' or the size "
                "of your dataset.")
        if sw is None:
            return take_rows(X, train), T[train], None, take_rows(X, val), y_score[val], None
        return (take_rows(X, train), T[train], sw[train], take_rows(X, val), y_score[val],
                sw[val])

    def _fit_stochastic(self, net, X, T, y_score, sw, strat, incremental, rs):
        if self.early_stopping:
            X, T, sw, X_val, y_val, sw_val = self._split(X, T, y_score, sw, strat, rs)
        n = X.shape[0]
        if self.batch_size == "auto":
            bs = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. "
                              "It is going to be clipped")
            bs = int(np.clip(self.batch_size, 1, n))
        # a CSR X is read in place (its batches' rows through order): no X buffer
        X_buf = None if is_sparse(X) else np.empty((bs,) + X.shape[1:])
        T_buf = np.empty((bs,) + T.shape[1:], T.dtype)
        sk_opt, c, alpha = self._optimizer, self._grad_scale, float(self.alpha)
        opt = sk_opt.optimizer
        loss, scale = self._objective(T)
        lc, _ = net.loss_codes(loss, "mean")
        # scikit-learn's objective per batch: mean loss + α/(2 N_b) ‖W‖² (N_b its
        # rows or weight sum), its Adam ε placement, the binary case's second
        # logit held at 0; loss_curve_ weighs batches by their rows
        objective = Objective(alpha=alpha, grad_scale=c, loss_scale=scale,
                              held_units=self._extra_units, weigh_by_rows=True,
                              eps_before_correction=True)
        order = np.arange(n, dtype=np.int64)
        self.n_iter_ = 0  # epochs of this call (loss_curve_ keeps them all)
        for _ in range(self.max_iter):
            if self.shuffle:
                # sklearn.utils.shuffle's draw: it shuffles arange(n) and takes
                # X[perm]; the same swaps on order give order[perm] in place
                rs.shuffle(order)
            # every batch in one compiled call
            total = net.core.epoch(X, T, batch_size=bs, loss=lc, update=opt.update_spec(net.params),
                                   order=order if self.shuffle else None,
                                   buffers=(X_buf, T_buf), sample_weight=sw, objective=objective)
            self.n_iter_ += 1
            self.loss_ = total / n
            self.t_ += n
            self.loss_curve_.append(self.loss_)
            if self.verbose:
                print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))
            self._update_no_improvement(X_val if self.early_stopping else None,
                                        y_val if self.early_stopping else None,
                                        sw_val if self.early_stopping else None, net)
            schedule = self.learning_rate if self.solver == "sgd" else "constant"
            if schedule == "invscaling":  # at each epoch's end, from the samples seen
                sk_opt.learning_rate = self.learning_rate_init / (self.t_ + 1) ** self.power_t
            if self._no_improvement_count > self.n_iter_no_change:
                what = "Validation score" if self.early_stopping else "Training loss"
                msg = (f"{what} did not improve more than tol={self.tol:f} for "
                       f"{self.n_iter_no_change} consecutive epochs.")
                if schedule != "adaptive" or sk_opt.learning_rate <= 1e-6:
                    if self.verbose:
                        print(msg + (" Stopping." if schedule != "adaptive"
                                     else " Learning rate too small. Stopping."))
                    break
                sk_opt.learning_rate /= 5.0  # adaptive: a fifth, and go on
                if self.verbose:
                    print(msg + " Setting learning rate to %f" % sk_opt.learning_rate)
                self._no_improvement_count = 0
            if incremental:
                break
            if self.n_iter_ == self.max_iter:
                warnings.warn(
                    f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and "
                    "the optimization hasn't converged yet.", ConvergenceWarning)
        if self.early_stopping:
            net.params[...] = self._best_params

    def _objective(self, T):
        """fastbp's loss for targets T, and the factor from its "mean" value
        to the loss scikit-learn reports: c, and for the squared error also
        the outputs, which sklearn's reported loss averages over (its
        gradient does not)."""
        if T.dtype == np.int64:
            return "cross_entropy", self._grad_scale
        kind = self._output_kind()
        if kind == "multilabel":  # sklearn's binary log-loss sums over the labels
            return "binary_cross_entropy", self._grad_scale
        if kind == "exp":  # its Poisson deviance too
            return "poisson", self._grad_scale
        return "squared_error", self._grad_scale * T.shape[1]

    def _check_stochastic(self):
        if self.solver not in _STOCHASTIC:
            raise AttributeError(f"partial_fit is only available for stochastic optimizers. "
                                 f"{self.solver} is not stochastic.")
        return True

    def _validation_score(self, X, y, sample_weight):
        """The score on the validation split, as scikit-learn's
        ``_score_with_function``: from the already-checked X (validating it
        again would warn of missing feature names), NaN when a prediction is
        not finite (a diverging fit), so that stopping goes on and the best
        parameters are restored."""
        Y = self._forward(X)
        if not np.isfinite(Y).all():
            return np.nan
        return self._score_outputs(Y, y, sample_weight)

    def _update_no_improvement(self, X_val, y_val, sw_val, net):
        if X_val is not None:
            score = self._validation_score(X_val, y_val, sw_val)
            self.validation_scores_.append(score)
            if self.verbose:
                print("Validation score: %f" % score)
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_params = net.params.copy()
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    # -- public ------------------------------------------------------------------

    def fit(self, X, y, sample_weight=None):
        """Fit the network to X (n_samples, n_features) and y; returns self.

        sample_weight (n_samples,): weights ≥ 0 of the examples, as in
        scikit-learn (each batch's loss, gradient and L2 term are divided by
        the batch's sum of weights; a batch of weight 0 is skipped)."""
        return self._fit(X, y, incremental=False, sample_weight=sample_weight)

    def _check_X(self, X):
        check_is_fitted(self)
        return _validate_data(self, X, reset=False, dtype=(np.float64, np.float32), order="C",
                              accept_sparse=_SPARSE)


# Sparse X: CSR and CSC pass validate_data (other formats are converted to
# CSR there, as scikit-learn does), then _core_X makes the one form the
# compiled sparse layer reads (canonical CSR, int64 indices; CSC converted).
_SPARSE = ["csr", "csc"]


def _core_X(X):
    """A validated X as the compiled core reads it: float64 (float32 X is
    converted once), a sparse X in the form of _SPARSE."""
    if is_sparse(X):
        return as_sparse_inputs(X, X.shape[1], check_finite=False)
    return np.ascontiguousarray(X, dtype=np.float64)


_REGRESSION_LOSSES = ("squared_error", "poisson")


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor trained by fastbp's compiled kernels.

    A drop-in for ``sklearn.neural_network.MLPRegressor`` with ``solver`` in
    {"sgd", "adam", "lbfgs"}, and "lm" (Levenberg-Marquardt, fastbp's
    addition: see ``_fit_lm``; full batch, batch_size ignored as by "lbfgs",
    loss_curve_ kept, no partial_fit): the same parameters, objective
    ½·mean Σ (y − ŷ)² + alpha/(2n) ‖W‖² (``loss="squared_error"``) or, with
    ``loss="poisson"``, ŷ = exp(z) and half the Poisson deviance
    mean Σ [y log(y/ŷ) − y + ŷ] + alpha/(2n) ‖W‖² (y >= 0), random draws and
    fitted attributes (coefs_, intercepts_, loss_, loss_curve_, n_iter_,
    best_loss_, validation_scores_, best_validation_score_, t_, n_layers_,
    n_outputs_, out_activation_).
    """

    _extra_units = 0
    _solvers = _SOLVERS + (_LM,)

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000):
        self._keep(locals())

    @property
    def _grad_scale(self):
        # fastbp's "mean" squared error is twice sklearn's ½·mean; its Poisson
        # deviance is sklearn's
        return 1.0 if self.loss == "poisson" else 2.0

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # y may have several columns
        tags.target_tags.positive_only = self.loss == "poisson"  # y >= 0
        return tags

    def _validate_training_data(self, X, y, incremental, reset):
        if self.loss not in _REGRESSION_LOSSES:
            raise ValueError(f"loss must be one of {_REGRESSION_LOSSES}, got {self.loss!r}")
        X, y = _validate_data(self, X, y, reset=reset, multi_output=True, y_numeric=True,
                              dtype=(np.float64, np.float32), order="C", accept_sparse=_SPARSE)
        T = np.ascontiguousarray(y.reshape(y.shape[0], -1), dtype=np.float64)
        if self.loss == "poisson" and (T < 0).any():
            i, j = np.unravel_index(int(np.argmax(T < 0)), T.shape)
            raise ValueError(f"y must be >= 0 for loss='poisson' (counts or rates), got "
                             f"{float(T[i, j])} at sample {i}" + (f", output {j}" if T.shape[1] > 1 else ""))
        self.n_outputs_ = T.shape[1]
        self.out_activation_ = "exp" if self.loss == "poisson" else "identity"
        return X, T, y, None

    def _targets_of_binarized(self, y):
        """fastbp's targets from scikit-learn's internal y (for the shims)."""
        return np.ascontiguousarray(y.reshape(y.shape[0], -1), dtype=np.float64)

    @available_if(lambda est: est._check_stochastic())
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y), continuing from the current state."""
        return self._fit(X, y, incremental=True, sample_weight=sample_weight)

    def predict(self, X):
        """Predicted targets, (n_samples,) for one output, else (n_samples, n_outputs)
        (exp of the output layer for loss="poisson")."""
        X = self._check_X(X)
        return self._predictions(self._forward(X)).astype(self._result_dtype(X), copy=False)

    def _predictions(self, Y):
        if self.out_activation_ == "exp":
            np.exp(Y, out=Y)
        return Y.ravel() if Y.shape[1] == 1 else Y

    def _score_outputs(self, Y, y, sample_weight):
        return r2_score(y, self._predictions(Y), sample_weight=sample_weight)


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier trained by fastbp's compiled kernels.

    A drop-in for ``sklearn.neural_network.MLPClassifier`` with ``solver`` in
    {"sgd", "adam", "lbfgs"}: softmax + log-loss
    for several classes, one logistic unit + binary log-loss for two, the
    same random draws and fitted attributes (classes_, coefs_, intercepts_,
    loss_, loss_curve_, n_iter_, ...).  A multilabel indicator y (n_samples,
    n_labels) of 0/1 gets one logistic unit per label and the binary
    log-loss summed over the labels; ``predict`` returns the indicator of
    the probabilities above 0.5, ``predict_proba`` the probabilities.

    ``class_weight`` (None, "balanced" or a dict {label: weight}) weighs
    each example by its class's weight, composed with ``sample_weight`` as
    scikit-learn's other classifiers (LogisticRegression) do: the weights
    are ``compute_class_weight(class_weight, classes=classes_, y=y,
    sample_weight=sample_weight)`` (so "balanced" is n / (n_classes ·
    count), counts weighted by sample_weight), multiplied into
    sample_weight; the fit is the one with those sample weights (the
    validation split of early stopping scores with them too).  In
    ``partial_fit``, "balanced" takes the class frequencies of that call's
    y (pass a dict for the whole data's).  Labels missing from a dict weigh
    1; a dict naming a label that is not a class is an error (as in
    ``compute_class_weight``).  For multilabel y, class_weight is "balanced"
    or a list of one dict {0: w, 1: w} per label, and a row weighs the
    product of its labels' value weights (scikit-learn's composition of
    multi-output class weights in ``compute_sample_weight``).
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 class_weight=None):
        self._keep(locals())

    def _check_params(self):
        cw = self.class_weight
        dicts = list(cw) if isinstance(cw, (list, tuple)) else [cw]
        if not (cw is None or (isinstance(cw, str) and cw == "balanced")
                or (dicts and all(isinstance(d, dict) for d in dicts))):
            raise ValueError(f"class_weight must be None, 'balanced', a dict "
                             f"{{class label: weight}} or (multilabel y) a list of one dict "
                             f"per label, got {cw!r}")
        for d in dicts:
            for label, weight in (d.items() if isinstance(d, dict) else ()):
                if (isinstance(weight, bool) or not isinstance(weight, (int, float, np.integer,
                                                                        np.floating))
                        or not (np.isfinite(weight) and weight >= 0)):
                    raise ValueError(f"class_weight's weights must be finite numbers >= 0, "
                                     f"got {weight!r} for class {label!r}")
        return super()._check_params()

    def _sample_weight(self, X, y, sample_weight, incremental):
        """sample_weight times the examples' class weights (class_weight)."""
        sw = super()._sample_weight(X, y, sample_weight, incremental)
        if self.class_weight is None:
            return sw
        if type_of_target(y) == "multilabel-indicator":
            return self._multilabel_weight(y, sw)
        if isinstance(self.class_weight, (list, tuple)):
            raise ValueError("class_weight as a list of dicts is for multilabel y (one dict "
                             "per label); for class labels pass one dict")
        # partial_fit's "balanced": the frequencies of the classes in this call's y
        classes = np.unique(y) if incremental else self.classes_
        with np.errstate(divide="ignore"):  # "balanced", a class of weight 0: inf, see below
            weights = compute_class_weight(self.class_weight, classes=classes, y=y,
                                           sample_weight=sw)
        cw = np.asarray(weights, dtype=np.float64)[np.searchsorted(classes, y)]
        if sw is None:
            return np.ascontiguousarray(cw)
        with np.errstate(invalid="ignore"):  # "balanced": a class of weight 0 gets inf
            return np.ascontiguousarray(np.where(sw > 0.0, sw * cw, 0.0))

    def _multilabel_weight(self, Y, sw):
        """A multilabel row's weight: the product over its labels of the
        weight of the label's value (0 or 1), as scikit-learn's
        ``compute_sample_weight`` composes the outputs of multi-output y;
        "balanced" per label is n / (2 · count of the value), counts
        weighted by sample_weight."""
        cws = self.class_weight
        if isinstance(cws, dict):
            raise ValueError("class_weight for multilabel y is 'balanced' or a list of one "
                             "dict {0: weight, 1: weight} per label, got one dict")
        if isinstance(cws, (list, tuple)) and len(cws) != Y.shape[1]:
            raise ValueError(f"class_weight must have one dict per label ({Y.shape[1]}), "
                             f"got {len(cws)}")
        w = np.ones(Y.shape[0]) if sw is None else sw.copy()
        for j in range(Y.shape[1]):
            col = Y[:, j]
            values = np.unique(col) if cws == "balanced" else np.array([0, 1])
            with np.errstate(divide="ignore"):
                weights = compute_class_weight("balanced" if cws == "balanced" else cws[j],
                                               classes=values, y=col, sample_weight=sw)
            with np.errstate(invalid="ignore"):  # a value of weight 0: its rows weigh 0
                w = np.where(w > 0.0, w * np.asarray(weights)[np.searchsorted(values, col)], 0.0)
        return np.ascontiguousarray(w)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags

    @property
    def _multilabel(self):
        lb = getattr(self, "_label_binarizer", None)
        return lb is not None and lb.y_type_.startswith("multilabel")

    def _output_kind(self):
        return "multilabel" if self._multilabel else super()._output_kind()

    @property
    def _extra_units(self):
        return 1 if len(getattr(self, "classes_", ())) <= 2 and not self._multilabel else 0

    def _validate_training_data(self, X, y, incremental, reset):
        classes = getattr(self, "_pending_classes", None)  # partial_fit's classes=
        X, y = _validate_data(self, X, y, reset=reset, multi_output=True,
                              dtype=(np.float64, np.float32), order="C", accept_sparse=_SPARSE)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        multilabel = y.ndim == 2 and type_of_target(y).startswith("multilabel")
        if y.ndim != 1 and not multilabel:
            raise ValueError(
                f"y must be 1-D class labels or a multilabel indicator; multioutput targets "
                f"({type_of_target(y)}) are not supported by fastbp's MLPClassifier")
        check_classification_targets(y)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            # (a multilabel y names its labels itself, as in scikit-learn)
            self._label_binarizer = LabelBinarizer().fit(
                y if classes is None or multilabel else classes)
            self.classes_ = self._label_binarizer.classes_
        elif multilabel != self._multilabel or (multilabel and y.shape[1] != len(self.classes_)):
            raise ValueError(f"y is {type_of_target(y)} but the fitted network was trained on "
                             f"{self._label_binarizer.y_type_} targets; fit again with "
                             "warm_start=False")
        if multilabel:
            # one logistic unit per label, trained on the 0/1 indicator (the
            # validation split is not stratified, as in scikit-learn)
            self.n_outputs_ = y.shape[1]
            self.out_activation_ = "logistic"
            T = self._label_binarizer.transform(y).astype(np.float64)
            return X, np.ascontiguousarray(T), y, None
        seen = np.unique(y)
        if self.warm_start and not incremental and set(seen) != set(self.classes_):
            raise ValueError(
                "warm_start can only be used where `y` has the same classes as in the "
                f"previous call to fit. Previously got {self.classes_}, `y` has {seen}")
        if len(np.setdiff1d(seen, self.classes_)):  # partial_fit's classes= included
            raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has "
                             f"{self.classes_}. 'y' has {seen}.")
        k = len(self.classes_)
        codes = np.searchsorted(self.classes_, y).astype(np.int64)
        self.n_outputs_ = 1 if k <= 2 else k
        self.out_activation_ = "logistic" if k <= 2 else "softmax"
        # as in scikit-learn, the validation split is stratified for two classes only
        strat = self._label_binarizer.transform(y).astype(bool) if k <= 2 else None
        # two classes: logit 0 is class 1's (the unit sklearn has), logit 1 stays 0;
        # one class (scikit-learn's LabelBinarizer gives it target 0): logit 1's
        T = (1 - codes) if k <= 2 else codes
        return X, np.ascontiguousarray(T, dtype=np.int64), y, strat

    def _targets_of_binarized(self, Y):
        """fastbp's class codes from scikit-learn's binarised Y (for the shims):
        one column is the logistic unit's 0/1 target, else one-hot rows
        (multilabel: the indicator itself)."""
        if self._multilabel:
            return np.ascontiguousarray(Y, dtype=np.float64)
        Y = Y.reshape(Y.shape[0], -1)
        codes = (1 - Y[:, 0]) if Y.shape[1] == 1 else np.argmax(Y, axis=1)
        return np.ascontiguousarray(codes, dtype=np.int64)

    def _fit(self, X, y, incremental, sample_weight=None, classes=None):
        if classes is not None:
            self._pending_classes = classes
        try:
            return super()._fit(X, y, incremental, sample_weight)
        finally:
            self.__dict__.pop("_pending_classes", None)

    @available_if(lambda est: est._check_stochastic())
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over (X, y); ``classes`` (all labels) is required on the first call."""
        if not hasattr(self, "classes_"):
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(f"`classes={classes!r}` is not the same as on last call to "
                             f"partial_fit, was: {self.classes_!r}")
        return self._fit(X, y, incremental=True, sample_weight=sample_weight, classes=classes)

    def predict_proba(self, X):
        """Class probabilities, (n_samples, n_classes), columns in ``classes_`` order
        (multilabel: each label's probability, σ of its logit)."""
        X = self._check_X(X)
        return self._proba(self._forward(X)).astype(self._result_dtype(X), copy=False)

    def _proba(self, Z):
        """The probabilities from the output layer's pre-activations Z."""
        if self._multilabel:
            return expit(Z, out=Z)
        if Z.shape[1] == 1:
            p = expit(Z[:, 0])
            return np.column_stack([1.0 - p, p])
        return softmax(Z)

    def predict_log_proba(self, X):
        """log of ``predict_proba``."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """Predicted class labels, (n_samples,) (multilabel: the (n_samples,
        n_labels) indicator of probabilities above 0.5)."""
        return self._labels(self.predict_proba(X))  # checks first that we are fitted

    def _labels(self, proba):
        if self._multilabel:
            return self._label_binarizer.inverse_transform(proba)
        if len(self.classes_) == 1:  # scikit-learn's single class: its one label
            return np.repeat(self.classes_, proba.shape[0])
        return self.classes_[np.argmax(proba, axis=1)]

    def _score_outputs(self, Z, y, sample_weight):
        return accuracy_score(y, self._labels(self._proba(Z)), sample_weight=sample_weight)
