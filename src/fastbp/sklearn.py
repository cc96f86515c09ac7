"""scikit-learn estimators trained by fastbp: drop-ins for MLPRegressor and
MLPClassifier (solvers "sgd", "adam" and "lbfgs").

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
  σ(z) and ∂J/∂z = σ(z) − t, exactly the logistic unit's.

Both add the L2 penalty alpha/(2·batch) ‖W‖² (weights, not biases), and
Adam's ε is applied where scikit-learn applies it (to √v before the bias
correction).  "lbfgs" is SciPy's L-BFGS-B on the whole-data loss and
gradient from one compiled pass, as scikit-learn runs it.  scikit-learn's
log-loss clips probabilities at 2.2e-16: fastbp's exact loss is replaced by
the clipped one where a row's probability is that small for L-BFGS (whose
line search reads the loss), not in the stochastic solvers' reported
``loss_curve_`` (whose first entries can then differ; the gradients, and so
the weights, are the same).
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
    from sklearn.utils.multiclass import check_classification_targets, type_of_target
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.optimize import _check_optimize_result
    from sklearn.utils.validation import _check_sample_weight, check_is_fitted, column_or_1d
except ImportError as exc:  # pragma: no cover - exercised without sklearn
    raise ImportError(
        "fastbp.sklearn needs scikit-learn; install it with `pip install scikit-learn` "
        "(or `pip install 'fastbp[sklearn]'`)") from exc

from fastbp._kernels import dense_forward
from fastbp._losses import softmax
from fastbp._network import Objective
from fastbp._sparse import csr_forward
from fastbp.inputs import as_sparse_inputs, is_sparse, take_rows
from fastbp.network import MLP
from fastbp.optim import SGD, Adam, Momentum

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover - older scikit-learn
    def _validate_data(est, *args, **kwargs):
        return est._validate_data(*args, **kwargs)

__all__ = ["MLPClassifier", "MLPRegressor"]

# scikit-learn's activation names -> fastbp's
_ACTIVATION = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
_SOLVERS = ("lbfgs", "sgd", "adam")
_STOCHASTIC = ("sgd", "adam")
_SCHEDULES = ("constant", "invscaling", "adaptive")  # learning_rate, for solver="sgd"

# scikit-learn's log-loss clips probabilities to [eps, 1 − eps]: a row's loss
# differs from the exact −log p once p < eps, i.e. above −log eps
_EPS = float(np.finfo(np.float64).eps)
_CLIPPED_LOG_LOSS = -math.log(_EPS)


def _clipped_log_loss(net, X, labels, sw):
    """The mean log-loss with scikit-learn's clipping (one more forward pass)."""
    p = softmax(net.forward(X))[np.arange(len(labels)), labels]
    return float(np.average(-np.log(np.clip(p, _EPS, 1.0 - _EPS)), weights=sw))


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


