"""Data-parallel training over MPI through mpi4py (``MLP.fit(..., comm=comm)``).

Every rank holds the same network and its own shard of the data.  Per step,
each rank's compiled pass writes its local batch's gradient into the flat
``grads`` buffer, one in-place ``Allreduce`` sums that buffer over the ranks,
and every rank applies the same update to its flat ``params``: the global
batch is ``batch_size × size`` rows, and the update is the single-process
update on the union of the local batches (up to the order of a sum).

Reductions are over the global batch: with "mean", rank r's gradient (the
mean over its n_r rows) is scaled by n_r / Σ n before the sum, so uneven
last batches are weighted by their rows; "sum" and "half" need no scaling.

No collective may be left waiting on a rank that is gone:
- before training, every rank meets in one agreement (``FitSync.start``):
  a rank whose checks failed tells the others, and every rank raises; so do
  different numbers of batches, epochs or parameters;
- once training runs, an exception on one rank aborts the MPI job
  (``comm.Abort``) after printing its traceback.

mpi4py is never imported here: a communicator can only exist once the user
has imported ``mpi4py.MPI``, so we take the module from ``sys.modules``.
"""

import contextlib
import sys
import traceback

import numpy as np

from fastbp._checks import all_finite, check_buffer
from fastbp._enums import Reduction
from fastbp import checkpoint
from fastbp.sync import LocalSync

__all__ = ["shard", "check_comm", "allreduce_sum", "broadcast", "save", "FitSync"]

_INSTALL_HINT = "pip install 'fastbp[mpi]' (mpi4py) and an MPI runtime (e.g. pip install mpich)"


def _mpi():
    """mpi4py.MPI if this process has imported it, else None."""
    return sys.modules.get("mpi4py.MPI")


def check_comm(comm, name="comm"):
    """``comm`` if it is a usable mpi4py intracommunicator; TypeError otherwise."""
    MPI = _mpi()
    if MPI is None or not isinstance(comm, MPI.Comm):
        raise TypeError(
            f"{name} must be an mpi4py communicator such as mpi4py.MPI.COMM_WORLD, got "
            f"{type(comm).__name__}" + ("" if MPI is not None else f" (mpi4py: {_INSTALL_HINT})"))
    if comm == MPI.COMM_NULL:
        raise ValueError(f"{name} is MPI.COMM_NULL; pass a communicator this process belongs to")
    if not isinstance(comm, MPI.Intracomm):
        raise TypeError(f"{name} must be an intracommunicator (all ranks in one group), "
                        f"got {type(comm).__name__}")
    return comm


def shard(A, comm):
    """Rows ``A[rank::size]`` of A, as a C-contiguous copy (for users who
    load the whole data set on every rank).

    Strided rather than blocked shards keep the union of the ranks' k-th
    local batches equal to the k-th batch of a single process with batch
    ``batch_size × size`` on unshuffled data.
    """
    check_comm(comm)
    arr = np.asarray(A)
    if arr.ndim == 0:
        raise ValueError(f"A must have at least one dimension (rows), got a scalar {arr!r}")
    return np.ascontiguousarray(arr[comm.Get_rank()::comm.Get_size()])


def allreduce_sum(buf, comm):
    """buf ← the sum of every rank's buf, in place, in one Allreduce."""
    check_buffer(buf, "buf")
    MPI = _mpi()
    comm.Allreduce(MPI.IN_PLACE, [buf, MPI.DOUBLE], op=MPI.SUM)
    return buf


def broadcast(buf, comm, root=0):
    """buf ← root's buf on every rank, in place."""
    check_buffer(buf, "buf")
    comm.Bcast([buf, _mpi().DOUBLE], root=root)
    return buf


def save(net, path, comm):
    """``net.save(path)`` on rank 0 only; every rank returns once the file is
    written, or raises if rank 0 could not write it."""
    check_comm(comm)
    failure, own = None, None
    if comm.Get_rank() == 0:
        try:
            checkpoint.save(net, path)
        except Exception as exc:  # the others must hear of it, not wait forever
            own = exc
            failure = f"{type(exc).__name__}: {exc}"
    failure = comm.bcast(failure, root=0)
    if own is not None:
        raise own
    if failure is not None:
        raise RuntimeError(f"saving {path!r} failed on rank 0: {failure}")


def _describe(exc):
    return f"{type(exc).__name__}: {exc}"


