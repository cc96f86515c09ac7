"""fastbp.derivatives, the MLP's derivative methods: against their NumPy
twins in fastbp.reference (rtol 1e-10), against finite differences, and the
identities that hold exactly up to rounding; over every activation and
loss, depths 1-4, odd widths, N = 1, the reductions, sample weights and a
CSR X; bad arguments; torch.func where it is installed.

(The compiled core's chunks, two-thread split and allocations are in
tests/test__derivatives.py.)"""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings, strategies as st

import fastbp
from fastbp import reference as ref
from fastbp.network import MLP

RTOL = 1e-10
# the output activation each loss trains with (cross_entropy: logits or softmax)
OUTPUTS = {"squared_error": ("identity", "sigmoid", "tanh"), "cross_entropy": ("identity", "softmax"),
           "binary_cross_entropy": ("sigmoid",), "poisson": ("exp",)}
CASES = [(loss, out) for loss, outs in OUTPUTS.items() for out in outs]
METHODS = ("input_jacobian", "input_gradient", "jvp", "vjp", "hvp", "gnvp", "param_jacobian",
           "per_example_gradients")


def targets(rng, loss, n, d):
    if loss == "cross_entropy":
        return rng.integers(0, d, n)
    if loss == "binary_cross_entropy":
        return (rng.uniform(size=(n, d)) < 0.5).astype(float)
    if loss == "poisson":
        return rng.poisson(1.5, (n, d)).astype(float)
    return rng.normal(size=(n, d))


def random_net(rng, depth, activation, output, max_width=7, min_out=1):
    sizes = [int(rng.integers(1, max_width + 1)) for _ in range(depth + 1)]
    sizes[-1] = max(sizes[-1], min_out)
    net = MLP(sizes, activation=activation, output_activation=output,
              seed=int(rng.integers(1 << 30)))
    net.params[:] += 0.3 * rng.normal(size=net.n_params)  # biases off 0: every path matters
    return net


def assert_close(got, want, rtol=RTOL):
    want = np.asarray(want, dtype=float)
    np.testing.assert_allclose(got, want, rtol=rtol,
                               atol=rtol * max(1.0, np.abs(want).max(initial=0.0)))


def flat_grad(net, X, T, **kw):
    J, gw, gb = net.gradients(X, T, **kw)
    return J, np.concatenate([g.ravel() for g in gw] + list(gb))


def with_params(net, p, fn):
    old = net.params.copy()
    net.params[:] = p
    try:
        return fn()
    finally:
        net.params[:] = old


def central(f, x, h):
    """Central differences of f along every coordinate of x: (f's shape..., x.size)."""
    cols = []
    for i in range(x.size):
        e = np.zeros_like(x)
        e.flat[i] = h
        cols.append((f(x + e) - f(x - e)) / (2 * h))
    return np.stack(cols, axis=-1)


# ---------------------------------------------------------------------------
# Against the NumPy twins
# ---------------------------------------------------------------------------

needs_twins = pytest.mark.skipif(not all(hasattr(ref, m) for m in METHODS),
                                 reason="the reference twins are not there")


def both(net, method, *args, **kw):
    return getattr(net, method)(*args, **kw), getattr(ref, method)(net, *args, **kw)


def assert_same_result(got, want):
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert np.shape(g) == np.shape(w)
        assert_close(g, w)


@needs_twins
@pytest.mark.parametrize("activation", fastbp.ACTIVATIONS)
@pytest.mark.parametrize("loss, output", CASES)
@pytest.mark.parametrize("depth", [1, 2, 4])
def test_every_method_matches_its_twin(activation, loss, output, depth):
    rng = np.random.default_rng(depth * 101 + len(activation) + len(output))
    net = random_net(rng, depth, activation, output, min_out=2 if output == "softmax" else 1)
    n, di, do = 5, net.sizes[0], net.sizes[-1]
    X, T = rng.normal(size=(n, di)), targets(rng, loss, n, do)
    v, dX, dY = rng.normal(size=net.n_params), rng.normal(size=(n, di)), rng.normal(size=(n, do))
    w = rng.uniform(0.2, 2.0, n)
    for red in ("sum", "mean") + (("half",) if loss != "cross_entropy" else ()):
        kw = {"loss": loss, "reduction": red, "sample_weight": w if red == "mean" else None}
        assert_same_result(*both(net, "input_gradient", X, T, **kw))
        assert_same_result(*both(net, "hvp", X, T, v, **kw))
        assert_same_result(*both(net, "gnvp", X, T, v, **kw))
        assert_same_result(*both(net, "per_example_gradients", X, T, **kw))
    assert_same_result(*both(net, "input_jacobian", X))
    assert_same_result(*both(net, "param_jacobian", X))
    assert_same_result(*both(net, "jvp", X, dX, v))
    assert_same_result(*both(net, "jvp", X, dX))
    assert_same_result(*both(net, "jvp", X, None, v))
    assert_same_result(*both(net, "vjp", X, dY))


