"""2 ranks with local batch b against 1 process with batch 2b on the whole
data (unshuffled), for SGD, momentum and Adam; checksums of the weights
after every epoch; histories; rank-0-only save; rank 0's stop decision.

argv[1]: a directory for the checkpoints.
"""

import os
import sys

import numpy as np
from _common import COMM, RANK, SIZE, checksum, error_text, report

import fastbp.checkpoint
from fastbp.distributed import shard
from fastbp.network import MLP

out_dir = sys.argv[1]
rng = np.random.default_rng(0)
# 67 rows: shards of 34 and 33, so the last local batches differ (2 and 1 rows)
X, T = rng.normal(size=(67, 5)), rng.normal(size=(67, 3))
X_val, T_val = rng.normal(size=(21, 5)), rng.normal(size=(21, 3))
B, EPOCHS = 8, 4
result = {"shard": shard(np.arange(10), COMM).tolist()}


Y, Y_val = np.argmax(T, axis=1), np.argmax(T_val, axis=1)  # class labels for cross_entropy


# sample weights: the second global batch weighs 0 on rank 0's rows only,
# the fourth on every row (skipped by all)
W = rng.uniform(0.0, 2.0, 67)
W[2 * B * SIZE:3 * B * SIZE:SIZE] = 0.0  # rank 0's rows (row % SIZE == 0) of global batch 2
W[3 * B * SIZE:4 * B * SIZE] = 0.0


def fit_pair(optimizer, lr, T=T, T_val=T_val, sample_weight=None, **kw):
    """(distributed history, per-epoch checksums, params) and, on rank 0,
    the single-process run on everything with batch B * SIZE."""
    sums = []
    net = MLP([5, 7, 6, 3], activation="tanh", seed=RANK)  # rank 0's weights must win
    hist = net.fit(shard(X, COMM), shard(T, COMM), epochs=EPOCHS, batch_size=B, lr=lr,
                   optimizer=optimizer, shuffle=False, comm=COMM,
                   validation_data=(shard(X_val, COMM), shard(T_val, COMM)),
                   callback=lambda epoch, h: sums.append(checksum(net.params)),
                   sample_weight=None if sample_weight is None else shard(sample_weight, COMM),
                   **kw)
    out = {"hist": hist, "sums": sums, "params": net.params.tolist()}
    if RANK == 0:
        one = MLP([5, 7, 6, 3], activation="tanh", seed=0)
        out["single_hist"] = one.fit(X, T, epochs=EPOCHS, batch_size=B * SIZE, lr=lr,
                                     optimizer=optimizer, shuffle=False,
                                     validation_data=(X_val, T_val),
                                     sample_weight=sample_weight, **kw)
        out["single_params"] = one.params.tolist()
    return net, out


for name, lr in (("sgd", 0.1), ("momentum", 0.05), ("adam", 0.01)):
    net, result[name] = fit_pair(name, lr)
result["sum_reduction"] = fit_pair("sgd", 0.01, reduction="sum")[1]
result["weight_decay"] = fit_pair("momentum", 0.05, weight_decay=0.1)[1]
result["half_reduction"] = fit_pair("nesterov", 0.01, reduction="half")[1]
result["cross_entropy"] = fit_pair("adam", 0.01, T=Y, T_val=Y_val, loss="cross_entropy")[1]
result["sample_weight"] = fit_pair("momentum", 0.05, sample_weight=W)[1]
result["sample_weight_sum"] = fit_pair("sgd", 0.01, sample_weight=W, reduction="sum")[1]

# a communicator of one process is the plain fit, bitwise
if RANK == 0:
    from mpi4py import MPI
    a, b = (MLP([5, 7, 6, 3], activation="tanh", seed=3) for _ in range(2))
    ha = a.fit(X, T, epochs=2, batch_size=B, optimizer="adam", lr=0.01, seed=1)
    hb = b.fit(X, T, epochs=2, batch_size=B, optimizer="adam", lr=0.01, seed=1, comm=MPI.COMM_SELF)
    result["comm_self_equal"] = bool(np.array_equal(a.params, b.params) and ha == hb)

# shuffled: still the same weights on every rank
net = MLP([5, 7, 6, 3], activation="tanh", seed=RANK)
net.fit(shard(X, COMM), shard(T, COMM), epochs=2, batch_size=B, lr=0.1, seed=5, comm=COMM)
result["shuffled_sum"] = checksum(net.params)

# the callback runs everywhere, rank 0's answer decides: rank 0 stops after
# epoch 1, rank 1 would stop after epoch 0
net = MLP([5, 7, 6, 3], activation="tanh", seed=0)
hist = net.fit(shard(X, COMM), shard(T, COMM), epochs=5, batch_size=B, lr=0.1, comm=COMM,
               callback=lambda epoch, h: epoch == (1 if RANK == 0 else 0))
result["stopped_after"] = len(hist["loss"])

# rank 0 alone writes the checkpoint
calls = []
real_save = fastbp.checkpoint.save
fastbp.checkpoint.save = lambda *a: (calls.append(1), real_save(*a))
path = os.path.join(out_dir, "model.npz")
net.save(path, comm=COMM)
result["save_calls"] = len(calls)
result["saved_equal"] = bool(np.array_equal(MLP.load(path).params, net.params))
result["save_error"] = error_text(lambda: net.save(os.path.join(out_dir, "no", "such", "m.npz"),
                                                   comm=COMM))
fastbp.checkpoint.save = real_save
result["files"] = sorted(os.listdir(out_dir))
report(result)
