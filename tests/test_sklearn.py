"""fastbp.sklearn: scikit-learn's estimator contract, and the same fits as
scikit-learn's own MLP estimators for the same seed."""

import pickle
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn", minversion="1.6")  # tags, expected_failed_checks

from sklearn import neural_network as sk  # noqa: E402
from sklearn.datasets import load_diabetes, load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from fastbp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

# Checks of check_estimator that are expected to fail, with the reason.  None
# today; the dict is passed so that a new failure is reported as such.
EXPECTED_FAILED_CHECKS: dict = {}

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@parametrize_with_checks([MLPRegressor(), MLPClassifier(), MLPRegressor(solver="lbfgs"),
                          MLPClassifier(solver="lbfgs")],
                         expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
def test_sklearn_estimator_contract(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:600], y[:600]


@pytest.fixture(scope="module")
def diabetes():
    X, y = load_diabetes(return_X_y=True)
    return X, y


def fit_both(name, X, y, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = globals()[name](random_state=0, **params).fit(X, y)
        theirs = getattr(sk, name)(random_state=0, **params).fit(X, y)
    return ours, theirs


def assert_same_network(ours, theirs, atol=1e-9):
    assert [c.shape for c in ours.coefs_] == [c.shape for c in theirs.coefs_]
    assert [b.shape for b in ours.intercepts_] == [b.shape for b in theirs.intercepts_]
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=0, atol=atol)
    assert ours.n_iter_ == theirs.n_iter_


CLASSIFIER_SETTINGS = [
    dict(max_iter=3),
    dict(max_iter=3, solver="sgd", learning_rate_init=0.01),
    dict(max_iter=3, solver="sgd", nesterovs_momentum=False, learning_rate_init=0.01),
    dict(max_iter=3, solver="sgd", momentum=0.0, learning_rate_init=0.01, shuffle=False),
    dict(max_iter=4, early_stopping=True, activation="tanh", hidden_layer_sizes=(20, 10)),
    dict(max_iter=3, activation="logistic", alpha=0.1, batch_size=64),
]


@pytest.mark.parametrize("params", CLASSIFIER_SETTINGS)
def test_classifier_fits_like_sklearn(digits, params):
    X, y = digits
    ours, theirs = fit_both("MLPClassifier", X, y, **params)
    assert_same_network(ours, theirs)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-9)
    if params.get("early_stopping"):
        np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_)
        assert ours.best_validation_score_ == theirs.best_validation_score_


@pytest.mark.parametrize("params", [dict(max_iter=3), dict(max_iter=3, early_stopping=True)])
def test_binary_classifier_is_one_logistic_unit_like_sklearn(digits, params):
    X, y = digits
    labels = np.where(y > 4, "high", "low")
    ours, theirs = fit_both("MLPClassifier", X, labels, **params)
    assert ours.coefs_[-1].shape == (100, 1) and ours.out_activation_ == "logistic"
    assert_same_network(ours, theirs)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    assert list(ours.predict(X)) == list(theirs.predict(X))
    assert ours.predict_proba(X).shape == (len(X), 2)


@pytest.mark.parametrize("params", [
    dict(max_iter=5),
    dict(max_iter=5, solver="sgd", learning_rate_init=1e-4),
    dict(max_iter=6, early_stopping=True, validation_fraction=0.2),
    dict(max_iter=4, hidden_layer_sizes=(), alpha=1.0),
])
def test_regressor_fits_like_sklearn(diabetes, params):
    X, y = diabetes
    ours, theirs = fit_both("MLPRegressor", X, y, **params)
    assert_same_network(ours, theirs, atol=1e-8)
    # the regression loss has no clipping: the curves agree to rounding
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-10)
    assert ours.score(X, y) == pytest.approx(theirs.score(X, y), abs=1e-9)


def fit_both_weighted(name, X, y, sample_weight, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = globals()[name](random_state=0, **params).fit(X, y, sample_weight=sample_weight)
        theirs = getattr(sk, name)(random_state=0, **params).fit(X, y, sample_weight=sample_weight)
    return ours, theirs


@pytest.mark.parametrize("params", [
    dict(max_iter=3),
    dict(max_iter=3, solver="sgd", learning_rate_init=0.01, alpha=0.1),
    dict(max_iter=3, early_stopping=True),
    dict(max_iter=3, shuffle=False, batch_size=50),
])
def test_sample_weight_fits_like_sklearn(digits, diabetes, params):
    rng = np.random.default_rng(7)
    X, y = digits
    w = rng.uniform(0.0, 3.0, len(y))
    w[:40] = 0.0  # whole batches of weight 0 are skipped (with shuffle=False)
    w_before = w.copy()
    ours, theirs = fit_both_weighted("MLPClassifier", X, y, w, **params)
    assert_same_network(ours, theirs)
    if params.get("early_stopping"):
        np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_)
    Xd, yd = diabetes
    wd = rng.uniform(0.5, 2.0, len(yd))
    ours, theirs = fit_both_weighted("MLPRegressor", Xd, yd, wd, **params)
    assert_same_network(ours, theirs, atol=1e-8)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-10)
    assert np.array_equal(w, w_before)


