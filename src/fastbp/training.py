"""The fit loop: mini-batches, optimiser steps, history, early stopping.

Per step the path is: the compiled pass writes the batch's gradient into the
network's flat ``grads`` buffer, then the optimiser updates the flat
``params``.  A hook between the two (e.g. an allreduce of ``grads`` over
MPI) needs no packing.  Batches are gathered into buffers made once per fit
(shuffled) or are views of X made once (not shuffled), so a step allocates
nothing.
"""

import os
import sys

import numpy as np

from fastbp import _network
from fastbp.inputs import as_inputs, as_sample_weight, as_targets
from fastbp.optim import make_optimizer

__all__ = ["fit", "dataset_loss"]

_RED_SUM = _network.REDUCTIONS.index("sum")
_RED_MEAN = _network.REDUCTIONS.index("mean")
# Rows per chunk when a whole data set is only evaluated (validation loss).
EVAL_CHUNK = 512


def _reduce(total, reduction_code, n):
    name = _network.REDUCTIONS[reduction_code]
    if name == "half":
        return 0.5 * total
    if name == "mean":
        return total / n if n else 0.0
    return total


def dataset_loss(net, X, T, loss_code, reduction_code):
    """The loss over all of (X, T), forward only, chunk by chunk."""
    core = net._core
    n = X.shape[0]
    chunk = max(core.capacity, min(n, EVAL_CHUNK), 1)
    total = 0.0
    for start in range(0, n, chunk):
        total += core.step(X[start:start + chunk], T[start:start + chunk], loss_code, _RED_SUM,
                           None, False)
    return _reduce(total, reduction_code, n)


