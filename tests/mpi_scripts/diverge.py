"""A diverging distributed fit: every rank raises DivergenceError in the
same epoch (the loss is the reduced one), with rank 0's parameters from
before it, and the communicator still works afterwards (no abort)."""

import numpy as np
from _common import COMM, RANK, report

from fastbp import DivergenceError
from fastbp.network import MLP

rng = np.random.default_rng(RANK)
X, T = rng.normal(size=(32, 3)), rng.normal(size=(32, 1))
net = MLP([3, 4, 1], activation="identity", seed=0)
result = {}
try:
    net.fit(X, T, epochs=500, batch_size=8, lr=5.0, optimizer="sgd", comm=COMM)
    result["error"] = None
except DivergenceError as err:
    result["error"] = [err.epoch, len(err.history["loss"]), bool(np.isfinite(net.params).all())]
result["params"] = net.params.tolist()
result["after"] = MLP([3, 4, 1], seed=0).fit(X, T, epochs=2, batch_size=8, comm=COMM)["loss"]
report(result)