class _BaseMLP(BaseEstimator):
    """Parameters, training loop and prediction shared by both estimators."""

    # gradient of fastbp's loss / gradient of scikit-learn's (set by subclasses)
    _grad_scale = 1.0

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun  # lbfgs: the most loss evaluations

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
        if self.solver not in _SOLVERS:
            raise ValueError(
                f"solver must be one of {_SOLVERS}, got {self.solver!r}")
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
        _check_number(self.n_iter_no_change, "n_iter_no_change", 1, integer=True)
        for name in ("shuffle", "nesterovs_momentum", "early_stopping", "warm_start"):
            _check_bool(getattr(self, name), name)
        return self._hidden_sizes()

    # -- the network -----------------------------------------------------------

    def _initialize(self, n_features, n_out, hidden, rs):
        """A new network with scikit-learn's Glorot-uniform draws, in its order."""
        self.n_iter_ = 0
        self.t_ = 0
        self.n_layers_ = len(hidden) + 2
        units = [n_features] + hidden + [n_out]
        net = MLP(units[:-1] + [n_out + self._extra_units], activation=_ACTIVATION[self.activation],
                  output_activation="identity", seed=0)
        factor = 2.0 if self.activation == "logistic" else 6.0
        for W, b, fan_in, fan_out in zip(net.weights, net.biases, units[:-1], units[1:]):
            bound = np.sqrt(factor / (fan_in + fan_out))
            W[:fan_out] = rs.uniform(-bound, bound, (fan_in, fan_out)).T
            b[:fan_out] = rs.uniform(-bound, bound, fan_out)
            W[fan_out:] = 0.0  # the binary case's held-at-zero unit
            b[fan_out:] = 0.0
        self._adopt(net)
        self._best_params = net.params.copy()
        if self.solver not in _STOCHASTIC:  # as scikit-learn: no curve, no stopping state
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

    def _adopt(self, net):
        """Point coefs_ / intercepts_ at ``net``'s parameters (views, sklearn layout)."""
        n_out = net.sizes[-1] - self._extra_units
        self._net = net
        self.coefs_ = [W.T for W in net.weights[:-1]] + [net.weights[-1][:n_out].T]
        self.intercepts_ = list(net.biases[:-1]) + [net.biases[-1][:n_out]]

    def _ensure_net(self):
        """The network behind coefs_ (rebuilt after unpickling or reassignment)."""
        net = getattr(self, "_net", None)
        if net is not None and all(np.shares_memory(a, net.params)
                                   for a in self.coefs_ + self.intercepts_):
            return net
        units = [self.coefs_[0].shape[0]] + [c.shape[1] for c in self.coefs_]
        net = MLP(units[:-1] + [units[-1] + self._extra_units],
                  activation=_ACTIVATION[self.activation], output_activation="identity", seed=0)
        for W, b, c, i in zip(net.weights, net.biases, self.coefs_, self.intercepts_):
            W[...] = 0.0
            b[...] = 0.0
            W[:c.shape[1]] = c.T
            b[:c.shape[1]] = i
        self._adopt(net)
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

    def _forward(self, X):
        """Output-layer pre-activations for the checked X, from coefs_."""
        A = X
        act = _ACTIVATION[self.activation]
        last = len(self.coefs_) - 1
        for i, (c, b) in enumerate(zip(self.coefs_, self.intercepts_)):
            layer = csr_forward if i == 0 and is_sparse(A) else dense_forward
            A = layer(A, np.ascontiguousarray(c.T), np.ascontiguousarray(b),
                      "identity" if i == last else act)
        return A

    # -- training --------------------------------------------------------------

    def _make_optimizer(self):
        c = self._grad_scale
        if self.solver == "adam":
            # a gradient c times larger with ε c times larger is the same Adam step
            return Adam(lr=self.learning_rate_init, beta1=self.beta_1, beta2=self.beta_2,
                        eps=self.epsilon * c)
        if self.momentum > 0:
            return Momentum(lr=self.learning_rate_init / c, momentum=self.momentum,
                            nesterov=self.nesterovs_momentum)
        return SGD(lr=self.learning_rate_init / c)

    def _fit(self, X, y, incremental, sample_weight=None):
        hidden = self._check_params()
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        first = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, T, y_score, strat = self._validate_training_data(X, y, incremental, reset=first)
        X = _core_X(X)
        sw = None
        if sample_weight is not None:
            sw = np.ascontiguousarray(_check_sample_weight(
                sample_weight, X, dtype=np.float64, ensure_non_negative=True))
        self._random_state = rs = check_random_state(self.random_state)
        n_out = self.n_outputs_
        if first:
            self._initialize(X.shape[1], n_out, hidden, rs)
        elif self.coefs_[-1].shape[1] != n_out:
            raise ValueError(
                f"y has {n_out} outputs but the fitted network has {self.coefs_[-1].shape[1]}; "
                "fit again with warm_start=False")
        net = self._ensure_net()
        if self.solver == "lbfgs":
            self._fit_lbfgs(net, X, T, sw)
            return self
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = self._make_optimizer()
        self._fit_stochastic(net, X, T, y_score, sw, strat, incremental, rs)
        return self

    def _fit_lbfgs(self, net, X, T, sw):
        """scikit-learn's full-batch L-BFGS-B (SciPy) on the same objective,
        with the loss and its gradient from one compiled pass over X.

        L-BFGS only takes dot products and elementwise steps of the
        parameter vector, so fastbp's order of the parameters gives the same
        iterates as scikit-learn's, up to rounding."""
        from scipy.optimize import minimize
        c, alpha = self._grad_scale, float(self.alpha)
        params, grads, n_w = net.params, net.grads, net.n_weights
        w_flat = params[:n_w]
        loss, scale = self._objective(T)
        lc, rc = net.loss_codes(loss, "mean")
        core = net.core
        clipped = loss == "cross_entropy"  # sklearn's log-loss clips, its squared error not
        norm = X.shape[0] if sw is None else float(sw.sum())
        n_real = net.weights[-1].shape[0] - self._extra_units
        held = (net.grad_weights[-1][n_real:], net.grad_biases[-1][n_real:])

        def loss_and_gradient(theta):
            params[...] = theta
            J = core.step(X, T, loss=lc, reduction=rc, sample_weight=sw)
            value = J / scale
            if clipped and core.worst_row_loss > _CLIPPED_LOG_LOSS:
                value = _clipped_log_loss(net, X, T, sw)  # what scikit-learn reports
            np.divide(grads, c, out=grads)
            grads[:n_w] += (alpha / norm) * w_flat
            for g in held:  # the binary case's second logit stays at 0
                g[...] = 0.0
            return value + 0.5 * alpha * float(np.dot(w_flat, w_flat)) / norm, grads.copy()

        res = minimize(loss_and_gradient, params.copy(), method="L-BFGS-B", jac=True,
                       options={"maxfun": self.max_fun, "maxiter": self.max_iter,
                                "gtol": self.tol})
        self.n_iter_ = _check_optimize_result("lbfgs", res, self.max_iter)
        self.loss_ = float(res.fun)
        params[...] = res.x
        _require_finite(net)

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
        opt, c, alpha = self._optimizer, self._grad_scale, float(self.alpha)
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
                self._set_lr(opt, self.learning_rate_init / (self.t_ + 1) ** self.power_t)
            if self._no_improvement_count > self.n_iter_no_change:
                what = "Validation score" if self.early_stopping else "Training loss"
                msg = (f"{what} did not improve more than tol={self.tol:f} for "
                       f"{self.n_iter_no_change} consecutive epochs.")
                if schedule != "adaptive" or self._sk_lr(opt) <= 1e-6:
                    if self.verbose:
                        print(msg + (" Stopping." if schedule != "adaptive"
                                     else " Learning rate too small. Stopping."))
                    break
                self._set_lr(opt, self._sk_lr(opt) / 5.0)  # adaptive: a fifth, and go on
                if self.verbose:
                    print(msg + " Setting learning rate to %f" % self._sk_lr(opt))
                self._no_improvement_count = 0
            if incremental:
                break
            if self.n_iter_ == self.max_iter:
                warnings.warn(
                    f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and "
                    "the optimization hasn't converged yet.", ConvergenceWarning)
        if self.early_stopping:
            net.params[...] = self._best_params
        _require_finite(net)

    def _objective(self, T):
        """fastbp's loss for targets T, and the factor from its "mean" value
        to the loss scikit-learn reports: c, and for the squared error also
        the outputs, which sklearn's reported loss averages over (its
        gradient does not)."""
        if T.dtype == np.int64:
            return "cross_entropy", self._grad_scale
        return "squared_error", self._grad_scale * T.shape[1]

    def _check_stochastic(self):
        if self.solver not in _STOCHASTIC:
            raise AttributeError(f"partial_fit is only available for stochastic optimizers. "
                                 f"{self.solver} is not stochastic.")
        return True

    def _sk_lr(self, opt):
        """The SGD learning rate in scikit-learn's terms (fastbp's is 1/c of it)."""
        return opt.lr * self._grad_scale

    def _set_lr(self, opt, lr):
        """Set scikit-learn's learning rate lr.  scikit-learn's velocity
        v = μ v − lr g has lr inside; fastbp's v = μ v + g has it outside,
        so v is rescaled to keep the same step when lr changes."""
        new = lr / self._grad_scale
        velocity = getattr(opt, "velocity", None)
        if velocity is not None and new != opt.lr and new > 0.0:
            velocity *= opt.lr / new
        opt.lr = new

    def _update_no_improvement(self, X_val, y_val, sw_val, net):
        if X_val is not None:
            score = self._score_checked(X_val, y_val, sw_val)
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
        return _core_X(_validate_data(self, X, reset=False, dtype=np.float64, order="C",
                                      accept_sparse=_SPARSE))


