"""fastbp._losses: the compiled binary cross entropy and Poisson losses
(the rows the network core runs, through their Python entry points) against
their NumPy twins in fastbp.reference (rtol 1e-12), finite differences of J,
extreme logits, every reduction and row weighting, edge shapes, out= and
bad arguments.  (The losses inside whole networks are in test_network.py.)"""

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastbp import _losses
from fastbp import reference as ref

RTOL = 1e-12
LOSSES = ("binary_cross_entropy", "poisson")
REDUCTIONS = ("sum", "half", "mean")


def targets(rng, loss, shape):
    if loss == "binary_cross_entropy":
        return np.where(rng.uniform(size=shape) < 0.3, rng.uniform(size=shape),
                        (rng.uniform(size=shape) < 0.5).astype(float))
    return np.where(rng.uniform(size=shape) < 0.3, rng.uniform(0, 4, shape),
                    rng.poisson(2.0, shape).astype(float))


def both(loss, Z, T, reduction="sum", sample_weight=None):
    return (getattr(_losses, loss)(Z, T, reduction, sample_weight),
            getattr(ref, loss)(Z, T, reduction, sample_weight))


def assert_matches(loss, Z, T, reduction="sum", sample_weight=None):
    (J, dZ), (Jr, dZr) = both(loss, Z, T, reduction, sample_weight)
    assert J == pytest.approx(Jr, rel=RTOL, abs=1e-300)
    np.testing.assert_allclose(dZ, dZr, rtol=RTOL, atol=RTOL * max(1.0, np.abs(dZr).max(initial=0)))


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (9, 1), (64, 3), (65, 5), (3, 300), (1000, 2)])
def test_losses_match_reference(rng, loss, reduction, shape):
    Z = rng.normal(size=shape) * 3.0
    T = targets(rng, loss, shape)
    assert_matches(loss, Z, T, reduction)
    assert_matches(loss, Z, T, reduction, rng.uniform(0.0, 2.0, shape[0]) + (shape[0] == 1))


@pytest.mark.parametrize("loss", LOSSES)
@given(n=st.integers(1, 40), d=st.integers(1, 12), seed=st.integers(0, 2**32 - 1),
       scale=st.sampled_from([0.1, 1.0, 10.0, 100.0]), reduction=st.sampled_from(REDUCTIONS),
       weighted=st.booleans())
def test_losses_match_reference_on_random_shapes(loss, n, d, seed, scale, reduction, weighted):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, d)) * (scale if loss == "binary_cross_entropy" else min(scale, 10.0))
    w = rng.uniform(0.0, 3.0, n) + 1e-3 if weighted else None
    assert_matches(loss, Z, targets(rng, loss, (n, d)), reduction, w)


@pytest.mark.parametrize("loss", LOSSES)
def test_gradient_is_the_finite_difference_of_the_loss(rng, loss):
    Z = rng.normal(size=(5, 4)) * 2.0
    T = targets(rng, loss, Z.shape)
    w = rng.uniform(0.2, 2.0, 5)
    _, dZ = getattr(_losses, loss)(Z, T, "mean", w)
    h = 1e-6
    for idx in np.ndindex(Z.shape):
        up, down = Z.copy(), Z.copy()
        up[idx] += h
        down[idx] -= h
        fd = (getattr(_losses, loss)(up, T, "mean", w)[0]
              - getattr(_losses, loss)(down, T, "mean", w)[0]) / (2 * h)
        assert fd == pytest.approx(dZ[idx], rel=1e-6, abs=1e-9)


def test_binary_cross_entropy_at_extreme_logits():
    Z = np.array([[1e3, -1e3, 1e3, -1e3, 0.0, 40.0, -40.0, 1e308, -1e308]])
    T = np.array([[1.0, 0.0, 0.0, 1.0, 0.5, 0.0, 0.0, 0.25, 1.0]])
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        J, dZ = _losses.binary_cross_entropy(Z, T)
    # right: 0; wrong by 1e3: 1e3; z = 0: log 2; z = ±40: 40 + e^-40 and e^-40;
    # z = 1e308, t = ¼: ¾·1e308; z = −1e308, t = 1: 1e308
    per = [0.0, 0.0, 1e3, 1e3, np.log(2), 40.0 + np.exp(-40.0), np.exp(-40.0), 0.75e308, 1e308]
    assert np.isfinite(J)
    assert J == pytest.approx(sum(per), rel=1e-15)
    np.testing.assert_array_equal(dZ[0, :5], [0.0, 0.0, 1.0, -1.0, 0.0])
    assert dZ[0, 5] == 1.0 and dZ[0, 6] == pytest.approx(np.exp(-40.0), rel=1e-15)
    np.testing.assert_array_equal(dZ[0, 7:], [0.75, -1.0])
    # the worst one-label loss the network core reports (for scikit-learn's clipping)
    J1, _ = _losses.binary_cross_entropy(Z[:, :7], T[:, :7])
    assert J1 == pytest.approx(sum(per[:7]), rel=1e-15)