@needs_twins
@pytest.mark.parametrize("loss, output", [("squared_error", "identity"), ("cross_entropy", "softmax"),
                                          ("poisson", "exp")])
def test_one_example_and_a_csr_x_match_the_twins(loss, output):
    rng = np.random.default_rng(7)
    net = MLP([30, 9, 5, 3], activation="silu", output_activation=output, seed=3)
    Xs = sp.random(11, 30, density=0.2, format="csr", random_state=2)
    T, v = targets(rng, loss, 11, 3), rng.normal(size=net.n_params)
    for X, TT in ((Xs, T), (Xs[:1], T[:1])):
        assert_same_result(*both(net, "input_jacobian", X))
        assert_same_result(*both(net, "param_jacobian", X))
        assert_same_result(*both(net, "hvp", X, TT, v, loss=loss))
        assert_same_result(*both(net, "gnvp", X, TT, v, loss=loss))
        assert_same_result(*both(net, "per_example_gradients", X, TT, loss=loss))
        assert_same_result(*both(net, "jvp", X, None, v))
        assert_same_result(*both(net, "vjp", X, rng.normal(size=(X.shape[0], 3))))
        assert_same_result(*both(net, "input_gradient", X, TT, loss=loss))


@needs_twins
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), depth=st.integers(1, 4), n=st.integers(1, 9),
       activation=st.sampled_from(fastbp.ACTIVATIONS), case=st.sampled_from(CASES))
def test_random_shapes_match_the_twins(seed, depth, n, activation, case):
    loss, output = case
    rng = np.random.default_rng(seed)
    net = random_net(rng, depth, activation, output, max_width=9,
                     min_out=2 if output == "softmax" else 1)
    X, T = rng.normal(size=(n, net.sizes[0])), targets(rng, loss, n, net.sizes[-1])
    v = rng.normal(size=net.n_params)
    assert_same_result(*both(net, "hvp", X, T, v, loss=loss, reduction="mean"))
    assert_same_result(*both(net, "input_jacobian", X))
    assert_same_result(*both(net, "param_jacobian", X))


# ---------------------------------------------------------------------------
# Against finite differences
# ---------------------------------------------------------------------------

SMOOTH = [a for a in fastbp.ACTIVATIONS if a not in ("relu", "leaky_relu")]


