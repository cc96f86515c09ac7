"""Rank 1 fails in the middle of a fit: the job must end (comm.Abort), not
leave rank 0 blocked in the next Allreduce."""

import numpy as np
from _common import COMM, RANK

from fastbp.network import MLP


def callback(epoch, history):
    if RANK == 1 and epoch == 1:
        raise RuntimeError("rank 1 fails on purpose")


rng = np.random.default_rng(RANK)
X, T = rng.normal(size=(40, 4)), rng.normal(size=(40, 2))
MLP([4, 5, 2], seed=0).fit(X, T, epochs=50, batch_size=10, comm=COMM, callback=callback)
print(f"rank {RANK} finished the fit", flush=True)