def test_sample_weight_changes_the_fit_and_integer_weights_act_as_repeats(diabetes):
    X, y = diabetes
    X, y = X[:64], y[:64]
    # constant weights change nothing but the L2 term, which sklearn divides
    # by the sum of weights (alpha 0 here)
    plain = MLPRegressor(random_state=0, max_iter=2, batch_size=64, shuffle=False,
                         alpha=0.0).fit(X, y)
    ones = MLPRegressor(random_state=0, max_iter=2, batch_size=64, shuffle=False,
                        alpha=0.0).fit(X, y, sample_weight=np.full(64, 3.0))
    for a, b in zip(plain.coefs_, ones.coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    # one batch: weight 2 on a row is that row twice (the batch then has 65 rows)
    w = np.ones(64)
    w[5] = 2.0
    weighted = MLPRegressor(random_state=0, max_iter=1, batch_size=64, shuffle=False,
                            alpha=0.0).fit(X, y, sample_weight=w)
    Xr, yr = np.vstack([X, X[5:6]]), np.append(y, y[5])
    repeated = MLPRegressor(random_state=0, max_iter=1, batch_size=65, shuffle=False,
                            alpha=0.0).fit(Xr, yr)
    for a, b in zip(weighted.coefs_, repeated.coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_bad_sample_weight_is_refused(diabetes):
    X, y = diabetes
    with pytest.raises(ValueError, match="Negative"):
        MLPRegressor(max_iter=1).fit(X, y, sample_weight=-np.ones(len(y)))
    with pytest.raises(ValueError, match="shape"):
        MLPRegressor(max_iter=1).fit(X, y, sample_weight=np.ones(3))


@pytest.mark.parametrize("params", [
    dict(learning_rate="invscaling", power_t=0.3, learning_rate_init=0.05),
    dict(learning_rate="invscaling", nesterovs_momentum=False, learning_rate_init=0.05),
    # adaptive: a loose tol makes every epoch "no improvement", so the rate
    # is divided by 5 after every 3rd epoch until it is below 1e-6
    dict(learning_rate="adaptive", tol=10.0, n_iter_no_change=2, learning_rate_init=0.01),
    dict(learning_rate="adaptive", tol=10.0, n_iter_no_change=1, early_stopping=True,
         learning_rate_init=0.01),
])
def test_learning_rate_schedules_fit_like_sklearn(digits, diabetes, params):
    X, y = digits
    ours, theirs = fit_both("MLPClassifier", X[:300], y[:300], solver="sgd", max_iter=12,
                            **params)
    assert_same_network(ours, theirs)
    Xd, yd = diabetes
    ours, theirs = fit_both("MLPRegressor", Xd, yd / 100.0, solver="sgd", max_iter=12, **params)
    assert_same_network(ours, theirs, atol=1e-8)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)


def test_adaptive_rate_stops_once_below_1e6(diabetes):
    X, y = diabetes
    params = dict(solver="sgd", learning_rate="adaptive", tol=10.0, n_iter_no_change=1,
                  learning_rate_init=1e-5, max_iter=50)
    ours, theirs = fit_both("MLPRegressor", X, y / 100.0, **params)
    # 1e-5 -> 2e-6 -> 4e-7 (≤ 1e-6: stop at the next stall)
    assert ours.n_iter_ == theirs.n_iter_ < 50
    assert_same_network(ours, theirs, atol=1e-8)


@pytest.mark.parametrize("params", [dict(max_iter=15), dict(max_iter=200),
                                    dict(max_iter=15, alpha=0.5, hidden_layer_sizes=(20, 10)),
                                    dict(max_iter=15, activation="logistic", tol=1e-2)])
def test_lbfgs_fits_like_sklearn(digits, diabetes, params):
    X, y = digits
    X = X / 16.0
    for labels in (y, np.where(y > 4, "high", "low")):  # softmax, and the binary logistic unit
        ours, theirs = fit_both("MLPClassifier", X, labels, solver="lbfgs", **params)
        assert_same_network(ours, theirs, atol=1e-9)
        assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-9)
        assert not hasattr(ours, "loss_curve_") and not hasattr(ours, "partial_fit")
    Xd, yd = diabetes
    Y = np.column_stack([yd, -yd]) / 100.0  # two outputs: sklearn's loss averages over them
    w = np.random.default_rng(3).uniform(0.5, 2.0, len(yd))
    # (this one does not converge: after ~100 iterations the two runs' last-bit
    # differences have grown past 1e-8, as any two L-BFGS implementations' would)
    params = dict(params, max_iter=min(params["max_iter"], 30))
    ours, theirs = fit_both_weighted("MLPRegressor", Xd, Y, w, solver="lbfgs", **params)
    assert_same_network(ours, theirs, atol=1e-8)
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-9)


