"""The fit loop: epochs, history, early stopping, callbacks, progress.

An epoch is one compiled call (``NetworkCore.epoch``): per batch it gathers
the shuffled rows into buffers made once per fit, runs the pass that writes
the batch's gradient into the network's flat ``grads`` buffer, calls the
sync's hook on it (an Allreduce over MPI; none locally) and makes the
optimiser's update of the flat ``params``.  A local and a distributed fit run
this same loop; what differs is the sync object (``fastbp.sync``).  Python
is left with the shuffle and the bookkeeping of each epoch.

Divergence: before each epoch the parameters and the optimiser's state are
copied into buffers made once per fit (a memcpy of the parameters, and of
the moments for momentum and Adam).  The first epoch whose loss is not
finite (or that leaves a parameter non-finite) ends the fit: the copies are
put back and ``DivergenceError`` is raised, so NaN weights are never left
behind.  Over MPI the loss is the reduced one, so every rank raises it in
the same epoch.
"""

import math

import os
import sys

import numpy as np

from fastbp._checks import all_finite
from fastbp._enums import Reduction
from fastbp._losses import loss_scale
from fastbp.distributed import FitSync
from fastbp.inputs import as_inputs, as_sample_weight, as_targets, is_sparse, take_rows
from fastbp.optim import make_optimizer
from fastbp.sync import LocalSync

__all__ = ["fit", "dataset_loss", "DivergenceError"]
# (check_count, checked_weights, check_callback, validation_pair, progress_bar
# and EarlyStopping are the fit loops' shared helpers: levmar uses them too)

# Rows per chunk when a whole data set is only evaluated (validation loss).
EVAL_CHUNK = 512


class DivergenceError(FloatingPointError):
    """fit diverged: an epoch's loss (or the parameters after it) was not finite.

    The network's parameters, and the optimiser's state, are back at their
    values from before that epoch.  Attributes: ``epoch`` (its index,
    counting from 0 as the callback's), ``loss`` (its loss), ``lr`` (the
    learning rate) and ``history`` (the epochs before it, as fit returns).
    """

    def __init__(self, epoch, loss, lr, history):
        self.epoch, self.loss, self.lr, self.history = epoch, loss, lr, history
        what = f"the loss is {loss}" if not math.isfinite(loss) else (
            f"the loss is {loss} but the parameters became non-finite")
        super().__init__(
            f"fit diverged in epoch {epoch} (counting from 0): {what} with learning rate "
            f"lr={lr}. The parameters and the optimiser's state are restored to their values "
            f"before that epoch, and the history so far is in this error's .history; try a "
            f"smaller learning rate (e.g. lr={lr / 10:g}).")


class _Snapshot:
    """The parameters and the optimiser's state before an epoch, in buffers
    made once per fit.  The state arrays are found once (again while an
    optimiser, e.g. a subclass stepping itself, has not made them yet)."""

    _STATE = ("velocity", "m", "v")  # Momentum's, Adam's

    def __init__(self, params, opt):
        self.params, self.opt = params, opt
        self.saved = np.empty_like(params)
        self.pairs = []
        self.pending = True
        self.t = None

    def _resolve(self):
        arrays = [getattr(self.opt, name, None) for name in self._STATE]
        self.pairs = [(a, np.empty_like(a)) for a in arrays if isinstance(a, np.ndarray)]
        # an attribute still None: its array comes with the first step
        self.pending = any(hasattr(self.opt, name) and a is None
                           for name, a in zip(self._STATE, arrays))
        self.has_t = hasattr(self.opt, "t")

    def save(self):
        if self.pending:
            self._resolve()
        np.copyto(self.saved, self.params)
        for a, buf in self.pairs:
            np.copyto(buf, a)
        if self.has_t:
            self.t = self.opt.t

    def restore(self):
        np.copyto(self.params, self.saved)
        for a, buf in self.pairs:
            np.copyto(a, buf)
        if self.t is not None:
            self.opt.t = self.t


