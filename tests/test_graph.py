"""fastbp.graph: seed 002's computational graph, its blocks, forks, pictures."""

import math
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import fastbp
from fastbp import graph
from fastbp import reference as ref
from fastbp.finite_diff import gradcheck
from fastbp.graph import Var

from conftest import assert_sums_close, z_buffer

DOCS = Path(__file__).resolve().parents[1] / "docs" / "graph.md"


def seed_002_by_hand(x, y):
    """Seed 002 section 3.3's forward and backward pass, line by line."""
    a = 1.0 / (1 + np.exp(-y))  # (1)
    b = x + a  # (2)
    c = x**2  # (3)
    d = y + c  # (4)
    e = 1.0 / d  # (5)
    f = b * e  # (6)
    delta_b = e  # (6)
    delta_e = b  # (6)
    delta_d = delta_e * (-1.0 / (d**2))  # (5)
    delta_y = delta_d * 1  # (4)
    delta_c = delta_d * 1  # (4)
    delta_x = delta_c * (2 * x)  # (3)
    delta_x += delta_b * 1  # (2)
    delta_a = delta_b * 1  # (2)
    delta_y += delta_a * ((1 - a) * a)  # (1) (the seed prints delta_v: a typo for delta_y)
    return f, delta_x, delta_y


# ---------------------------------------------------------------------------
# Seed 002's example
# ---------------------------------------------------------------------------


def test_seed_002_example_matches_the_hand_written_backward_pass():
    want_f, want_dx, want_dy = seed_002_by_hand(3.0, -4.0)
    x, y = Var(3.0, name="x"), Var(-4.0, name="y")
    f = (x + graph.sigmoid(y)) / (x**2 + y)
    f.backward()
    assert f.value == pytest.approx(want_f, rel=1e-15)
    assert x.grad == pytest.approx(want_dx, rel=1e-14)
    assert y.grad == pytest.approx(want_dy, rel=1e-14)
    assert isinstance(x.grad, float) and isinstance(f.value, float)


def test_seed_002_example_step_by_step_keeps_every_intermediate():
    x, y = Var(3.0, name="x"), Var(-4.0, name="y")
    a = graph.sigmoid(y)
    b = x + a
    c = x**2
    d = y + c
    e = 1.0 / d
    f = b * e
    f.backward()
    _, want_dx, want_dy = seed_002_by_hand(3.0, -4.0)
    assert (x.grad, y.grad) == (pytest.approx(want_dx, rel=1e-14), pytest.approx(want_dy, rel=1e-14))
    # the accumulators of the seed's code: δ_b = e, δ_e = b, δ_d = −b/d², δ_c = δ_d, δ_a = δ_b
    assert b.grad == pytest.approx(e.value) and e.grad == pytest.approx(b.value)
    assert d.grad == pytest.approx(-b.value / d.value**2) and c.grad == pytest.approx(d.grad)
    assert a.grad == pytest.approx(b.grad) and f.grad == 1.0
    assert (a.value, c.value, d.value) == (pytest.approx(1 / (1 + math.exp(4))), 9.0, 5.0)


def test_seed_002_example_against_central_differences():
    report = gradcheck(lambda x, y: (x + graph.sigmoid(y)) / (x**2 + y), [3.0, -4.0])
    assert report.passed, report
    assert report.max_rel_error < 1e-8


# ---------------------------------------------------------------------------
# Forks: accumulators sum the contributions
# ---------------------------------------------------------------------------


def test_fork_z_times_z():
    z = Var(1.5)
    (z * z).backward()
    assert z.grad == 3.0


def test_fork_through_a_variable_that_depends_on_x():
    x = Var(2.0)
    q = 3.0 * x + 1.0  # q depends on x, and q·x uses x again: d/dx (3x² + x) = 6x + 1
    (q * x).backward()
    assert x.grad == pytest.approx(13.0)
    assert q.grad == pytest.approx(2.0)


def test_variable_used_by_ten_blocks():
    x = Var(0.7)
    uses = [x * k for k in range(1, 11)]  # ten blocks read x
    total = uses[0]
    for u in uses[1:]:
        total = total + u
    total.backward()
    assert x.grad == pytest.approx(55.0)
    assert all(u.grad == 1.0 for u in uses)


