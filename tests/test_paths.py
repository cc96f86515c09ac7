"""fastbp.paths: seed 000's gradient as a sum over paths, against backprop."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastbp import paths
from fastbp import reference as ref


def backprop(weights, x, t, biases=None, reduction="half"):
    """The reference backward pass of a linear net (fastbp.reference, identity)."""
    X, T = np.atleast_2d(x), np.atleast_2d(t)
    biases = biases if biases is not None else [np.zeros(W.shape[0]) for W in weights]
    acts = [X]
    for W, b in zip(weights, biases):
        acts.append(ref.dense_forward(acts[-1], W, b, "identity"))
    _, dY = ref.squared_error(acts[-1], T, reduction)
    grad_w, grad_b = [None] * len(weights), [None] * len(weights)
    for l in reversed(range(len(weights))):
        dY, grad_w[l], grad_b[l] = ref.dense_backward(dY, acts[l], weights[l], acts[l + 1], "identity")
    return grad_w, grad_b


def assert_close(got, want):
    for g, w in zip(got, want):
        assert g.shape == w.shape
        scale = max(1.0, float(np.max(np.abs(w), initial=0.0)))
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12 * scale)


# ---------------------------------------------------------------------------
# Seed 000's worked examples, in its own notation
# ---------------------------------------------------------------------------


def test_one_weight():
    # y1 = x1 w1, E = ½ (t1 − y1)²: Δw1 = (y1 − t1) x1   (1)
    x1, w1, t1 = 0.7, -1.3, 0.4
    (g,) = paths.gradient([np.array([[w1]])], np.array([x1]), np.array([t1]))
    assert g[0, 0] == pytest.approx((x1 * w1 - t1) * x1)


def test_one_hidden_neuron():
    # y1 = h1 w2, h1 = x1 w1: Δw1 = (y1 − t1) w2 x1   (3)
    x1, w1, w2, t1 = 0.7, -1.3, 0.9, 0.4
    g1, g2 = paths.gradient([np.array([[w1]]), np.array([[w2]])], np.array([x1]), np.array([t1]))
    y1 = x1 * w1 * w2
    assert g1[0, 0] == pytest.approx((y1 - t1) * w2 * x1)
    assert g2[0, 0] == pytest.approx((y1 - t1) * x1 * w1)


def test_two_outputs_first_rule():
    # Δw_k = δ_k x_i   (5): one input, two outputs
    x1, t = 2.0, np.array([1.0, -1.0])
    W = np.array([[0.5], [0.25]])
    (g,) = paths.gradient([W], np.array([x1]), t)
    delta = W[:, 0] * x1 - t
    np.testing.assert_allclose(g[:, 0], delta * x1)


def test_two_layers_of_two():
    # Δw¹₁₁ = x1 Σ_k (y_k − t_k) w²_k1 — the seed's weights w²₁₁, w²₂₁ feed y1 from h1, h2,
    # w²₃₁, w²₄₁ feed y2: as a matrix, W2 = [[w²₁₁, w²₂₁], [w²₃₁, w²₄₁]].
    rng = np.random.default_rng(0)
    W1, W2 = rng.standard_normal((2, 2)), rng.standard_normal((2, 2))
    x, t = np.array([0.3, -0.8]), np.array([0.1, 0.2])
    y = W2 @ (W1 @ x)
    grads = paths.gradient([W1, W2], x, t)
    assert grads[0][0, 0] == pytest.approx(x[0] * np.sum((y - t) * W2[:, 0]))


def test_three_layers_of_two_the_seeds_last_formula():
    # Δw¹₁₁ = x1[(y1 − t1)(w³₁₁ w²₁₁ + w³₂₁ w²₃₁) + (y2 − t2)(w³₃₁ w²₁₁ + w³₄₁ w²₃₁)]
    rng = np.random.default_rng(1)
    W1, W2, W3 = (rng.standard_normal((2, 2)) for _ in range(3))
    w2_11, w2_31 = W2[0, 0], W2[1, 0]
    w3_11, w3_21, w3_31, w3_41 = W3[0, 0], W3[0, 1], W3[1, 0], W3[1, 1]
    x, t = np.array([0.6, -0.4]), np.array([0.5, -0.5])
    y = W3 @ W2 @ W1 @ x
    want = x[0] * ((y[0] - t[0]) * (w3_11 * w2_11 + w3_21 * w2_31)
                   + (y[1] - t[1]) * (w3_31 * w2_11 + w3_41 * w2_31))
    assert paths.gradient([W1, W2, W3], x, t)[0][0, 0] == pytest.approx(want, rel=1e-13)


# ---------------------------------------------------------------------------
# Against backprop on random linear nets of depth 1–4
# ---------------------------------------------------------------------------

values = st.floats(-2, 2, allow_subnormal=False)


@st.composite
def linear_nets(draw):
    depth = draw(st.integers(1, 4))
    widths = draw(st.lists(st.integers(1, 3), min_size=depth + 1, max_size=depth + 1))
    arrays = lambda *shape: np.array(  # noqa: E731
        draw(st.lists(values, min_size=math.prod(shape), max_size=math.prod(shape)))).reshape(shape)
    weights = [arrays(widths[l + 1], widths[l]) for l in range(depth)]
    biases = [arrays(n) for n in widths[1:]] if draw(st.booleans()) else None
    n = draw(st.sampled_from([None, 1, 3]))  # one example (K,), or a batch
    x = arrays(widths[0]) if n is None else arrays(n, widths[0])
    t = arrays(widths[-1]) if n is None else arrays(n, widths[-1])
    return weights, biases, x, t


@given(net=linear_nets(), reduction=st.sampled_from(paths.REDUCTIONS))
def test_paths_equal_backprop_on_random_linear_nets(net, reduction):
    weights, biases, x, t = net
    want_w, want_b = backprop(weights, x, t, biases, reduction)
    assert_close(paths.gradient(weights, x, t, biases, reduction=reduction), want_w)
    if biases is not None:
        assert_close(paths.bias_gradient(weights, x, t, biases, reduction=reduction), want_b)


@pytest.mark.parametrize("sizes", [[3, 2], [2, 3, 2], [3, 2, 2, 3], [2, 2, 3, 2, 2]])
def test_paths_are_an_oracle_for_fastbp_MLP(sizes, rng):
    network = pytest.importorskip("fastbp.network")
    mlp = network.MLP(sizes, activation="identity", output_activation="identity", seed=7)
    X, T = rng.standard_normal((4, sizes[0])), rng.standard_normal((4, sizes[-1]))
    for reduction in ("half", "sum", "mean"):
        _, grad_w, grad_b = mlp.gradients(X, T, reduction=reduction)
        assert_close(paths.gradient(mlp.weights, X, T, mlp.biases, reduction=reduction), grad_w)
        assert_close(paths.bias_gradient(mlp.weights, X, T, mlp.biases, reduction=reduction), grad_b)


# ---------------------------------------------------------------------------
# Counting, the limit, explain()
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("widths", [[1, 1], [3, 2], [2, 3, 4], [2, 2, 2, 2], [4, 1, 3]])
@pytest.mark.parametrize("with_biases", [False, True])
def test_count_matches_the_enumeration(widths, with_biases):
    weights = [np.ones((widths[l + 1], widths[l])) for l in range(len(widths) - 1)]
    biases = [np.ones(n) for n in widths[1:]] if with_biases else None
    listed = list(paths.enumerate_paths(weights, biases))
    assert paths.count(weights, biases) == len(listed) == len(set(listed))
    assert paths.count(weights) == math.prod(widths)
    assert all(len(p.parameters()) == len(widths) - p.start - 1 + p.bias for p in listed)


def test_too_many_paths_is_refused_with_the_count():
    weights = [np.ones((10, 10))] * 5  # 10⁶ paths
    x, t = np.ones(10), np.ones(10)
    for call in (lambda: paths.gradient(weights, x, t),
                 lambda: paths.bias_gradient(weights, x, t, [np.ones(10)] * 5, limit=10),
                 lambda: paths.explain(weights, x, t, 0, 0, 0),
                 lambda: paths.enumerate_paths(weights)):
        with pytest.raises(paths.TooManyPaths, match=r"has [\d,]+ input-to-output paths"):
            call()
    with pytest.raises(ValueError, match="1,000,000 input-to-output paths, more than limit=999,999"):
        paths.gradient(weights, x, t, limit=999_999)
    small = [np.ones((2, 2))] * 2
    assert paths.gradient(small, np.ones(2), np.ones(2), limit=8)  # exactly at the limit
    with pytest.raises(paths.TooManyPaths):
        paths.gradient(small, np.ones(2), np.ones(2), limit=7)


def test_explain_lists_every_path_through_the_weight(rng):
    W1, W2, W3 = rng.standard_normal((3, 2)), rng.standard_normal((2, 3)), rng.standard_normal((2, 2))
    weights = [W1, W2, W3]
    x, t = rng.standard_normal(2), rng.standard_normal(2)
    grads = paths.gradient(weights, x, t)
    for layer, j, k, n_paths in [(0, 1, 0, 1 * 2 * 2), (1, 0, 2, 2 * 1 * 2), (2, 1, 1, 2 * 3 * 1)]:
        e = paths.explain(weights, x, t, layer, j, k)
        assert len(e.rows) == n_paths
        assert e.gradient == pytest.approx(grads[layer][j, k], rel=1e-12)
        assert sum(term for *_, term in e.rows) == pytest.approx(e.gradient)
        assert all(("W", layer, j, k) in path.parameters() for path, *_ in e.rows)
        text = str(e)
        assert f"∂E/∂W{layer + 1}[{j},{k}]" in text and f"{n_paths} paths" in text
        assert text.count("→ y[") == n_paths
        assert f"W{layer + 1}[{j},{k}]→" in text.splitlines()[4]


def test_explain_follows_the_seeds_formula_for_a_first_layer_weight(rng):
    # x Σ_k δ_k Σ_paths Π w: each row is x·δ_k times the product of the other weights
    W1, W2 = rng.standard_normal((2, 2)), rng.standard_normal((2, 2))
    x, t = np.array([1.5, -0.5]), np.array([0.2, 0.3])
    delta = W2 @ W1 @ x - t
    e = paths.explain([W1, W2], x, t, 0, 1, 0)
    for path, front, others, term in e.rows:
        k = path.output
        assert front == pytest.approx(x[0] * delta[k])
        assert others == pytest.approx(W2[k, 1])
        assert term == pytest.approx(front * others)


def test_explain_with_biases_and_a_batch(rng):
    weights = [rng.standard_normal((2, 2)), rng.standard_normal((1, 2))]
    biases = [rng.standard_normal(2), rng.standard_normal(1)]
    X, T = rng.standard_normal((5, 2)), rng.standard_normal((5, 1))
    e = paths.explain(weights, X, T, 1, 0, 1, biases=biases)
    assert len(e.rows) == 3  # from x[0], x[1] and the bias of h1[1]
    assert e.gradient == pytest.approx(paths.gradient(weights, X, T, biases)[1][0, 1])
    text = str(e)
    assert "1 ─b1[1]→ h1[1] ─W2[0,1]→ y[0]" in text and "Σₙ" in text


def test_explain_rejects_a_weight_that_does_not_exist():
    weights = [np.ones((2, 3))]
    with pytest.raises(IndexError, match="layer"):
        paths.explain(weights, np.ones(3), np.ones(2), 1, 0, 0)
    with pytest.raises(IndexError, match=r"no entry \[2, 0\]"):
        paths.explain(weights, np.ones(3), np.ones(2), 0, 2, 0)


def test_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"weights\[1\].*columns"):
        paths.count([np.ones((2, 3)), np.ones((2, 3))])
    with pytest.raises(ValueError, match="biases"):
        paths.gradient([np.ones((2, 3))], np.ones(3), np.ones(2), biases=[np.ones(3)])
    with pytest.raises(ValueError, match="x must be"):
        paths.gradient([np.ones((2, 3))], np.ones(4), np.ones(2))
    with pytest.raises(ValueError, match="t must"):
        paths.gradient([np.ones((2, 3))], np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="reduction"):
        paths.gradient([np.ones((2, 3))], np.ones(3), np.ones(2), reduction="l1")
    with pytest.raises(ValueError, match="at least one"):
        paths.count([])