def test_lbfgs_has_no_partial_fit(digits):
    X, y = digits
    with pytest.raises(AttributeError, match="partial_fit"):
        MLPClassifier(solver="lbfgs").partial_fit(X, y, classes=np.unique(y))


def test_multioutput_regression_and_stopping_on_tol(diabetes):
    X, y = diabetes
    Y = np.column_stack([y, -y]) / 100.0
    ours, theirs = fit_both("MLPRegressor", X, Y, max_iter=200, tol=1e-2, n_iter_no_change=3)
    assert ours.n_iter_ < 200  # stopped by tol, as scikit-learn did, at the same epoch
    assert_same_network(ours, theirs, atol=1e-8)
    assert ours.predict(X).shape == (len(X), 2)


def test_partial_fit_continues_like_sklearn(digits):
    X, y = digits
    ours, theirs = MLPClassifier(random_state=0), sk.MLPClassifier(random_state=0)
    with pytest.raises(ValueError, match="classes"):
        MLPClassifier().partial_fit(X, y)
    for est in (ours, theirs):
        est.partial_fit(X[:300], y[:300], classes=np.arange(10))
        est.partial_fit(X[300:], y[300:])
    assert_same_network(ours, theirs)
    assert len(ours.loss_curve_) == 2
    with pytest.raises(ValueError, match="classes"):
        ours.partial_fit(X[:5], np.array([0, 1, 2, 3, 11]))


