"""fastbp._levmar, the damped Gauss-Newton solve: both forms against
numpy.linalg.solve, the kept K₀ of the dual form, refusals, and no
allocation per solve.  (The network's residuals and normal equations are
tested through fastbp.levmar in tests/test_levmar.py.)"""

import tracemalloc

import numpy as np
import pytest

from fastbp._enums import Damping
from fastbp._levmar import FORMS, DampedSystem

IDENTITY, DIAGONAL = Damping.DAMP_IDENTITY, Damping.DAMP_DIAGONAL


def twin(J, e, mu, damping, alpha=0.0, theta=None, n_weights=0):
    A = J.T @ J
    P = A.shape[0]
    D = np.ones(P) if damping == IDENTITY else np.where(np.diag(A) > 0, np.diag(A), 1.0)
    lam = np.zeros(P)
    lam[:n_weights] = alpha
    theta = np.zeros(P) if theta is None else theta
    return -np.linalg.solve(A + np.diag(lam + mu * D), J.T @ e + lam * theta)


def system(J, e, form):
    m, P = J.shape
    s = DampedSystem(P, m if form == "dual" else 0)
    assert s.form == form
    if form == "dual":
        s.jacobian[...] = J
        s.residuals[...] = e
    else:
        s.jtj[...] = np.tril(J.T @ J)  # the lower triangle alone is read
        s.jte[...] = J.T @ e
    s.prepare()
    return s


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("damping", [IDENTITY, DIAGONAL])
@pytest.mark.parametrize("alpha", [0.0, 0.7])
@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (3, 8), (9, 4), (17, 17), (6, 30)])
def test_solve_matches_numpy(form, damping, alpha, shape):
    rng = np.random.default_rng(hash(shape) % 2 ** 32)
    J, e, theta = rng.normal(size=shape), rng.normal(size=shape[0]), rng.normal(size=shape[1])
    n_w = shape[1] // 2 + 1
    s = system(J, e, form)
    out = np.empty(shape[1])
    for mu in (0.3, 2.0, 0.05):  # several μ on one system: the kept K₀ serves each
        assert s.solve(mu, out, damping=damping, alpha=alpha, params=theta, n_weights=n_w)
        np.testing.assert_allclose(out, twin(J, e, mu, damping, alpha, theta, n_w), rtol=1e-10,
                                   atol=1e-12)
    if form == "normal":
        np.testing.assert_allclose(s.jte, J.T @ e, rtol=1e-12)


def test_dual_form_follows_a_new_jacobian_and_a_new_damping():
    rng = np.random.default_rng(1)
    J, e = rng.normal(size=(4, 9)), rng.normal(size=4)
    s = system(J, e, "dual")
    out = np.empty(9)
    s.solve(0.5, out, damping=IDENTITY)
    assert s.solve(0.5, out, damping=DIAGONAL)  # K₀ made again for the other D
    np.testing.assert_allclose(out, twin(J, e, 0.5, DIAGONAL), rtol=1e-10)
    J2 = rng.normal(size=(4, 9))
    s.jacobian[...] = J2
    s.prepare()  # K₀ is stale
    s.solve(0.5, out, damping=DIAGONAL)
    np.testing.assert_allclose(out, twin(J2, e, 0.5, DIAGONAL), rtol=1e-10)
    np.testing.assert_allclose(s.jte, J2.T @ e, rtol=1e-12)


def test_a_zero_column_is_damped_by_one_in_the_diagonal_form():
    J = np.array([[1.0, 0.0, 2.0], [0.5, 0.0, -1.0]])
    e = np.array([1.0, 2.0])
    for form in FORMS:
        s = system(J, e, form)
        out = np.empty(3)
        assert s.solve(1e-3, out, damping=DIAGONAL)
        np.testing.assert_allclose(out, twin(J, e, 1e-3, DIAGONAL), rtol=1e-9)
        assert out[1] == 0.0  # nothing depends on it: no step


def test_an_indefinite_matrix_is_reported_not_solved():
    s = DampedSystem(3)
    s.jtj[...] = -np.eye(3)  # no JᵀJ is this, but rounding can make one as bad
    s.prepare()
    assert s.solve(1e-3, np.empty(3)) is False


@pytest.mark.parametrize("bad, match", [
    (dict(mu=0.0), "mu must be > 0"), (dict(mu=-1.0), "mu must be > 0"),
    (dict(mu=float("nan")), "mu must be > 0"), (dict(alpha=-1.0), "alpha must be >= 0"),
    (dict(damping=7), "damping must be a Damping code"), (dict(n_weights=9), "n_weights must be in"),
    (dict(alpha=1.0, params=None), "needs params"),
    (dict(out=np.empty(4)), "out"), (dict(out=np.empty(3, np.float32)), "out"),
])
def test_bad_arguments_are_refused(bad, match):
    s = DampedSystem(3)
    s.jtj[...] = np.eye(3)
    args = dict(mu=1.0, out=np.empty(3), damping=IDENTITY, alpha=0.0, params=np.zeros(3),
                n_weights=2)
    args.update(bad)
    mu, out = args.pop("mu"), args.pop("out")
    with pytest.raises((ValueError, TypeError), match=match):
        s.solve(mu, out, **args)
    with pytest.raises(ValueError, match="n_params must be >= 1"):
        DampedSystem(0)
    with pytest.raises(ValueError, match="n_residuals must be >= 0"):
        DampedSystem(3, -1)


def test_out_may_not_alias_params():
    s = DampedSystem(3)
    s.jtj[...] = np.eye(3)
    theta = np.zeros(3)
    with pytest.raises(ValueError, match="out"):
        s.solve(1.0, theta, alpha=1.0, params=theta, n_weights=1)


def test_doubles_counts_the_buffers():
    assert DampedSystem.doubles(10) == 2 * 100 + 5 * 10 + 1
    assert DampedSystem.doubles(10, 4) == 2 * 4 * 10 + 2 * 16 + 2 * 4 + 4 * 10
    s = DampedSystem(10)
    assert s.sums.shape == (111,) and np.shares_memory(s.sums, s.jtj) and np.shares_memory(s.sums, s.jte)


@pytest.mark.parametrize("form", FORMS)
def test_a_solve_allocates_nothing(form):
    rng = np.random.default_rng(2)
    J, e = rng.normal(size=(30, 40)), rng.normal(size=30)
    s = system(J, e, form)
    out, theta = np.empty(40), rng.normal(size=40)
    s.solve(1.0, out, alpha=0.5, params=theta, n_weights=20)
    tracemalloc.start()
    try:
        for mu in (1.0, 0.1, 0.01):
            s.solve(mu, out, damping=DIAGONAL, alpha=0.5, params=theta, n_weights=20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2000, peak  # the smallest buffer, 40 doubles, is 320 B; J is 9.6 KB


def test_layers_are_checked_and_only_for_the_dual_form():
    with pytest.raises(ValueError, match="layers are for the dual form"):
        DampedSystem(10, 0, [(8, 2, 3)])
    with pytest.raises(ValueError, match="not a multiple"):
        DampedSystem(10, 5, [(8, 2, 3)])
    with pytest.raises(ValueError, match="does not fit 10 parameters"):
        DampedSystem(10, 4, [(9, 2, 3)])
    s = DampedSystem(10, 4, [(6, 2, 2), (8, 2, 2)])
    assert [a.shape for a in s.inputs] == [(2, 2), (2, 2)]
    with pytest.raises(ValueError, match="needs a system made with layers"):
        DampedSystem(10, 4).prepare(inputs_filled=True)
