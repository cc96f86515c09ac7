"""fastbp.levmar: MLP.lm_step against its NumPy twin (rtol 1e-10) over both
dampings, sample weights, alpha, both forms, CSR X and random shapes; the
normal equations against the Jacobian and the gradient, blocked and whole;
MLP.fit(optimizer="lm") against a NumPy loop of the twin (μ's schedule),
its stopping rules, a linear network, the memory budget and bad arguments.
(The damped solve alone: tests/test__levmar.py; over MPI:
tests/test_distributed.py.)"""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings, strategies as st

from fastbp import levmar, reference as ref
from fastbp.network import MLP

RTOL = 1e-10
ACTIVATIONS = ("tanh", "sigmoid", "relu", "identity", "softplus", "silu", "elu", "leaky_relu")


def problem(seed, sizes, n, activation="tanh", output="identity"):
    rng = np.random.default_rng(seed)
    net = MLP(sizes, activation=activation, output_activation=output, seed=seed)
    net.params[:] += 0.2 * rng.normal(size=net.n_params)
    X = rng.normal(size=(n, sizes[0]))
    T = rng.normal(size=(n, sizes[-1]))
    return net, X, T, rng.uniform(0.2, 3.0, n)


def assert_close(got, want, rtol=RTOL):
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.abs(want).max())


def form_of(net, n, memory=levmar.LM_MEMORY):
    return levmar._Solver(net, n, memory, False).form


# -- one iteration against the twin ----------------------------------------------

@pytest.mark.parametrize("damping", ["identity", "diagonal"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("alpha", [0.0, 0.4])
@pytest.mark.parametrize("case", [([3, 5, 2], 40, "normal"), ([3, 5, 2], 7, "dual"),
                                  ([4, 6, 5, 3], 1, "dual"), ([2, 3, 1], 50, "normal")])
def test_lm_step_matches_the_twin(damping, weighted, alpha, case):
    sizes, n, form = case
    net, X, T, w = problem(n, sizes, n)
    assert form_of(net, n) == form
    sw = w if weighted else None
    got = net.lm_step(X, T, 0.3, damping=damping, sample_weight=sw, alpha=alpha)
    assert_close(got, ref.lm_step(net, X, T, 0.3, damping, sw, alpha=alpha))


def step_in_form(net, X, T, mu, w, form):
    """lm_step's δ in the given form (a distributed solver takes the normal form)."""
    solver = levmar._Solver(net, X.shape[0], levmar.LM_MEMORY, distributed=form == "normal")
    assert solver.form == form
    solver.build(net.derivative_core, X, T, w, 0.0)
    out = np.empty(net.n_params)
    assert solver.solve(mu, out, 0, 0.0, net.params, net.n_weights)
    return out


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_lm_step_matches_the_twin_for_every_activation(activation):
    for output in ("identity", "sigmoid"):
        net, X, T, w = problem(3, [3, 6, 4, 2], 9, activation, output)
        want = ref.lm_step(net, X, T, 0.5, sample_weight=w)
        assert_close(net.lm_step(X, T, 0.5, sample_weight=w), want)
        for form in ("normal", "dual"):  # (18 residuals < P = 62: lm_step's is the dual)
            assert_close(step_in_form(net, X, T, 0.5, w, form), want)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 7), min_size=2, max_size=5), st.integers(1, 30),
       st.sampled_from(ACTIVATIONS), st.sampled_from(["identity", "diagonal"]),
       st.floats(0.05, 10.0), st.booleans(), st.integers(0, 2 ** 20))
def test_lm_step_matches_the_twin_on_random_shapes(sizes, n, activation, damping, mu, weighted, seed):
    net, X, T, w = problem(seed, sizes, n, activation)
    sw = w if weighted else None
    got = net.lm_step(X, T, mu, damping=damping, sample_weight=sw, alpha=0.1)
    assert_close(got, ref.lm_step(net, X, T, mu, damping, sw, alpha=0.1))