@pytest.mark.parametrize("activation", SMOOTH)
@pytest.mark.parametrize("output", ["identity", "sigmoid", "softmax", "exp"])
def test_input_jacobian_and_jvp_against_differences_of_forward(activation, output):
    rng = np.random.default_rng(3)
    net = MLP([3, 6, 5, 4], activation=activation, output_activation=output, seed=1)
    net.params[:] += 0.3 * rng.normal(size=net.n_params)
    X = rng.normal(size=(4, 3))
    J = net.input_jacobian(X)
    h = 1e-6
    for i in range(4):
        fd = central(lambda x: net.forward(x.reshape(1, 3))[0], X[i], h)
        # central differences err by ~h² f''' + ε/h: 1e-7 of the values here
        np.testing.assert_allclose(J[i], fd, rtol=1e-6, atol=1e-7)
    dX, dp = rng.normal(size=X.shape), rng.normal(size=net.n_params)
    Y, dY = net.jvp(X, dX, dp)
    fd = (with_params(net, net.params + h * dp, lambda: net.forward(X + h * dX))
          - with_params(net, net.params - h * dp, lambda: net.forward(X - h * dX))) / (2 * h)
    np.testing.assert_allclose(dY, fd, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(Y, net.forward(X))


@pytest.mark.parametrize("activation", SMOOTH)
@pytest.mark.parametrize("loss, output", CASES)
def test_hvp_against_differences_of_the_gradient(activation, loss, output):
    rng = np.random.default_rng(5)
    net = MLP([3, 5, 4, 3], activation=activation, output_activation=output, seed=2)
    net.params[:] += 0.3 * rng.normal(size=net.n_params)
    X, T = rng.normal(size=(6, 3)), targets(rng, loss, 6, 3)
    v = rng.normal(size=net.n_params)
    Hv = net.hvp(X, T, v, loss=loss, reduction="mean")
    h = 1e-5
    g = lambda p: with_params(net, p, lambda: flat_grad(net, X, T, loss=loss, reduction="mean")[1])
    fd = (g(net.params + h * v) - g(net.params - h * v)) / (2 * h)
    # the error of the stencil: h² |∂³g| (~1e-10 here) plus ε |g| / h
    np.testing.assert_allclose(Hv, fd, rtol=1e-6, atol=1e-7 * max(1.0, np.abs(fd).max()))


@pytest.mark.parametrize("output", ["identity", "softmax", "exp", "sigmoid"])
def test_param_jacobian_against_differences_of_forward(output):
    rng = np.random.default_rng(6)
    net = MLP([4, 5, 3], activation="tanh", output_activation=output, seed=3)
    X = rng.normal(size=(3, 4))
    PJ = net.param_jacobian(X)
    fd = central(lambda p: with_params(net, p, lambda: net.forward(X).ravel()), net.params.copy(), 1e-6)
    np.testing.assert_allclose(PJ, fd, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("loss, output", CASES)
def test_input_gradient_against_differences_of_the_loss(loss, output):
    rng = np.random.default_rng(8)
    net = MLP([3, 6, 3], activation="softplus", output_activation=output, seed=4)
    X, T = rng.normal(size=(5, 3)), targets(rng, loss, 5, 3)
    J, dX = net.input_gradient(X, T, loss=loss, reduction="mean")
    assert J == pytest.approx(net.gradients(X, T, loss=loss, reduction="mean")[0], rel=1e-14)
    f = lambda x: net.gradients(x.reshape(5, 3), T, loss=loss, reduction="mean")[0]
    np.testing.assert_allclose(dX.ravel(), central(f, X.ravel(), 1e-6), rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------------------
# Identities, exact up to rounding
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("activation", fastbp.ACTIVATIONS)
@pytest.mark.parametrize("loss, output", CASES)
def test_the_hessian_is_symmetric_and_gauss_newton_is_positive(activation, loss, output):
    rng = np.random.default_rng(9)
    net = random_net(rng, 3, activation, output, min_out=2)
    X, T = rng.normal(size=(7, net.sizes[0])), targets(rng, loss, 7, net.sizes[-1])
    w = rng.uniform(0.5, 2.0, 7)
    u, v = rng.normal(size=(2, net.n_params))
    kw = {"loss": loss, "reduction": "mean", "sample_weight": w}
    Hu, Hv = net.hvp(X, T, u, **kw), net.hvp(X, T, v, **kw)
    assert u @ Hv == pytest.approx(v @ Hu, rel=1e-10, abs=1e-12 * np.abs(Hv).sum())
    Gu, Gv = net.gnvp(X, T, u, **kw), net.gnvp(X, T, v, **kw)
    assert u @ Gv == pytest.approx(v @ Gu, rel=1e-10, abs=1e-12 * np.abs(Gv).sum())
    assert v @ Gv >= -1e-12 * np.abs(Gv).sum()


def test_a_linear_model_with_squared_error_has_h_equal_to_g():
    """H = G + Σ r ∂²ŷ/∂θ²: equal where ŷ is linear in θ (one identity
    layer), and for any network where the residuals r are 0."""
    rng = np.random.default_rng(10)
    X, v = rng.normal(size=(9, 4)), None
    one = MLP([4, 3], activation="identity", seed=5)
    T = rng.normal(size=(9, 3))
    v = rng.normal(size=one.n_params)
    H, G = one.hvp(X, T, v), one.gnvp(X, T, v)
    assert_close(H, G, rtol=1e-13)
    deep = MLP([4, 6, 5, 3], activation="tanh", seed=5)
    v = rng.normal(size=deep.n_params)
    exact = deep.forward(X)  # zero residuals
    assert_close(deep.hvp(X, exact, v), deep.gnvp(X, exact, v), rtol=1e-12)
    # elsewhere the two differ (the identities are not vacuous): a deep
    # linear network's output is not linear in its parameters
    linear = MLP([4, 6, 5, 3], activation="identity", seed=5)
    assert np.abs(linear.hvp(X, T, v) - linear.gnvp(X, T, v)).max() > 1e-3
    assert np.abs(deep.hvp(X, T, v) - deep.gnvp(X, T, v)).max() > 1e-3


@pytest.mark.parametrize("output", ["identity", "softmax", "exp", "sigmoid"])
def test_param_jacobian_rows_are_the_gradients_of_single_outputs(output):
    rng = np.random.default_rng(11)
    net = MLP([3, 7, 4], activation="elu", output_activation=output, seed=6)
    X = rng.normal(size=(5, 3))
    PJ = net.param_jacobian(X)
    IJ = net.input_jacobian(X)
    for i in range(5):
        for k in range(4):
            dY = np.zeros((5, 4))
            dY[i, k] = 1.0
            dX, dp = net.vjp(X, dY)
            assert_close(PJ[i * 4 + k], dp, rtol=1e-13)
            assert_close(IJ[i, k], dX[i], rtol=1e-13)
            assert not dX[np.arange(5) != i].any()


@pytest.mark.parametrize("loss, output", CASES)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_per_example_gradients_sum_to_the_gradient_and_have_its_norms(loss, output, reduction):
    rng = np.random.default_rng(12)
    net = MLP([5, 6, 3], activation="sigmoid", output_activation=output, seed=7)
    X, T = rng.normal(size=(8, 5)), targets(rng, loss, 8, 3)
    w = rng.uniform(0.1, 3.0, 8)
    kw = {"loss": loss, "reduction": reduction, "sample_weight": w}
    G = net.per_example_gradients(X, T, **kw)
    assert_close(G.sum(axis=0), flat_grad(net, X, T, **kw)[1], rtol=1e-13)
    assert_close(np.linalg.norm(G, axis=1), net.per_example_grad_norms(X, T, **kw), rtol=1e-12)


@pytest.mark.parametrize("output", ["identity", "sigmoid"])
def test_vjp_of_the_loss_gradient_is_gradients_and_input_gradient(output):
    rng = np.random.default_rng(13)
    net = MLP([4, 6, 3], activation="tanh", output_activation=output, seed=8)
    X, T = rng.normal(size=(6, 4)), rng.normal(size=(6, 3))
    dLdY = 2.0 * (net.forward(X) - T) / 6  # squared error, "mean"
    dX, dp = net.vjp(X, dLdY)
    assert_close(dp, flat_grad(net, X, T, reduction="mean")[1], rtol=1e-13)
    assert_close(dX, net.input_gradient(X, T, reduction="mean")[1], rtol=1e-13)


def test_jvp_and_vjp_are_adjoint():
    rng = np.random.default_rng(14)
    net = MLP([4, 6, 5], activation="silu", output_activation="softmax", seed=9)
    X = rng.normal(size=(7, 4))
    dX, dp, dY = rng.normal(size=(7, 4)), rng.normal(size=net.n_params), rng.normal(size=(7, 5))
    _, tangent = net.jvp(X, dX, dp)
    cX, cp = net.vjp(X, dY)
    assert np.sum(dY * tangent) == pytest.approx(np.sum(cX * dX) + cp @ dp, rel=1e-12)


def test_relu_hessian_is_the_one_almost_everywhere():
    """relu's g″ = 0: hvp equals the finite difference of the gradient away
    from the kink (no pre-activation within h of 0)."""
    rng = np.random.default_rng(15)
    net = MLP([3, 8, 2], activation="relu", seed=10)
    X, T, v = rng.normal(size=(6, 3)), rng.normal(size=(6, 2)), rng.normal(size=net.n_params)
    Z = X @ net.weights[0].T + net.biases[0]
    assert np.abs(Z).min() > 1e-3
    h = 1e-7
    g = lambda p: with_params(net, p, lambda: flat_grad(net, X, T)[1])
    fd = (g(net.params + h * v) - g(net.params - h * v)) / (2 * h)
    np.testing.assert_allclose(net.hvp(X, T, v), fd, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------

@pytest.fixture
def net_xt():
    rng = np.random.default_rng(16)
    net = MLP([4, 5, 3], activation="tanh", seed=11)
    return net, rng.normal(size=(6, 4)), rng.normal(size=(6, 3))


@pytest.mark.parametrize("call, exc, match", [
    (lambda n, X, T: n.hvp(X, T, np.zeros(n.n_params + 1)), ValueError, r"v must .*43 values"),
    (lambda n, X, T: n.gnvp(X, T, np.zeros((n.n_params, 1))), ValueError, "v must"),
    (lambda n, X, T: n.jvp(X), ValueError, "needs a tangent"),
    (lambda n, X, T: n.jvp(X, dX=np.zeros((6, 3))), ValueError, "dX must"),
    (lambda n, X, T: n.jvp(X, dX=np.zeros((5, 4))), ValueError, "dX must"),
    (lambda n, X, T: n.jvp(X, dparams=np.zeros(3)), ValueError, "dparams must"),
    (lambda n, X, T: n.vjp(X, np.zeros((6, 4))), ValueError, "dY must"),
    (lambda n, X, T: n.vjp(X, np.zeros((6, 3), dtype=np.float32)), (TypeError, ValueError), "dY"),
    (lambda n, X, T: n.hvp(X, T, np.zeros(n.n_params), loss="hinge"), ValueError, "loss"),
    (lambda n, X, T: n.hvp(X, T, np.zeros(n.n_params), loss="poisson"), ValueError, "output_activation"),
    (lambda n, X, T: n.per_example_gradients(X, T[:5]), ValueError, "T"),
    (lambda n, X, T: n.input_jacobian(X[:, :3]), ValueError, "X"),
    (lambda n, X, T: n.input_jacobian(X, out=np.zeros((6, 4, 3))), ValueError, "out must have shape"),
    (lambda n, X, T: n.param_jacobian(X, out=np.zeros((6, n.n_params))), ValueError, "out must have shape"),
    (lambda n, X, T: n.jvp(X, dparams=np.zeros(n.n_params), out=(np.zeros((6, 3)), X)), ValueError, r"out\[1\]"),
])
def test_bad_arguments_name_what_is_wrong(net_xt, call, exc, match):
    net, X, T = net_xt
    with pytest.raises(exc, match=match):
        call(net, X, T)


def test_inputs_are_left_as_they_were(net_xt):
    net, X, T = net_xt
    rng = np.random.default_rng(17)
    v, dX, dY = rng.normal(size=net.n_params), rng.normal(size=X.shape), rng.normal(size=T.shape)
    keep = [a.copy() for a in (X, T, v, dX, dY, net.params)]
    net.hvp(X, T, v)
    net.gnvp(X, T, v)
    net.jvp(X, dX, v)
    net.vjp(X, dY)
    net.input_gradient(X, T)
    net.per_example_gradients(X, T)
    for a, b in zip((X, T, v, dX, dY, net.params), keep):
        np.testing.assert_array_equal(a, b)


def test_array_likes_are_converted_as_predict_does(net_xt):
    net, X, T = net_xt
    assert_close(net.input_jacobian(X.tolist()), net.input_jacobian(X), rtol=0)
    assert_close(net.hvp(X.astype(np.float32), T, np.ones(net.n_params)),
                 net.hvp(X.astype(np.float32).astype(float), T, np.ones(net.n_params)), rtol=0)


# ---------------------------------------------------------------------------
# torch.func, where installed (never a dependency)
# ---------------------------------------------------------------------------

def test_against_torch_func():
    torch = pytest.importorskip("torch")
    from torch.func import functional_call, hessian, jacrev, jvp, vmap, grad  # noqa: F401
    rng = np.random.default_rng(18)
    net = MLP([4, 6, 5, 3], activation="tanh", output_activation="identity", seed=12)
    X, T, v = rng.normal(size=(7, 4)), rng.normal(size=(7, 3)), rng.normal(size=net.n_params)
    shapes = [W.shape for W in net.weights] + [b.shape for b in net.biases]

    def unflat(p):
        out, off = [], 0
        for s in shapes:
            size = int(np.prod(s))
            out.append(p[off:off + size].reshape(s))
            off += size
        return out

    def f(p, x):
        parts = unflat(p)
        L = len(net.weights)
        a = x
        for l in range(L):
            a = a @ parts[l].T + parts[L + l]
            if l < L - 1:
                a = torch.tanh(a)
        return a

    p = torch.tensor(net.params.copy())
    Xt, Tt, vt = torch.tensor(X), torch.tensor(T), torch.tensor(v)
    loss = lambda p: ((f(p, Xt) - Tt) ** 2).sum()
    _, Hv = jvp(grad(loss), (p,), (vt,))
    assert_close(net.hvp(X, T, v), Hv.numpy())
    Jx = vmap(jacrev(lambda x: f(p, x[None])[0]))(Xt)
    assert_close(net.input_jacobian(X), Jx.numpy())
    Jp = jacrev(lambda q: f(q, Xt).reshape(-1))(p)
    assert_close(net.param_jacobian(X), Jp.numpy())