# Sparse X: CSR and CSC pass validate_data (other formats are converted to
# CSR there, as scikit-learn does), then _core_X makes the one form the
# compiled sparse layer reads (canonical CSR, int64 indices; CSC converted).
_SPARSE = ["csr", "csc"]


def _core_X(X):
    """A validated X as the compiled core reads it (a sparse X: see _SPARSE)."""
    return as_sparse_inputs(X, X.shape[1], check_finite=False) if is_sparse(X) else X


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor trained by fastbp's compiled kernels.

    A drop-in for ``sklearn.neural_network.MLPRegressor`` with ``solver`` in
    {"sgd", "adam", "lbfgs"}: the same parameters, objective
    ½·mean Σ (y − ŷ)² + alpha/(2n) ‖W‖², random draws and fitted attributes
    (coefs_, intercepts_, loss_, loss_curve_, n_iter_, best_loss_,
    validation_scores_, best_validation_score_, t_, n_layers_, n_outputs_,
    out_activation_).
    """

    _grad_scale = 2.0  # fastbp's "mean" squared error is twice sklearn's ½·mean
    _extra_units = 0

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # y may have several columns
        return tags

    def _validate_training_data(self, X, y, incremental, reset):
        X, y = _validate_data(self, X, y, reset=reset, multi_output=True, y_numeric=True,
                              dtype=np.float64, order="C", accept_sparse=_SPARSE)
        T = np.ascontiguousarray(y.reshape(y.shape[0], -1), dtype=np.float64)
        self.n_outputs_ = T.shape[1]
        self.out_activation_ = "identity"
        return X, T, y, None

    @available_if(lambda est: est._check_stochastic())
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y), continuing from the current state."""
        return self._fit(X, y, incremental=True, sample_weight=sample_weight)

    def predict(self, X):
        """Predicted targets, (n_samples,) for one output, else (n_samples, n_outputs)."""
        Y = self._forward(self._check_X(X))
        return Y.ravel() if Y.shape[1] == 1 else Y

    def _score_checked(self, X, y, sample_weight=None):
        return r2_score(y, self.predict(X), sample_weight=sample_weight)


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier trained by fastbp's compiled kernels.

    A drop-in for ``sklearn.neural_network.MLPClassifier`` with ``solver`` in
    {"sgd", "adam", "lbfgs"}: softmax + log-loss
    for several classes, one logistic unit + binary log-loss for two, the
    same random draws and fitted attributes (classes_, coefs_, intercepts_,
    loss_, loss_curve_, n_iter_, ...).  Multilabel targets are not
    supported.
    """

    @property
    def _extra_units(self):
        return 1 if len(getattr(self, "classes_", ())) == 2 else 0

    def _validate_training_data(self, X, y, incremental, reset):
        classes = getattr(self, "_pending_classes", None)  # partial_fit's classes=
        X, y = _validate_data(self, X, y, reset=reset, multi_output=True, dtype=np.float64,
                              order="C", accept_sparse=_SPARSE)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if y.ndim != 1:
            raise ValueError(
                f"y must be 1-D class labels; multilabel/multioutput targets "
                f"({type_of_target(y)}) are not supported by fastbp's MLPClassifier")
        check_classification_targets(y)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer().fit(y if classes is None else classes)
            self.classes_ = self._label_binarizer.classes_
        else:
            seen = np.unique(y)
            if self.warm_start and not incremental and set(seen) != set(self.classes_):
                raise ValueError(
                    "warm_start can only be used where `y` has the same classes as in the "
                    f"previous call to fit. Previously got {self.classes_}, `y` has {seen}")
            if len(np.setdiff1d(seen, self.classes_)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has "
                                 f"{self.classes_}. 'y' has {seen}.")
        k = len(self.classes_)
        if k < 2:
            raise ValueError(f"MLPClassifier needs at least 2 classes in y, got 1 class: {self.classes_}")
        codes = np.searchsorted(self.classes_, y).astype(np.int64)
        self.n_outputs_ = 1 if k == 2 else k
        self.out_activation_ = "logistic" if k == 2 else "softmax"
        # as in scikit-learn, the validation split is stratified for two classes only
        strat = self._label_binarizer.transform(y).astype(bool) if k == 2 else None
        # two classes: logit 0 is class 1's (the unit sklearn has), logit 1 stays 0
        T = (1 - codes) if k == 2 else codes
        return X, np.ascontiguousarray(T, dtype=np.int64), y, strat

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
        """Class probabilities, (n_samples, n_classes), columns in ``classes_`` order."""
        Z = self._forward(self._check_X(X))
        if Z.shape[1] == 1:
            p = expit(Z[:, 0])
            return np.column_stack([1.0 - p, p])
        return softmax(Z)

    def predict_log_proba(self, X):
        """log of ``predict_proba``."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """Predicted class labels, (n_samples,)."""
        proba = self.predict_proba(X)  # checks first that we are fitted
        return self.classes_[np.argmax(proba, axis=1)]

    def _score_checked(self, X, y, sample_weight=None):
        return accuracy_score(y, self.predict(X), sample_weight=sample_weight)
