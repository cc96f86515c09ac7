"""fastbp.MLP: gradients against a network composed of fastbp.reference
kernels, against finite differences and seed 000's path sums; per-example
norms; views; input checks; no allocation per training step; callers' arrays
left untouched; its thread model; cross entropy at logits of ±1e300; fuzzed
arguments of its public methods; flat resident memory over many steps.

(The compiled core it runs on, fastbp._network, is in tests/test__network.py;
fit's loop in tests/test_training.py; save/load in tests/test_checkpoint.py.)"""

import itertools
import os
import subprocess
import sys
import textwrap
import threading
import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastbp import network
from fastbp import reference as ref
from fastbp.network import ACTIVATIONS, MLP

from conftest import RSS_BOUND, growth, params_bytes, random_regression, softmax, z_buffer

RTOL = 1e-10


# ---------------------------------------------------------------------------
# The oracle: the same network written with the NumPy reference kernels.
# ---------------------------------------------------------------------------

# the output activation each fused loss trains (cross_entropy: logits)
OUTPUT_OF = {"squared_error": "identity", "cross_entropy": "identity",
             "binary_cross_entropy": "sigmoid", "poisson": "exp"}
FUSED = ("cross_entropy", "binary_cross_entropy", "poisson")


def loss_targets(rng, loss, n, d):
    """Targets of a loss: normal values, labels, 0/1 rows (with a few soft
    ones), Poisson counts (with a few non-integer rates)."""
    if loss == "cross_entropy":
        return rng.integers(0, d, n)
    if loss == "binary_cross_entropy":
        T = (rng.uniform(size=(n, d)) < 0.5).astype(float)
        return np.where(rng.uniform(size=(n, d)) < 0.2, rng.uniform(size=(n, d)), T)
    if loss == "poisson":
        T = rng.poisson(2.0, (n, d)).astype(float)
        return np.where(rng.uniform(size=(n, d)) < 0.2, rng.uniform(0, 3, (n, d)), T)
    return rng.normal(size=(n, d))


def ref_loss(Y, T, loss, reduction, weights=None):
    """(J, ∂J/∂Y): squared error from reference.squared_error, cross entropy
    of softmax(Y) written out, binary cross entropy and Poisson from their
    twins (on the logits Y); ``weights`` scale example i by w_i N / Σ w."""
    if loss == "binary_cross_entropy":
        return ref.binary_cross_entropy(Y, T, reduction, weights)
    if loss == "poisson":
        return ref.poisson(Y, T, reduction, weights)
    n = Y.shape[0]
    r = np.ones(n) if weights is None else weights * n / weights.sum()
    if loss == "squared_error":
        scale = {"sum": 1.0, "half": 0.5, "mean": 1.0 / max(n, 1)}[reduction]
        J = scale * float(np.sum(r[:, None] * (T - Y) ** 2))
        _, dY = ref.squared_error(Y, T, reduction)
        return J, r[:, None] * dY
    if T.ndim == 1:
        T = np.eye(Y.shape[1])[T]
    scale = {"sum": 1.0, "mean": 1.0 / max(n, 1)}[reduction]
    P = softmax(Y)
    J = -scale * float(np.sum(r[:, None] * T * np.log(P)))
    return J, scale * r[:, None] * (T.sum(axis=1, keepdims=True) * P - T)


def ref_network(net, X, T, loss="squared_error", reduction="sum", weights=None):
    """(J, dWs, dbs) by reference.dense_forward / dense_backward / the loss."""
    acts = list(net.activations)
    if loss in FUSED:
        acts[-1] = "identity"  # the output activation lives in the loss
    A, Zs = [X], []
    for W, b, a in zip(net.weights, net.biases, acts):
        Zs.append(z_buffer(a, A[-1].shape[0], W.shape[0]))
        A.append(ref.dense_forward(A[-1], W, b, a, Z=Zs[-1]))
    J, dY = ref_loss(A[-1], T, loss, reduction, weights)
    dWs, dbs = [None] * len(acts), [None] * len(acts)
    for l in reversed(range(len(acts))):
        dX, dWs[l], dbs[l] = ref.dense_backward(dY, A[l], net.weights[l], A[l + 1], acts[l],
                                                need_dX=l > 0, Z=Zs[l])
        dY = dX
    return J, dWs, dbs


def random_net(rng, depth, activation, output="identity", max_width=7):
    """A net of random widths, each in [1, max_width]."""
    sizes = [int(rng.integers(1, max_width + 1)) for _ in range(depth + 1)]
    return MLP(sizes, activation=activation, output_activation=output,
               seed=int(rng.integers(1 << 30)))


def assert_close(got, want, rtol=RTOL):
    want = np.asarray(want)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * max(1.0, np.abs(want).max(initial=0.0)))


def assert_grads_match(net, X, T, **kw):
    J, gw, gb = net.gradients(X, T, **kw)
    Jr, rw, rb = ref_network(net, X, T, **{k: v for k, v in kw.items() if k != "sample_weight"},
                             weights=kw.get("sample_weight"))
    assert_close(J, Jr)
    for g, r in zip(gw + gb, rw + rb):
        assert g.shape == r.shape
        assert_close(g, r)


# ---------------------------------------------------------------------------
# Gradients against the reference network
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("depth", [1, 2, 3, 4])
@pytest.mark.parametrize("reduction", ["sum", "half", "mean"])
def test_squared_error_gradients_match_reference(activation, depth, reduction):
    rng = np.random.default_rng([depth, len(activation), len(reduction)])
    net = random_net(rng, depth, activation, output=activation)
    n = int(rng.integers(1, 9))
    X = rng.normal(size=(n, net.sizes[0]))
    T = rng.normal(size=(n, net.sizes[-1]))
    assert_grads_match(net, X, T, reduction=reduction)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_cross_entropy_gradients_match_reference(activation, depth):
    rng = np.random.default_rng([depth, len(activation), 7])
    net = random_net(rng, depth, activation)
    n = int(rng.integers(1, 9))
    X = rng.normal(size=(n, net.sizes[0]))
    labels = rng.integers(0, net.sizes[-1], size=n)
    onehot = np.eye(net.sizes[-1])[labels]
    for reduction in ("sum", "mean"):
        assert_grads_match(net, X, labels, loss="cross_entropy", reduction=reduction)
        # labels stand for one-hot rows, exactly
        a, b = net.gradients(X, labels, "cross_entropy", reduction), net.gradients(X, onehot, "cross_entropy", reduction)
        assert a[0] == pytest.approx(b[0], rel=1e-14)
        for g, h in zip(a[1] + a[2], b[1] + b[2]):
            np.testing.assert_allclose(g, h, rtol=1e-13, atol=1e-15)
    # soft targets (rows need not sum to one: gradient (Σ T) P − T)
    soft = rng.uniform(size=(n, net.sizes[-1]))
    assert_grads_match(net, X, soft, loss="cross_entropy", reduction="sum")


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("loss", ["binary_cross_entropy", "poisson"])
@pytest.mark.parametrize("reduction", ["sum", "half", "mean"])
def test_fused_binary_and_poisson_gradients_match_reference(activation, depth, loss, reduction):
    rng = np.random.default_rng([depth, len(activation), len(loss), len(reduction)])
    net = random_net(rng, depth, activation, output=OUTPUT_OF[loss])
    for n in (1, int(rng.integers(2, 9)), 70):  # N=1, a few rows, more than one chunk
        X = rng.normal(size=(n, net.sizes[0]))
        T = loss_targets(rng, loss, n, net.sizes[-1])
        assert_grads_match(net, X, T, loss=loss, reduction=reduction)
        assert_grads_match(net, X, T, loss=loss, reduction=reduction,
                           sample_weight=rng.uniform(0.0, 2.0, n) + (n == 1))