def test_lm_step_on_csr_x_equals_the_dense_step():
    net, X, T, w = problem(5, [12, 6, 2], 30)
    X[np.abs(X) < 0.8] = 0.0
    for n in (30, 4):  # normal and dual
        dense = net.lm_step(X[:n], T[:n], 0.1, sample_weight=w[:n])
        for fmt in (sp.csr_matrix, sp.csc_matrix):
            assert_close(net.lm_step(fmt(X[:n]), T[:n], 0.1, sample_weight=w[:n]), dense, 1e-12)


def test_lm_step_writes_out_and_changes_nothing_else():
    net, X, T, w = problem(6, [3, 4, 2], 11)
    before = [a.copy() for a in (net.params, X, T, w)]
    out = np.full(net.n_params, np.nan)
    got = net.lm_step(X, T, 1.0, sample_weight=w, out=out)
    assert got is out and np.isfinite(out).all()
    for a, b in zip((net.params, X, T, w), before):
        np.testing.assert_array_equal(a, b)


# -- the normal equations -------------------------------------------------------------

@pytest.mark.parametrize("weighted", [False, True])
def test_normal_equations_are_the_jacobian_s_and_half_the_gradient(weighted):
    net, X, T, w = problem(7, [4, 5, 3], 13)
    sw = w if weighted else None
    P = net.n_params
    jtj, jte = np.zeros((P, P)), np.zeros(P)
    E = net.derivative_core.normal_equations(X, T, jtj, jte, sample_weight=sw)
    r = np.ones(13) if sw is None else w * 13 / w.sum()
    J = net.param_jacobian(X) * np.repeat(np.sqrt(r), 3)[:, None]
    assert_close(np.tril(jtj), np.tril(J.T @ J), 1e-12)
    assert np.all(np.triu(jtj, 1) == 0)  # the upper triangle is not written
    loss, gw, gb = net.gradients(X, T, sample_weight=sw)  # ∂Σ r‖e‖²/∂θ = 2 Jᵀe
    assert_close(jte, 0.5 * np.concatenate([g.ravel() for g in gw] + list(gb)), 1e-12)
    assert E == pytest.approx(loss, rel=1e-12)


@pytest.mark.parametrize("sparse", [False, True])
def test_blocked_accumulation_equals_one_block(sparse):
    net, X, T, w = problem(8, [5, 6, 2], 12)
    X[np.abs(X) < 0.5] = 0.0
    Xin = sp.csr_matrix(X) if sparse else X
    from fastbp.inputs import as_inputs
    Xin = as_inputs(Xin, 5)
    P = net.n_params
    whole = np.zeros((P, P)), np.zeros(P)
    E = net.derivative_core.normal_equations(Xin, T, *whole, sample_weight=w, block_rows=12)
    for rows in (1, 2, 3, 4, 5, 6, 7, 11, 13):  # dividing 12 and not
        part = np.zeros((P, P)), np.zeros(P)
        E_b = net.derivative_core.normal_equations(Xin, T, *part, sample_weight=w, block_rows=rows)
        assert_close(np.tril(part[0]), np.tril(whole[0]), 1e-12)
        assert_close(part[1], whole[1], 1e-12)
        assert E_b == pytest.approx(E, rel=1e-12)


def test_normal_equations_refuse_what_is_not_a_squared_error_net():
    net = MLP([3, 4], output_activation="softmax")
    P = net.n_params
    with pytest.raises(ValueError, match="without softmax or exp"):
        net.derivative_core.normal_equations(np.zeros((2, 3)), np.zeros((2, 4)),
                                             np.zeros((P, P)), np.zeros(P))
    with pytest.raises(ValueError, match="loss 'squared_error'|output_activation 'softmax'"):
        net.lm_step(np.zeros((2, 3)), np.zeros((2, 4)), 1.0)
    net = MLP([3, 4])
    with pytest.raises(ValueError, match="block_rows must be >= 0"):
        net.derivative_core.normal_equations(np.zeros((2, 3)), np.zeros((2, 4)),
                                             np.zeros((P, P)), np.zeros(P), block_rows=-1)
    with pytest.raises(ValueError, match="jtj"):
        net.derivative_core.normal_equations(np.zeros((2, 3)), np.zeros((2, 4)),
                                             np.zeros((P, P - 1)), np.zeros(P))


