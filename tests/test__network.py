"""fastbp._network, the compiled network core (NetworkCore): a training
step's batch split over two threads (NetworkCore._plan and _team.h) gives the
same loss and gradient as on one thread, with the update done half on each
thread; the ways the split is turned off; the compiled epoch against the same
loop written step by step; the optimisers' update fused into the step; what
a pass reports besides the loss.

(fastbp.MLP's own tests, which run on this core, are in tests/test_network.py.)"""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from fastbp import _network, _optim
from fastbp._enums import UPDATES, Update, codes
from fastbp._network import Objective
from fastbp._optim import UpdateSpec
from fastbp.network import MLP
from fastbp.optim import SGD, Adam, Momentum

from conftest import softmax

threadpoolctl = pytest.importorskip("threadpoolctl")

RTOL = 1e-12
# Every layer of a part of these batches stays under 2^18 multiply-adds, the
# bound on any OpenBLAS (with OPENBLAS_CORETYPE=Haswell, as CI sets it, and
# without), and each whole batch is over the 2^20 a split needs.
SIZES = [60, 60, 60, 60, 60, 10]
ROWS = 131  # odd: part 0 takes the extra row


def one_thread():
    return threadpoolctl.threadpool_limits(1, user_api="blas")


def two_threads():
    return threadpoolctl.threadpool_limits(2, user_api="blas")


def splits_here():
    return (os.cpu_count() or 1) >= 2


def need_split(core, before):
    if not splits_here():
        pytest.skip("one CPU: no second thread to split over")
    assert core.split_steps > before, "the step ran on one thread"


def make_net(activation="tanh", output="identity", seed=0):
    return MLP(SIZES, activation=activation, output_activation=output, seed=seed)


OUTPUT_OF = {"squared_error": "identity", "cross_entropy": "identity",
             "binary_cross_entropy": "sigmoid", "poisson": "exp"}


def targets(rng, loss, n, probabilities=False):
    if loss == "squared_error":
        return rng.standard_normal((n, SIZES[-1]))
    if loss == "binary_cross_entropy":
        return (rng.uniform(size=(n, SIZES[-1])) < 0.4).astype(float)
    if loss == "poisson":
        return rng.poisson(1.5, (n, SIZES[-1])).astype(float)
    if probabilities:
        P = rng.uniform(0.0, 1.0, (n, SIZES[-1]))
        return P / P.sum(axis=1, keepdims=True)
    return rng.integers(0, SIZES[-1], n)


def assert_close(got, want, rtol=RTOL):
    want = np.asarray(want)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * max(1.0, np.abs(want).max(initial=0)))


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid", "leaky_relu", "elu", "softplus",
                                        "silu"])
@pytest.mark.parametrize("loss, reduction, probabilities", [
    ("squared_error", "sum", False), ("squared_error", "half", False),
    ("squared_error", "mean", False), ("cross_entropy", "mean", False),
    ("cross_entropy", "sum", True), ("binary_cross_entropy", "mean", False),
    ("binary_cross_entropy", "half", False), ("poisson", "sum", False), ("poisson", "mean", False)])
@pytest.mark.parametrize("weighted", [False, True])
def test_split_step_gives_the_one_thread_loss_and_gradient(rng, activation, loss, reduction,
                                                           probabilities, weighted):
    net = make_net(activation, OUTPUT_OF[loss])
    X = rng.standard_normal((ROWS, SIZES[0]))
    T = targets(rng, loss, ROWS, probabilities)
    w = rng.uniform(0.0, 2.0, ROWS) if weighted else None
    if weighted:
        w[:5] = 0.0  # rows of weight 0 in part 0 (left out of the worst row)
    lc, rc = codes(loss=loss, reduction=reduction)
    with one_thread():
        J1 = net.core.step(X, T, loss=lc, reduction=rc, sample_weight=w)
        g1, worst1 = net.grads.copy(), net.core.worst_row_loss
    net.grads[...] = np.nan  # every entry must be written again
    before = net.core.split_steps
    with two_threads():
        J2 = net.core.step(X, T, loss=lc, reduction=rc, sample_weight=w)
    need_split(net.core, before)
    assert_close(J2, J1)
    assert_close(net.grads, g1)
    if loss in ("cross_entropy", "binary_cross_entropy"):
        assert net.core.worst_row_loss == pytest.approx(worst1, rel=RTOL)