def test_array_fork_and_each_block_runs_its_backward_once():
    calls = []

    @graph.block
    def counted(x):
        calls.append("forward")
        return 2.0 * x, lambda g: (calls.append("backward"), 2.0 * g)[1]

    w = Var(np.array([1.0, -2.0, 3.0]))
    h = counted(w)
    branches = [graph.tanh(h), h * h, graph.exp(h), h / 3.0, -h]  # h forks five ways
    out = graph.sum(branches[0] + branches[1] + branches[2] + branches[3] + branches[4])
    out.backward()
    assert calls.count("backward") == 1
    hv = h.value
    dh = (1 - np.tanh(hv) ** 2) + 2 * hv + np.exp(hv) + 1 / 3 - 1
    np.testing.assert_allclose(w.grad, 2.0 * dh, rtol=1e-14)


def test_diamond_is_visited_once_per_node():
    seen = []

    @graph.block
    def spy(x):
        return x, lambda g: (seen.append(g), g)[1]

    x = Var(1.0)
    top = spy(x)
    left, right = top * 2.0, top * 3.0
    (left + right).backward()
    assert seen == [5.0]  # one call, with the summed accumulator
    assert x.grad == 5.0


# ---------------------------------------------------------------------------
# Broadcasting, constants, operators
# ---------------------------------------------------------------------------


def test_scalar_broadcast_against_array_sums_the_gradient():
    s = Var(2.0)
    a = Var(np.array([[1.0, 2.0], [3.0, 4.0]]))
    graph.sum(s * a + s).backward()
    assert s.grad == pytest.approx(10.0 + 4.0)
    np.testing.assert_array_equal(a.grad, np.full((2, 2), 2.0))


def test_general_broadcasting_reduces_to_each_input_shape():
    col, row = Var(np.arange(3.0).reshape(3, 1)), Var(np.arange(4.0).reshape(1, 4))
    vec = Var(np.ones(4))
    out = graph.sum(col * row + vec)
    out.backward()
    assert col.grad.shape == (3, 1) and row.grad.shape == (1, 4) and vec.grad.shape == (4,)
    np.testing.assert_array_equal(col.grad, np.full((3, 1), 6.0))
    np.testing.assert_array_equal(row.grad, np.full((1, 4), 3.0))
    np.testing.assert_array_equal(vec.grad, np.full(4, 3.0))


def test_numbers_and_arrays_are_constants_on_either_side():
    x = Var(np.array([1.0, 2.0]))
    data = np.array([3.0, 4.0])
    out = data * x  # ndarray on the left still gives a Var
    assert isinstance(out, Var)
    out = graph.sum(2.0 - out / 4.0 + 1 - data)
    out.backward()
    np.testing.assert_allclose(x.grad, -data / 4.0)
    constants = [v for v in graph.topological_order(out, only_requiring_grad=False)
                 if not v.requires_grad]
    assert len(constants) == 5 and all(not np.any(v.grad) for v in constants)


def test_operators_and_their_derivatives():
    u, v = Var(1.3), Var(-0.4)
    for expr, du, dv in [
        (lambda: u + v, 1.0, 1.0),
        (lambda: u - v, 1.0, -1.0),
        (lambda: u * v, -0.4, 1.3),
        (lambda: u / v, 1 / -0.4, -1.3 / 0.16),
        (lambda: -u + 0 * v, -1.0, 0.0),
        (lambda: u**3 + v**2, 3 * 1.3**2, 2 * -0.4),
        (lambda: 1.0 / u - 2 * v, -1 / 1.3**2, -2.0),
        (lambda: 5 - u + v * 2, -1.0, 2.0),
    ]:
        u.zero_grad(), v.zero_grad()
        expr().backward()
        assert (u.grad, v.grad) == (pytest.approx(du), pytest.approx(dv))


def test_pow_takes_numbers_only():
    with pytest.raises(TypeError):
        Var(2.0) ** Var(3.0)
    x = Var(4.0)
    (x**0.5).backward()
    assert x.grad == pytest.approx(0.25)


@pytest.mark.parametrize("fn", ["exp", "log", "sigmoid", "tanh", "relu"])
def test_elementwise_functions_against_finite_differences(fn, rng):
    x = rng.uniform(0.2, 2.0, size=(3, 4)) * rng.choice([-1.0, 1.0], size=(3, 4))
    if fn == "log":
        x = np.abs(x)
    f = getattr(graph, fn)
    report = gradcheck(lambda v: graph.sum(f(v) * v), [x])  # away from relu's kink
    assert report.passed, report