@pytest.mark.parametrize("sizes", [[1, 1], [3, 40, 1], [5, 64, 33], [200, 3, 2]])
@pytest.mark.parametrize("loss", ["binary_cross_entropy", "poisson"])
def test_fused_losses_on_wide_tall_and_narrow_nets(rng, sizes, loss):
    net = MLP(sizes, activation="relu", output_activation=OUTPUT_OF[loss], seed=1)
    for b in net.biases:
        b[...] = rng.normal(size=b.shape) * 0.3
    X = rng.normal(size=(129, sizes[0])) * 0.5
    assert_grads_match(net, X, loss_targets(rng, loss, 129, sizes[-1]), loss=loss, reduction="mean")


@pytest.mark.parametrize("n", [63, 64, 65, 150])
def test_cross_entropy_over_several_chunks_of_rows(rng, n):
    # the exponentials are taken 64 rows at a time: every row, every chunk
    # boundary, and the per-row maxima of each chunk must line up
    net = MLP([5, 4, 7], activation="tanh", seed=3)
    X = rng.normal(size=(n, 5)) * 4.0
    labels = rng.integers(0, 7, size=n)
    w = rng.uniform(0.1, 2.0, n)
    assert_grads_match(net, X, labels, loss="cross_entropy", reduction="sum")
    assert_grads_match(net, X, rng.uniform(size=(n, 7)), loss="cross_entropy", reduction="mean",
                       sample_weight=w)


@given(seed=st.integers(0, 2**32 - 1), depth=st.integers(1, 4),
       acts=st.lists(st.sampled_from(ACTIVATIONS), min_size=4, max_size=4),
       n=st.integers(0, 6))
def test_mixed_activations_match_reference(seed, depth, acts, n):
    rng = np.random.default_rng(seed)
    sizes = [int(rng.integers(1, 8)) for _ in range(depth + 1)]
    net = MLP(sizes, activation=acts[:depth - 1], output_activation=acts[-1], seed=seed)
    X = rng.normal(size=(n, sizes[0]))
    T = rng.normal(size=(n, sizes[-1]))
    assert_grads_match(net, X, T, reduction="mean")


def test_wide_layers_take_the_blas_path():
    rng = np.random.default_rng(3)
    net = MLP([65, 97, 33, 5], activation=["tanh", "relu"], output_activation="sigmoid", seed=1)
    X = rng.normal(size=(41, 65))
    T = rng.uniform(size=(41, 5))
    assert_grads_match(net, X, T, reduction="sum")
    logits_net = MLP([65, 97, 33, 5], activation="sigmoid", seed=2)
    assert_grads_match(logits_net, X, rng.integers(0, 5, 41), loss="cross_entropy", reduction="mean")


def test_forward_predict_match_reference():
    rng = np.random.default_rng(4)
    net = MLP([5, 9, 3], activation="tanh", output_activation="sigmoid", seed=2)
    X = rng.normal(size=(1100, 5))  # more rows than one chunk
    A = X
    for W, b, a in zip(net.weights, net.biases, net.activations):
        A = ref.dense_forward(A, W, b, a)
    assert_close(net.forward(X), A)
    np.testing.assert_array_equal(net.predict(X.tolist()), net.forward(X))


def test_exp_output_forward_is_exp_of_the_logits():
    rng = np.random.default_rng(6)
    net = MLP([4, 6, 2], activation="tanh", output_activation="exp", seed=0)
    X = rng.normal(size=(1100, 4))  # more rows than one chunk
    logits = ref.dense_forward(ref.dense_forward(X, net.weights[0], net.biases[0], "tanh"),
                               net.weights[1], net.biases[1], "identity")
    assert_close(net.forward(X), np.exp(logits))
    np.testing.assert_array_equal(net.predict(X.tolist()), net.forward(X))
    assert net.activations == ("tanh", "exp") and net.core.output == 2


def test_softmax_output_gives_probabilities():
    rng = np.random.default_rng(5)
    net = MLP([4, 6, 3], activation="relu", output_activation="softmax", seed=0)
    net.weights[1][...] *= 300.0  # huge logits: the stable form must not overflow
    X = rng.normal(size=(20, 4))
    P = net.forward(X)
    assert np.isfinite(P).all()
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-14)
    logits = ref.dense_forward(ref.dense_forward(X, net.weights[0], net.biases[0], "relu"),
                               net.weights[1], net.biases[1], "identity")
    assert_close(P, softmax(logits))


def test_cross_entropy_is_stable_for_huge_logits():
    net = MLP([2, 3], output_activation="identity", seed=0)
    net.weights[0][...] = [[1e4, 0], [0, 1e4], [-1e4, 0]]
    X = np.array([[1.0, 0.0], [0.0, 1.0]])
    J, gw, gb = net.gradients(X, np.array([1, 1]), loss="cross_entropy")
    # row 0: logits (1e4, 0, −1e4), label 1: loss 1e4, P = (1, 0, 0)
    assert J == pytest.approx(1e4, rel=1e-12)
    assert all(np.isfinite(g).all() for g in gw + gb)
    np.testing.assert_allclose(gb[0], [1.0, -1.0, 0.0], atol=1e-12)


@pytest.mark.parametrize("reduction", ["sum", "half", "mean"])
def test_binary_cross_entropy_is_stable_and_right_for_logits_of_1e3(reduction):
    # one linear layer: the logits are W x + b = ±1e3 and 0
    net = MLP([2, 3], output_activation="sigmoid", seed=0)
    net.weights[0][...] = [[1e3, 0.0], [-1e3, 0.0], [0.0, 1.0]]
    X = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.0]])
    T = np.array([[1.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.25, 0.5, 1.0]])
    Z = X @ net.weights[0].T
    P = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.5, 0.5, 0.5]])
    # −t log p − (1−t) log(1−p): a wrong sign at |z| = 1e3 costs 1e3 (+ log 2 at z = 0)
    per = np.array([[0.0, 1e3, np.log(2)], [1e3, 1e3, np.log(2)], [np.log(2)] * 3])
    s = {"sum": 1.0, "half": 0.5, "mean": 1.0 / 3}[reduction]
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        J, gW, gb = net.gradients(X, T, loss="binary_cross_entropy", reduction=reduction)
        assert J == pytest.approx(s * per.sum(), rel=1e-13)
        assert net.loss(X, T, "binary_cross_entropy", reduction) == pytest.approx(J, rel=1e-13)
        np.testing.assert_allclose(gb[0], s * (P - T).sum(axis=0), rtol=1e-13, atol=1e-300)
        np.testing.assert_allclose(gW[0], s * (P - T).T @ X, rtol=1e-13, atol=1e-300)
        np.testing.assert_array_equal(net.predict(X), P)
        net.train_step(X, T, lr=1e-3, loss="binary_cross_entropy", reduction=reduction)
    assert np.isfinite(net.params).all()
    assert ref.binary_cross_entropy(Z, T, reduction)[0] == pytest.approx(J, rel=1e-13)