# -- the fit against a NumPy loop of the twin -------------------------------------------

def twin_fit(net, X, T, epochs, mu, mu_dec=0.1, mu_inc=10.0, mu_max=1e10, damping="identity",
             sw=None):
    """trainlm's loop on the twin's steps, the loss the mean squared error."""
    n = X.shape[0]
    r = np.ones(n) if sw is None else sw * n / sw.sum()

    def loss():
        return float(np.sum(r[:, None] * (net.forward(X) - T) ** 2)) / n

    hist = {"loss": [], "mu": []}
    L = loss()
    for _ in range(epochs):
        saved = net.params.copy()
        while True:
            if mu > mu_max:
                return hist, "mu_max"
            net.params[:] = saved + ref.lm_step(net, X, T, mu, damping, sw)
            L_new = loss()
            if L_new < L:
                mu = max(mu * mu_dec, 1e-20)
                break
            net.params[:] = saved
            mu *= mu_inc
        L = L_new
        hist["loss"].append(L)
        hist["mu"].append(mu)
    return hist, "epochs"


@pytest.mark.parametrize("damping", ["identity", "diagonal"])
@pytest.mark.parametrize("weighted", [False, True])
def test_fit_follows_the_twin_loop_rejections_included(damping, weighted):
    """Each iteration of the fit is the twin's iteration from the same
    parameters and μ: the same tries rejected, the same μ after, the same
    step (whole trajectories drift apart with the conditioning, not the code)."""
    net, X, T, w = problem(9, [2, 6, 1], 40)
    T = np.sin(3 * X[:, :1]) * np.cos(X[:, 1:])
    sw = w if weighted else None
    seen = [net.params.copy()]
    hist = net.fit(X, T, optimizer="lm", epochs=12, mu=1e-3, damping=damping, sample_weight=sw,
                   min_grad=0.0, callback=lambda epoch, h: seen.append(net.params.copy()))
    assert hist["stop"] == "epochs" and len(seen) == 13
    twin_net = MLP([2, 6, 1], activation="tanh")
    for k, mu in enumerate([1e-3] + hist["mu"][:-1]):
        twin_net.params[:] = seen[k]
        want, _ = twin_fit(twin_net, X, T, 1, mu, damping=damping, sw=sw)
        assert want["mu"][0] == pytest.approx(hist["mu"][k], rel=1e-12)
        assert want["loss"][0] == pytest.approx(hist["loss"][k], rel=1e-10)
        assert_close(seen[k + 1], twin_net.params, 1e-8)
    # some tries were rejected (μ went up), and the loss only ever fell
    assert any(b > a * 0.1 * 1.5 for a, b in zip(hist["mu"], hist["mu"][1:]))
    assert all(b < a for a, b in zip(hist["loss"], hist["loss"][1:]))


def saturated_unit():
    """y = tanh(w x + b) far in its flat tail: Gauss-Newton steps overshoot
    until μ is about (1 − y²)², so small μ's steps are all rejected."""
    net = MLP([1, 1], activation="tanh", output_activation="tanh")
    net.params[:] = [5.0, 0.0]
    return net, np.array([[1.0]]), np.array([[0.5]])


def test_rejected_steps_raise_mu_and_leave_the_parameters_unchanged():
    net, X, T = saturated_unit()
    before = net.params.copy()
    hist = net.fit(X, T, optimizer="lm", epochs=5, mu=1e-14, mu_max=1e-12)
    assert hist["stop"] == "mu_max" and hist["loss"] == [] and hist["mu"] == []
    np.testing.assert_array_equal(net.params, before)  # bitwise: every try was put back
    hist = net.fit(X, T, optimizer="lm", epochs=1, mu=1e-14)
    want, _ = twin_fit(*saturated_unit(), 1, 1e-14)
    assert hist["mu"] == pytest.approx(want["mu"], rel=1e-12)
    assert hist["mu"][0] > 1e-12  # raised by powers of mu_inc, then one mu_dec


def smooth_2d(n=200, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n, 2))
    return X, (np.sin(2 * np.pi * X[:, 0]) * np.cos(np.pi * X[:, 1]))[:, None]