def test_functions_match_numpy():
    x = np.array([-30.0, -1.0, 0.0, 2.0, 800.0])
    assert np.allclose(graph.exp(Var(x[:4])).value, np.exp(x[:4]))
    np.testing.assert_allclose(graph.sigmoid(Var(x)).value, ref._sigmoid(x), rtol=1e-15)
    np.testing.assert_array_equal(graph.relu(Var(x)).value, np.maximum(x, 0))
    r = Var(np.array([-1.0, 0.0, 1.0]))
    graph.sum(graph.relu(r)).backward()
    np.testing.assert_array_equal(r.grad, [0.0, 0.0, 1.0])  # relu' = [x > 0], as the kernels


@pytest.mark.parametrize("reduce", ["sum", "mean"])
@pytest.mark.parametrize("axis", [None, 0, 1, -1])
def test_reductions(reduce, axis, rng):
    x = rng.standard_normal((3, 5))
    f = getattr(graph, reduce)
    out = f(Var(x), axis=axis)
    np.testing.assert_allclose(out.value, getattr(np, reduce)(x, axis=axis))
    weights = rng.standard_normal(np.shape(out.value))
    report = gradcheck(lambda v: graph.sum(f(v, axis=axis) * weights), [x])
    assert report.passed, report


def test_reductions_of_a_scalar():
    x = Var(3.0)
    (graph.sum(x) + graph.mean(x)).backward()
    assert x.grad == 2.0


# ---------------------------------------------------------------------------
# Blocks over the compiled kernels
# ---------------------------------------------------------------------------


def test_matmul_abt_block(rng):
    A, B = rng.standard_normal((5, 3)), rng.standard_normal((4, 3))
    C = graph.matmul_abt(Var(A), Var(B))
    assert_sums_close(C.value, ref.matmul_abt(A, B), np.abs(A) @ np.abs(B).T)
    report = gradcheck(lambda a, b: graph.sum(graph.tanh(graph.matmul_abt(a, b))), [A, B])
    assert report.passed, report


@pytest.mark.parametrize("activation", fastbp.ACTIVATIONS)
def test_dense_block_is_one_block_and_agrees_with_the_reference(activation, rng):
    X, W, b = rng.standard_normal((6, 3)), rng.standard_normal((4, 3)), rng.standard_normal(4)
    T = rng.standard_normal((6, 4))
    Xv, Wv, bv = Var(X), Var(W), Var(b)
    Y = graph.dense(Xv, Wv, bv, activation=activation)
    assert Y._parents == (Xv, Wv, bv)  # one block, not five
    loss = graph.squared_error(Y, T)
    loss.backward()
    Z = z_buffer(activation, 6, 4)
    Yr = ref.dense_forward(X, W, b, activation, Z=Z)
    lr, dY = ref.squared_error(Yr, T)
    dX, dW, db = ref.dense_backward(dY, X, W, Yr, activation, Z=Z)
    assert loss.value == pytest.approx(lr, rel=1e-12)
    for got, want in [(Y.value, Yr), (Xv.grad, dX), (Wv.grad, dW), (bv.grad, db)]:
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_dense_skips_dX_for_data(monkeypatch, rng):
    calls = []
    real = graph.dense_backward

    def spy(*args, need_dX=True, **kw):
        calls.append(need_dX)
        return real(*args, need_dX=need_dX, **kw)

    monkeypatch.setattr(graph, "dense_backward", spy)
    X, W, b = rng.standard_normal((3, 2)), Var(rng.standard_normal((2, 2))), Var(np.zeros(2))
    graph.sum(graph.dense(X, W, b)).backward()  # X: a plain array, a constant
    graph.sum(graph.dense(Var(X, requires_grad=False), W, b)).backward()
    Xv = Var(X)
    graph.sum(graph.dense(Xv, W, b)).backward()
    assert calls == [False, False, True]
    assert Xv.grad.shape == X.shape and np.any(Xv.grad)


@pytest.mark.parametrize("reduction", fastbp.REDUCTIONS)
def test_squared_error_block(reduction, rng):
    Y, T = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    report = gradcheck(lambda y, t: graph.squared_error(y, t, reduction=reduction), [Y, T])
    assert report.passed, report
    loss = graph.squared_error(Var(Y), T, reduction=reduction)
    assert loss.value == pytest.approx(ref.squared_error(Y, T, reduction)[0], rel=1e-12)
    assert loss._op == f"squared_error(reduction={reduction!r})"