def test_poisson_is_finite_for_large_negative_logits_and_inf_past_exp_overflow():
    net = MLP([1, 1], output_activation="exp", seed=0)
    net.weights[0][...] = 1.0
    T = np.array([[3.0], [0.0], [2.0]])
    X = np.array([[-1e3], [-1e3], [5.0]])
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        J, gW, gb = net.gradients(X, T, loss="poisson")
    # exp(−1e3) = 0: J = −t z + t log t − t;  z = 5: e^5 − 2·5 + 2 log 2 − 2
    want = 3e3 + 3 * np.log(3) - 3 + 0.0 + (np.exp(5) - 10 + 2 * np.log(2) - 2)
    assert J == pytest.approx(want, rel=1e-13)
    np.testing.assert_allclose(gb[0], [-3.0 + 0.0 + np.exp(5) - 2.0], rtol=1e-13)
    # past log(DBL_MAX) ≈ 709.78 exp overflows: J and the gradient are +inf, never NaN
    J, gW, gb = net.gradients(np.array([[710.0], [1.0]]), np.array([[1.0], [1.0]]), loss="poisson")
    assert J == np.inf and gb[0][0] == np.inf and gW[0][0, 0] == np.inf
    # a perfect fit has loss 0 (half the deviance, its constant kept)
    net.weights[0][...] = 0.0
    net.biases[0][...] = np.log(2.5)
    assert net.loss(np.zeros((4, 1)), np.full((4, 1), 2.5), "poisson") == pytest.approx(0.0, abs=1e-15)


# ---------------------------------------------------------------------------
# Finite differences and seed 000's path sums: oracles independent of ours
# ---------------------------------------------------------------------------

def numeric_gradient(net, X, T, loss, reduction, h=1e-6):
    p = net.params
    g = np.empty_like(p)
    for j in range(p.size):
        old = p[j]
        p[j] = old + h
        up = net.gradients(X, T, loss, reduction)[0]
        p[j] = old - h
        down = net.gradients(X, T, loss, reduction)[0]
        p[j] = old
        g[j] = (up - down) / (2 * h)
    return g


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss", ["squared_error", "cross_entropy", "binary_cross_entropy", "poisson"])
def test_gradients_match_finite_differences(activation, loss):
    rng = np.random.default_rng(11)
    net = MLP([3, 5, 4, 3], activation=activation, output_activation=OUTPUT_OF[loss], seed=3)
    for b in net.biases:  # b = 0 would put relu units of all-zero rows on the kink
        b[...] = rng.normal(size=b.shape)
    X = rng.normal(size=(6, 3))
    T = loss_targets(rng, loss, 6, 3)
    J, gw, gb = net.gradients(X, T, loss, "mean")
    analytic = np.concatenate([g.ravel() for g in gw] + gb)
    numeric = numeric_gradient(net, X, T, loss, "mean")
    # relu's kink: no input here sits within h of zero pre-activation (seeded)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("activation", ["leaky_relu", "elu", "softplus", "silu"])
def test_output_activation_gradients_match_finite_differences(activation):
    """The new activations on the output layer (squared error): g' at the
    output, silu's from the Z its layer keeps."""
    rng = np.random.default_rng(12)
    net = MLP([3, 5, 2], activation="tanh", output_activation=activation, seed=4)
    for b in net.biases:
        b[...] = rng.normal(size=b.shape)
    X, T = rng.normal(size=(7, 3)), rng.normal(size=(7, 2))
    J, gw, gb = net.gradients(X, T, "squared_error", "mean")
    analytic = np.concatenate([g.ravel() for g in gw] + gb)
    numeric = numeric_gradient(net, X, T, "squared_error", "mean")
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7)


def path_sum_gradients(Ws, x, t):
    """∂E/∂w for E = ½ Σ (t − y)² of a linear, bias-free net, by seed 000's
    path form: ∂E/∂W^ℓ[j, i] = a_i^(ℓ−1) Σ_k δ_k Σ_paths(j→k) Π w."""
    acts = [x]
    for W in Ws:
        acts.append(W @ acts[-1])
    delta = acts[-1] - t
    L = len(Ws)
    grads = []
    for l in range(L):
        G = np.zeros_like(Ws[l])
        for j, i in itertools.product(range(Ws[l].shape[0]), range(Ws[l].shape[1])):
            total = 0.0
            # neurons visited after layer l: one per later layer, ending at output k
            widths = [W.shape[0] for W in Ws[l + 1:]]
            for path in itertools.product(*[range(w) for w in widths]):
                prod, prev = 1.0, j
                for m, node in enumerate(path):
                    prod *= Ws[l + 1 + m][node, prev]
                    prev = node
                total += delta[prev] * prod
            G[j, i] = acts[l][i] * total
        grads.append(G)
    return grads


def test_linear_net_matches_seed_000_path_sums():
    rng = np.random.default_rng(0)
    net = MLP([2, 3, 2, 2], activation="identity", seed=5)
    x, t = rng.normal(size=2), rng.normal(size=2)
    _, gw, gb = net.gradients(x[None, :], t[None, :], reduction="half")
    for g, want in zip(gw, path_sum_gradients(net.weights, x, t)):
        np.testing.assert_allclose(g, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("reduction", ["half", "sum", "mean"])
def test_linear_net_matches_fastbp_paths(reduction):
    paths = pytest.importorskip("fastbp.paths")  # the graph issue's path-sum oracle
    rng = np.random.default_rng(1)
    net = MLP([3, 2, 3, 2], activation="identity", seed=6)
    for b in net.biases:
        b[...] = rng.normal(size=b.shape)
    X, T = rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
    _, gw, gb = net.gradients(X, T, reduction=reduction)
    want_w = paths.gradient(list(net.weights), X, T, list(net.biases), reduction=reduction)
    want_b = paths.bias_gradient(list(net.weights), X, T, list(net.biases), reduction=reduction)
    for g, want in zip(gw + gb, list(want_w) + list(want_b)):
        np.testing.assert_allclose(g, want, rtol=1e-11, atol=1e-13)


# ---------------------------------------------------------------------------
# Sample weights and per-example gradient norms
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("loss", ["squared_error", "cross_entropy", "binary_cross_entropy", "poisson"])
def test_sample_weight_matches_reference_and_repetition(loss):
    rng = np.random.default_rng(8)
    net = MLP([4, 6, 3], activation="tanh", output_activation=OUTPUT_OF[loss], seed=1)
    X = rng.normal(size=(5, 4))
    T = loss_targets(rng, loss, 5, 3)
    w = np.array([2.0, 1.0, 0.0, 3.0, 1.0])
    assert_grads_match(net, X, T, loss=loss, reduction="sum", sample_weight=w)
    # weight k = the row repeated k times, under the mean
    rep = np.repeat(np.arange(5), w.astype(int))
    a = net.gradients(X, T, loss, "mean", sample_weight=w)
    b = net.gradients(X[rep], T[rep], loss, "mean")
    assert a[0] == pytest.approx(b[0], rel=1e-12)
    for g, h in zip(a[1] + a[2], b[1] + b[2]):
        np.testing.assert_allclose(g, h, rtol=1e-12, atol=1e-14)
    # all-equal weights of any scale change nothing
    c = net.gradients(X, T, loss, "sum", sample_weight=np.full(5, 7.5))
    d = net.gradients(X, T, loss, "sum")
    assert c[0] == pytest.approx(d[0], rel=1e-13)


@pytest.mark.parametrize("bad, match", [
    (np.array([1.0, -1.0, 1.0]), ">= 0"),
    (np.zeros(3), "positive sum"),
    (np.array([1.0, np.nan, 1.0]), "finite"),
    (np.ones(4), r"shape \(3,\)"),
])
def test_bad_sample_weight(bad, match):
    net = MLP([2, 1], seed=0)
    with pytest.raises(ValueError, match=match):
        net.gradients(np.ones((3, 2)), np.ones((3, 1)), sample_weight=bad)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss, reduction", [("squared_error", "sum"), ("squared_error", "mean"),
                                             ("squared_error", "half"), ("cross_entropy", "mean"),
                                             ("binary_cross_entropy", "mean"),
                                             ("binary_cross_entropy", "half"), ("poisson", "sum"),
                                             ("poisson", "mean")])