CHUNK_SCRIPT = """
import numpy as np, threadpoolctl
from fastbp.network import MLP
# 100 rows a part: products of 640,000 and 100,000 multiply-adds, which the
# parts make in pieces of at most 2^18 when OpenBLAS has no small kernels
rng = np.random.default_rng(3)
for sizes, act, rows in (([64, 100, 10], "relu", 200), ([40, 160, 90, 3], "tanh", 131),
                         ([1000, 2, 2], "tanh", 600)):  # δW1 (2 × 1000) in bands of columns
    net = MLP(sizes, activation=act, seed=0)
    X = rng.standard_normal((rows, sizes[0])); T = rng.standard_normal((rows, sizes[-1]))
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        J1 = net.core.step(X, T, reduction=2); g1 = net.grads.copy()
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        J2 = net.core.step(X, T, reduction=2)
    assert abs(J2 - J1) <= 1e-12 * abs(J1), (J1, J2)
    np.testing.assert_allclose(net.grads, g1, rtol=1e-12, atol=1e-12 * np.abs(g1).max())
    print(net.core.split_steps, end=" ")
"""


@pytest.mark.parametrize("coretype", [None, "Haswell"])
def test_split_parts_with_larger_products(coretype):
    # with OPENBLAS_CORETYPE=Haswell (as CI sets it) OpenBLAS has no
    # small-matrix kernels, and a part's products go in pieces
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    if coretype:
        env["OPENBLAS_CORETYPE"] = coretype
    out = subprocess.run([sys.executable, "-c", CHUNK_SCRIPT], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    if splits_here():
        assert out.stdout.split() == ["1", "1", "1"]


def test_split_sgd_step_updates_both_halves_and_keeps_the_whole_gradient(rng):
    X, T = rng.standard_normal((ROWS, SIZES[0])), rng.standard_normal((ROWS, SIZES[-1]))
    one, two = make_net(), make_net()
    lc, rc = codes(loss="squared_error", reduction="mean")
    for _ in range(3):
        with one_thread():
            one.core.step(X, T, loss=lc, reduction=rc, update=UpdateSpec(Update.UPD_SGD, lr=0.05, weight_decay=0.01))
        before = two.core.split_steps
        with two_threads():
            two.core.step(X, T, loss=lc, reduction=rc, update=UpdateSpec(Update.UPD_SGD, lr=0.05, weight_decay=0.01))
        need_split(two.core, before)
        assert_close(two.params, one.params)
        assert_close(two.grads, one.grads)  # the helper's half copied back


def test_no_split_on_one_blas_thread_or_below_the_bounds(rng):
    net = make_net()
    lc, rc = codes(loss="squared_error", reduction="sum")
    X, T = rng.standard_normal((ROWS, SIZES[0])), rng.standard_normal((ROWS, SIZES[-1]))
    with one_thread():
        net.core.step(X, T, loss=lc, reduction=rc)
    small = ROWS // 8  # under 2^20 multiply-adds in all
    with two_threads():
        net.core.step(X[:small], T[:small], loss=lc, reduction=rc)
        net.core.step(X, T, loss=lc, reduction=rc, backward=False)  # the loss alone is not split
    assert net.core.split_steps == 0


FORK_SCRIPT = f"""
import os, sys
import numpy as np, threadpoolctl
from fastbp.network import MLP

def gradient():
    net = MLP({SIZES}, activation="tanh", seed=0)
    rng = np.random.default_rng(7)
    X, T = rng.standard_normal(({ROWS}, {SIZES[0]})), rng.standard_normal(({ROWS}, {SIZES[-1]}))
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        net.core.step(X, T)
    return net.grads, net.core.split_steps

want, _ = gradient()  # the parent's helper now exists
read, write = os.pipe()
pid = os.fork()
if pid == 0:  # the child has no helper until it needs one
    grads, splits = gradient()
    os.write(write, np.append(grads, splits).tobytes())
    os._exit(0)
os.close(write)
data = b""
while chunk := os.read(read, 1 << 16):
    data += chunk
_, status = os.waitpid(pid, 0)
got = np.frombuffer(data)
assert os.waitstatus_to_exitcode(status) == 0
np.testing.assert_allclose(got[:-1], want, rtol=1e-12, atol=1e-12)
print(int(got[-1]))
"""


def test_a_forked_child_starts_its_own_helper():
    # in a fresh interpreter: this one may hold other libraries' threads,
    # which a fork() copies in whatever state they are
    if not hasattr(os, "fork"):
        pytest.skip("no fork() here")
    out = subprocess.run([sys.executable, "-c", FORK_SCRIPT], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    if splits_here():
        assert out.stdout.strip() == "1"


def test_two_python_threads_stepping_at_once_get_their_own_results(rng):
    # the helper serves one caller at a time; the other runs both parts itself
    X, T = rng.standard_normal((ROWS, SIZES[0])), rng.standard_normal((ROWS, SIZES[-1]))
    lc, rc = codes(loss="squared_error", reduction="mean")

    def train(net, steps=40):
        for _ in range(steps):
            net.core.step(X, T, loss=lc, reduction=rc, update=UpdateSpec(Update.UPD_SGD, lr=0.01))

    with one_thread():
        want = make_net(seed=1)
        train(want)
    nets = [make_net(seed=1) for _ in range(2)]
    with two_threads():
        workers = [threading.Thread(target=train, args=(net,)) for net in nets]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
    for net in nets:
        assert_close(net.params, want.params, rtol=1e-10)


def test_fastbp_no_team_in_the_environment_turns_the_split_off():
    code = (
        "import numpy as np, threadpoolctl\n"
        "from fastbp.network import MLP\n"
        f"net = MLP({SIZES})\n"
        f"X = np.ones(({ROWS}, {SIZES[0]})); T = np.ones(({ROWS}, {SIZES[-1]}))\n"
        "with threadpoolctl.threadpool_limits(2, user_api='blas'):\n"
        "    net.core.step(X, T)\n"
        "print(net.core.split_steps)\n")
    env = dict(os.environ, FASTBP_NO_TEAM="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == "0"


# ---------------------------------------------------------------------------
# The compiled epoch against the same epoch written with step and the
# optimisers' loops
# ---------------------------------------------------------------------------

def loop_epoch(net, X, T, order, bs, loss, sw, kind, lr, momentum, beta1, beta2, eps, t,
               state, alpha, c, scale, held):
    """scikit-learn's epoch, batch by batch in Python: what epoch() does."""
    lc, rc = codes(loss=loss, reduction="mean")
    n = X.shape[0]
    total = 0.0
    idx_all = np.arange(n) if order is None else order
    nw = net.n_weights
    for start in range(0, n, bs):
        idx = idx_all[start:start + bs]
        m = len(idx)
        wb = None if sw is None else np.ascontiguousarray(sw[idx])
        norm = m if sw is None else float(np.sum(wb))
        if norm == 0.0:
            continue
        penalty = 0.5 * alpha * float(np.dot(net.params[:nw], net.params[:nw])) / norm
        wd = c * alpha / norm
        J = net.core.step(np.ascontiguousarray(X[idx]), np.ascontiguousarray(T[idx]), loss=lc,
                          reduction=rc, sample_weight=wb)
        if kind == "sgd":
            _optim.sgd_update(net.params, net.grads, lr, wd, nw)
        elif kind in ("momentum", "nesterov"):
            _optim.momentum_update(net.params, net.grads, state[0], lr, momentum,
                                   kind == "nesterov", wd, nw)
        else:
            t += 1
            _optim.adam_update(net.params, net.grads, state[0], state[1], lr, t, beta1=beta1,
                               beta2=beta2, eps=eps / np.sqrt(1.0 - beta2 ** t),
                               weight_decay=wd, n_decay=nw)
        if held:
            net.weights[-1][-held:] = 0.0
            net.biases[-1][-held:] = 0.0
        total += (J / scale + penalty) * m
    return total, t


@pytest.mark.parametrize("kind", ["sgd", "momentum", "nesterov", "adam"])
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("threads", [1, 2])
def test_epoch_is_the_step_by_step_loop(rng, kind, shuffle, threads):
    n, bs = 4 * ROWS - 40, ROWS  # a shorter last batch, still split
    X = rng.standard_normal((n, SIZES[0]))
    y = rng.integers(0, SIZES[-1], n)
    order = rng.permutation(n).astype(np.int64) if shuffle else None
    args = dict(lr=0.01, momentum=0.9, beta1=0.9, beta2=0.999, eps=1e-8, alpha=1e-3, c=1.0,
                scale=1.0, held=0)
    want, got = make_net("relu"), make_net("relu")
    states = [np.zeros(want.params.size), np.zeros(want.params.size)]
    mine = [np.zeros(got.params.size), np.zeros(got.params.size)]
    t_want = t_got = 0
    spec = UpdateSpec(UPDATES.index(kind), lr=args["lr"], momentum=args["momentum"],
                      beta1=args["beta1"], beta2=args["beta2"], eps=args["eps"],
                      m=mine[0] if kind != "sgd" else None, v=mine[1] if kind == "adam" else None)
    Xb, Tb = np.empty((bs, SIZES[0])), np.empty(bs, np.int64)
    limit = threadpoolctl.threadpool_limits(threads, user_api="blas")
    try:
        for _ in range(2):
            total_want, t_want = loop_epoch(want, X, y, order, bs, "cross_entropy", None, kind,
                                            t=t_want, state=states, **args)
            total_got = got.core.epoch(
                X, y, batch_size=bs, loss=1, order=order, buffers=(Xb, Tb), update=spec,
                objective=Objective(alpha=args["alpha"], grad_scale=args["c"],
                                    loss_scale=args["scale"], weigh_by_rows=True,
                                    eps_before_correction=True))
            t_got = spec.t
    finally:
        limit.restore_original_limits()
    if threads == 2:
        need_split(got.core, 0)
    assert t_got == t_want
    assert_close(total_got, total_want, rtol=1e-11)
    assert_close(got.params, want.params, rtol=1e-11)
    assert_close(got.grads, want.grads, rtol=1e-11)  # the last batch's gradient, whole
    if kind != "sgd":
        assert_close(mine[0], states[0], rtol=1e-11)


def test_epoch_weights_zero_weight_batches_and_held_units(rng):
    n, bs = 2 * ROWS, ROWS // 2
    X, T = rng.standard_normal((n, SIZES[0])), rng.standard_normal((n, SIZES[-1]))
    sw = rng.uniform(0.5, 2.0, n)
    order = rng.permutation(n).astype(np.int64)
    sw[order[bs:2 * bs]] = 0.0  # the second batch weighs nothing: skipped
    args = dict(lr=0.01, momentum=0.9, beta1=0.9, beta2=0.999, eps=1e-8, alpha=0.1, c=2.0,
                scale=2.0, held=1)
    want, got = make_net(), make_net()
    states = [np.zeros(want.params.size), np.zeros(want.params.size)]
    mine = [np.zeros(got.params.size), np.zeros(got.params.size)]
    Xb, Tb = np.empty((bs, SIZES[0])), np.empty((bs, SIZES[-1]))
    total_want, t_want = loop_epoch(want, X, T, order, bs, "squared_error", sw, "adam", t=0,
                                    state=states, **args)
    spec = UpdateSpec(Update.UPD_ADAM, lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8,
                      m=mine[0], v=mine[1])
    total_got = got.core.epoch(X, T, batch_size=bs, loss=0, order=order, buffers=(Xb, Tb),
                               sample_weight=sw, update=spec,
                               objective=Objective(alpha=0.1, grad_scale=2.0, loss_scale=2.0,
                                                   held_units=1, weigh_by_rows=True,
                                                   eps_before_correction=True))
    t_got = spec.t
    assert t_got == t_want == -(-n // bs) - 1
    assert_close(total_got, total_want, rtol=1e-11)
    assert_close(got.params, want.params, rtol=1e-11)
    assert not got.weights[-1][-1:].any() and not got.biases[-1][-1:].any()


N_PARAMS = MLP(SIZES).params.size


@pytest.mark.parametrize("change, err, match", [
    (dict(order=np.array([0, 1, 99], np.int64)), ValueError, "order holds row numbers"),
    (dict(order=np.arange(3)[::-1].astype(np.int32)), TypeError, "order must have dtype int64"),
    (dict(order=np.arange(6, dtype=np.int64)[::2]), ValueError, "order must be C-contiguous"),
    (dict(objective=Objective(held_units=10)), ValueError, "held_units"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(buffers=(np.empty((1, SIZES[0])), np.empty(2, np.int64))), ValueError, "X_buf"),
    (dict(buffers=(np.empty((2, SIZES[0])), np.empty(2, np.float64))), ValueError, "T_buf"),
    (dict(buffers=None), TypeError, "buffers must be a pair"),
    (dict(update=UpdateSpec(Update.UPD_MOMENTUM)), TypeError, "m must be a numpy.ndarray"),  # no velocity
    (dict(update=UpdateSpec(Update.UPD_MOMENTUM, m=np.zeros(2 * N_PARAMS)[::2])),
     ValueError, "m must be C-contiguous"),  # a strided view would be updated through a copy
    (dict(update=UpdateSpec(Update.UPD_ADAM, m=np.zeros(N_PARAMS), v=np.zeros(N_PARAMS - 1))),
     ValueError, "v must be"),
    (dict(sample_weight=np.ones(2)), ValueError, "sample_weight"),
    (dict(batch_weights=np.ones(5)), ValueError, "batch_weights"),
    (dict(after_gradient=3), TypeError, "after_gradient must be callable"),
    (dict(loss=7), ValueError, "loss code"),
])
def test_epoch_refuses_bad_arguments(change, err, match):
    net = make_net()
    n = 3
    X, y = np.zeros((n, SIZES[0])), np.zeros(n, np.int64)
    kw = dict(batch_size=2, loss=1, order=np.arange(n, dtype=np.int64),
              buffers=(np.empty((2, SIZES[0])), np.empty(2, np.int64)),
              update=UpdateSpec(Update.UPD_SGD, lr=0.1))
    kw.update(change)
    before = net.params.copy()
    with pytest.raises(err, match=match):
        net.core.epoch(X, y, **kw)
    assert np.array_equal(net.params, before)


def test_update_spec_refuses_an_unknown_kind():
    with pytest.raises(ValueError, match="update code"):
        UpdateSpec(9)


def test_epoch_refuses_state_that_shares_memory_with_the_network():
    net = make_net()
    X, y = np.zeros((3, SIZES[0])), np.zeros(3, np.int64)
    before = net.params.copy()
    with pytest.raises(ValueError, match="m and grads share memory"):
        net.core.epoch(X, y, batch_size=2, loss=1,
                       update=UpdateSpec(Update.UPD_MOMENTUM, lr=0.1, momentum=0.9, m=net.grads))
    m = np.zeros(net.params.size)
    with pytest.raises(ValueError, match="m and v share memory"):
        net.core.epoch(X, y, batch_size=2, loss=1,
                       update=UpdateSpec(Update.UPD_ADAM, lr=0.1, beta1=0.9, beta2=0.999,
                                         eps=1e-8, m=m, v=m))
    assert np.array_equal(net.params, before)


# ---------------------------------------------------------------------------
# The optimisers' update made inside the compiled step (MLP.train_step and
# MLP.fit with fastbp's own optimisers) against their Python-level step
# ---------------------------------------------------------------------------

class PlainAdam(Adam):
    """A subclass: its step could be its own, so it is never fused."""


class PlainMomentum(Momentum):
    pass


class PlainSGD(SGD):
    pass


OPTIMIZER_PAIRS = [
    (lambda: SGD(lr=0.05, weight_decay=0.01), lambda: PlainSGD(lr=0.05, weight_decay=0.01)),
    (lambda: Momentum(lr=0.05, weight_decay=0.01), lambda: PlainMomentum(lr=0.05, weight_decay=0.01)),
    (lambda: Momentum(lr=0.05, nesterov=True), lambda: PlainMomentum(lr=0.05, nesterov=True)),
    (lambda: Adam(lr=0.01, weight_decay=0.01), lambda: PlainAdam(lr=0.01, weight_decay=0.01)),
]


def optimizer_state(opt):
    """What an optimiser carries from one step to the next: Adam's step count
    and moments, the velocity of momentum (and Nesterov's); SGD has none."""
    if isinstance(opt, Adam):
        return {"t": opt.t, "m": opt.m, "v": opt.v}
    if isinstance(opt, Momentum):
        return {"velocity": opt.velocity}
    assert isinstance(opt, SGD), opt
    return {}


def assert_same_state(fused, plain, steps, exact):
    """The fused optimiser's state is the plain one's after ``steps`` steps:
    Adam's t is ``steps`` on both, every state array was written (not left
    at its zeros) and equal, bit for bit when ``exact``."""
    got, want = optimizer_state(fused), optimizer_state(plain)
    assert got.keys() == want.keys()
    if "t" in got:
        assert got["t"] == want["t"] == steps
    for name in sorted(got.keys() - {"t"}):
        assert got[name] is not None and want[name] is not None, name
        assert got[name].any() and want[name].any(), f"{name} was never written"
        if exact:
            assert np.array_equal(got[name], want[name]), f"{name} differs after {steps} steps"
        else:
            assert_close(got[name], want[name])


def assert_sgd_rule(net, opt, before):
    """SGD keeps no state: the step itself must be θ ← θ − lr (g + λ θ), the
    penalty on the weights only, g the batch gradient left in grads."""
    g = net.grads.copy()
    g[:net.n_weights] += opt.weight_decay * before[:net.n_weights]
    assert_close(net.params, before - opt.lr * g)


@pytest.mark.parametrize("make_fused, make_plain", OPTIMIZER_PAIRS)
@pytest.mark.parametrize("rows", [ROWS, 9])  # split, and too small to split
def test_train_step_fuses_the_optimisers_update(rng, make_fused, make_plain, rows):
    X, T = rng.standard_normal((rows, SIZES[0])), rng.standard_normal((rows, SIZES[-1]))
    fused_net, plain_net = make_net(), make_net()
    fused, plain = make_fused(), make_plain()
    assert fused.update_spec(fused_net.params) is not None and plain.update_spec(plain_net.params) is None
    for step in range(1, 5):
        before = fused_net.params.copy()
        with one_thread():  # the same sums on both sides: bit for bit
            J1 = fused_net.train_step(X, T, optimizer=fused)
            J2 = plain_net.train_step(X, T, optimizer=plain)
        assert J1 == J2
        assert np.array_equal(fused_net.params, plain_net.params)
        assert np.array_equal(fused_net.grads, plain_net.grads)
        assert_same_state(fused, plain, step, exact=True)  # what the next step starts from
        if type(fused) is SGD:
            assert_sgd_rule(fused_net, fused, before)
    before = fused_net.params.copy()
    split_before = fused_net.core.split_steps
    with two_threads():
        J1 = fused_net.train_step(X, T, optimizer=fused)
        J2 = plain_net.train_step(X, T, optimizer=plain)
    if rows == ROWS:
        need_split(fused_net.core, split_before)
    assert_close(J1, J2)
    assert_close(fused_net.params, plain_net.params)
    assert_close(fused_net.grads, plain_net.grads)
    assert_same_state(fused, plain, 5, exact=False)  # each thread's half of it too
    if type(fused) is SGD:
        assert_sgd_rule(fused_net, fused, before)


@pytest.mark.parametrize("make_fused, make_plain", OPTIMIZER_PAIRS[1:4:2])
def test_fit_with_the_fused_update_is_the_step_by_step_fit(rng, make_fused, make_plain):
    X = rng.standard_normal((3 * ROWS, SIZES[0]))
    y = rng.integers(0, SIZES[-1], 3 * ROWS)
    fused_net = make_net("relu", "softmax")
    plain_net = make_net("relu", "softmax")
    kw = dict(epochs=3, batch_size=ROWS, loss="cross_entropy", seed=5)
    h1 = fused_net.fit(X, y, optimizer=make_fused(), **kw)
    h2 = plain_net.fit(X, y, optimizer=make_plain(), **kw)
    assert_close(h1["loss"], h2["loss"])
    assert_close(fused_net.params, plain_net.params)


def test_fused_update_refuses_bad_state_before_any_change():
    net = make_net()
    X, T = np.zeros((4, SIZES[0])), np.zeros((4, SIZES[-1]))
    before = net.params.copy()
    with pytest.raises(ValueError, match="t must be >= 0"):
        net.core.step(X, T, update=UpdateSpec(Update.UPD_ADAM, lr=0.1, beta1=0.9, beta2=0.999,
                                              eps=1e-8, t=-1, m=np.zeros(N_PARAMS),
                                              v=np.zeros(N_PARAMS)))
    with pytest.raises(ValueError, match="m and params share memory"):
        net.core.step(X, T, update=UpdateSpec(Update.UPD_MOMENTUM, lr=0.1, momentum=0.9,
                                              m=net.params))
    with pytest.raises(ValueError, match="loss code"):
        net.core.step(X, T, loss=7)
    assert np.array_equal(net.params, before)


# ---------------------------------------------------------------------------
# What a pass reports besides the loss
# ---------------------------------------------------------------------------

def test_core_reports_the_worst_row_cross_entropy(rng):
    # used by fastbp.sklearn to see, without another pass, whether any
    # probability fell below scikit-learn's clipping threshold
    net = MLP([4, 6, 3], activation="tanh", seed=1)
    X, y = rng.standard_normal((9, 4)), rng.integers(0, 3, 9)
    w = rng.uniform(0.5, 2.0, 9)
    w[np.argmax(-np.log(softmax(net.forward(X))[np.arange(9), y]))] = 0.0  # the worst row weighs 0
    for sample_weight in (None, w):
        net.gradients(X, y, loss="cross_entropy", sample_weight=sample_weight)
        row_loss = -np.log(softmax(net.forward(X))[np.arange(9), y])
        if sample_weight is not None:
            row_loss = row_loss[sample_weight > 0]
        assert net.core.worst_row_loss == pytest.approx(row_loss.max(), rel=1e-12)


def test_core_reports_the_worst_one_label_binary_cross_entropy(rng):
    net = MLP([4, 6, 3], activation="tanh", output_activation="sigmoid", seed=1)
    X = rng.standard_normal((9, 4))
    T = (rng.uniform(size=(9, 3)) < 0.5).astype(float)
    P = net.forward(X)
    per = -(T * np.log(P) + (1 - T) * np.log(1 - P))
    w = rng.uniform(0.5, 2.0, 9)
    w[np.unravel_index(np.argmax(per), per.shape)[0]] = 0.0  # the worst label's row weighs 0
    for sample_weight in (None, w):
        net.gradients(X, T, loss="binary_cross_entropy", sample_weight=sample_weight)
        keep = per if sample_weight is None else per[sample_weight > 0]
        assert net.core.worst_row_loss == pytest.approx(keep.max(), rel=1e-12)


@pytest.mark.parametrize("loss", ["binary_cross_entropy", "poisson"])
def test_epoch_of_a_fused_loss_is_its_steps(rng, loss):
    # the compiled epoch (shuffled, weighted, split batches) against train_step per batch
    n, bs = 3 * ROWS, ROWS
    X = rng.standard_normal((n, SIZES[0])) * 0.3
    T = targets(rng, loss, n)
    w = rng.uniform(0.5, 2.0, n)
    order = rng.permutation(n).astype(np.int64)
    a, b = make_net("tanh", OUTPUT_OF[loss]), make_net("tanh", OUTPUT_OF[loss])
    lc, rc = codes(loss=loss, reduction="mean")
    total = a.core.epoch(X, T, batch_size=bs, loss=lc, reduction=rc, order=order,
                         buffers=(np.empty((bs, SIZES[0])), np.empty((bs, SIZES[-1]))),
                         update=UpdateSpec(Update.UPD_SGD, lr=0.05), sample_weight=w)
    want = 0.0
    for start in range(0, n, bs):
        rows = order[start:start + bs]
        J = b.train_step(np.ascontiguousarray(X[rows]), np.ascontiguousarray(T[rows]), lr=0.05,
                         loss=loss, sample_weight=np.ascontiguousarray(w[rows]))
        want += J * w[rows].sum()
    assert_close(total, want, rtol=1e-11)
    assert_close(a.params, b.params, rtol=1e-11)


def test_forward_applies_the_output_code():
    sizes, rng = [3, 5, 2], np.random.default_rng(0)
    X = rng.standard_normal((7, 3))
    logits = MLP(sizes, activation="relu", output_activation="identity", seed=2)
    want = logits.forward(X)
    for out, f in (("softmax", softmax), ("exp", np.exp)):
        net = MLP(sizes, activation="relu", output_activation=out, seed=2)
        assert_close(net.forward(X), f(want))
    with pytest.raises(ValueError, match="output code"):
        _network.NetworkCore([2, 2], [0], np.zeros(6), np.zeros(6), output=7)


# -- a CSR X (fastbp._sparse) ------------------------------------------------

def _csr_pair(n, k, density, seed):
    """(X as the core reads it: canonical float64 CSR, int64 indices; the
    same X dense), with an empty row and an empty column."""
    import scipy.sparse as sp
    from fastbp.inputs import as_inputs
    X = sp.random(n, k, density=density, format="lil", random_state=seed)
    X[0, :] = 0.0          # a row with no entries
    X[:, k - 1] = 0.0      # a column with no entries
    X = as_inputs(X, k)
    return X, np.ascontiguousarray(X.toarray())


@pytest.mark.parametrize("loss,labels", [(0, False), (1, True), (1, False)])
def test_csr_step_equals_dense(rng, loss, labels):
    Xs, Xd = _csr_pair(70, 50, 0.1, 1)
    a, b = MLP([50, 9, 4], activation="tanh", seed=1), MLP([50, 9, 4], activation="tanh", seed=1)
    T = rng.integers(0, 4, 70) if labels else rng.random((70, 4))
    if loss == 1 and not labels:
        T = T / T.sum(1, keepdims=True)
    w = rng.random(70)
    for kw in ({}, {"sample_weight": w}):
        Ja = a.core.step(Xs, T, loss=loss, reduction=2, **kw)
        Jb = b.core.step(Xd, T, loss=loss, reduction=2, **kw)
        assert Ja == pytest.approx(Jb, rel=1e-10)
        np.testing.assert_allclose(a.grads, b.grads, rtol=1e-10, atol=1e-13)
    na, nb = np.empty(70), np.empty(70)
    a.core.per_example_grad_norms(Xs, T, na, loss=loss, reduction=2, sample_weight=w)
    b.core.per_example_grad_norms(Xd, T, nb, loss=loss, reduction=2, sample_weight=w)
    np.testing.assert_allclose(na, nb, rtol=1e-10)
    a.core.reserve(16)  # forward in chunks of the workspace's rows
    b.core.reserve(16)
    np.testing.assert_allclose(a.core.forward(Xs, np.empty((70, 4))),
                               b.core.forward(Xd, np.empty((70, 4))), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("shuffled", [False, True])
def test_csr_epoch_equals_dense_and_is_not_split(rng, shuffled):
    # (where the BLAS has two threads the dense epoch's batches are split)
    Xs, Xd = _csr_pair(203, 60, 0.08, 2)
    T = rng.integers(0, 3, 203)
    w = rng.random(203)
    runs = []
    for X in (Xs, Xd):
        net = MLP([60, 64, 3], activation="relu", seed=2)
        opt = Adam(lr=1e-2)
        order = np.random.default_rng(5).permutation(203) if shuffled else None
        bufs = (None if X is Xs else np.empty((100, 60)), np.empty(100, np.int64)) if shuffled else None
        total = net.core.epoch(X, T, batch_size=100, loss=1, update=opt.update_spec(net.params),
                               order=order, buffers=bufs, sample_weight=w,
                               objective=Objective(alpha=1e-3, held_units=1))
        runs.append((total, net.params.copy(), net.core.split_steps))
    assert runs[0][0] == pytest.approx(runs[1][0], rel=1e-10)
    np.testing.assert_allclose(runs[0][1], runs[1][1], rtol=1e-10, atol=1e-13)
    assert runs[0][2] == 0  # a CSR X is never split over two threads


def test_csr_refusals():
    Xs, Xd = _csr_pair(10, 8, 0.3, 3)
    net = MLP([8, 3, 2], seed=0)
    T = np.zeros((10, 2))
    with pytest.raises(ValueError, match="X_buf must be None for a CSR X"):
        net.core.epoch(Xs, T, batch_size=4, order=np.arange(10, dtype=np.int64),
                       buffers=(np.empty((4, 8)), np.empty((4, 2))))
    import scipy.sparse as sp
    with pytest.raises(TypeError, match="X.indices must have dtype int64"):
        net.core.step(sp.csr_matrix(Xd), T)  # (as_inputs converts once)
    with pytest.raises(TypeError, match="scipy.sparse CSR"):
        net.core.step(Xs.tocsc(), T)
    with pytest.raises(ValueError, match=r"X must have 9 columns, got shape \(10, 8\)"):
        MLP([9, 3, 2]).core.step(Xs, T)


@pytest.mark.parametrize("activation", ["silu", "softplus", "leaky_relu"])
def test_csr_step_equals_dense_for_the_new_activations(rng, activation):
    # silu's first layer keeps Z from the sparse product as from the dense one
    Xs, Xd = _csr_pair(40, 30, 0.2, 4)
    a, b = (MLP([30, 7, 3], activation=activation, seed=2) for _ in range(2))
    T = rng.random((40, 3))
    Ja, Jb = a.core.step(Xs, T, loss=0, reduction=2), b.core.step(Xd, T, loss=0, reduction=2)
    assert Ja == pytest.approx(Jb, rel=1e-10)
    np.testing.assert_allclose(a.grads, b.grads, rtol=1e-10, atol=1e-13)