def test_kernel_blocks_accept_non_contiguous_values(rng):
    X = rng.standard_normal((3, 8))[:, ::2]  # a strided view
    W, b = Var(rng.standard_normal((2, 4))), Var(np.zeros(2))
    graph.sum(graph.dense(X, W, b, activation="tanh")).backward()
    report = gradcheck(lambda w: graph.sum(graph.dense(X, w, b.value)), [W.value])
    assert report.passed, report


def two_layer_loss_by_reference(X, T, W1, b1, W2, b2, activation, reduction):
    """A two-layer net composed from fastbp.reference: the oracle."""
    Z = z_buffer(activation, X.shape[0], W1.shape[0])
    H = ref.dense_forward(X, W1, b1, activation, Z=Z)
    Y = ref.dense_forward(H, W2, b2, "identity")
    loss, dY = ref.squared_error(Y, T, reduction)
    dH, dW2, db2 = ref.dense_backward(dY, H, W2, Y, "identity")
    _, dW1, db1 = ref.dense_backward(dH, X, W1, H, activation, need_dX=False, Z=Z)
    return loss, [dW1, dW2], [db1, db2]


def two_layer_loss_by_graph(X, T, weights, biases, activation, reduction):
    Ws = [Var(W) for W in weights]
    bs = [Var(b) for b in biases]
    H = graph.dense(X, Ws[0], bs[0], activation=activation)
    loss = graph.squared_error(graph.dense(H, Ws[1], bs[1]), T, reduction=reduction)
    loss.backward()
    return loss.value, [W.grad for W in Ws], [b.grad for b in bs]


@pytest.mark.parametrize("activation", fastbp.ACTIVATIONS)
@pytest.mark.parametrize("reduction", fastbp.REDUCTIONS)
def test_two_layer_network_matches_the_reference(activation, reduction, rng):
    X, T = rng.standard_normal((7, 3)), rng.standard_normal((7, 2))
    weights = [rng.standard_normal((5, 3)), rng.standard_normal((2, 5))]
    biases = [rng.standard_normal(5), rng.standard_normal(2)]
    got = two_layer_loss_by_graph(X, T, weights, biases, activation, reduction)
    want = two_layer_loss_by_reference(X, T, *[a for p in zip(weights, biases) for a in p],
                                       activation, reduction)
    assert got[0] == pytest.approx(want[0], rel=1e-12)
    for g, w in zip(got[1] + got[2], want[1] + want[2]):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "identity"])
def test_two_layer_network_matches_fastbp_MLP(activation, rng):
    network = pytest.importorskip("fastbp.network")
    mlp = network.MLP([3, 5, 2], activation=activation, output_activation="identity", seed=3)
    X, T = rng.standard_normal((9, 3)), rng.standard_normal((9, 2))
    loss, grad_w, grad_b = mlp.gradients(X, T, loss="squared_error", reduction="sum")
    got = two_layer_loss_by_graph(X, T, mlp.weights, mlp.biases, activation, "sum")
    assert got[0] == pytest.approx(loss, rel=1e-12)
    for g, w in zip(got[1] + got[2], list(grad_w) + list(grad_b)):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-13)


# ---------------------------------------------------------------------------
# backward(), accumulation, zero_grad, deep graphs
# ---------------------------------------------------------------------------


def test_backward_twice_accumulates_and_zero_grad_clears_the_graph_below():
    x, y = Var(3.0), Var(-4.0)
    a = graph.sigmoid(y)
    f = (x + a) / (x**2 + y)
    f.backward()
    once = (x.grad, y.grad, a.grad)
    f.backward()
    assert (x.grad, y.grad, a.grad) == tuple(pytest.approx(2 * g) for g in once)
    assert f.grad == 2.0
    f.zero_grad()
    assert (x.grad, y.grad, a.grad, f.grad) == (0.0, 0.0, 0.0, 0.0)
    f.backward()
    assert (x.grad, y.grad, a.grad) == tuple(pytest.approx(g) for g in once)


def test_zero_grad_reaches_only_below():
    x = Var(2.0)
    h = x * x
    top = h * 3.0
    top.backward()
    h.zero_grad()
    assert x.grad == 0.0 and h.grad == 0.0 and top.grad == 1.0


