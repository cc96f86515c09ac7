"""Bad input on one rank: every rank raises before training, and the
communicator is still usable afterwards (nobody was left in a collective)."""

import numpy as np
from _common import COMM, RANK, error_text, report

from fastbp.network import MLP

rng = np.random.default_rng(RANK)
result = {}


def net():
    return MLP([4, 5, 2], seed=0)


# rank 0: 40 rows (4 batches of 10), rank 1: 50 rows (5 batches)
n = 40 if RANK == 0 else 50
X, T = rng.normal(size=(n, 4)), rng.normal(size=(n, 2))
result["batches"] = error_text(lambda: net().fit(X, T, epochs=2, batch_size=10, comm=COMM))

# a check that fails on rank 1 only (a NaN in its shard)
Xn = rng.normal(size=(40, 4))
if RANK == 1:
    Xn[3, 2] = np.nan
result["nan"] = error_text(lambda: net().fit(Xn, T[:40], epochs=2, batch_size=10, comm=COMM))

# a loop that would run longer on rank 1
result["epochs"] = error_text(lambda: net().fit(X[:40], T[:40], epochs=2 + RANK, batch_size=10,
                                                comm=COMM))

# a different network on rank 1
result["sizes"] = error_text(lambda: MLP([4, 5 + RANK, 2], seed=0).fit(
    X[:40], T[:40], epochs=1, batch_size=10, comm=COMM))

# afterwards the communicator still works: a normal fit completes
hist = net().fit(X[:40], T[:40], epochs=2, batch_size=10, comm=COMM)
result["after"] = hist["loss"]
report(result)
