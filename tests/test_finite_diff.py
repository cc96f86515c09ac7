"""fastbp.finite_diff.gradcheck: central differences against backward passes."""

import numpy as np
import pytest

from fastbp import graph
from fastbp.finite_diff import GradcheckError, GradcheckReport, gradcheck, numerical_gradient
from fastbp.graph import Var


def seed_002(x, y):
    return (x + graph.sigmoid(y)) / (x**2 + y)


def buggy_block(factor):
    """exp with a backward off by ``factor``: the kind of bug gradcheck is for."""

    @graph.block
    def exp_bug(x):
        y = np.exp(x)
        return y, lambda g: g * y * factor

    return exp_bug


def test_passes_on_a_correct_graph_and_reports_every_input():
    report = gradcheck(seed_002, [Var(3.0, name="x"), Var(-4.0, name="y")])
    assert isinstance(report, GradcheckReport)
    assert report.passed and bool(report) and report.check() is report
    assert [c.name for c in report.inputs] == ["x", "y"]
    assert report["x"].max_rel_error < 1e-8 and report[1].max_abs_error < 1e-10
    assert report["x"].analytic == pytest.approx(-0.5243166904, rel=1e-9)
    text = str(report)
    assert "gradcheck passed" in text and "x" in text and "ok" in text


@pytest.mark.parametrize("factor", [1.001, 1 + 1e-4, 0.0, -1.0])
def test_catches_a_wrong_backward(factor, rng):
    bug = buggy_block(factor)
    x = rng.uniform(-1, 1, size=(3, 4))
    report = gradcheck(lambda v: graph.sum(bug(v) * v), [x])
    assert not report.passed
    assert report.max_rel_error > 1e-5


def test_catches_a_gradient_that_is_wrong_only_where_it_is_small():
    # The true gradient of Σ x³ at x = 1e-2 is 3e-4; a backward that says 0 must fail.
    @graph.block
    def cube_bug(x):
        return x**3, lambda g: g * 3 * x**2 * (np.abs(x) > 0.05)

    x = np.array([1e-2, 0.5, -0.7])
    report = gradcheck(lambda v: graph.sum(cube_bug(v)), [x])
    assert not report.passed
    assert report[0].worst[0][0] == (0,)


def test_raise_exception_lists_the_worst_entries(rng):
    bug = buggy_block(1.01)
    x = np.zeros((2, 3))
    x[1, 2] = 2.0  # the biggest gradient, so the biggest absolute error
    with pytest.raises(GradcheckError) as info:
        gradcheck(lambda a, v: graph.sum(bug(v)) + a, [Var(1.0, name="a"), Var(x, name="W")],
                  raise_exception=True)
    assert isinstance(info.value, AssertionError)
    message = str(info.value)
    assert "FAILED" in message and "worst entries of W" in message
    assert "(1, 2)" in message and "backward" in message and "finite diff" in message
    assert "worst entries of a" not in message  # a passed
    report = gradcheck(lambda v: graph.sum(bug(v)), [x])
    with pytest.raises(AssertionError, match="worst entries"):
        report.check()


def test_gradient_function_mode():
    f = lambda W, b: float(np.sum(np.sin(W) @ b))  # noqa: E731
    W, b = np.arange(6.0).reshape(2, 3) / 5, np.array([0.3, -0.2, 0.5])
    right = lambda W, b: (np.cos(W) * b, np.sin(W).sum(axis=0))  # noqa: E731
    wrong = lambda W, b: (np.cos(W) * b, np.sin(W).sum(axis=0) * 1.001)  # noqa: E731
    assert gradcheck(f, [W, b], grad=right).passed
    report = gradcheck(f, [W, b], grad=wrong)
    assert report[0].passed and not report[1].passed
    one = gradcheck(lambda x: float(np.sum(x**2)), np.ones(3), grad=lambda x: 2 * x)
    assert one.passed and len(one.inputs) == 1


def test_gradient_function_mistakes():
    with pytest.raises(ValueError, match="2 gradients for 1 inputs"):
        gradcheck(lambda x: float(x.sum()), [np.ones(2)], grad=lambda x: (x, x))
    with pytest.raises(ValueError, match="shape"):
        gradcheck(lambda x: float(x.sum()), [np.ones(2)], grad=lambda x: np.ones(3))
    with pytest.raises(TypeError, match="not a fastbp.graph.Var"):
        gradcheck(lambda x: float(np.sum(x.value)), [np.ones(2)])
    with pytest.raises(ValueError, match="scalar"):
        gradcheck(lambda x: x * 2.0, [np.ones(2)])