def test_zero_grad_on_arrays_and_grad_before_backward():
    w = Var(np.ones((2, 3)))
    assert w.grad.shape == (2, 3) and not w.grad.any()
    out = graph.sum(w * w)
    out.backward()
    assert w.grad.sum() == 12.0
    out.zero_grad()
    np.testing.assert_array_equal(w.grad, np.zeros((2, 3)))


def test_grads_are_independent_arrays():
    # '+' passes its g through to both inputs: each .grad must still be its own array.
    a, b = Var(np.ones(3)), Var(np.ones(3))
    s = a + b
    graph.sum(s).backward()
    assert a.grad is not b.grad and a.grad is not s.grad
    a.grad[0] = 99.0
    assert b.grad[0] == 1.0 and s.grad[0] == 1.0


def test_backward_needs_a_scalar_or_a_seed():
    v = Var(np.arange(3.0))
    y = v * 2.0
    with pytest.raises(ValueError, match="scalar output"):
        y.backward()
    y.backward(np.array([1.0, 0.0, -1.0]))
    np.testing.assert_array_equal(v.grad, [2.0, 0.0, -2.0])
    with pytest.raises(ValueError, match="shape"):
        y.backward(np.ones(2))
    one = Var(np.array([[2.0]]))
    (one * one).backward()  # size 1 counts as scalar
    assert one.grad.shape == (1, 1) and one.grad[0, 0] == 4.0