def dataset_loss(core, X, T, loss_code, reduction_code, sample_weight=None):
    """The loss over all of (X, T) (core: a network's NetworkCore), forward
    only, chunk by chunk; with sample_weight (N,), each row's loss times its
    w_i as given (not normalised)."""
    n = X.shape[0]
    chunk = max(core.capacity, min(n, EVAL_CHUNK), 1)
    total = 0.0
    for start in range(0, n, chunk):
        rows = slice(start, start + chunk)
        w = None if sample_weight is None else sample_weight[rows]
        w_sum = 0.0 if w is None else float(w.sum())
        if w is not None and not w_sum > 0.0:
            continue  # (a chunk of weight 0 adds nothing)
        E = core.step(take_rows(X, rows), T[rows], loss=loss_code, reduction=Reduction.RED_SUM,
                      sample_weight=w, backward=False)
        # (the core weighs a chunk's rows w_i n_c / Σ_c w)
        total += E if w is None else E * w_sum / w.shape[0]
    return total * loss_scale(reduction_code, n)  # (0 for no rows)


def check_count(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def progress_bar(progress, epochs, steps):
    """A tqdm bar over epochs, or None.  tqdm is optional, imported lazily."""
    if progress is None:
        progress = (epochs * steps >= 10_000 and sys.stderr is not None
                    and hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
                    and not os.environ.get("CI"))
        if not progress:
            return None
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return None
    elif progress:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            raise ImportError("progress=True needs tqdm: pip install tqdm (or fastbp[progress])") from None
    else:
        return None
    return tqdm(total=epochs, unit="epoch", desc="fit", leave=False)


class EarlyStopping:
    """Stop after ``patience`` epochs without an improvement > min_delta."""

    def __init__(self, patience, min_delta, restore, params):
        self.patience, self.min_delta, self.restore = patience, min_delta, restore
        self.best = np.inf
        self.wait = 0
        self.params = params
        self.best_params = params.copy() if restore else None

    def update(self, value):
        """Record an epoch's monitored loss; True when training should stop."""
        if value < self.best - self.min_delta:
            self.best = value
            self.wait = 0
            if self.restore:
                self.best_params[...] = self.params
            return False
        self.wait += 1
        return self.wait >= self.patience

    def finish(self):
        if self.restore and np.isfinite(self.best):
            self.params[...] = self.best_params


def checked_weights(sample_weight, n):
    """fit's sample_weight as a float64 (n,) array of finite weights ≥ 0 with a positive sum."""
    w = as_sample_weight(sample_weight, n)
    if w is None:
        return None
    bad = ~(np.isfinite(w) & (w >= 0.0))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"sample_weight must be finite and >= 0, got {w[i]} at row {i}")
    if not w.sum() > 0.0:
        raise ValueError("sample_weight must have a positive sum, got all zeros")
    return w


def check_callback(callback):
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable(epoch, history) or None, got {type(callback).__name__}")


def validation_pair(validation_data):
    """(X_val, T_val) of fit's validation_data, as given (a TypeError if it is no pair)."""
    try:
        X_val, T_val = validation_data
    except (TypeError, ValueError):
        raise TypeError("validation_data must be a pair (X_val, T_val)") from None
    return X_val, T_val


def fit(net, X, T, *, comm=None, **kwargs):
    """See MLP.fit."""
    sync = LocalSync() if comm is None else FitSync(comm)
    if sync.rank != 0:
        kwargs["progress"] = False  # one progress bar per job
    # the guard keeps a failing rank from leaving the others blocked in a collective
    with sync.guard():
        return _fit(net, X, T, sync, **kwargs)


def _then(first, second):
    """A callable(batch) running first (if any), then second."""
    if first is None:
        return second

    def both(batch):
        first(batch)
        second(batch)
    return both