def test_stops_on_goal():
    X, T = smooth_2d()
    net = MLP([2, 10, 1], activation="tanh", seed=0)
    hist = net.fit(X, T, optimizer="lm", epochs=500, goal=1e-3)
    assert hist["stop"] == "goal" and hist["loss"][-1] <= 1e-3 < hist["loss"][-2]
    assert net.loss(X, T) == pytest.approx(hist["loss"][-1], rel=1e-10)
    net = MLP([2, 10, 1], activation="tanh", seed=0)
    before = net.params.copy()
    assert net.fit(X, T, optimizer="lm", goal=1e9)["stop"] == "goal"
    np.testing.assert_array_equal(net.params, before)


def test_stops_on_min_grad():
    X, T = smooth_2d()
    net = MLP([2, 4, 1], activation="tanh", seed=0)
    hist = net.fit(X, T, optimizer="lm", epochs=1000, min_grad=1e-4)
    assert hist["stop"] == "min_grad" and 0 < len(hist["loss"]) < 1000
    loss, gw, gb = net.gradients(X, T, reduction="mean")
    assert np.linalg.norm(np.concatenate([g.ravel() for g in gw] + list(gb))) <= 1e-4
    net = MLP([2, 4, 1], activation="tanh", seed=0)
    assert net.fit(X, T, optimizer="lm", min_grad=1e9)["stop"] == "min_grad"


def test_stops_on_max_fail_with_the_best_weights_back():
    X, T = smooth_2d(100)
    X_val, T_val = smooth_2d(50, seed=1)
    T_val = -T_val  # fitting T makes the validation loss rise
    seen = []
    net = MLP([2, 6, 1], activation="tanh", seed=0)
    hist = net.fit(X, T, optimizer="lm", epochs=200, validation_data=(X_val, T_val), max_fail=3,
                   callback=lambda epoch, h: seen.append(net.params.copy()))
    assert hist["stop"] == "max_fail"
    val = hist["val_loss"]
    best = int(np.argmin(val))
    assert len(val) == best + 4  # three rises above the best, then the stop
    np.testing.assert_array_equal(net.params, seen[best])
    net = MLP([2, 6, 1], activation="tanh", seed=0)
    hist = net.fit(X, T, optimizer="lm", epochs=200, validation_data=(X_val, T_val), max_fail=3,
                   restore_best_weights=False)
    assert net.loss(X_val, T_val) == pytest.approx(hist["val_loss"][-1], rel=1e-10)


def test_stops_on_epochs_and_on_the_callback():
    X, T = smooth_2d(50)
    net = MLP([2, 5, 1], activation="tanh", seed=0)
    assert net.fit(X, T, optimizer="lm", epochs=3)["stop"] == "epochs"
    hist = net.fit(X, T, optimizer="lm", epochs=50, callback=lambda e, h: e == 1)
    assert hist["stop"] == "callback" and len(hist["loss"]) == 2
    assert net.fit(X, T, optimizer="lm", epochs=0) == {"loss": [], "mu": [], "stop": "epochs"}


def test_a_linear_network_is_solved_in_one_step():
    rng = np.random.default_rng(10)
    X = rng.normal(size=(30, 3))
    T = X @ rng.normal(size=(3, 2)) + 0.5 + 0.1 * rng.normal(size=(30, 2))
    net = MLP([3, 2], output_activation="identity", seed=0)
    hist = net.fit(X, T, optimizer="lm", epochs=1, mu=1e-12)
    A = np.hstack([X, np.ones((30, 1))])
    coef = np.linalg.lstsq(A, T, rcond=None)[0]  # (4, 2): W^T over b
    np.testing.assert_allclose(net.weights[0], coef[:3].T, rtol=1e-8)
    np.testing.assert_allclose(net.biases[0], coef[3], rtol=1e-8)
    assert len(hist["loss"]) == 1 and hist["mu"] == [pytest.approx(1e-13)]
    assert hist["loss"][0] == pytest.approx(np.mean(np.sum((A @ coef - T) ** 2, axis=1)), rel=1e-10)


