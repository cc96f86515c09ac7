"""What a fit does between processes, as one object the fit loop calls.

``fastbp.training`` runs the same loop for a local fit and for a distributed
one; the difference is the sync object it is given.  ``LocalSync`` is one
process: its collectives are no-ops and its records are the local ones.
``fastbp.distributed.FitSync`` (MPI) overrides the collective steps: the
agreement before training, the global batches' weights, the gradient sum
after each batch's gradient, the global losses and rank 0's stop decision.
"""

import contextlib

import numpy as np

from fastbp._checks import all_finite
from fastbp._enums import Reduction, code
from fastbp._losses import loss_scale

__all__ = ["LocalSync"]


class LocalSync:
    """The sync of a fit on one process."""

    rank = 0
    size = 1

    def __init__(self):
        self._reduction = Reduction.RED_SUM
        self._epoch = np.zeros(5)  # train total, rows, val total, val rows, train weight

    def guard(self):
        """Around the whole fit: nothing to guard on one process."""
        return contextlib.nullcontext(self)

    def shuffle_seed(self, seed):
        """The seed of this process's shuffling."""
        return seed

    def start(self, params, batch_rows, settings):
        """Before training: the fit's settings (settings["reduction"]: its name)."""
        self._reduction = code("reduction", settings["reduction"])

    def batch_weights(self, w, order, starts):
        """The weight of each batch over every process, or None (each
        process's own weights decide).  w: this process's sample weights or
        None; order: the epoch's row order (None: in place); starts: the
        batches' first rows."""
        return None

    def after_gradient(self, grads):
        """A callable(batch) to run on each batch's gradient before its
        update (the gradient's sum over processes), or None."""
        return None

    def sum_all(self, buf):
        """buf ← its sum over the processes (here: itself)."""

    def record_epoch(self, history, train_total, train_rows, val=None, train_weight=None):
        """Append the epoch's losses to ``history``.

        train_total: the epoch's summed batch losses (each batch's reduced
        loss times its weight, or its weight over its rows unless the
        reduction is "mean"); train_weight: the data's sum of sample weights
        (its rows without weights); val: (the validation set's summed loss,
        its rows), or None.
        """
        buf = self._epoch
        buf[0], buf[1] = train_total, train_rows
        buf[2], buf[3] = val if val is not None else (0.0, 0)
        buf[4] = train_rows if train_weight is None else train_weight
        self.sum_all(buf)
        total, n, vtotal, vn, weight = buf
        if self._reduction == Reduction.RED_MEAN:
            history["loss"].append(float(total / weight) if weight else float(total))
        else:
            history["loss"].append(float(total * (n / weight)) if weight else float(total))
        if val is not None:
            history["val_loss"].append(float(vtotal * loss_scale(self._reduction, int(vn))))

    def all_finite(self, params):
        """Whether every parameter is finite, on every process (here: this one's)."""
        return all_finite(params)

    def raising_everywhere(self, exc):
        """exc, to be raised on every process at once (from reduced values):
        the fit's guard lets it through instead of aborting."""
        return exc

    def decide(self, stop):
        """The stop decision that counts (here: this process's own)."""
        return bool(stop)
