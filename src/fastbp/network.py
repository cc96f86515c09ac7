"""Multi-layer perceptron on the fused kernels.

``MLP(sizes)`` is a stack of dense layers, layer ℓ mapping width
``sizes[ℓ]`` to ``sizes[ℓ+1]``: Z = A Wᵀ + b, A' = g(Z) (seed 002, eqs 10,
11), trained by backprop, seed 001's δ^(ℓ) = (W^(ℓ+1)ᵀ δ^(ℓ+1)) ⊙ σ'(z^(ℓ)),
run for a whole batch in one compiled call (``fastbp._network``).

Memory layout: all parameters live in ONE flat float64 vector ``params``
(every W_ℓ row-major, then every b_ℓ) and all gradients in another,
``grads``; ``weights``, ``biases``, ``grad_weights`` and ``grad_biases`` are
views into them.  Activations and deltas live in a workspace made once for
the largest batch seen, so ``train_step`` and ``fit`` allocate nothing per
step.

Thread model: an MLP is not safe to use from two threads at once (its
workspace is shared by every call).  ``fit``, ``train_step``, ``gradients``,
``per_example_grad_norms``, ``loss`` and ``forward``/``predict`` take a
per-object lock without waiting and raise RuntimeError if another thread
holds it (the lock is re-entrant, so a fit callback may call predict on its
own network).  Different MLP objects can train in parallel threads: the
compiled passes release the GIL.
"""

import contextlib
import math
import operator
import threading

import numpy as np

from fastbp import _derivatives, _network, checkpoint, distributed, levmar, training
from fastbp.derivatives import DerivativeMethods
from fastbp._enums import ACTIVATIONS, LOSSES, OUTPUTS, REDUCTIONS, Output, Update, code
from fastbp._optim import UpdateSpec
from fastbp.inputs import as_inputs, as_sample_weight, as_targets, is_sparse
from fastbp.optim import SGD, make_optimizer

__all__ = ["MLP", "ACTIVATIONS", "OUTPUT_ACTIVATIONS", "LOSSES"]

# softmax, exp: output activations only a loss that fuses them trains (on
# the logits); forward/predict apply them.
OUTPUT_ACTIVATIONS = ACTIVATIONS + OUTPUTS[1:]
# the output activations each fused loss takes (cross_entropy: also raw
# logits), and the loss each output-only activation needs
_FUSED_OUTPUTS = {"cross_entropy": ("identity", "softmax"), "binary_cross_entropy": ("sigmoid",),
                  "poisson": ("exp",)}
_LOSS_OF_OUTPUT = {"softmax": "cross_entropy", "exp": "poisson"}
# Rows per compiled call when a whole data set is evaluated (bounds the workspace).
_CHUNK = training.EVAL_CHUNK
# fit(optimizer="lm")'s options and their defaults (one table: fastbp.levmar)
_LM = levmar.LM_OPTIONS


def _sizes(sizes):
    try:
        out = tuple(_int(s) for s in sizes)
    except TypeError:
        raise TypeError(f"sizes must be a sequence of ints like [784, 256, 10], got {sizes!r}") from None
    if len(out) < 2:
        raise ValueError(f"sizes needs at least 2 widths (input and output), got {list(out)}")
    if min(out) < 1:
        raise ValueError(f"every width in sizes must be >= 1, got {list(out)}")
    return out


def _int(value):
    if isinstance(value, bool):
        raise TypeError
    return operator.index(value)


def _hidden_activations(activation, n_hidden):
    names = [activation] * n_hidden if isinstance(activation, str) else list(activation)
    if len(names) != n_hidden:
        raise ValueError(
            f"activation must be one name or one per hidden layer ({n_hidden}), got {len(names)}: {names}")
    for a in names:
        code("activation", a)  # a ValueError naming the choices
    return tuple(names)