def test_per_example_grad_norms_match_one_at_a_time(activation, loss, reduction):
    rng = np.random.default_rng([len(activation), len(loss), len(reduction)])
    net = MLP([5, 7, 6, 3], activation=activation, output_activation=OUTPUT_OF[loss], seed=4)
    n = 9
    X = rng.normal(size=(n, 5))
    T = loss_targets(rng, loss, n, 3)
    w = rng.uniform(0.5, 2.0, n)
    for weights in (None, w):
        norms = net.per_example_grad_norms(X, T, loss, reduction, sample_weight=weights)
        r = np.ones(n) if weights is None else weights * n / weights.sum()
        per_row = {"sum": 1.0, "half": 1.0, "mean": 1.0 / n}[reduction]
        want = []
        for i in range(n):
            red = "half" if reduction == "half" else "sum"
            _, gw, gb = net.gradients(X[i:i + 1], T[i:i + 1], loss, red)
            want.append(per_row * r[i] * np.sqrt(sum(float((g ** 2).sum()) for g in gw + gb)))
        np.testing.assert_allclose(norms, want, rtol=1e-10)


def test_per_example_grad_norms_over_several_chunks():
    rng = np.random.default_rng(2)
    net = MLP([3, 4, 2], activation="sigmoid", seed=0)
    X = rng.normal(size=(1300, 3))
    T = rng.normal(size=(1300, 2))
    norms = net.per_example_grad_norms(X, T, reduction="mean")
    _, gw, gb = net.gradients(X[1299:], T[1299:])
    assert norms[1299] == pytest.approx(np.sqrt(sum((g ** 2).sum() for g in gw + gb)) / 1300, rel=1e-10)


# ---------------------------------------------------------------------------
# Construction, views, flat buffers
# ---------------------------------------------------------------------------

def test_glorot_uniform_initialisation_is_seeded():
    a, b = MLP([30, 20, 10], seed=42), MLP([30, 20, 10], seed=42)
    np.testing.assert_array_equal(a.params, b.params)
    assert not np.array_equal(a.params, MLP([30, 20, 10], seed=43).params)
    for W in a.weights:
        limit = np.sqrt(6.0 / sum(W.shape))
        assert np.abs(W).max() <= limit
        assert np.abs(W).max() > 0.8 * limit  # spread over the range, not a constant
    assert all((b == 0).all() for b in a.biases)


def test_weights_and_gradients_are_views_of_flat_buffers():
    net = MLP([3, 4, 2], seed=0)
    assert net.params.shape == (3 * 4 + 4 * 2 + 4 + 2,) and net.grads.shape == net.params.shape
    for W in net.weights + net.biases:
        assert np.shares_memory(W, net.params)
    for G in net.grad_weights + net.grad_biases:
        assert np.shares_memory(G, net.grads)
    X = np.ones((2, 3))
    before = net.forward(X)
    net.weights[1][...] = 0.0
    net.biases[1][...] = [1.0, 2.0]
    np.testing.assert_array_equal(net.forward(X), [[1.0, 2.0]] * 2)
    assert not np.array_equal(before, net.forward(X))
    # the layout: all weights, then all biases
    np.testing.assert_array_equal(net.params[-2:], [1.0, 2.0])
    net.weights = [np.zeros((4, 3)), np.ones((2, 4))]
    assert (net.weights[0] == 0).all() and (net.weights[1] == 1).all()
    net.biases[0] = [1.0, 2.0, 3.0, 4.0]  # item assignment copies into the view
    np.testing.assert_array_equal(net.params[12 + 8:12 + 8 + 4], [1.0, 2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        net.biases[0] = [1.0]
    with pytest.raises(TypeError, match="fixed"):
        net.weights.append(np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"weights\[1\] must have shape \(2, 4\)"):
        net.weights = [np.zeros((4, 3)), np.ones((4, 2))]
    # train_step leaves the batch gradient in the grads views
    J, gw, gb = net.gradients(X, np.zeros((2, 2)), reduction="mean")
    net.train_step(X, np.zeros((2, 2)), lr=0.1)
    np.testing.assert_allclose(net.grad_weights[1], gw[1], rtol=1e-15)


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(sizes=[3]), ValueError, "at least 2"),
    (dict(sizes=[3, 0, 2]), ValueError, ">= 1"),
    (dict(sizes=[3, 2.5]), TypeError, "sequence of ints"),
    (dict(sizes=[3, 4, 2], activation="swish"), ValueError, "activation must be one of"),
    (dict(sizes=[3, 4, 2], activation=["tanh", "relu"]), ValueError, "one per hidden layer"),
    (dict(sizes=[3, 4, 2], output_activation="softmin"), ValueError, "output_activation"),
])
def test_constructor_errors(kwargs, err, match):
    with pytest.raises(err, match=match):
        MLP(**kwargs)