def test_deep_chain_of_100000_nodes():
    depth = 100_000
    x = Var(0.5)
    h = x
    for i in range(depth):
        h = h * 1.00001 if i % 2 else h + 0.25
    h.backward()
    assert x.grad == pytest.approx(1.00001 ** (depth // 2), rel=1e-9)
    h.zero_grad()
    assert x.grad == 0.0
    dot = h.to_dot()
    assert dot.count("->") == 2 * depth  # every block has its constant and its input
    del h  # freeing a deep chain must not overflow the C stack either


def test_leaf_value_is_shared_not_copied():
    W = np.ones(3)
    v = Var(W)
    W[0] = 5.0
    assert v.value[0] == 5.0
    ints = Var([1, 2, 3])
    assert ints.value.dtype == np.float64
    assert Var(np.float32(2.5)).value == 2.5 and isinstance(Var(np.array(2.0)).value, float)
    with pytest.raises(TypeError):
        Var(Var(1.0))


def test_repr():
    x = Var(np.zeros((2, 2)), name="W")
    assert "W" in repr(x) and "(2, 2)" in repr(x)
    assert "tanh" in repr(graph.tanh(x))


# ---------------------------------------------------------------------------
# Custom blocks
# ---------------------------------------------------------------------------


def test_custom_block_softplus():
    import scipy.special

    @graph.block
    def softplus(x):
        y = np.logaddexp(0.0, x)
        return y, lambda g: g * scipy.special.expit(x)

    z = np.linspace(-40.0, 40.0, 9)
    out = softplus(Var(z))
    np.testing.assert_allclose(out.value, np.log1p(np.exp(z)), rtol=1e-14)
    report = gradcheck(lambda v: graph.sum(softplus(v) * softplus(v)), [z])
    assert report.passed, report
    assert softplus.name == "softplus" and softplus.inputs == ("x",)


def test_custom_block_with_two_inputs_settings_and_needs_grad():
    seen = {}

    @graph.block(name="axpy")
    def axpy(a, x, y, scale=1.0, needs_grad=None):
        seen["needs"] = needs_grad
        return scale * a * x + y, lambda g: (scale * np.sum(g * x), scale * a * g, g)

    a, x = Var(2.0), Var(np.array([1.0, 2.0]))
    y = np.array([0.5, 0.5])
    out = axpy(a, x, y, scale=3.0)
    assert seen["needs"] == (True, True, False)
    assert out._op == "axpy(scale=3.0)"
    graph.sum(out).backward()
    assert a.grad == pytest.approx(9.0)
    np.testing.assert_allclose(x.grad, [6.0, 6.0])
    out2 = axpy(x=x, a=a, y=y)  # keywords bind to inputs too
    np.testing.assert_allclose(out2.value, [2.5, 4.5])
    with pytest.raises(TypeError):
        axpy(a, x)  # a missing input


def test_custom_block_mistakes_are_reported_by_name():
    @graph.block
    def wrong_count(u, v):
        return u + v, lambda g: (g,)

    @graph.block
    def wrong_shape(u):
        return u, lambda g: np.ones(5)

    with pytest.raises(ValueError, match="wrong_count.*1 gradients for 2 inputs"):
        wrong_count(Var(1.0), Var(2.0)).backward()
    with pytest.raises(ValueError, match="wrong_shape.*shape \\(5,\\).*\\(3,\\)"):
        graph.sum(wrong_shape(Var(np.ones(3), name="u"))).backward()


def test_block_may_return_none_for_an_input():
    @graph.block
    def first(u, v):
        return u, lambda g: (g, None)

    u, v = Var(1.0), Var(2.0)
    first(u, v).backward()
    assert u.grad == 1.0 and v.grad == 0.0


def test_the_guides_code_runs(monkeypatch, tmp_path):
    """Every ```python block of docs/graph.md, in order, in one namespace."""
    if not hasattr(fastbp, "gradcheck"):  # until fastbp/__init__ exports it
        from fastbp import finite_diff
        monkeypatch.setattr(fastbp, "gradcheck", finite_diff.gradcheck, raising=False)
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 6
    namespace = {}
    for code in blocks:
        exec(compile(code, str(DOCS), "exec"), namespace)
    assert namespace["report"].passed
    assert isinstance(namespace["softplus"], graph.Block)


# ---------------------------------------------------------------------------
# Pictures
# ---------------------------------------------------------------------------


def _seed_graph():
    x, y = Var(3.0, name="x"), Var(-4.0, name="y")
    W = Var(np.arange(12.0).reshape(3, 4), name='W "weights"')
    f = (x + graph.sigmoid(y)) / (x**2 + y) + graph.mean(W) * 0.0
    f.backward()
    return f


def _dot_nodes_and_edges(dot):
    assert dot.startswith("digraph ") and dot.rstrip().endswith("}")
    body = dot[dot.index("{") + 1: dot.rindex("}")]
    label = r'"(?:[^"\\]|\\.)*"'
    nodes = dict(re.findall(rf"^\s*(n\d+) \[label=({label})[^\]]*\];$", body, re.M))
    edges = re.findall(rf"^\s*(n\d+) -> (n\d+)(?: \[label={label}\])?;$", body, re.M)
    statements = [s for s in body.strip().splitlines() if s.strip()]
    assert len(statements) == 3 + len(nodes) + len(edges), "a line that is neither node nor edge"
    return nodes, edges


def test_dot_is_well_formed_and_names_every_node():
    f = _seed_graph()
    dot = f.to_dot()
    nodes, edges = _dot_nodes_and_edges(dot)
    all_vars = graph.topological_order(f, only_requiring_grad=False)
    assert len(nodes) == len(all_vars)
    assert {a for a, _ in edges} | {b for _, b in edges} <= set(nodes)
    assert len(edges) == sum(len(v._parents) for v in all_vars)
    labels = " ".join(nodes.values())
    for text in ["x\\nvalue 3\\ngrad -0.5243", "y\\nvalue -4", "sigmoid", "÷", "pow(exponent=2.0)",
                 'W \\"weights\\"', "(3, 4) [0, 1, 2, …]", "mean"]:
        assert text in labels, text
    assert "peripheries=2" in dot  # the output
    assert dot.count('label="u"') == dot.count('label="v"') >= 4


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_to_svg_renders(tmp_path):
    path = _seed_graph().to_svg(tmp_path / "g.svg")
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")
    text = " ".join(t.text or "" for t in root.iter() if t.tag.endswith("text"))
    assert "sigmoid" in text and "grad -0.5243" in text


def test_to_svg_without_dot_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(graph.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="apt-get install graphviz"):
        _seed_graph().to_svg(tmp_path / "g.svg")
    assert not (tmp_path / "g.svg").exists()


def test_docs_picture_exists():
    svg = DOCS.parent / "graph_example.svg"
    assert "graph_example.svg" in DOCS.read_text(encoding="utf-8")
    assert ET.parse(svg).getroot().tag.endswith("svg")


# ---------------------------------------------------------------------------
# Random expression trees against finite differences
# ---------------------------------------------------------------------------

UNARY = {
    "neg": lambda u: -u,
    "square": lambda u: u**2,
    "cube": lambda u: u**3,
    "sigmoid": graph.sigmoid,
    "tanh": graph.tanh,
    "exp_tanh": lambda u: graph.exp(graph.tanh(u)),
    "log1p_sq": lambda u: graph.log(1.0 + u * u),
    "recip": lambda u: 1.0 / (1.0 + u * u),
    "scale": lambda u: 0.5 * u,
}
BINARY = {
    "+": lambda u, v: u + v,
    "-": lambda u, v: u - v,
    "*": lambda u, v: u * v,
    "/": lambda u, v: u / (1.5 + v * v),
}
LEAVES = ["a", "b", "c"]  # a scalar, two (3,) arrays: broadcasting in every mix

expressions = st.recursive(
    st.sampled_from(LEAVES) | st.floats(-2, 2).map(lambda c: ("const", c)),
    lambda inner: st.one_of(
        st.tuples(st.sampled_from(sorted(UNARY)), inner),
        st.tuples(st.sampled_from(sorted(BINARY)), inner, inner),
    ),
    max_leaves=8,
)


def build(expr, env):
    if isinstance(expr, str):
        return env[expr]
    if expr[0] == "const":
        return expr[1]
    if len(expr) == 2:
        return UNARY[expr[0]](build(expr[1], env))
    return BINARY[expr[0]](build(expr[1], env), build(expr[2], env))


@given(
    expr=expressions,
    a=st.floats(-1.5, 1.5),
    b=st.lists(st.floats(-1.5, 1.5), min_size=3, max_size=3),
    c=st.lists(st.floats(-1.5, 1.5), min_size=3, max_size=3),
)
def test_random_expression_trees_against_finite_differences(expr, a, b, c):
    def f(a, b, c):  # times a constant (3,) so that every tree ends as an array
        return graph.sum(build(expr, {"a": a, "b": b, "c": c}) * Var(np.ones(3), requires_grad=False))

    value = f(Var(a), Var(np.array(b)), Var(np.array(c))).value
    assume(abs(value) < 1e4)
    report = gradcheck(f, [a, np.array(b), np.array(c)])
    assert report.passed, f"{expr}\n{report}"


@pytest.mark.parametrize("activation", ["leaky_relu", "elu", "softplus", "silu"])
def test_dense_block_new_activations_against_finite_differences(activation, rng):
    """The dense block's backward (silu: from the Z it kept) against finite
    differences, for X, W and b at once."""
    X, W = rng.standard_normal((5, 3)), rng.standard_normal((4, 3))
    b = rng.standard_normal(4) + 0.3
    G = rng.standard_normal((5, 4))
    report = gradcheck(lambda x, w, c: graph.sum(graph.dense(x, w, c, activation=activation) * G),
                       [X, W, b])
    assert report.passed, report


# ---------------------------------------------------------------------------
# Forward mode: the dense block's jvp
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("activation", fastbp.ACTIVATIONS)
def test_a_chain_of_dense_jvps_equals_the_network_and_differences(activation):
    from fastbp import reference
    from fastbp.network import MLP
    rng = np.random.default_rng(21)
    net = MLP([4, 6, 3], activation=activation, seed=2)
    net.params[:] += 0.3 * rng.normal(size=net.n_params)
    X, dX = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    v = rng.normal(size=net.n_params)
    (W0, W1), (b0, b1) = net.weights, net.biases
    n0 = W0.size + W1.size
    dW0, dW1 = v[:W0.size].reshape(W0.shape), v[W0.size:n0].reshape(W1.shape)
    db0, db1 = v[n0:n0 + b0.size], v[n0 + b0.size:]
    H, dH = graph.dense.jvp(X, W0, b0, dX, dW0, db0, activation=activation)
    Y, dY = graph.dense.jvp(H, W1, b1, dH, dW1, db1)
    # the chain, the network and the network's twin agree
    np.testing.assert_allclose(Y, net.forward(X), rtol=1e-12)
    np.testing.assert_allclose(dY, net.jvp(X, dX, v)[1], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dY, reference.jvp(net, X, dX, v)[1], rtol=1e-10, atol=1e-12)
    # and a difference of the graph's own forward values
    if activation not in ("relu", "leaky_relu"):
        h = 1e-6
        f = lambda t: graph.dense(graph.dense(X + t * dX, W0 + t * dW0, b0 + t * db0,
                                              activation), W1 + t * dW1, b1 + t * db1).value
        np.testing.assert_allclose(dY, (f(h) - f(-h)) / (2 * h), rtol=1e-6, atol=1e-7)


def test_dense_jvp_needs_a_tangent():
    with pytest.raises(ValueError, match="needs a tangent"):
        graph.dense.jvp(np.ones((2, 3)), np.ones((4, 3)), np.zeros(4))