class _Views(list):
    """A list of views into a flat buffer: ``views[i] = A`` copies A into the
    view (same shape), so the flat buffer stays the one source of truth."""

    def __setitem__(self, i, value):
        if not isinstance(i, int):
            raise TypeError("assign one layer at a time: views[i] = array")
        view = self[i]
        value = np.asarray(value, dtype=np.float64)
        if value.shape != view.shape:
            raise ValueError(f"layer {i} must have shape {view.shape}, got {value.shape}")
        view[...] = value

    def _fixed(self, *args, **kwargs):
        raise TypeError("the number of layers is fixed; assign into the arrays instead")

    append = extend = insert = pop = remove = clear = sort = reverse = __delitem__ = __iadd__ = _fixed


class MLP(DerivativeMethods):
    """A dense feed-forward network in float64.

    Parameters
    ----------
    sizes : sequence of int
        Widths from input to output, e.g. ``[784, 256, 256, 10]`` (at least
        one layer).
    activation : str or sequence of str
        Hidden activation, a name from ``fastbp.ACTIVATIONS``, or one name per
        hidden layer.
    output_activation : str
        Activation of the last layer: one of ``ACTIVATIONS``, ``"softmax"``
        (then ``forward`` returns probabilities; train it with
        ``loss="cross_entropy"``, which fuses the softmax with the loss) or
        ``"exp"`` (``forward`` returns exp of the logits; train it with
        ``loss="poisson"``).  ``"sigmoid"`` trains with squared error, or
        with ``loss="binary_cross_entropy"``, which fuses σ with the loss.
    seed : int or None
        Seed of ``numpy.random.default_rng`` for the Glorot-uniform
        initialisation W ~ U(±√(6 / (fan_in + fan_out))), b = 0.

    Methods: ``forward``/``predict`` (inference), ``gradients`` (loss and
    gradient lists), ``per_example_grad_norms``, ``train_step`` (one
    in-place step on one batch: what the benchmarks time), ``fit``
    (mini-batch training), ``loss``, ``save``/``load``; and from
    ``fastbp.derivatives``: ``input_jacobian``, ``input_gradient``, ``jvp``,
    ``vjp``, ``hvp``, ``gnvp``, ``param_jacobian``, ``per_example_gradients``.

    Not thread-safe: see the module docstring.
    """

    def __init__(self, sizes, activation="sigmoid", output_activation="identity", seed=None):
        self._sizes = _sizes(sizes)
        L = len(self._sizes) - 1
        self._hidden = _hidden_activations(activation, L - 1)
        if output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(f"output_activation must be one of {OUTPUT_ACTIVATIONS}, got {output_activation!r}")
        self._output_activation = output_activation
        self._build()
        rng = np.random.default_rng(seed)
        for W in self._weights:
            d, k = W.shape
            limit = math.sqrt(6.0 / (k + d))
            W[...] = rng.uniform(-limit, limit, size=(d, k))
        for b in self._biases:
            b[...] = 0.0

    def _build(self):
        """Flat params/grads, their per-layer views, and the compiled core."""
        s = self._sizes
        shapes = [(s[l + 1], s[l]) for l in range(len(s) - 1)]
        self.n_weights = sum(d * k for d, k in shapes)
        n_params = self.n_weights + sum(d for d, _ in shapes)
        self._params = np.zeros(n_params)
        self._grads = np.zeros(n_params)

        def views(flat):
            ws, bs, off = [], [], 0
            for d, k in shapes:
                ws.append(flat[off:off + d * k].reshape(d, k))
                off += d * k
            for d, _ in shapes:
                bs.append(flat[off:off + d])
                off += d
            return tuple(ws), tuple(bs)

        self._weights, self._biases = map(_Views, views(self._params))
        self._grad_weights, self._grad_biases = map(_Views, views(self._grads))
        out = self._output_activation
        fused = out in OUTPUTS  # applied by forward after an identity layer
        self._core = _network.NetworkCore(
            list(s), [code("activation", a) for a in self._hidden + ("identity" if fused else out,)],
            self._params, self._grads, output=code("output", out) if fused else Output.OUT_NONE)
        # re-entrant: a fit callback may call predict/loss on its own network
        self._lock = threading.RLock()
        self._step_optimizers = {}
        self._sgd = UpdateSpec(Update.UPD_SGD)  # train_step's plain SGD
        self._derivative_core = None  # made on the first derivative call
        self._lm_system = None  # Levenberg-Marquardt's buffers, made on its first call

    # -- structure -------------------------------------------------------

    @property
    def sizes(self):
        """Layer widths, input first."""
        return self._sizes

    @property
    def activations(self):
        """Activation of every layer (hidden ones, then the output's)."""
        return self._hidden + (self._output_activation,)

    @property
    def output_activation(self):
        return self._output_activation

    @property
    def n_params(self):
        return self._params.shape[0]

    @property
    def params(self):
        """All parameters as one flat float64 vector (weights, then biases); writable in place."""
        return self._params

    @property
    def grads(self):
        """The flat gradient buffer: the last step's gradient, laid out like ``params``."""
        return self._grads

    @property
    def weights(self):
        """W_ℓ, shaped (sizes[ℓ+1], sizes[ℓ]): views into ``params``, writable in
        place (``net.weights[0][...] = W`` or ``net.weights[0] = W`` copy W in)."""
        return self._weights

    @weights.setter
    def weights(self, values):
        self._assign(self._weights, values, "weights")

    @property
    def biases(self):
        """b_ℓ, shaped (sizes[ℓ+1],): views into ``params``, writable in place."""
        return self._biases

    @biases.setter
    def biases(self, values):
        self._assign(self._biases, values, "biases")

    @property
    def grad_weights(self):
        """Views of ``grads`` shaped like ``weights`` (overwritten by the next step)."""
        return self._grad_weights

    @property
    def grad_biases(self):
        return self._grad_biases

    @staticmethod
    def _assign(views, values, name):
        values = list(values)
        if len(values) != len(views):
            raise ValueError(f"{name} needs {len(views)} arrays, got {len(values)}")
        for i, (view, v) in enumerate(zip(views, values)):
            v = np.asarray(v, dtype=np.float64)
            if v.shape != view.shape:
                raise ValueError(f"{name}[{i}] must have shape {view.shape}, got {v.shape}")
            view[...] = v

    # pickle / copy.deepcopy: the structure and the parameters; the compiled
    # core, the workspace and optimiser state are rebuilt empty.
    def __getstate__(self):
        return {"sizes": self._sizes, "hidden": self._hidden,
                "output_activation": self._output_activation, "params": self._params.copy()}

    def __setstate__(self, state):
        self._sizes = state["sizes"]
        self._hidden = state["hidden"]
        self._output_activation = state["output_activation"]
        self._build()
        self._params[...] = state["params"]

    def __repr__(self):
        return (f"MLP(sizes={list(self._sizes)}, activation={list(self._hidden)}, "
                f"output_activation={self._output_activation!r})")

    # -- locking -----------------------------------------------------------

    def _acquire(self, what):
        if not self._lock.acquire(blocking=False):
            raise RuntimeError(
                f"MLP.{what}: this network is in use by another thread (fit, train_step, "
                "gradients); an MLP is not safe to train from two threads at once")

    # -- the interface for trainers (fastbp.training, fastbp.sklearn) ---------

    @contextlib.contextmanager
    def in_use(self, what):
        """Hold this network for ``what`` (a method's name, for the error)
        while the block runs: RuntimeError if another thread holds it."""
        self._acquire(what)
        try:
            yield self._core
        finally:
            self._lock.release()

    @property
    def core(self):
        """The compiled core (``fastbp._network.NetworkCore``) that runs this
        network's passes on ``params`` and ``grads``: the internal interface
        of the trainers (docs/architecture.md), not needed for ordinary use."""
        return self._core

    @property
    def derivative_core(self):
        """The compiled derivative passes (``fastbp._derivatives.Derivatives``)
        on this network's core, made on first use: the internal interface of
        ``fastbp.derivatives``."""
        if self._derivative_core is None:
            self._derivative_core = _derivatives.Derivatives(self._core)
        return self._derivative_core

    @property
    def split_steps(self):
        """How many training steps so far split their batch over two threads
        (docs/threads.md)."""
        return self._core.split_steps

    def loss_codes(self, loss, reduction):
        """The Loss and Reduction codes of the names, checked against this
        network's output activation (ValueError naming what fits)."""
        lc, rc = code("loss", loss), code("reduction", reduction)
        out = self._output_activation
        fits = _FUSED_OUTPUTS.get(loss)
        if fits is not None and out not in fits:
            raise ValueError(
                f"loss {loss!r} fuses its output activation with the loss and needs "
                f"output_activation {' or '.join(map(repr, fits))}, got {out!r}")
        if out in _LOSS_OF_OUTPUT and loss != _LOSS_OF_OUTPUT[out]:
            raise ValueError(f"output_activation {out!r} is trained with "
                             f"loss={_LOSS_OF_OUTPUT[out]!r}, got {loss!r}")
        return lc, rc

    # -- inference ---------------------------------------------------------

    def forward(self, X):
        """Y = the network's output for X, a C-contiguous float64 (N, sizes[0]) array
        or a canonical float64 CSR matrix with int64 indices (``predict``
        converts any sparse X to that, once).

        Returns a new (N, sizes[-1]) array.  Use ``predict`` for array-likes.
        """
        n = X.shape[0] if (isinstance(X, np.ndarray) or is_sparse(X)) and X.ndim == 2 else 0
        out = np.empty((n, self._sizes[-1]))
        with self.in_use("forward") as core:  # the workspace is shared with training
            core.reserve(min(n, _CHUNK))
            return core.forward(X, out)

    def predict(self, X, check_finite=True):
        """``forward`` for any array-like X (converted once to float64, checked);
        a scipy.sparse X (any format) is converted once to CSR and never
        densified (see ``fastbp.inputs``)."""
        X = as_inputs(X, self._sizes[0], "X", check_finite)
        return self.forward(X)

    # -- gradients ---------------------------------------------------------

    def gradients(self, X, T, loss="squared_error", reduction="sum", sample_weight=None):
        """(loss, grad_weights, grad_biases) of the loss on the batch (X, T).

        X: an array-like, or scipy.sparse (converted once to CSR, as in ``predict``).

        loss="squared_error": "sum" J = Σ (T − Y)², δY = 2(Y − T); "half" ½ Σ,
        δY = Y − T; "mean" "sum" divided by the N rows.  loss="cross_entropy":
        softmax of the output fused with −Σ T log P (gradient P − T on the
        output's pre-softmax values), T as one-hot/probability rows or int
        class labels; reduction "sum" or "mean".  The output must then be
        "identity" (logits) or "softmax".
        loss="binary_cross_entropy" (output "sigmoid"): one logistic unit per
        output, J = −Σ [T log P + (1 − T) log(1 − P)], P = σ(Z), taken
        stably from the logits Z for any finite Z, gradient P − T on Z; T in
        [0, 1] (multilabel 0/1 rows).  loss="poisson" (output "exp"): half
        the Poisson deviance Σ [T log(T / Ŷ) − T + Ŷ], Ŷ = exp(Z), gradient
        Ŷ − T on Z; T >= 0 (exp(Z) overflows to inf above Z ≈ 709.78, and
        so do J and the gradient).  Both take "sum", "half" and "mean".

        ``sample_weight`` (N,) weights example i's cost by w_i N / Σ w (so
        all-equal weights change nothing, whatever their scale).

        Returns fresh arrays (copies): the lists are shaped like ``weights``
        and ``biases``.
        """
        lc, rc = self.loss_codes(loss, reduction)
        X = as_inputs(X, self._sizes[0], "X", check_finite=False)
        T = as_targets(T, X.shape[0], self._sizes[-1], loss, "T", check_finite=False)
        w = as_sample_weight(sample_weight, X.shape[0])
        with self.in_use("gradients") as core:
            J = core.step(X, T, loss=lc, reduction=rc, sample_weight=w)
            flat = self._grads.copy()
        gw, gb, off = [], [], 0
        for W in self._weights:
            gw.append(flat[off:off + W.size].reshape(W.shape))
            off += W.size
        for b in self._biases:
            gb.append(flat[off:off + b.size])
            off += b.size
        return J, gw, gb

    def per_example_grad_norms(self, X, T, loss="squared_error", reduction="sum", sample_weight=None):
        """‖∇_θ J_i‖ for every example i, J_i its term of the reduced loss.

        Built without per-example gradients: a dense layer's per-example
        weight gradient is the outer product δz_i a_iᵀ, whose norm is
        ‖δz_i‖ ‖a_i‖, and its bias gradient is δz_i, so
        ‖∇J_i‖² = Σ_ℓ ‖δz_i^ℓ‖² (‖a_i^(ℓ−1)‖² + 1).
        """
        lc, rc = self.loss_codes(loss, reduction)
        X = as_inputs(X, self._sizes[0], "X", check_finite=False)
        T = as_targets(T, X.shape[0], self._sizes[-1], loss, "T", check_finite=False)
        w = as_sample_weight(sample_weight, X.shape[0])
        out = np.empty(X.shape[0])
        with self.in_use("per_example_grad_norms") as core:
            core.reserve(min(X.shape[0], _CHUNK))
            return core.per_example_grad_norms(X, T, out, loss=lc, reduction=rc, sample_weight=w)

    # -- training ----------------------------------------------------------

    def train_step(self, X, T, lr=None, loss="squared_error", reduction="mean", optimizer=None,
                   sample_weight=None):
        """One training step on one batch; returns the batch loss (before the update).

        Forward, loss, backward into ``grads``, then the optimiser's update
        of ``params``; no shuffling, nothing allocated once the workspace
        for this batch size exists.  X must be a C-contiguous float64
        (N, sizes[0]) array (or a sparse X in the form
        ``fastbp.inputs.as_inputs`` makes: canonical float64 CSR with int64
        indices), T float64 (N, sizes[-1]) (or int64 labels (N,) for
        cross_entropy): no conversion is made here (see ``fit``).

        optimizer: None is plain SGD with ``lr`` (default 0.01), fused into
        the compiled pass; a name ("sgd", "momentum", "nesterov", "adam")
        uses an optimiser this network keeps per name (so its state carries
        over between calls); an Optimizer object is used as given.  ``lr``
        overrides the optimiser's own learning rate when given.
        sample_weight: a contiguous float64 (N,) array, as in ``gradients``.
        T's values are not checked against the loss's domain here (poisson's
        T >= 0, binary_cross_entropy's in [0, 1]): ``gradients`` and ``fit``
        check them.
        """
        lc, rc = self.loss_codes(loss, reduction)
        self._acquire("train_step")  # (no context manager: this is the hot path)
        try:
            core = self._core
            if optimizer is None:
                if lr is None:
                    lr = SGD.default_lr
                elif not lr > 0:
                    raise ValueError(f"lr must be > 0, got {lr!r}")
                self._sgd.lr = lr
                return core.step(X, T, loss=lc, reduction=rc, sample_weight=sample_weight,
                                 update=self._sgd)
            if isinstance(optimizer, str):
                opt = self._step_optimizers.get(optimizer)
                if opt is None:
                    opt = self._step_optimizers[optimizer] = make_optimizer(optimizer)
            else:
                opt = make_optimizer(optimizer)  # checks it is an Optimizer
            spec = opt.update_spec(self._params, lr)
            if spec is not None:  # the update in the compiled step (split with it)
                return core.step(X, T, loss=lc, reduction=rc, sample_weight=sample_weight,
                                 update=spec)
            J = core.step(X, T, loss=lc, reduction=rc, sample_weight=sample_weight)
            opt.step(self._params, self._grads, lr=lr, n_decay=self.n_weights)
            return J
        finally:
            self._lock.release()

    def fit(self, X, T, epochs=10, batch_size=None, lr=None, optimizer="sgd",
            loss="squared_error", reduction="mean", weight_decay=0.0, shuffle=True,
            seed=None, validation_data=None, early_stopping=False, patience=10,
            min_delta=0.0, restore_best_weights=True, callback=None, progress=None,
            check_finite=True, comm=None, sample_weight=None, *, mu=_LM["mu"],
            mu_dec=_LM["mu_dec"], mu_inc=_LM["mu_inc"], mu_max=_LM["mu_max"],
            min_grad=_LM["min_grad"], goal=_LM["goal"], max_fail=_LM["max_fail"],
            damping=_LM["damping"], lm_memory=_LM["lm_memory"]):
        """Mini-batch training; returns the history, a dict of per-epoch lists.

        history["loss"]: each epoch's training loss (its batches' losses,
        reduced like ``reduction`` over the whole data set);
        history["val_loss"]: the loss on ``validation_data=(X_val, T_val)``
        after each epoch, when given.

        X (and X_val) may be scipy.sparse (any format, converted once to
        CSR): the first layer then runs on the stored entries, and the
        shuffled batches read its rows in place (no dense copy of X).

        batch_size: rows per batch (None: 32).

        optimizer: "sgd", "momentum", "nesterov", "adam" (made with ``lr`` and
        ``weight_decay``, an L2 penalty on the weights) or an Optimizer
        object (``lr``, when given, overrides its own); or "lm",
        Levenberg-Marquardt (below).
        early_stopping: stop after ``patience`` epochs without an improvement
        of more than ``min_delta`` in the validation loss (the training loss
        without validation data); ``restore_best_weights`` puts back the
        parameters of the best epoch.
        callback(epoch, history): called after every epoch; returning True
        stops training.
        progress: None shows a progress bar (tqdm, if installed) when stderr
        is a terminal outside CI and the fit has at least 10 000 steps; True
        or False forces it.

        sample_weight (N,): example i's cost weighs w_i within its batch
        (each batch's loss and gradient are normalised by the batch's sum of
        weights, as in ``gradients``), and the epoch's loss is the weighted
        one; a batch whose weights are all 0 is skipped.  With comm=, each
        rank passes its shard's weights and the normalisation is over the
        global batch, as one process with the whole batch would do it.

        X and T are checked once (2-D, matching rows and widths, finite
        unless check_finite=False) and never modified.  Not thread-safe: a
        second concurrent fit of the same object raises RuntimeError.

        Divergence: the first epoch whose loss is not finite (or after which
        a parameter is not) ends the fit with ``fastbp.DivergenceError``
        naming the epoch, the loss and the learning rate; the parameters and
        the optimiser's state are put back to their values before that epoch
        and the history of the epochs before it is the error's ``history``.

        comm: an mpi4py communicator for data-parallel training (see
        ``fastbp.distributed`` and docs/distributed.md).  Each rank passes its
        own shard of X, T (and of validation_data); the global batch is
        ``batch_size × comm.size``, the gradients are summed over the ranks
        every step, rank 0's initial weights are used, and the history is the
        global one on every rank.  The callback runs on every rank; rank 0's
        stop decision counts.

        optimizer="lm": Levenberg-Marquardt on the squared error over the
        whole data set (``fastbp.levmar``; docs/levmar.md), for small
        regression nets.  Each of at most ``epochs`` iterations solves
        (JᵀJ + μD) δ = −Jᵀe by Cholesky, e the residuals √r_i (ŷ_i − t_i)
        and J = ∂e/∂θ; a step that lowers the loss is taken and μ ← μ·mu_dec,
        else μ ← μ·mu_inc and the solve is retried with the parameters
        untouched.  The options and defaults are MATLAB trainlm's: ``mu``,
        ``mu_dec``, ``mu_inc``, ``mu_max`` (stop when μ exceeds it),
        ``min_grad`` (stop when ‖∇loss‖ falls to it), ``goal`` (stop when the
        loss falls to it) and, with validation_data, ``max_fail`` (stop after
        that many iterations whose validation loss rose above its best; the
        best parameters are put back unless restore_best_weights=False).
        damping: "identity" (D = I, trainlm's) or "diagonal" (D =
        diag(JᵀJ), Marquardt's).  weight_decay λ adds λ/2 ‖W‖² to the loss
        (its Gauss-Newton term in the system).  lm_memory: the bytes the
        system may take (JᵀJ, its factor and a row block of J); a net whose
        system does not fit is refused (``levmar.MemoryBudgetError``).  The
        history has "loss" (after each iteration), "mu" (after it),
        "val_loss" with validation_data, and "stop": why it stopped
        ("epochs", "goal", "min_grad", "mu_max", "max_fail", "callback").
        Full batch: batch_size, lr, shuffle, seed and early_stopping do not
        apply, and giving batch_size, lr or early_stopping is an error.
        The LM options given with another optimizer are an error too.
        """
        options = dict(mu=mu, mu_dec=mu_dec, mu_inc=mu_inc, mu_max=mu_max, min_grad=min_grad,
                       goal=goal, max_fail=max_fail, damping=damping, lm_memory=lm_memory)
        checked = levmar.check_options(optimizer, options)
        if checked is not None:
            if loss != "squared_error":
                raise ValueError(f"optimizer=\"lm\" (Levenberg-Marquardt) minimises a sum of squares: "
                                 f"loss must be 'squared_error', got {loss!r}")
            refused = [name for name, value, default in (
                ("batch_size", batch_size, None), ("lr", lr, None),
                ("early_stopping", early_stopping, False)) if value is not default and value != default]
            if refused:
                raise ValueError(
                    f"optimizer=\"lm\" trains on the whole data set at once and takes no "
                    f"{', '.join(refused)} (its stopping rules: goal, min_grad, mu_max and, with "
                    f"validation_data, max_fail)")
            return levmar.fit(self, X, T, epochs=epochs, options=checked, reduction=reduction,
                              weight_decay=float(weight_decay), validation_data=validation_data,
                              restore_best_weights=restore_best_weights, callback=callback,
                              progress=progress, check_finite=check_finite, comm=comm,
                              sample_weight=sample_weight)
        return training.fit(self, X, T, epochs=epochs, batch_size=32 if batch_size is None else batch_size,
                   lr=lr, optimizer=optimizer, loss=loss, reduction=reduction, weight_decay=weight_decay, shuffle=shuffle,
                   seed=seed, validation_data=validation_data, early_stopping=early_stopping,
                   patience=patience, min_delta=min_delta,
                   restore_best_weights=restore_best_weights, callback=callback,
                   progress=progress, check_finite=check_finite, comm=comm,
                   sample_weight=sample_weight)

    def lm_step(self, X, T, mu, damping=_LM["damping"], sample_weight=None, out=None, *, alpha=0.0,
                lm_memory=_LM["lm_memory"]):
        """δ (P,): one Levenberg-Marquardt solve at the current parameters,
        not applied: (JᵀJ + αΛ + μD) δ = −(Jᵀe + αΛθ), e the residuals
        √r_i (ŷ_i − t_i) (r_i = w_i N / Σ w, 1 without sample_weight),
        J = ∂e/∂θ, Λ the weights (an L2 penalty ½α‖W‖² on ½‖e‖²; biases
        free), D = I (damping="identity") or diag(JᵀJ) ("diagonal"; a zero
        entry counts as 1).  The building block of ``fit(optimizer="lm")``
        and of one's own trust-region loops.  out: a (P,) buffer.  Raises
        numpy.linalg.LinAlgError when the damped matrix is not positive
        definite in floating point (a larger mu fixes it), and
        ``levmar.MemoryBudgetError`` when the system does not fit lm_memory.
        """
        return levmar.lm_step(self, X, T, mu, damping, sample_weight, out, alpha=alpha,
                              lm_memory=lm_memory)

    def loss(self, X, T, loss="squared_error", reduction="mean", check_finite=True):
        """The loss of the network on a data set (forward only, in chunks);
        X dense or scipy.sparse, as in ``predict``."""
        lc, rc = self.loss_codes(loss, reduction)
        X = as_inputs(X, self._sizes[0], "X", check_finite)
        T = as_targets(T, X.shape[0], self._sizes[-1], loss, "T", check_finite)
        with self.in_use("loss") as core:
            return training.dataset_loss(core, X, T, lc, rc)

    # -- checkpoints -------------------------------------------------------

    def save(self, path, comm=None):
        """Write sizes, activations and parameters to ``path`` (an .npz), atomically.

        comm: an mpi4py communicator; then rank 0 alone writes, and every
        rank returns once the file is written (or raises if it was not).
        """
        if comm is not None:  # after a distributed fit
            return distributed.save(self, path, comm)
        checkpoint.save(self, path)

    @classmethod
    def load(cls, path):
        """The MLP saved at ``path``; raises CheckpointError (a ValueError) for a
        truncated or foreign file and FileNotFoundError for a missing one."""
        return checkpoint.load(path, cls)