def test_fast_mode_costs_four_evaluations_per_input(rng):
    calls = []
    W, X = rng.standard_normal((60, 50)), rng.standard_normal((20, 50))

    def f(w, x):
        calls.append(1)
        return graph.sum(graph.tanh(graph.matmul_abt(x, w)))

    report = gradcheck(f, [W, X], fast=True)
    assert report.passed, report
    assert len(calls) == 1 + 4 * 2  # the graph, then ±h and ±2h along one u per input
    assert report.mode == "fast" and report[0].analytic.shape == ()
    calls.clear()
    assert gradcheck(f, [W[:2, :3], X[:2, :3]]).passed
    assert len(calls) == 1 + 4 * (6 + 6)


def test_fast_mode_catches_a_wrong_backward(rng):
    bug = buggy_block(1.001)
    x = rng.standard_normal((100, 100))
    report = gradcheck(lambda v: graph.sum(bug(v) * 0.5), [x], fast=True)
    assert not report.passed
    assert "u·∇" in str(report)
    assert gradcheck(lambda v: graph.sum(graph.exp(v) * 0.5), [x], fast=True).passed


def test_fast_mode_depends_on_the_seed_only():
    f = lambda v: graph.sum(graph.sigmoid(v) * v)  # noqa: E731
    x = np.linspace(-1, 1, 10)
    a, b = gradcheck(f, [x], fast=True, seed=1), gradcheck(f, [x], fast=True, seed=1)
    c = gradcheck(f, [x], fast=True, seed=2)
    assert a[0].analytic == b[0].analytic != c[0].analytic


def test_the_floor_keeps_tiny_gradients_from_failing_on_noise():
    # f is huge next to its gradient: the differences carry rounding noise of about
    # ε · 1e6 / h ≈ 2e-4, far above the gradient 2e-5 itself.
    f = lambda x: graph.sum(x * x) + 1e6  # noqa: E731
    x = np.array([1e-5, -2e-5, 3.0])
    report = gradcheck(f, [x])
    assert report.passed, report
    strict = gradcheck(f, [x], floor=0.0)  # purely relative: the noise fails it
    assert not strict.passed
    assert report.floor > 1e-6 / report.rtol * 1e-6


def test_zero_gradient_where_the_third_derivative_is_not():
    # Σ x³ at 0: D(h) alone is h² f‴/6 = 1e-12 away from the true 0.
    assert gradcheck(lambda x: graph.sum(x**3), [np.zeros(3)]).passed


def test_cancellation_in_f_and_in_the_backward_pass():
    # log(1 + u²) at tiny u: f ~ 1e-15 but computed from 1 + u² ~ 1.
    assert gradcheck(lambda u: graph.sum(graph.log(1.0 + u * u)), [np.array([6e-8, 1e-3, 0.5])]).passed
    # b·c + (b − b): the two unit contributions cancel, leaving c = 2e-18 below their rounding.
    assert gradcheck(lambda b: graph.sum(b * 2e-18 + (b - b)), [np.zeros(3)]).passed


def test_nan_fails():
    @graph.block
    def nan_grad(x):
        return x, lambda g: g * np.nan

    report = gradcheck(lambda v: graph.sum(nan_grad(v)), [np.ones(2)])
    assert not report.passed and report.max_rel_error == np.inf


def test_inputs_are_never_modified(rng):
    W = rng.standard_normal((3, 3))
    before = W.copy()
    gradcheck(lambda w: graph.sum(w * w), [W])
    gradcheck(lambda w: graph.sum(w * w), [W], fast=True)
    gradcheck(lambda w: float(np.sum(w * w)), [W], grad=lambda w: 2 * w)
    np.testing.assert_array_equal(W, before)


def test_scalar_and_array_inputs_together():
    report = gradcheck(lambda s, v: graph.sum(s * v * v), [2.0, np.array([1.0, -3.0])])
    assert report.passed, report
    assert report[0].shape == () and report[1].shape == (2,)


def test_numerical_gradient():
    gx, gy = numerical_gradient(lambda x, y: x * y**2, [2.0, 3.0])
    assert gx == pytest.approx(9.0, rel=1e-10) and gy == pytest.approx(12.0, rel=1e-10)
    (g,) = numerical_gradient(lambda v: float(np.sum(np.sin(v))), [np.array([0.1, 0.2])])
    np.testing.assert_allclose(g, np.cos([0.1, 0.2]), rtol=1e-10)
