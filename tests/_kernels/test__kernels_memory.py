"""fastbp._kernels, no leaks: resident memory stays flat over 100,000 calls
of each kernel (valid and refused) and threads that come and go.  (The
network's 10,000 training steps are in tests/test_network.py.)

Shapes are tiny so that the runs take seconds; a leak of even one small
output array per call (≥ 100 bytes) would grow RSS by ≥ 10 MB."""

import sys
import threading

import numpy as np
import pytest

import fastbp

from conftest import RSS_BOUND as BOUND
from conftest import growth


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(0)
    X, W, b = rng.standard_normal((3, 4)), rng.standard_normal((2, 4)), rng.standard_normal(2)
    dY, T = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    return X, W, b, dY, T


def kernel_steps(X, W, b, dY, T):
    Y = fastbp.dense_forward(X, W, b, "sigmoid")
    outs = dict(dA=np.empty((3, 4)), dB=np.empty((2, 4)), db=np.empty(2))
    return {
        "matmul_abt": lambda: fastbp.matmul_abt(X, W),
        "matmul_abt_backward": lambda: fastbp.matmul_abt_backward(dY, X, W),
        "dense_forward": lambda: fastbp.dense_forward(X, W, b, "tanh"),
        "dense_backward": lambda: fastbp.dense_backward(dY, X, W, Y, "sigmoid"),
        "dense_backward outs": lambda: fastbp.dense_backward(
            dY, X, W, Y, "relu", dX=outs["dA"], dW=outs["dB"], db=outs["db"]),
        "squared_error": lambda: fastbp.squared_error(Y, T, "mean"),
    }


@pytest.mark.parametrize("name", ["matmul_abt", "matmul_abt_backward",
                                  "dense_forward", "dense_backward", "dense_backward outs",
                                  "squared_error"])
def test_100k_calls_leave_rss_flat(small, name):
    step = kernel_steps(*small)[name]
    refs = [sys.getrefcount(a) for a in small]
    grown, before, after = growth(step, 100_000)
    assert grown < BOUND, f"{name}: RSS grew by {grown} bytes ({before} -> {after})"
    # a reference leaked on an input would not show in RSS: count them
    assert [sys.getrefcount(a) for a in small] == refs


def test_100k_refused_calls_leave_rss_flat(small):
    X, W, b, dY, T = small
    bad = X.astype(np.float32)

    def step():
        for args in ((bad, W), (X, W[:, :3].copy()), (X, W)):
            try:
                fastbp.matmul_abt(*args, out=X if args[0] is X else None)  # last one aliases
            except (TypeError, ValueError):
                pass

    grown, *_ = growth(step, 100_000 // 3)
    assert grown < BOUND, grown


def test_threads_that_exit_free_their_scratch():
    # dense_backward(sigmoid) takes per-thread scratch for δZ; each thread's
    # buffer (here 80 kB) must be freed when the thread ends
    rng = np.random.default_rng(1)
    X, W = rng.standard_normal((100, 250)), rng.standard_normal((100, 250))
    b, dY = np.zeros(100), rng.standard_normal((100, 100))
    Y = fastbp.dense_forward(X, W, b, "sigmoid")

    def work():
        fastbp.dense_backward(dY, X, W, Y, "sigmoid")

    def spawn(count):
        for _ in range(count):
            t = threading.Thread(target=work)
            t.start()
            t.join()

    grown, *_ = growth(lambda: spawn(1), 1000, warmup=50)
    assert grown < 4 * BOUND, grown  # 1000 leaked buffers would be 80 MB