class FitSync(LocalSync):
    """The collective side of one distributed ``fit``: agreement before
    training, the per-step gradient sum, the per-epoch global losses and
    stop decision, and failure handling (``guard``)."""

    def __init__(self, comm):
        super().__init__()
        self.comm = check_comm(comm)
        self.MPI = _mpi()
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self._started = False     # past the agreement: a failure now aborts
        self._collective = False  # the exception in flight is raised on every rank
        self._scale = None        # per-step factor of the local gradient, or None
        self._rows = None         # (this rank's, the global batch's) rows per step

    # -- before training ----------------------------------------------------

    def shuffle_seed(self, seed):
        """The seed of this rank's shuffling: ``seed`` mixed with the rank, so
        ranks permute their shards differently but reproducibly."""
        if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            return np.random.SeedSequence([int(seed), self.rank])
        return seed  # None (fresh entropy per rank), or the user's own Generator/SeedSequence

    def _agree(self, error=None, settings=None):
        """One allgather of (error, settings); raise on every rank if any rank failed."""
        info = self.comm.allgather((None if error is None else _describe(error), settings))
        failed = [(r, e) for r, (e, _) in enumerate(info) if e is not None]
        if failed:
            self._collective = True
            if error is None:
                where = "; ".join(f"rank {r}: {e}" for r, e in failed)
                raise ValueError(f"fit did not start: the input was refused on another rank ({where})")
            return None
        return [s for _, s in info]

    def start(self, params, batch_rows, settings):
        """Agree, before training, that every rank runs the same loop; then
        give every rank rank 0's initial parameters.

        batch_rows: this rank's rows per batch in an epoch; settings: a dict
        that must be equal on all ranks (epochs, loss, reduction, n_params).
        """
        batch_rows = [int(b) for b in batch_rows]
        mine = dict(settings, batches=len(batch_rows))
        all_settings = self._agree(settings=(mine, batch_rows))
        counts = [len(rows) for _, rows in all_settings]
        if len(set(counts)) > 1:
            self._collective = True
            per_rank = ", ".join(f"rank {r}: {c} batches of {sum(rows)} rows"
                                 for r, (c, (_, rows)) in enumerate(zip(counts, all_settings)))
            raise ValueError(
                f"every rank must run the same number of batches per epoch ({per_rank}); "
                "give the ranks shards with the same number of batches, e.g. "
                "fastbp.distributed.shard(A, comm) of a data set whose rows are a multiple "
                "of batch_size × comm size")
        for key in mine:
            values = [s[key] for s, _ in all_settings]
            if any(v != values[0] for v in values):
                self._collective = True
                raise ValueError(f"fit's {key} must be the same on every rank, got {values} (by rank)")
        super().start(params, batch_rows, settings)
        rows = np.array([r for _, r in all_settings], dtype=np.float64)  # (size, batches)
        self._rows = rows[self.rank], rows.sum(axis=0)
        if self._mean and self.size > 1:
            self._scale = self._rows[0] / self._rows[1]
        self._started = True
        broadcast(params, self.comm, root=0)

    # -- every step -----------------------------------------------------------

    @property
    def _mean(self):
        """Whether the fit's reduction is "mean" (gradients then scale by rows)."""
        return self._reduction == Reduction.RED_MEAN

    def batch_weights(self, w, order, starts):
        """With sample weights (w), at the start of an epoch: the global
        batches' weights, from this rank's sum of weights in each step's
        batch (its rows in ``order``).  Each rank's gradient,
        normalised by its own weights, is rescaled so that the sum over the
        ranks is the global batch's, normalised by the global weight (as
        one process with the whole batch would: w_i N / Σ w)."""
        if w is None:
            return None
        local = np.add.reduceat(w[order] if order is not None else w, starts)
        total = np.empty_like(local)
        self.comm.Allreduce([local, self.MPI.DOUBLE], [total, self.MPI.DOUBLE], op=self.MPI.SUM)
        mine, rows = self._rows
        with np.errstate(divide="ignore", invalid="ignore"):
            share = local / total if self._mean else (rows * local) / (total * mine)
        self._scale = np.where(total > 0.0, share, 0.0)
        return total

    def after_gradient(self, grads):
        """Each batch's gradient summed over the ranks, before its update."""
        return lambda step: self.reduce_gradient(grads, step)

    def reduce_gradient(self, grads, step):
        """grads ← Σ_ranks (scale_r · grads_r), in place: the global batch's gradient."""
        if self._scale is not None:
            np.multiply(grads, self._scale[step], out=grads)
        MPI = self.MPI
        self.comm.Allreduce(MPI.IN_PLACE, [grads, MPI.DOUBLE], op=MPI.SUM)

    # -- every epoch ----------------------------------------------------------

    def sum_all(self, buf):
        """buf ← Σ_ranks buf, reduced on rank 0 and broadcast: bitwise the
        same numbers on every rank."""
        MPI = self.MPI
        if self.rank == 0:
            self.comm.Reduce(MPI.IN_PLACE, [buf, MPI.DOUBLE], op=MPI.SUM, root=0)
        else:
            self.comm.Reduce([buf, MPI.DOUBLE], None, op=MPI.SUM, root=0)
        self.comm.Bcast([buf, MPI.DOUBLE], root=0)

    def decide(self, stop):
        """Rank 0's stop decision, on every rank."""
        return bool(self.comm.bcast(bool(stop), root=0))

    def all_finite(self, params):
        """Whether every parameter is finite on every rank (one small
        Allreduce per epoch, so every rank takes the same branch)."""
        return bool(self.comm.allreduce(bool(all_finite(params)), op=self.MPI.LAND))

    def raising_everywhere(self, exc):
        """exc is raised on every rank in the same epoch: no abort."""
        self._collective = True
        return exc

    # -- failures -------------------------------------------------------------

    @contextlib.contextmanager
    def guard(self):
        """Around a whole fit: a failure before the agreement joins it (every
        rank then raises); a failure after it aborts the MPI job, so no rank
        stays blocked in a collective."""
        try:
            yield self
        except BaseException as exc:
            if self._collective:
                raise  # every rank is raising it already
            if not self._started and isinstance(exc, Exception):
                self._agree(error=exc)
                raise
            self.abort(exc)
            raise  # not reached: Abort ends the process

    def abort(self, exc):
        """Print exc and end every rank of the job."""
        lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
        sys.stderr.write(f"fastbp: rank {self.rank} of {self.size} failed during a distributed fit; "
                         f"aborting the MPI job so no rank waits forever\n{''.join(lines)}")
        sys.stderr.flush()
        self.comm.Abort(1)