def test_fit_lm_fits_a_smooth_target_far_below_first_order():
    X, T = smooth_2d(500)
    net = MLP([2, 20, 1], activation="tanh", seed=0)
    hist = net.fit(X, T, optimizer="lm", epochs=300)
    adam = MLP([2, 20, 1], activation="tanh", seed=0)
    adam.fit(X, T, optimizer="adam", lr=0.01, epochs=100, seed=0)
    assert hist["loss"][-1] < 1e-6 and hist["loss"][-1] < 1e-3 * adam.loss(X, T)


@pytest.mark.parametrize("reduction", ["sum", "half", "mean"])
def test_weight_decay_is_the_penalty_of_the_reported_loss(reduction):
    X, T = smooth_2d(60)
    net = MLP([2, 5, 1], activation="tanh", seed=0)
    hist = net.fit(X, T, optimizer="lm", epochs=4, weight_decay=0.3, reduction=reduction)
    W = net.params[:net.n_weights]
    assert hist["loss"][-1] == pytest.approx(net.loss(X, T, reduction=reduction)
                                             + 0.15 * float(W @ W), rel=1e-10)
    # the step is the twin's with α = λ / (2 s)
    s = {"sum": 1.0, "half": 0.5, "mean": 1 / 60}[reduction]
    assert_close(net.lm_step(X, T, 0.1, alpha=0.3 / (2 * s)),
                 ref.lm_step(net, X, T, 0.1, alpha=0.3 / (2 * s)))


def test_fit_lm_takes_several_outputs_and_weights():
    rng = np.random.default_rng(11)
    X = rng.uniform(size=(80, 2))
    T = np.column_stack([np.sin(3 * X[:, 0]), X[:, 0] * X[:, 1]])
    w = rng.uniform(0.5, 2.0, 80)
    net = MLP([2, 8, 2], activation="tanh", seed=0)
    hist = net.fit(X, T, optimizer="lm", epochs=30, sample_weight=w)
    r = w * 80 / w.sum()
    assert hist["loss"][-1] == pytest.approx(
        float(np.sum(r[:, None] * (net.predict(X) - T) ** 2)) / 80, rel=1e-10)
    assert hist["loss"][-1] < 1e-4


# -- memory, and bad arguments ----------------------------------------------------

def test_the_memory_budget_refuses_a_large_system():
    rng = np.random.default_rng(12)
    net = MLP([10, 50, 1], activation="tanh", seed=0)  # P = 601
    X, T = rng.normal(size=(1000, 10)), rng.normal(size=(1000, 1))
    for call in (lambda: net.lm_step(X, T, 1.0, lm_memory=1_000_000),
                 lambda: net.fit(X, T, optimizer="lm", lm_memory=1_000_000)):
        with pytest.raises(levmar.MemoryBudgetError, match=r"601×601.*adam.*lbfgs"):
            call()
    # 10 rows: the dual form's 10 × 601 Jacobian fits the same budget
    assert_close(net.lm_step(X[:10], T[:10], 1.0, lm_memory=1_000_000),
                 ref.lm_step(net, X[:10], T[:10], 1.0))
    assert form_of(net, 1000) == "normal" and form_of(net, 10, 1_000_000) == "dual"


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(damping="marquardt"), ValueError, "damping must be one of"),
    (dict(mu=0.0), ValueError, "mu must be > 0"),
    (dict(mu=-1.0), ValueError, "mu must be > 0"),
    (dict(mu="big"), TypeError, "mu must be a number"),
    (dict(mu_dec=1.5), ValueError, r"mu_dec must be in \(0, 1\)"),
    (dict(mu_inc=0.5), ValueError, "mu_inc must be > 1"),
    (dict(max_fail=0), ValueError, "max_fail must be >= 1"),
    (dict(goal=-1.0), ValueError, "goal must be >= 0"),
    (dict(lm_memory=0), ValueError, "lm_memory must be >= 1"),
    (dict(lm_memory=1.5), TypeError, "lm_memory must be an int"),
    (dict(loss="poisson"), ValueError, "minimises a sum of squares"),
    (dict(batch_size=16), ValueError, "takes no batch_size"),
    (dict(lr=0.1), ValueError, "takes no lr"),
    (dict(early_stopping=True), ValueError, "takes no early_stopping"),
])
def test_fit_lm_refuses_bad_options(kwargs, error, match):
    X, T = smooth_2d(10)
    net = MLP([2, 3, 1], seed=0)
    before = net.params.copy()
    with pytest.raises(error, match=match):
        net.fit(X, T, **{"optimizer": "lm", **kwargs})
    np.testing.assert_array_equal(net.params, before)