def test_loss_and_output_activation_must_agree():
    X, T = np.ones((2, 3)), np.array([0, 1])
    with pytest.raises(ValueError, match="cross_entropy.*output_activation"):
        MLP([3, 2], output_activation="sigmoid").gradients(X, T, loss="cross_entropy")
    with pytest.raises(ValueError, match="softmax.*cross_entropy"):
        MLP([3, 2], output_activation="softmax").gradients(X, np.ones((2, 2)))
    with pytest.raises(ValueError, match="'sum' or 'mean'"):
        MLP([3, 2]).gradients(X, T, loss="cross_entropy", reduction="half")
    with pytest.raises(ValueError, match="loss must be one of"):
        MLP([3, 2]).gradients(X, T, loss="hinge")
    B = np.array([[0.0, 1.0], [1.0, 1.0]])
    for out in ("identity", "softmax", "tanh", "exp"):
        with pytest.raises(ValueError, match="'binary_cross_entropy'.*output_activation 'sigmoid', got"):
            MLP([3, 2], output_activation=out).gradients(X, B, loss="binary_cross_entropy")
    for out in ("identity", "sigmoid", "softmax"):
        with pytest.raises(ValueError, match="'poisson'.*output_activation 'exp', got"):
            MLP([3, 2], output_activation=out).train_step(X, B, loss="poisson")
    for loss in ("squared_error", "cross_entropy", "binary_cross_entropy"):
        with pytest.raises(ValueError, match="output_activation.*'exp'"):
            MLP([3, 2], output_activation="exp").fit(X, B, loss=loss)
    with pytest.raises(ValueError, match=r"T must be >= 0 .* got -1\.0 at row 0, column 1"):
        MLP([3, 2], output_activation="exp").gradients(X, -B, loss="poisson")
    with pytest.raises(ValueError, match=r"T must be in \[0, 1\] .* got 2\.0 at row 0, column 1"):
        MLP([3, 2], output_activation="sigmoid").loss(X, 2 * B, loss="binary_cross_entropy")
    with pytest.raises(ValueError, match=r"T_val must be >= 0"):
        MLP([3, 2], output_activation="exp").fit(X, B, loss="poisson", validation_data=(X, -B))


@pytest.mark.parametrize("loss", ["binary_cross_entropy", "poisson"])
def test_fit_with_the_fused_losses_learns_and_reports_their_loss(rng, loss):
    X = rng.normal(size=(300, 4))
    if loss == "poisson":
        T = rng.poisson(np.exp(0.5 * X[:, :2] - 0.2)).astype(float)
    else:
        T = (X[:, :2] + 0.3 * rng.normal(size=(300, 2)) > 0).astype(float)
    net = MLP([4, 8, 2], activation="tanh", output_activation=OUTPUT_OF[loss], seed=0)
    before = net.loss(X, T, loss)
    history = net.fit(X, T, epochs=40, batch_size=32, optimizer="adam", lr=0.01, loss=loss,
                      validation_data=(X[:50], T[:50]), seed=0)
    after = net.loss(X, T, loss)
    assert after < 0.7 * before
    assert history["val_loss"][-1] == pytest.approx(net.loss(X[:50], T[:50], loss), rel=1e-12)
    assert np.all(np.isfinite(history["loss"]))


@pytest.mark.parametrize("X, T, err, match", [
    (np.ones((4, 2)), np.ones((4, 2)), ValueError, "3 columns"),
    (np.ones(3), np.ones((1, 2)), ValueError, "2-D"),
    (np.ones((4, 3)), np.ones((5, 2)), ValueError, "4 rows"),
    (np.ones((4, 3)), np.ones((4, 3)), ValueError, "2 columns"),
    (np.array([["a", "b", "c"]]), np.ones((1, 2)), TypeError, "real numbers"),
    (np.ones((2, 3)), np.array([0.0, 1.0]), TypeError, "integer dtype"),
    (np.ones((2, 3)), np.array([0, 2]), ValueError, r"class labels in \[0, 2\)"),
])
def test_gradients_input_errors(X, T, err, match):
    net = MLP([3, 2], seed=0)
    loss = "cross_entropy" if T.ndim == 1 else "squared_error"
    with pytest.raises(err, match=match):
        net.gradients(X, T, loss=loss)