def _count(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _progress_bar(progress, epochs, steps):
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


class _EarlyStopping:
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


def _checked_weights(sample_weight, n):
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


def fit(net, X, T, *, comm=None, **kwargs):
    """See MLP.fit."""
    if comm is None:
        return _fit(net, X, T, None, **kwargs)
    # Data-parallel over MPI (fastbp.distributed, issue 9): `sync` does the
    # collectives at the hooks below; its guard keeps a failing rank from
    # leaving the others blocked in one.
    from fastbp.distributed import FitSync
    sync = FitSync(comm)
    if sync.rank != 0:
        kwargs["progress"] = False  # one progress bar per job
    with sync.guard():
        return _fit(net, X, T, sync, **kwargs)


def _fit(net, X, T, sync, *, epochs, batch_size, lr, optimizer, loss, reduction, weight_decay,
         shuffle, seed, validation_data, early_stopping, patience, min_delta,
         restore_best_weights, callback, progress, check_finite, sample_weight=None):
    """fit on one process (sync None) or on one rank of an MPI job."""
    from fastbp.network import _codes
    lc, rc = _codes(loss, reduction)
    net._check_loss(loss)
    epochs = _count(epochs, "epochs", 0)
    batch_size = _count(batch_size, "batch_size", 1)
    patience = _count(patience, "patience", 1)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable(epoch, history) or None, got {type(callback).__name__}")
    X = as_inputs(X, net.sizes[0], "X", check_finite)
    T = as_targets(T, X.shape[0], net.sizes[-1], loss, "T", check_finite)
    n = X.shape[0]
    if n == 0:
        raise ValueError("X must have at least one row, got shape (0, ...)")
    w = _checked_weights(sample_weight, n)
    w_total = n if w is None else float(w.sum())
    if validation_data is not None:
        try:
            X_val, T_val = validation_data
        except (TypeError, ValueError):
            raise TypeError("validation_data must be a pair (X_val, T_val)") from None
        X_val = as_inputs(X_val, net.sizes[0], "X_val", check_finite)
        T_val = as_targets(T_val, X_val.shape[0], net.sizes[-1], loss, "T_val", check_finite)
    opt = make_optimizer(optimizer, lr=lr, weight_decay=weight_decay)
    step_lr = lr if not isinstance(optimizer, str) else None  # an object keeps its lr unless given

    net._acquire("fit")
    try:
        core = net._core
        bs = min(batch_size, n)
        core.reserve(bs)
        starts = range(0, n, bs)
        if sync is not None:  # same loop on every rank, rank 0's initial weights
            sync.start(net.params, [min(bs, n - s) for s in starts],
                       dict(epochs=epochs, loss=loss, reduction=reduction, n_params=net.n_params,
                            optimizer=optimizer if isinstance(optimizer, str) else type(optimizer).__name__,
                            lr=lr, weight_decay=weight_decay, validation=validation_data is not None,
                            early_stopping=early_stopping, restore=restore_best_weights,
                            sample_weight=w is not None))
        if shuffle:
            rng = np.random.default_rng(seed if sync is None else sync.shuffle_seed(seed))
            order = np.arange(n, dtype=np.int64)
            X_buf = np.empty((bs,) + X.shape[1:])
            T_buf = np.empty((bs,) + T.shape[1:], dtype=T.dtype)
            w_buf = np.empty(bs if w is not None else 0)
            tail = n - (len(starts) - 1) * bs
            # the batch views, made once: full batches, and the last one
            full = (X_buf, T_buf, w_buf if w is not None else None)
            last = (X_buf[:tail], T_buf[:tail], w_buf[:tail] if w is not None else None)
        else:
            batches = [(X[s:s + bs], T[s:s + bs], w[s:s + bs] if w is not None else None)
                       for s in starts]
        params, grads, n_decay = net.params, net.grads, net.n_weights
        history = {"loss": []}
        if validation_data is not None:
            history["val_loss"] = []
        stopper = (_EarlyStopping(patience, min_delta, restore_best_weights, params)
                   if early_stopping else None)
        bar = _progress_bar(progress, epochs, len(starts))
        try:
            for epoch in range(epochs):
                if shuffle:
                    rng.shuffle(order)
                if sync is not None and w is not None:  # the global batches' weights
                    sync.weigh_batches(np.add.reduceat(w[order] if shuffle else w,
                                                       np.asarray(starts)))
                total = 0.0
                for i, start in enumerate(starts):
                    if shuffle:
                        xb, tb, wb = full if start + bs <= n else last
                        _network.gather_rows(X, order, start, xb.shape[0], X_buf)
                        _network.gather_rows(T, order, start, xb.shape[0], T_buf)
                        if w is not None:
                            _network.gather_rows(w, order, start, xb.shape[0], w_buf)
                    else:
                        xb, tb, wb = batches[i]
                    m = xb.shape[0]
                    sb = m if wb is None else float(wb.sum())  # the batch's weight
                    weighs = sb if sync is None or wb is None else sync.batch_weight(i)
                    if weighs == 0.0:
                        continue  # a (global) batch of weight 0 carries no gradient
                    fused = opt._core_update(params, step_lr) if sync is None else None
                    if fused is not None:  # gradient and update in one compiled call
                        J = core.step(xb, tb, lc, rc, wb, True, *fused)
                        opt._stepped()
                    else:
                        # 1. local gradient into the flat buffer
                        if sb > 0.0:
                            J = core.step(xb, tb, lc, rc, wb, True)
                        else:  # this rank's part of the global batch weighs nothing
                            grads.fill(0.0)
                            J = 0.0
                        if sync is not None:  # the global batch's gradient, on every rank
                            sync.reduce_gradient(grads, i)
                        # 2. the optimiser's in-place update
                        opt.step(params, grads, lr=step_lr, n_decay=n_decay)
                    # the epoch's loss weights each batch by its weight
                    total += J * sb if rc == _RED_MEAN else J * (sb / m)
                if sync is not None:  # global losses, the same on every rank
                    sync.record_epoch(history, total, n, None if validation_data is None else
                                      (dataset_loss(net, X_val, T_val, lc, _RED_SUM), X_val.shape[0]),
                                      train_weight=w_total)
                else:
                    history["loss"].append(total / w_total if rc == _RED_MEAN
                                           else total * (n / w_total))
                    if validation_data is not None:
                        history["val_loss"].append(dataset_loss(net, X_val, T_val, lc, rc))
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=history["loss"][-1])
                stop = False
                if stopper is not None:
                    key = "val_loss" if validation_data is not None else "loss"
                    stop = stopper.update(history[key][-1])
                if callback is not None and callback(epoch, history) is True:
                    stop = True
                if sync is not None:
                    stop = sync.decide(stop)  # rank 0 decides for all
                if stop:
                    break
            if stopper is not None:
                stopper.finish()
        finally:
            if bar is not None:
                bar.close()
        return history
    finally:
        net._lock.release()
