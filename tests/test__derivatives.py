"""fastbp._derivatives, the compiled derivative passes (Derivatives): a call
cut into chunks by a small workspace budget, or split over two threads,
gives the results of one chunk on one thread; nothing is allocated per call
once the out= buffers and the workspace exist; the arguments are checked.

(The methods' values against the NumPy twins, finite differences and the
identities are in tests/test_derivatives.py.)"""

import os
import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp

from fastbp import _derivatives
from fastbp.inputs import as_inputs
from fastbp.network import MLP

threadpoolctl = pytest.importorskip("threadpoolctl")

RTOL = 1e-12
N = 203  # odd: part 0 of a split takes the extra row


def loss_case(rng, loss, n, d):
    if loss == "cross_entropy":
        return rng.integers(0, d, n)
    if loss == "poisson":
        return rng.poisson(1.5, (n, d)).astype(float)
    return rng.normal(size=(n, d))


CASES = [("tanh", "identity", "squared_error"), ("silu", "softmax", "cross_entropy"),
         ("elu", "exp", "poisson"), ("softplus", "sigmoid", "squared_error")]


def calls(net, X, T, loss, rng):
    """Every entry point of the core on (X, T), as (name, thunk) pairs."""
    d = net.derivative_core
    n = X.shape[0]
    v = rng.normal(size=net.n_params)
    dX = rng.normal(size=(n, net.sizes[0]))
    dY = rng.normal(size=(n, net.sizes[-1]))
    w = rng.uniform(0.2, 2.0, n)
    lc, rc = net.loss_codes(loss, "mean")
    kw = {"loss": lc, "reduction": rc, "sample_weight": w}
    return [
        ("input_jacobian", lambda: d.input_jacobian(X)),
        ("input_gradient", lambda: d.input_gradient(X, T, **kw)),
        ("jvp", lambda: d.jvp(X, dX if not sp.issparse(X) else None, v)),
        ("vjp", lambda: d.vjp(X, dY)),
        ("hvp", lambda: d.hvp(X, T, v, **kw)),
        ("gnvp", lambda: d.hvp(X, T, v, gauss_newton=True, **kw)),
        ("param_jacobian", lambda: d.param_jacobian(X)),
        ("per_example_gradients", lambda: d.per_example_gradients(X, T, **kw)),
    ]


def flat(result):
    parts = result if isinstance(result, tuple) else (result,)
    return [np.atleast_1d(np.asarray(p, dtype=float)) for p in parts]


def assert_same(got, want, rtol=RTOL):
    for g, w in zip(flat(got), flat(want)):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * max(1.0, np.abs(w).max(initial=0)))


def make(case, sparse, seed=0, sizes=(13, 11, 7, 3)):
    rng = np.random.default_rng(seed)
    act, out, loss = case
    net = MLP(list(sizes), activation=act, output_activation=out, seed=seed)
    net.params[:] += 0.2 * rng.normal(size=net.n_params)
    X = rng.normal(size=(N, sizes[0]))
    if sparse:
        X = as_inputs(sp.random(N, sizes[0], density=0.3, format="csr", random_state=seed),
                      sizes[0], "X", True)
    return net, X, loss_case(rng, loss, N, sizes[-1]), loss, rng


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(c))
def test_chunks_of_a_small_budget_equal_one_chunk(case, sparse):
    net, X, T, loss, rng = make(case, sparse)
    with threadpoolctl.threadpool_limits(1, user_api="blas"):  # (no split: chunks alone)
        whole = [f() for _, f in calls(net, X, T, loss, np.random.default_rng(1))]
        # 400 doubles hold a few rows: dozens of chunks, the last one short
        net._derivative_core = _derivatives.Derivatives(net.core, budget=400)
        chunked = [f() for _, f in calls(net, X, T, loss, np.random.default_rng(1))]
    for (name, _), a, b in zip(calls(net, X, T, loss, rng), chunked, whole):
        assert_same(a, b), name


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one CPU: no second thread")
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(c))
def test_a_call_split_over_two_threads_equals_one_thread(case, sparse):
    net, X, T, loss, rng = make(case, sparse, sizes=(40, 30, 20, 3))
    core = net.derivative_core
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        one = [f() for _, f in calls(net, X, T, loss, np.random.default_rng(1))]
    before = core.split_calls
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        two = [f() for _, f in calls(net, X, T, loss, np.random.default_rng(1))]
    assert core.split_calls - before == len(one), "not every call was split"
    for a, b in zip(two, one):
        assert_same(a, b)