def test_forward_and_train_step_are_strict_predict_converts():
    net = MLP([3, 2], seed=0)
    with pytest.raises(TypeError, match="float64"):
        net.forward(np.ones((2, 3), dtype=np.float32))
    with pytest.raises(TypeError, match="numpy.ndarray"):
        net.forward([[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match="C-contiguous"):
        net.forward(np.ones((3, 2)).T)
    with pytest.raises(ValueError, match="must have 2 rows"):
        net.train_step(np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="lr must be > 0"):
        net.train_step(np.ones((2, 3)), np.ones((2, 2)), lr=-1.0)
    assert net.predict([[1, 2, 3]]).shape == (1, 2)
    with pytest.raises(ValueError, match="NaN or infinity"):
        net.predict([[1, np.nan, 3]])
    assert np.isnan(net.predict([[1, np.nan, 3]], check_finite=False)).all()
    assert net.forward(np.empty((0, 3))).shape == (0, 2)


def test_train_step_is_gradient_then_update():
    rng = np.random.default_rng(1)
    net = MLP([4, 5, 2], activation="tanh", seed=1)
    X, T = rng.normal(size=(6, 4)), rng.normal(size=(6, 2))
    for optimizer in (None, "sgd", "momentum", "adam"):
        p0 = net.params.copy()
        J, gw, gb = net.gradients(X, T, reduction="mean")
        assert net.train_step(X, T, lr=0.05, optimizer=optimizer) == pytest.approx(J, rel=1e-14)
        if optimizer in (None, "sgd", "momentum"):  # first momentum step: v = g
            g = np.concatenate([x.ravel() for x in gw] + gb)
            np.testing.assert_allclose(net.params, p0 - 0.05 * g, rtol=1e-13, atol=1e-16)
    # a named optimiser keeps its state between calls
    assert net._step_optimizers["adam"].t == 1
    net.train_step(X, T, optimizer="adam")
    assert net._step_optimizers["adam"].t == 2


def test_training_step_allocates_nothing():
    rng = np.random.default_rng(0)
    net = MLP([40, 50, 30, 3], activation=["sigmoid", "tanh"], seed=0)
    X, T = rng.normal(size=(64, 40)), rng.normal(size=(64, 3))
    labels = rng.integers(0, 3, 64)
    steps = {  # direct calls: a **kwargs call would itself allocate a dict
        "sgd fused": lambda: net.train_step(X, T, lr=0.01),
        "adam": lambda: net.train_step(X, T, optimizer="adam"),
        "nesterov, cross entropy": lambda: net.train_step(X, labels, loss="cross_entropy",
                                                          optimizer="nesterov"),
    }
    for name, step in steps.items():
        step()  # the workspace and the optimiser state are made here
        tracemalloc.start()
        try:
            for _ in range(3):  # warm Python's own caches under tracing
                step()
            before = tracemalloc.take_snapshot()
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            for _ in range(100):
                step()
            peak = tracemalloc.get_traced_memory()[1] - base
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        ours = [tracemalloc.Filter(True, "*/fastbp/*")]  # blocks made inside the library
        grown = [s for s in after.filter_traces(ours).compare_to(before.filter_traces(ours), "lineno")
                 if s.count_diff > 0]
        assert not grown, (name, grown[:5])
        # one 64x50 float64 temporary would be 25 600 bytes; a call's small
        # Python objects (the returned float) come and go within a few hundred
        assert peak < 1024, (name, peak)


def test_gradients_returns_copies():
    net = MLP([2, 2], seed=0)
    X = np.ones((1, 2))
    _, gw, _ = net.gradients(X, np.zeros((1, 2)))
    keep = gw[0].copy()
    net.gradients(X, np.ones((1, 2)) * 5)
    np.testing.assert_array_equal(gw[0], keep)


def test_user_arrays_are_never_modified():
    # Every entry point, on writeable and on read-only arrays (which must be
    # accepted), against copies of the bytes taken before the call: a write
    # from compiled code would not trip flags.writeable.
    rng = np.random.default_rng(0)
    X, T = rng.normal(size=(10, 3)), rng.normal(size=(10, 2))
    labels = rng.integers(0, 2, 10)
    w = rng.uniform(0.5, 2.0, 10)
    X_val, T_val = rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
    arrays = dict(X=X, T=T, labels=labels, sample_weight=w, X_val=X_val, T_val=T_val)
    calls = {
        "gradients": lambda net: net.gradients(X, T),
        "gradients, weighted cross entropy": lambda net: net.gradients(
            X, labels, loss="cross_entropy", sample_weight=w),
        "train_step": lambda net: net.train_step(X, T),
        "train_step, adam, weighted": lambda net: net.train_step(X, T, optimizer="adam",
                                                                 sample_weight=w),
        "train_step, cross entropy": lambda net: net.train_step(X, labels, loss="cross_entropy"),
        "per_example_grad_norms": lambda net: net.per_example_grad_norms(X, T),
        "per_example_grad_norms, weighted cross entropy": lambda net: net.per_example_grad_norms(
            X, labels, loss="cross_entropy", sample_weight=w),
        "predict": lambda net: net.predict(X),
        "forward": lambda net: net.forward(X),
        "loss": lambda net: net.loss(X, T),
        "loss, cross entropy": lambda net: net.loss(X, labels, loss="cross_entropy"),
        "fit": lambda net: net.fit(X, T, epochs=2, batch_size=3),
        "fit, no shuffle": lambda net: net.fit(X, T, epochs=2, batch_size=3, shuffle=False),
        "fit, weighted, validation, adam": lambda net: net.fit(
            X, T, epochs=2, batch_size=3, optimizer="adam", sample_weight=w,
            validation_data=(X_val, T_val)),
        "fit, cross entropy, no shuffle": lambda net: net.fit(
            X, labels, epochs=2, batch_size=3, loss="cross_entropy", shuffle=False,
            sample_weight=w),
    }
    written = []
    for writeable in (True, False):
        for a in arrays.values():
            a.flags.writeable = writeable
        net = MLP([3, 4, 2], seed=0)
        for name, call in calls.items():
            before = {k: a.tobytes() for k, a in arrays.items()}
            call(net)
            changed = [k for k, a in arrays.items() if a.tobytes() != before[k]]
            if changed:
                written.append(f"{name} ({'writeable' if writeable else 'read-only'}): {changed}")
    assert not written, f"the caller's arrays were written by {written}"


# ---------------------------------------------------------------------------
# Thread model
# ---------------------------------------------------------------------------

def test_thread_model_is_stated_in_the_docstrings():
    for doc in (network.__doc__, MLP.__doc__, MLP.fit.__doc__):
        assert "thread" in doc.lower()
    assert "RuntimeError" in network.__doc__ and "RuntimeError" in MLP.fit.__doc__


def blocked_fit(net, X, T, **kw):
    """Start net.fit in a thread that then waits inside its first epoch's
    callback (holding the network) until the returned event is set."""
    inside, release, result = threading.Event(), threading.Event(), {}

    def callback(epoch, history):
        inside.set()
        release.wait(30)

    def run():
        try:
            result["history"] = net.fit(X, T, callback=callback, **kw)
        except BaseException as e:  # surfaced by the test
            result["error"] = e

    t = threading.Thread(target=run)
    t.start()
    assert inside.wait(30), "fit never reached its first callback"
    return t, release, result


def test_second_concurrent_fit_on_one_network_is_refused_clearly():
    X, T = random_regression()
    net = MLP([5, 8, 3], activation="tanh", seed=0)
    t, release, result = blocked_fit(net, X, T, epochs=2, batch_size=16, lr=0.01, seed=0)
    try:
        with pytest.raises(RuntimeError, match="another thread"):
            net.fit(X, T, epochs=1, lr=0.01)
        with pytest.raises(RuntimeError, match="another thread"):
            net.train_step(X, T, lr=0.01)
        with pytest.raises(RuntimeError, match="another thread"):
            net.gradients(X, T)
    finally:
        release.set()
        t.join(30)
    assert "error" not in result, result.get("error")
    # the refused calls changed nothing: same weights as an undisturbed fit
    alone = MLP([5, 8, 3], activation="tanh", seed=0)
    alone.fit(X, T, epochs=2, batch_size=16, lr=0.01, seed=0)
    assert params_bytes(net) == params_bytes(alone)
    net.fit(X, T, epochs=1, lr=0.01)  # and the network is usable again


INFER_DURING_FIT = textwrap.dedent("""
    import sys, threading, numpy as np
    from fastbp.network import MLP
    rng = np.random.default_rng(0)
    X, T = rng.standard_normal((512, 5)), rng.standard_normal((512, 3))
    alone = MLP([5, 32, 3], activation="tanh", seed=0)
    alone.fit(X, T, epochs=20, batch_size=64, lr=0.01, seed=0)
    # each counter is bumped before and after every call: odd while one runs,
    # so a refusal can be told apart from one with nothing to be refused for
    calls = {"fit": 0, "predict": 0}
    refused = {"fit": 0, "predict": 0}
    unexpected = []

    def infer(net, stop, started):
        rows = 65
        while not stop.is_set():
            Xp = rng.standard_normal((rows, 5))
            fits = calls["fit"]
            calls["predict"] += 1
            try:  # each call a bigger batch than fit's: the workspace must grow
                net.predict(Xp)
            except RuntimeError as e:
                refused["predict"] += 1
                if fits == calls["fit"] and fits % 2 == 0:  # no fit ran meanwhile
                    unexpected.append(f"predict refused while no fit ran: {e}")
            finally:
                calls["predict"] += 1
            started.set()
            rows = rows + 1 if rows < 512 else 65

    for attempt in range(5):  # a race: a few tries make it show
        net = MLP([5, 32, 3], activation="tanh", seed=0)
        stop, started = threading.Event(), threading.Event()
        t = threading.Thread(target=infer, args=(net, stop, started), daemon=True)
        t.start()
        started.wait(60)  # fit starts once predict calls are coming
        for _ in range(10000):  # fit itself may be refused while predict runs
            predicts = calls["predict"]
            calls["fit"] += 1
            try:
                net.fit(X, T, epochs=20, batch_size=64, lr=0.01, seed=0)
                break
            except RuntimeError as e:
                refused["fit"] += 1
                if predicts == calls["predict"] and predicts % 2 == 0:  # no predict ran
                    unexpected.append(f"fit refused while no predict ran: {e}")
            finally:
                calls["fit"] += 1
        else:
            stop.set()
            print(f"attempt {attempt}: fit refused on all 10000 tries", file=sys.stderr)
            raise SystemExit(4)
        stop.set()
        t.join()
        if unexpected:
            print("\\n".join(unexpected[:10]), file=sys.stderr)
            raise SystemExit(5)
        if not all(np.array_equal(a, b) for a, b in zip(net.weights, alone.weights)):
            raise SystemExit(3)
    print(f"refused: {refused}, calls: {calls['fit'] // 2} fits, {calls['predict'] // 2} predicts")
""")


def test_inference_during_fit_is_refused_or_harmless():
    """predict on a network another thread is fitting must raise RuntimeError
    or leave that fit bitwise unchanged (run in a child: a use-after-free of
    the workspace must not take the test session down).  fit itself may be
    refused while a predict holds the network; it is retried, and must get
    through.  A refusal with no other call running (predict's with no fit,
    fit's with no predict), or fit refused on every try, fails."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run([sys.executable, "-c", INFER_DURING_FIT], env=env, timeout=300,
                          capture_output=True, text=True)
    assert proc.returncode != 3, "fit's weights were changed by a concurrent predict"
    assert proc.returncode != 4, f"fit was never let through: {proc.stderr[-2000:]}"
    assert proc.returncode != 5, f"a refusal with nothing to refuse for: {proc.stderr[-2000:]}"
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_separate_networks_train_in_parallel_threads_exactly_as_alone():
    X, T = random_regression(n=128)
    nets = [MLP([5, 16, 3], activation="sigmoid", seed=s) for s in range(4)]
    alone = [MLP([5, 16, 3], activation="sigmoid", seed=s) for s in range(4)]
    for a in alone:
        a.fit(X, T, epochs=3, batch_size=16, lr=0.05, seed=7)
    X.flags.writeable = T.flags.writeable = False  # shared, read-only
    start = threading.Barrier(4)

    def run(net):
        start.wait()
        net.fit(X, T, epochs=3, batch_size=16, lr=0.05, seed=7)

    threads = [threading.Thread(target=run, args=(n,)) for n in nets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for n, a in zip(nets, alone):
        assert params_bytes(n) == params_bytes(a)


# ---------------------------------------------------------------------------
# Cross entropy at ±1e300
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_cross_entropy_is_finite_for_logits_up_to_1e300(reduction):
    # one linear layer: the logits are W x + b, set to ±1e300 and 0
    net = MLP([2, 3], output_activation="identity", seed=0)
    net.weights[0][...] = [[1e300, 0.0], [-1e300, 0.0], [0.0, 1.0]]
    X = np.array([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [0.0, 0.5]])
    labels = np.array([0, 0, 1, 2])
    # log-sum-exp: row 0 is right (0), row 1 off by 2e300, row 2 by 2e300,
    # row 3 softmax of (0, 0, 0.5)
    lse3 = np.log(2.0 + np.exp(0.5))
    want = np.array([0.0, 2e300, 2e300, lse3 - 0.5])
    want_total = want.sum() / (4 if reduction == "mean" else 1)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        for T in (labels, np.eye(3)[labels]):
            J, gW, gb = net.gradients(X, T, loss="cross_entropy", reduction=reduction)
            assert np.isfinite(J) and J == pytest.approx(want_total, rel=1e-12)
            assert all(np.isfinite(g).all() for g in (*gW, *gb))
            assert np.isfinite(net.loss(X, T, loss="cross_entropy", reduction=reduction))
    # δZ = P − T with P exactly one-hot on the ±1e300 rows
    Z = X @ net.weights[0].T
    P = np.exp(Z - Z.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    dZ = (P - np.eye(3)[labels]) / (4 if reduction == "mean" else 1)
    np.testing.assert_allclose(gW[0], dZ.T @ X, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(gb[0], dZ.sum(axis=0), rtol=1e-12, atol=1e-300)


def test_extreme_logits_train_without_warnings():
    net = MLP([2, 3], output_activation="softmax", seed=0)
    net.weights[0][...] = [[1e300, 0.0], [-1e300, 0.0], [0.0, 1.0]]
    X = np.array([[1.0, 0.0], [-1.0, 0.0]])
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        J = net.train_step(X, np.array([1, 2]), lr=1e-310, loss="cross_entropy")
        P = net.predict(X)
    assert np.isfinite(J) and np.isfinite(P).all()
    np.testing.assert_array_equal(P.sum(axis=1), 1.0)


# ---------------------------------------------------------------------------
# Fuzzing the network's public methods
# ---------------------------------------------------------------------------

SIZES = [3, 4, 2]


def reference_gradients(net, X, T, reduction):
    """Squared-error gradients of the network, layer by layer from the twins."""
    acts = net.activations
    A, Zs = [X], []
    for W, b, g in zip(net.weights, net.biases, acts):
        Zs.append(z_buffer(g, A[-1].shape[0], np.asarray(W).shape[0]))
        A.append(ref.dense_forward(A[-1], np.asarray(W), np.asarray(b), g, Z=Zs[-1]))
    J, dY = ref.squared_error(A[-1], T, reduction)
    gW, gb = [], []
    for l in reversed(range(len(net.weights))):
        dY, dW, db = ref.dense_backward(dY, A[l], np.asarray(net.weights[l]), A[l + 1], acts[l],
                                        Z=Zs[l])
        gW.insert(0, dW)
        gb.insert(0, db)
    return J, gW, gb


def variants(rng, shape, rows_too):
    a = rng.standard_normal(shape)
    more_rows = [("rows", np.ones((shape[0] + 1, shape[1])))] if rows_too else []
    return st.sampled_from(more_rows + [
        ("ok", a), ("ok", a), ("list", a.tolist()), ("float32", a.astype(np.float32)),
        ("int", (a * 3).astype(np.int64)), ("fortran", np.asfortranarray(a)),
        ("strided", np.repeat(a, 2, axis=1)[:, ::2]), ("none", None), ("0d", np.array(1.0)),
        ("3d", a[None]), ("1d", a.ravel()), ("wide", np.ones((shape[0], shape[1] + 1))),
        ("nan", np.where(a > 1, np.nan, a)),
        ("inf", np.where(a > 1, np.inf, a)), ("huge", a * 1e150), ("str", "abc"),
        ("object", a.astype(object)), ("bigendian", a.astype(">f8"))])


NET_COUNT = [0]


@pytest.fixture(autouse=True, scope="module")
def report_count(request):
    yield
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    cm = request.config.pluginmanager.get_plugin("capturemanager")
    if tr is not None and cm is not None and NET_COUNT[0]:
        with cm.global_and_fixture_disabled():
            tr.write_line(f"\n[test_network] network fuzz cases tried: {NET_COUNT[0]}")


@settings(max_examples=4 * settings().max_examples)
@given(data=st.data())
def test_network_methods_give_the_right_answer_or_a_clear_error(data):
    n = data.draw(st.integers(0, 5), label="n")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    xk, X = data.draw(variants(rng, (n, SIZES[0]), False), label="X")
    tk, T = data.draw(variants(rng, (n, SIZES[-1]), True), label="T")
    method = data.draw(st.sampled_from(["gradients", "train_step", "predict", "fit", "loss"]))
    reduction = data.draw(st.sampled_from(["sum", "mean", "half", "avg", None]), label="reduction")
    net = MLP(SIZES, activation="tanh", seed=0)
    before = params_bytes(net)
    NET_COUNT[0] += 1
    try:
        with np.errstate(all="ignore"):
            if method == "gradients":
                out = net.gradients(X, T, reduction=reduction)
            elif method == "train_step":
                out = net.train_step(X, T, lr=0.1, reduction=reduction)
            elif method == "predict":
                out = net.predict(X, check_finite=False)
            elif method == "fit":
                out = net.fit(X, T, epochs=1, batch_size=2, lr=0.1, reduction=reduction, seed=0,
                              progress=False)
            else:
                out = net.loss(X, T, reduction=reduction, check_finite=False)
    except (TypeError, ValueError) as e:
        assert str(e), "an error without a message"
        assert params_bytes(net) == before, "a refused call changed the weights"
        # whatever is fine must not have been refused
        must_work = xk == "ok" and (tk == "ok" or method == "predict") and \
            (reduction in ("sum", "mean", "half") or method == "predict") and \
            not (method == "fit" and n == 0)
        assert not must_work, f"{method} refused valid input: {e}"
        return
    # accepted: the input must have been usable, and the answer right
    assert xk in ("ok", "list", "float32", "int", "fortran", "strided", "nan", "inf", "huge",
                  "object", "bigendian"), f"{method} accepted X of kind {xk}"
    Xf = np.asarray(X, dtype=np.float64)
    if method == "predict":
        fresh = MLP(SIZES, activation="tanh", seed=0)
        Y = Xf
        for W, b, g in zip(fresh.weights, fresh.biases, fresh.activations):
            Y = ref.dense_forward(Y, np.asarray(W), np.asarray(b), g)
        np.testing.assert_allclose(out, Y, rtol=1e-12, atol=1e-300)
    elif method == "gradients" and xk in ("ok", "huge") and tk in ("ok", "huge"):
        J, gW, gb = reference_gradients(net, Xf, np.asarray(T, dtype=np.float64), reduction)
        np.testing.assert_allclose(out[0], J, rtol=1e-10)
        for g, w in zip((*out[1], *out[2]), (*gW, *gb)):
            np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12 * (1 + np.abs(w).max(initial=0)))


# ---------------------------------------------------------------------------
# Resident memory
# ---------------------------------------------------------------------------

def test_10k_training_steps_leave_rss_flat():
    network = pytest.importorskip("fastbp.network")
    rng = np.random.default_rng(2)
    X, T = rng.standard_normal((8, 4)), rng.standard_normal((8, 2))
    net = network.MLP([4, 8, 2], activation="tanh", seed=0)
    grown, *_ = growth(lambda: net.train_step(X, T, lr=1e-3), 10_000, warmup=500)
    assert grown < RSS_BOUND, grown


# -- sparse X ----------------------------------------------------------------

_FORMATS = ("csr_matrix", "csr_array", "csc_matrix", "csc_array", "coo_matrix")


def _sparse(n, k, density, seed, fmt="csr_matrix", index=np.int32):
    import scipy.sparse as sp
    X = sp.random(n, k, density=density, format="csr", random_state=seed)
    X.indices, X.indptr = X.indices.astype(index), X.indptr.astype(index)
    return getattr(sp, fmt)(X)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 25), k=st.integers(1, 30), d=st.integers(1, 5),
       density=st.sampled_from([0.0, 0.05, 0.3, 1.0]), seed=st.integers(0, 999),
       fmt=st.sampled_from(_FORMATS), index=st.sampled_from([np.int32, np.int64]),
       activation=st.sampled_from(["sigmoid", "tanh", "relu"]))
def test_sparse_X_gives_what_dense_X_gives(n, k, d, density, seed, fmt, index, activation):
    X = _sparse(n, k, density, seed, fmt, index)
    Xd = X.toarray()
    T = np.random.default_rng(seed).standard_normal((n, d))
    a = network.MLP([k, 6, d], activation=activation, seed=seed)
    b = network.MLP([k, 6, d], activation=activation, seed=seed)
    np.testing.assert_allclose(a.predict(X), b.predict(Xd), rtol=1e-10, atol=1e-14)
    Ja, gwa, gba = a.gradients(X, T)
    Jb, gwb, gbb = b.gradients(Xd, T)
    assert Ja == pytest.approx(Jb, rel=1e-10, abs=1e-300)
    for ga, gb in zip(gwa + gba, gwb + gbb):
        np.testing.assert_allclose(ga, gb, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(a.per_example_grad_norms(X, T), b.per_example_grad_norms(Xd, T),
                               rtol=1e-10, atol=1e-13)
    assert a.loss(X, T) == pytest.approx(b.loss(Xd, T), rel=1e-10, abs=1e-300)


def test_sparse_forward_and_train_step_take_the_core_form():
    from fastbp.inputs import as_inputs
    X = _sparse(40, 30, 0.1, 0)
    Xs, Xd = as_inputs(X, 30), np.ascontiguousarray(X.toarray())
    T = np.random.default_rng(0).integers(0, 3, 40)
    a, b = network.MLP([30, 5, 3], seed=0), network.MLP([30, 5, 3], seed=0)
    np.testing.assert_allclose(a.forward(Xs), b.forward(Xd), rtol=1e-10)
    for _ in range(3):
        Ja = a.train_step(Xs, T, loss="cross_entropy", optimizer="adam", lr=1e-2)
        Jb = b.train_step(Xd, T, loss="cross_entropy", optimizer="adam", lr=1e-2)
        assert Ja == pytest.approx(Jb, rel=1e-10)
    np.testing.assert_allclose(a.params, b.params, rtol=1e-10, atol=1e-14)
    with pytest.raises(TypeError, match="X.indices must have dtype int64"):
        a.forward(X)  # not the core's form: predict converts, forward does not


def test_sparse_X_bad_input_is_named():
    import scipy.sparse as sp
    net = network.MLP([4, 3, 1])
    with pytest.raises(ValueError, match=r"X must have 4 columns .* got shape \(2, 5\)"):
        net.predict(sp.csr_matrix(np.ones((2, 5))))
    with pytest.raises(ValueError, match="X holds NaN"):
        net.predict(sp.csr_matrix(np.array([[np.nan, 0, 0, 1.0]])))
    with pytest.raises(TypeError, match="real numbers"):
        net.predict(sp.csr_matrix(np.ones((2, 4), dtype=complex)))


def test_sparse_training_steps_and_epochs_leave_rss_flat():
    from fastbp.inputs import as_inputs
    X = as_inputs(_sparse(64, 300, 0.05, 4), 300)
    T = np.random.default_rng(4).integers(0, 3, 64)
    net = network.MLP([300, 16, 3], activation="relu", seed=0)
    grown, *_ = growth(lambda: net.train_step(X, T, loss="cross_entropy", optimizer="adam"),
                       5_000, warmup=500)
    assert grown < RSS_BOUND, grown
    grown, *_ = growth(lambda: net.fit(X, T, epochs=1, batch_size=16, loss="cross_entropy"),
                       1_000, warmup=100)
    assert grown < RSS_BOUND, grown