def _fit(net, X, T, sync, *, epochs, batch_size, lr, optimizer, loss, reduction, weight_decay,
         shuffle, seed, validation_data, early_stopping, patience, min_delta,
         restore_best_weights, callback, progress, check_finite, sample_weight=None):
    """fit on one process or on one rank of an MPI job (``sync``)."""
    lc, rc = net.loss_codes(loss, reduction)
    epochs = check_count(epochs, "epochs", 0)
    batch_size = check_count(batch_size, "batch_size", 1)
    patience = check_count(patience, "patience", 1)
    check_callback(callback)
    X = as_inputs(X, net.sizes[0], "X", check_finite)
    T = as_targets(T, X.shape[0], net.sizes[-1], loss, "T", check_finite)
    n = X.shape[0]
    if n == 0:
        raise ValueError("X must have at least one row, got shape (0, ...)")
    w = checked_weights(sample_weight, n)
    w_total = None if w is None else float(w.sum())
    if validation_data is not None:
        X_val, T_val = validation_pair(validation_data)
        X_val = as_inputs(X_val, net.sizes[0], "X_val", check_finite)
        T_val = as_targets(T_val, X_val.shape[0], net.sizes[-1], loss, "T_val", check_finite)
    opt = make_optimizer(optimizer, lr=lr, weight_decay=weight_decay)
    step_lr = lr if not isinstance(optimizer, str) else None  # an object keeps its lr unless given

    with net.in_use("fit") as core:
        bs = min(batch_size, n)
        core.reserve(bs)
        starts = np.arange(0, n, bs)
        # the same loop on every rank, rank 0's initial weights
        sync.start(net.params, [min(bs, n - s) for s in starts],
                   dict(epochs=epochs, loss=loss, reduction=reduction, n_params=net.n_params,
                        optimizer=optimizer if isinstance(optimizer, str) else type(optimizer).__name__,
                        lr=lr, weight_decay=weight_decay, validation=validation_data is not None,
                        early_stopping=early_stopping, restore=restore_best_weights,
                        sample_weight=w is not None))
        order = buffers = None
        if shuffle:
            rng = np.random.default_rng(sync.shuffle_seed(seed))
            order = np.arange(n, dtype=np.int64)
            # (a CSR X is read in place, its rows through order: no X buffer)
            buffers = (None if is_sparse(X) else np.empty((bs,) + X.shape[1:]),
                       np.empty((bs,) + T.shape[1:], dtype=T.dtype))
        params, grads = net.params, net.grads
        spec = opt.update_spec(params, step_lr)  # None: the optimiser's own step, after the hook
        after = sync.after_gradient(grads)
        if spec is None:
            after = _then(after, lambda batch: opt.step(params, grads, lr=step_lr,
                                                        n_decay=net.n_weights))
        history = {"loss": []}
        if validation_data is not None:
            history["val_loss"] = []
        stopper = (EarlyStopping(patience, min_delta, restore_best_weights, params)
                   if early_stopping else None)
        bar = progress_bar(progress, epochs, len(starts))
        snapshot = _Snapshot(params, opt)
        try:
            for epoch in range(epochs):
                snapshot.save()
                if shuffle:
                    rng.shuffle(order)
                total = core.epoch(
                    X, T, batch_size=bs, loss=lc, reduction=rc, update=spec, order=order,
                    buffers=buffers, sample_weight=w, after_gradient=after,
                    batch_weights=sync.batch_weights(w, order, starts))
                sync.record_epoch(history, total, n, None if validation_data is None else
                                  (dataset_loss(core, X_val, T_val, lc, Reduction.RED_SUM),
                                   X_val.shape[0]), train_weight=w_total)
                # the reduced loss: every rank takes the same branch
                if not (math.isfinite(history["loss"][-1]) and sync.all_finite(params)):
                    loss_value = history["loss"][-1]
                    for curve in history.values():
                        del curve[-1]  # the history of the restored parameters
                    snapshot.restore()
                    raise sync.raising_everywhere(DivergenceError(
                        epoch, loss_value, opt.lr if step_lr is None else step_lr, history))
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=history["loss"][-1])
                stop = False
                if stopper is not None:
                    key = "val_loss" if validation_data is not None else "loss"
                    stop = stopper.update(history[key][-1])
                if callback is not None and callback(epoch, history) is True:
                    stop = True
                if sync.decide(stop):  # rank 0 decides for all
                    break
            if stopper is not None:
                stopper.finish()
        finally:
            if bar is not None:
                bar.close()
        return history