def test_small_calls_stay_on_one_thread():
    net, X, T, loss, rng = make(CASES[0], False)
    core = net.derivative_core
    before = core.split_calls
    core.hvp(X[:10].copy(), T[:10].copy(), np.zeros(net.n_params))
    assert core.split_calls == before


def test_nothing_is_allocated_per_call_with_out_buffers():
    net, X, T, loss, rng = make(CASES[1], False)
    n, P, di, do = X.shape[0], net.n_params, net.sizes[0], net.sizes[-1]
    v, dX, dY = rng.normal(size=P), rng.normal(size=(n, di)), rng.normal(size=(n, do))
    outs = {"ij": np.empty((n, do, di)), "pj": np.empty((n * do, P)), "G": np.empty((n, P)),
            "Hv": np.empty(P), "Y": np.empty((n, do)), "dY": np.empty((n, do)),
            "dX": np.empty((n, di)), "dp": np.empty(P)}
    w = rng.uniform(0.5, 1.5, n)

    def run():
        net.input_jacobian(X, out=outs["ij"])
        net.param_jacobian(X, out=outs["pj"])
        net.per_example_gradients(X, T, loss=loss, sample_weight=w, out=outs["G"])
        net.hvp(X, T, v, loss=loss, out=outs["Hv"])
        net.gnvp(X, T, v, loss=loss, out=outs["Hv"])
        net.jvp(X, dX, v, out=(outs["Y"], outs["dY"]))
        net.vjp(X, dY, out=(outs["dX"], outs["dp"]))
        net.input_gradient(X, T, loss=loss, out=outs["dX"])

    run()  # the workspaces
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        for _ in range(5):
            run()
        peak = tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()
    # the smallest output, (N, D_out) float64, is 4,872 bytes: nothing that size appears
    assert peak < 3000, peak


def test_outputs_are_the_buffers_given():
    net, X, T, loss, rng = make(CASES[0], False)
    J = np.empty((N, net.sizes[-1], net.sizes[0]))
    assert net.input_jacobian(X, out=J) is J
    Y, dY = np.empty((N, 3)), np.empty((N, 3))
    got = net.jvp(X, dparams=np.ones(net.n_params), out=(Y, dY))
    assert got[0] is Y and got[1] is dY


@pytest.mark.parametrize("bad, match", [
    (lambda net, X: net.derivative_core.hvp(X, np.zeros((N, 3)), np.zeros(5)), "v must"),
    (lambda net, X: net.derivative_core.jvp(X), "needs a tangent"),
    (lambda net, X: net.derivative_core.jvp(X, np.zeros((N, 2))), "dX"),
    (lambda net, X: net.derivative_core.vjp(X, np.zeros((N, 2))), "dY"),
    (lambda net, X: net.derivative_core.vjp(X, np.zeros((N, 3)), out=np.zeros(3)), "pair"),
    (lambda net, X: net.derivative_core.input_jacobian(X, out=np.zeros((N, 13, 3))), "out must have shape"),
    (lambda net, X: net.derivative_core.param_jacobian(X, out=X), "out must have shape"),
    (lambda net, X: net.derivative_core.input_gradient(X, np.zeros((N, 3)), out=X), "shares memory"),
    (lambda net, X: net.derivative_core.hvp(X, np.zeros((N, 3)), np.zeros(net.n_params), loss=7),
     "unknown loss"),
    (lambda net, X: _derivatives.Derivatives(net.core, budget=0), "budget"),
])
def test_bad_arguments_are_refused_by_name(bad, match):
    net, X, T, loss, rng = make(CASES[0], False)
    with pytest.raises((ValueError, TypeError), match=match):
        bad(net, X)


def test_an_empty_batch_gives_zero_sums():
    net = MLP([4, 5, 2], activation="tanh", seed=0)
    X0, T0 = np.zeros((0, 4)), np.zeros((0, 2))
    Hv = net.derivative_core.hvp(X0, T0, np.ones(net.n_params), out=np.full(net.n_params, 7.0))
    assert not Hv.any()
    dX, dp = net.derivative_core.vjp(X0, T0, out=(np.empty((0, 4)), np.full(net.n_params, 7.0)))
    assert dX.shape == (0, 4) and not dp.any()
    assert net.derivative_core.param_jacobian(X0).shape == (0, net.n_params)