def test_lm_options_with_another_optimizer_are_refused():
    X, T = smooth_2d(10)
    with pytest.raises(ValueError, match=r'damping, mu are options of optimizer="lm"'):
        MLP([2, 1]).fit(X, T, optimizer="adam", mu=1.0, damping="diagonal")


@pytest.mark.parametrize("kwargs, match", [
    (dict(mu=0.0), "mu must be > 0"), (dict(alpha=-1.0), "alpha must be >= 0"),
    (dict(damping="none"), "damping must be one of"), (dict(out=np.empty(3)), "out"),
    (dict(sample_weight=np.ones(4)), "sample_weight must have shape"),
    (dict(sample_weight=-np.ones(5)), "sample_weight must be finite and >= 0"),
    (dict(T=np.zeros((5, 2))), "T"), (dict(X=np.zeros((5, 4))), "X"),
])
def test_lm_step_refuses_bad_arguments(kwargs, match):
    net = MLP([3, 2, 1], seed=0)
    args = dict(X=np.zeros((5, 3)), T=np.zeros((5, 1)), mu=1.0)
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        net.lm_step(args.pop("X"), args.pop("T"), args.pop("mu"), **args)


def test_lm_step_reports_an_indefinite_matrix():
    net, X, T = saturated_unit()
    net.params[:] = [800.0, 0.0]  # J underflows: JᵀJ + μI is μI, still definite
    assert np.isfinite(net.lm_step(X, T, 1e-300)).all()
    net.params[:] = [np.nan, 0.0]
    with pytest.raises(np.linalg.LinAlgError, match="no finite step.*larger mu.*not finite"):
        net.lm_step(X, T, 1.0)


@pytest.mark.parametrize("sizes", [[3, 6, 4, 2], [10, 50, 1], [2, 9, 3]])
def test_dual_form_gram_by_layers_equals_the_jacobians(sizes):
    """J Jᵀ = Σ_ℓ (Δ_ℓ Δ_ℓᵀ) ⊙ (A_ℓ A_ℓᵀ + 1) from the layers' inputs gives
    the δ of the Jacobian's own SYRK, weighted rows included."""
    net, X, T, w = problem(13, sizes, 6)
    solver = levmar._Solver(net, 6, levmar.LM_MEMORY, distributed=False)
    assert solver.form == "dual" and solver.system.inputs is not None
    solver.build(net.derivative_core, X, T, w, 0.0)
    s = solver.system
    for l, A in enumerate(s.inputs):  # the layers' inputs, as the forward pass made them
        want = X if l == 0 else ref._forward_pass(ref._layers(net), X)[0][l]
        np.testing.assert_allclose(A, want, rtol=1e-13)
    by_layers, by_syrk = np.empty(net.n_params), np.empty(net.n_params)
    for mu in (1e-2, 1.0):
        s.prepare(inputs_filled=True)
        assert s.solve(mu, by_layers)
        s.prepare(inputs_filled=False)
        assert s.solve(mu, by_syrk)
        assert_close(by_layers, by_syrk, 1e-9)
        assert_close(by_layers, ref.lm_step(net, X, T, mu, sample_weight=w), 1e-9)
    with pytest.raises(ValueError, match="dense X only"):
        from fastbp.inputs import as_inputs
        net.derivative_core.residual_jacobian(as_inputs(sp.csr_matrix(X), sizes[0]), T, s.jacobian,
                                              s.residuals, inputs=s.inputs)
    with pytest.raises(ValueError, match="one per layer"):
        net.derivative_core.residual_jacobian(X, T, s.jacobian, s.residuals, inputs=s.inputs[:1])