def test_log1p_of_the_binary_cross_entropy_is_within_an_ulp():
    # for t = 1 and z >= 0, J = log(1 + e), e = exp(−z) as fb_exp makes it
    # (which poisson returns for z' = −z, t = 0): _lossmath.h's vectorised
    # log1p on [0, 1] against NumPy's
    rng = np.random.default_rng(0)
    z = np.concatenate([rng.uniform(0, 40, 20000), rng.uniform(0, 1.2, 20000),
                        [0.0, np.log(1 / (np.sqrt(2) - 1)), 700.0, 745.0]])
    J = np.array([_losses.binary_cross_entropy(np.array([[v]]), np.ones((1, 1)))[0] for v in z])
    e = np.array([_losses.poisson(np.array([[-v]]), np.zeros((1, 1)))[0] for v in z])
    want = np.log1p(e)
    assert np.all(np.abs(J - want) <= np.spacing(want))


def test_poisson_limits():
    Z = np.array([[-1e3, -1e3, 0.0, 700.0, 709.0, 710.0]])
    T = np.array([[0.0, 2.0, 1.0, 0.0, 0.0, 3.0]])
    J, dZ = _losses.poisson(Z[:, :5], T[:, :5])
    # exp(−1e3) = 0: t z and t log t − t remain; z = 0, t = 1: 1 − 0 + 0 − 1 = 0
    want = 0.0 + (2e3 + 2 * np.log(2) - 2) + 0.0 + np.exp(700.0) + np.exp(709.0)
    assert J == pytest.approx(want, rel=1e-14)
    np.testing.assert_allclose(dZ, [[0.0, -2.0, 0.0, np.exp(700.0), np.exp(709.0)]], rtol=1e-14)
    J, dZ = _losses.poisson(Z, T)  # exp overflows past 709.78: +inf, not NaN
    assert J == np.inf and dZ[0, 5] == np.inf and np.isfinite(dZ[0, :5]).all()


@pytest.mark.parametrize("loss", LOSSES)
def test_reductions_and_weights_scale_the_sum(rng, loss):
    Z, T = rng.normal(size=(6, 3)), targets(rng, loss, (6, 3))
    f = getattr(_losses, loss)
    J, dZ = f(Z, T, "sum")
    for reduction, s in (("half", 0.5), ("mean", 1 / 6)):
        Js, dZs = f(Z, T, reduction)
        assert Js == pytest.approx(s * J, rel=1e-14)
        np.testing.assert_allclose(dZs, s * dZ, rtol=1e-14)
    # equal weights of any scale change nothing; weight 2 is the row twice
    Jw, dZw = f(Z, T, "sum", np.full(6, 3.5))
    assert Jw == pytest.approx(J, rel=1e-14)
    w = np.array([2.0, 1.0, 1.0, 0.0, 1.0, 1.0])
    rows = [0, 0, 1, 2, 4, 5]
    assert f(Z, T, "mean", w)[0] == pytest.approx(f(Z[rows], T[rows], "mean")[0], rel=1e-14)


@pytest.mark.parametrize("loss", LOSSES)
def test_no_rows_give_zero(loss):
    J, dZ = getattr(_losses, loss)(np.empty((0, 3)), np.empty((0, 3)), "mean")
    assert J == 0.0 and dZ.shape == (0, 3)


@pytest.mark.parametrize("loss", LOSSES)
def test_out_is_honoured_or_refused(rng, loss):
    Z, T = rng.normal(size=(4, 3)), targets(rng, loss, (4, 3))
    f = getattr(_losses, loss)
    out = np.full((4, 3), np.nan)
    J, dZ = f(Z, T, out=out)
    assert dZ is out
    np.testing.assert_array_equal(out, f(Z, T)[1])
    with pytest.raises(ValueError, match="out"):
        f(Z, T, out=Z)  # aliases an input
    with pytest.raises(ValueError, match="out"):
        f(Z, T, out=np.empty((4, 2)))


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("args, err, match", [
    ((np.ones((3, 2)), np.ones((3, 3))), ValueError, "T"),
    ((np.ones((3, 2)), np.ones((2, 2))), ValueError, "T"),
    ((np.ones((3, 2), dtype=np.float32), np.ones((3, 2))), TypeError, "Z"),
    ((np.ones(3), np.ones(3)), ValueError, "Z"),
    ((np.ones((3, 2)), np.ones((3, 2)), "avg"), ValueError, "reduction must be one of"),
    ((np.ones((3, 2)), np.ones((3, 2)), "sum", np.array([1.0, -1.0, 1.0])), ValueError, ">= 0"),
    ((np.ones((3, 2)), np.ones((3, 2)), "sum", np.ones(2)), ValueError, "sample_weight"),
])
def test_bad_arguments(loss, args, err, match):
    with pytest.raises(err, match=match):
        getattr(_losses, loss)(*args)


def test_names_codes_and_signatures_match_the_twins():
    import inspect

    from fastbp._enums import LOSSES, OUTPUTS, Loss, Output, code
    assert LOSSES == ("squared_error", "cross_entropy", "binary_cross_entropy", "poisson")
    assert OUTPUTS == ("none", "softmax", "exp")
    assert code("loss", "binary_cross_entropy") is Loss.LOSS_BINARY_CROSS_ENTROPY == 2
    assert code("loss", "poisson") is Loss.LOSS_POISSON == 3
    assert code("output", "exp") is Output.OUT_EXP
    for name in LOSSES[2:]:
        assert inspect.signature(getattr(_losses, name)) == inspect.signature(getattr(ref, name))
