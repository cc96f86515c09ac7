"""Levenberg-Marquardt over 2 ranks against 1 process on the union: the
same history and parameters (rtol 1e-10), and bitwise the same parameters
on every rank after every iteration (checksums); with sample weights,
weight decay and validation data."""

import numpy as np
from _common import COMM, RANK, checksum, report

from fastbp.distributed import shard
from fastbp.network import MLP

rng = np.random.default_rng(0)
X = rng.uniform(-1, 1, size=(67, 3))  # shards of 34 and 33 rows
T = np.column_stack([np.sin(2 * X[:, 0]) * X[:, 1], np.cos(X[:, 2])])
X_val = rng.uniform(-1, 1, size=(21, 3))
T_val = np.column_stack([np.sin(2 * X_val[:, 0]) * X_val[:, 1], np.cos(X_val[:, 2])])
W = rng.uniform(0.2, 2.0, 67)
result = {}


def fit_pair(sample_weight=None, **kw):
    sums = []
    net = MLP([3, 6, 2], activation="tanh", seed=RANK)  # rank 0's weights must win
    hist = net.fit(shard(X, COMM), shard(T, COMM), optimizer="lm", epochs=15, comm=COMM,
                   validation_data=(shard(X_val, COMM), shard(T_val, COMM)),
                   sample_weight=None if sample_weight is None else shard(sample_weight, COMM),
                   callback=lambda epoch, h: sums.append(checksum(net.params)), **kw)
    out = {"hist": hist, "sums": sums, "params": net.params.tolist()}
    if RANK == 0:
        one = MLP([3, 6, 2], activation="tanh", seed=0)
        out["single_hist"] = one.fit(X, T, optimizer="lm", epochs=15,
                                     validation_data=(X_val, T_val), sample_weight=sample_weight,
                                     **kw)
        out["single_params"] = one.params.tolist()
    return out


result["plain"] = fit_pair()
result["weighted"] = fit_pair(sample_weight=W, damping="diagonal")
result["weight_decay"] = fit_pair(weight_decay=1e-3, reduction="sum")
report(result)