def test_warm_start_continues_from_the_fitted_weights(diabetes):
    X, y = diabetes
    ours = MLPRegressor(random_state=0, max_iter=3, warm_start=True)
    theirs = sk.MLPRegressor(random_state=0, max_iter=3, warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for est in (ours, theirs):
            est.fit(X, y).fit(X, y)
    assert len(ours.loss_curve_) == 6
    assert_same_network(ours, theirs, atol=1e-8)


def test_pickle_round_trip_then_keep_training(digits):
    X, y = digits
    est = MLPClassifier(random_state=0, max_iter=2, hidden_layer_sizes=(16,)).fit(X, y)
    copy = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(copy.predict_proba(X), est.predict_proba(X))
    est.partial_fit(X, y)
    copy.partial_fit(X, y)  # the compiled network is rebuilt from coefs_
    np.testing.assert_allclose(copy.predict_proba(X), est.predict_proba(X), atol=1e-12)


def test_coefs_are_live_in_sklearn_layout(digits):
    X, y = digits
    est = MLPClassifier(random_state=0, max_iter=1, hidden_layer_sizes=(7, 5)).fit(X, y)
    assert [c.shape for c in est.coefs_] == [(64, 7), (7, 5), (5, 10)]
    assert [b.shape for b in est.intercepts_] == [(7,), (5,), (10,)]
    est.coefs_[-1][...] = 0.0
    est.intercepts_[-1][...] = np.arange(10.0)
    assert (est.predict(X) == 9).all()


def test_pipeline_and_grid_search_pick_what_sklearn_picks(digits):
    X, y = digits
    results = []
    for cls in (MLPClassifier, sk.MLPClassifier):
        pipe = make_pipeline(StandardScaler(), cls(max_iter=10, learning_rate_init=0.01,
                                                   random_state=0))
        grid = GridSearchCV(pipe, {"mlpclassifier__hidden_layer_sizes": [(4,), (32,)]}, cv=2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            grid.fit(X, y)
        results.append((grid.best_params_, grid.cv_results_["mean_test_score"], grid.score(X, y)))
    (ours_best, ours_cv, ours_score), (their_best, their_cv, their_score) = results
    assert ours_best == their_best
    np.testing.assert_allclose(ours_cv, their_cv, atol=1e-12)
    assert ours_score == pytest.approx(their_score, abs=1e-12) and ours_score > 0.9


@pytest.mark.parametrize("param, value", [
    ("hidden_layer_sizes", (10, 0)), ("hidden_layer_sizes", "ten"),
    ("activation", "softmax"), ("solver", "newton"), ("alpha", -1.0),
    ("batch_size", 0), ("batch_size", "big"), ("learning_rate_init", 0.0),
    ("max_iter", 0), ("max_iter", 2.5), ("tol", -1.0), ("momentum", 1.5),
    ("validation_fraction", 1.0), ("beta_1", 1.0), ("beta_2", -0.1), ("epsilon", 0.0),
    ("n_iter_no_change", 0), ("shuffle", "yes"), ("warm_start", 1),
    ("learning_rate", "cosine"), ("power_t", -0.5), ("max_fun", 0),
])
def test_bad_parameters_are_named(digits, param, value):
    X, y = digits
    with pytest.raises(ValueError, match=param):
        MLPClassifier(**{param: value}).fit(X[:20], y[:20])


def test_bad_targets(digits):
    X, y = digits
    with pytest.raises(ValueError, match="at least 2 classes"):
        MLPClassifier().fit(X[:10], np.zeros(10))
    with pytest.raises(ValueError, match="multilabel"):
        MLPClassifier().fit(X[:10], np.eye(10, dtype=int))
    with pytest.raises(ValueError, match="early_stopping"):
        MLPRegressor(early_stopping=True).partial_fit(X[:10], y[:10])


# -- sparse X ----------------------------------------------------------------

def _sparse_data(n=160, k=50, seed=0):
    import scipy.sparse as sp
    rng = np.random.default_rng(seed)
    X = sp.random(n, k, density=0.1, format="csr", random_state=seed)
    return X, X.toarray(), rng.integers(0, 3, n), rng.standard_normal(n)


def _same_fit(a, b):
    for ca, cb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_allclose(ca, cb, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(a.loss_curve_ if hasattr(a, "loss_curve_") else a.loss_,
                               b.loss_curve_ if hasattr(b, "loss_curve_") else b.loss_, rtol=1e-10)


@pytest.mark.parametrize("solver,early_stopping", [("sgd", False), ("sgd", True), ("adam", False),
                                                   ("adam", True), ("lbfgs", False)])
@pytest.mark.parametrize("Est", [MLPClassifier, MLPRegressor])
@pytest.mark.parametrize("fmt", ["csr_matrix", "csc_array"])
def test_sparse_fit_equals_the_dense_fit(solver, early_stopping, Est, fmt):
    import scipy.sparse as sp
    X, Xd, y, yr = _sparse_data()
    Xs = getattr(sp, fmt)(X)
    t = y if Est is MLPClassifier else yr
    kw = dict(hidden_layer_sizes=(9,), solver=solver, max_iter=6, random_state=0,
              early_stopping=early_stopping, batch_size=32, alpha=1e-3)
    a, b = Est(**kw).fit(Xs, t), Est(**kw).fit(Xd, t)
    _same_fit(a, b)
    np.testing.assert_allclose(a.predict(Xs), b.predict(Xd), rtol=1e-10, atol=1e-14)
    if Est is MLPClassifier:
        np.testing.assert_allclose(a.predict_proba(Xs), b.predict_proba(Xd), rtol=1e-10)
        binary = Est(**kw).fit(Xs, y % 2), Est(**kw).fit(Xd, y % 2)
        _same_fit(*binary)
    if solver != "lbfgs" and not early_stopping:
        a.partial_fit(Xs, t)
        b.partial_fit(Xd, t)
        _same_fit(a, b)


def test_sparse_fit_makes_no_dense_copy_of_X():
    # a 3,000 x 100,000 X at 0.01 % is 240 MB dense, 0.5 MB sparse
    import tracemalloc

    import scipy.sparse as sp
    rng = np.random.default_rng(0)
    rows = np.repeat(np.arange(3000), 10)
    X = sp.csr_matrix((rng.random(rows.size), (rows, rng.integers(0, 100_000, rows.size))),
                      shape=(3000, 100_000))
    y = np.arange(3000) % 3
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=1, random_state=0)
    tracemalloc.start()
    clf.fit(X, y)
    clf.predict_proba(X)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 60e6  # the weights' few copies (4 x 10^5 doubles each), no (rows, 10^5) block


def test_scikit_learns_own_sparse_tests_pass(tmp_path):
    import pathlib
    import subprocess
    import sys
    src = pathlib.Path(sk.__file__).parent / "tests" / "test_mlp.py"
    text = src.read_text()
    line = "from sklearn.neural_network import MLPClassifier, MLPRegressor"
    assert line in text
    (tmp_path / "test_mlp.py").write_text(
        text.replace(line, "from fastbp.sklearn import MLPClassifier, MLPRegressor"))
    (tmp_path / "conftest.py").write_text(
        "import pytest\n\n\n@pytest.fixture\ndef global_random_seed():\n    return 42\n")
    import os

    import fastbp
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(pathlib.Path(fastbp.__file__).parent.parent), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k",
                        "sparse", str(tmp_path / "test_mlp.py")], capture_output=True, text=True,
                       cwd=tmp_path, env=env)
    assert r.returncode == 0 and "2 passed" in r.stdout, r.stdout + r.stderr
