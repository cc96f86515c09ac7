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

# Checks of check_estimator that are expected to fail, with the reason, per
# estimator; passed so that a new failure is reported as such.
EXPECTED_FAILED_CHECKS: dict = {}
# scikit-learn's own MLPClassifier(solver="lbfgs") fails it too: L-BFGS fits
# the check's 75 rows so closely that some sigmoids round to exactly 1.0
LBFGS_CLASSIFIER_FAILED_CHECKS = {
    "check_classifiers_multilabel_output_format_predict_proba":
        "as scikit-learn's MLPClassifier(solver='lbfgs'): some probabilities round to 1.0"}


# MLPRegressor(loss="poisson"): y must be >= 0, which the multioutput check
# ignores (scikit-learn's own MLPRegressor returns NaN losses there; fastbp
# refuses the negative y); and the Adam fit of check_regressors_train's
# 200-iteration budget does not reach its R² > 0.5, as scikit-learn's does not
POISSON_FAILED_CHECKS = {
    "check_regressor_multioutput": "its y is negative: refused by loss='poisson' (y >= 0)"}
POISSON_ADAM_FAILED_CHECKS = {
    "check_regressors_train": "as scikit-learn's MLPRegressor(loss='poisson'): R² below 0.5"}


def expected_failed_checks(est):
    if isinstance(est, MLPClassifier) and est.solver == "lbfgs":
        return {**EXPECTED_FAILED_CHECKS, **LBFGS_CLASSIFIER_FAILED_CHECKS}
    if isinstance(est, MLPRegressor) and est.loss == "poisson":
        more = POISSON_ADAM_FAILED_CHECKS if est.solver != "lbfgs" else {}
        return {**EXPECTED_FAILED_CHECKS, **POISSON_FAILED_CHECKS, **more}
    return EXPECTED_FAILED_CHECKS

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@parametrize_with_checks([MLPRegressor(), MLPClassifier(), MLPRegressor(solver="lbfgs"),
                          MLPClassifier(solver="lbfgs"), MLPRegressor(loss="poisson"),
                          MLPRegressor(loss="poisson", solver="lbfgs"),
                          MLPClassifier(class_weight="balanced"),
                          MLPClassifier(solver="lbfgs", class_weight="balanced"),
                          MLPRegressor(n_iter_no_change=np.inf, max_iter=20),
                          MLPRegressor(solver="lm")],
                         expected_failed_checks=expected_failed_checks)
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
    with pytest.raises(ValueError, match="multioutput"):
        MLPClassifier().fit(X[:10], np.arange(20).reshape(10, 2))
    with pytest.raises(ValueError, match="early_stopping"):
        MLPRegressor(early_stopping=True).partial_fit(X[:10], y[:10])


# ---------------------------------------------------------------------------
# Multilabel classification and Poisson regression, as scikit-learn's
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def multilabel():
    from sklearn.datasets import make_multilabel_classification
    return make_multilabel_classification(n_samples=200, n_features=20, n_classes=5,
                                          random_state=0)


@pytest.fixture(scope="module")
def counts():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 6))
    y = rng.poisson(np.exp(0.4 * X[:, 0] - 0.3 * X[:, 1] + 0.5))
    return X, y


MULTILABEL_SETTINGS = [
    dict(max_iter=20),
    dict(max_iter=20, solver="sgd", learning_rate_init=0.05, activation="tanh"),
    dict(max_iter=15, solver="sgd", momentum=0.0, shuffle=False, batch_size=32, alpha=0.1),
    dict(max_iter=20, early_stopping=True, activation="logistic", hidden_layer_sizes=(20, 10)),
    dict(max_iter=30, solver="lbfgs", hidden_layer_sizes=(30,)),
]


@pytest.mark.parametrize("params", MULTILABEL_SETTINGS)
def test_multilabel_classifier_fits_like_sklearn(multilabel, params):
    X, Y = multilabel
    ours, theirs = fit_both("MLPClassifier", X, Y, **params)
    assert ours.out_activation_ == theirs.out_activation_ == "logistic"
    assert ours.n_outputs_ == 5 and list(ours.classes_) == list(theirs.classes_)
    assert_same_network(ours, theirs, atol=1e-8)
    P = ours.predict_proba(X)
    assert P.shape == Y.shape
    np.testing.assert_allclose(P, theirs.predict_proba(X), rtol=0, atol=1e-9)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    np.testing.assert_array_equal(ours.predict(X), (P > 0.5).astype(int))
    assert ours.score(X, Y) == theirs.score(X, Y)
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-9)
    if params.get("solver") != "lbfgs":
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    if params.get("early_stopping"):
        np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_)


def test_multilabel_sample_weight_and_partial_fit_like_sklearn(multilabel):
    X, Y = multilabel
    w = np.random.default_rng(1).uniform(0.0, 2.0, len(X))
    ours, theirs = fit_both_weighted("MLPClassifier", X, Y, w, max_iter=10, solver="sgd",
                                     learning_rate_init=0.05)
    assert_same_network(ours, theirs, atol=1e-8)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    a = MLPClassifier(solver="sgd", random_state=0, learning_rate_init=0.1)
    b = sk.MLPClassifier(solver="sgd", random_state=0, learning_rate_init=0.1)
    for _ in range(5):
        a.partial_fit(X, Y, classes=[0, 1, 2, 3, 4])
        b.partial_fit(X, Y, classes=[0, 1, 2, 3, 4])
    assert_same_network(a, b, atol=1e-8)


def test_multilabel_scores_and_probabilities_like_sklearns_own_tests(multilabel):
    # scikit-learn's test_multilabel_classification and test_predict_proba_multilabel
    from sklearn.datasets import make_multilabel_classification
    X, Y = make_multilabel_classification(n_samples=50, random_state=0, return_indicator=True)
    mlp = MLPClassifier(solver="lbfgs", hidden_layer_sizes=50, alpha=1e-5, max_iter=150,
                        random_state=0, activation="logistic", learning_rate_init=0.2)
    assert mlp.fit(X, Y).score(X, Y) > 0.97
    clf = MLPClassifier(solver="lbfgs", hidden_layer_sizes=30, random_state=0).fit(X, Y)
    P = clf.predict_proba(X)
    np.testing.assert_array_equal(P > 0.5, Y)
    assert (P.sum(1) - 1).dot(P.sum(1) - 1) > 1e-10  # no softmax: rows need not sum to 1
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(P))
    MLPClassifier(early_stopping=True, random_state=0).fit(X, Y).predict(X)


def test_multilabel_targets_must_stay_the_same_kind(multilabel, digits):
    X, Y = multilabel
    clf = MLPClassifier(max_iter=2, warm_start=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, Y)
        with pytest.raises(ValueError, match="multilabel"):
            clf.fit(X, Y[:, 0])
        with pytest.raises(ValueError, match="multilabel"):
            clf.fit(X, Y[:, :3])


POISSON_SETTINGS = [
    dict(max_iter=20),
    dict(max_iter=20, solver="sgd", learning_rate_init=0.01),
    dict(max_iter=20, early_stopping=True, activation="tanh", hidden_layer_sizes=(10, 5)),
    dict(max_iter=50, solver="lbfgs", hidden_layer_sizes=(10,)),
]


@pytest.mark.parametrize("params", POISSON_SETTINGS)
def test_poisson_regressor_fits_like_sklearn(counts, params):
    X, y = counts
    ours, theirs = fit_both("MLPRegressor", X, y, loss="poisson", **params)
    assert ours.out_activation_ == theirs.out_activation_ == "exp"
    assert_same_network(ours, theirs, atol=1e-8)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-9)
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-9)
    if params.get("solver") != "lbfgs":
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    assert ours.score(X, y) == pytest.approx(theirs.score(X, y), abs=1e-9)


def test_poisson_weighted_and_multioutput_like_sklearn(counts):
    X, y = counts
    Y = np.column_stack([y, np.random.default_rng(0).poisson(2.0, len(y))])
    w = np.random.default_rng(2).uniform(0.0, 2.0, len(y))
    ours, theirs = fit_both_weighted("MLPRegressor", X, Y, w, loss="poisson", max_iter=10)
    assert_same_network(ours, theirs, atol=1e-8)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    assert ours.predict(X).shape == Y.shape


def test_poisson_mlp_is_the_poisson_glm():
    # scikit-learn's test_mlp_vs_poisson_glm_equivalent, seed 42
    from sklearn.linear_model import PoissonRegressor
    n = 100
    X = np.linspace(0, 1, n)
    y = np.random.default_rng(42).poisson(np.exp(X + 1))
    X = X.reshape(n, -1)
    glm = PoissonRegressor(alpha=0, tol=1e-7).fit(X, y)
    mlp = MLPRegressor(loss="poisson", hidden_layer_sizes=(1,), activation="identity", alpha=0,
                       solver="lbfgs", tol=1e-7, random_state=np.random.RandomState(43)).fit(X, y)
    np.testing.assert_allclose(mlp.predict(X), glm.predict(X), rtol=1e-4)


def test_poisson_needs_non_negative_y_and_a_known_loss(counts):
    X, y = counts
    bad = y.astype(float)
    bad[7] = -0.5
    with pytest.raises(ValueError, match=r"y must be >= 0 for loss='poisson' .* got -0\.5 at sample 7$"):
        MLPRegressor(loss="poisson").fit(X, bad)
    with pytest.raises(ValueError, match="loss must be one of"):
        MLPRegressor(loss="huber").fit(X, y)
    assert MLPRegressor(loss="poisson").get_params()["loss"] == "poisson"
    assert list(MLPRegressor(loss="poisson").get_params()) == list(sk.MLPRegressor().get_params())

# -- float32 in, float32 out ------------------------------------------------------

@pytest.mark.parametrize("name", ["MLPClassifier", "MLPRegressor"])
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_float32_X_gives_float32_parameters_and_predictions(digits, name, solver):
    X, y = digits
    X32 = X.astype(np.float32)
    kw = dict(hidden_layer_sizes=(5, 3), max_iter=5, random_state=1, solver=solver)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = globals()[name](**kw).fit(X32, y)
        wide = globals()[name](**kw).fit(X32.astype(np.float64), y)  # the same values
        theirs = getattr(sk, name)(**kw).fit(X32, y)
    for a, b, c in zip(ours.coefs_ + ours.intercepts_, wide.coefs_ + wide.intercepts_,
                       theirs.coefs_ + theirs.intercepts_):
        # (scikit-learn's L-BFGS leaves float64 coefs_; fastbp's are float32 for every solver)
        assert a.dtype == np.float32 and (c.dtype == np.float32 or solver == "lbfgs")
        # computed in float64, then rounded: the float64 fit's values rounded
        np.testing.assert_array_equal(a, b.astype(np.float32))
    out = ours.predict(X32) if name == "MLPRegressor" else ours.predict_proba(X32)
    want = theirs.predict(X32) if name == "MLPRegressor" else theirs.predict_proba(X32)
    assert out.dtype == np.float32 and (want.dtype == np.float32 or solver == "lbfgs")
    np.testing.assert_allclose(out, want, rtol=1e-3, atol=1e-4)
    # float64 X on a float32 model: float64 out, as scikit-learn's result type
    wide_out = ours.predict(X) if name == "MLPRegressor" else ours.predict_proba(X)
    assert wide_out.dtype == np.float64


def test_float32_training_continues_from_the_float64_parameters(digits):
    X, y = digits
    X32 = X.astype(np.float32)
    a = MLPClassifier(random_state=0, max_iter=2).partial_fit(X32, y, classes=np.unique(y))
    b = MLPClassifier(random_state=0, max_iter=2).partial_fit(X32.astype(np.float64), y,
                                                              classes=np.unique(y))
    for _ in range(2):
        a.partial_fit(X32, y)
        b.partial_fit(X32.astype(np.float64), y)
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_array_equal(p, q.astype(np.float32))  # no rounding between calls
    # reassigned (or pickled) float32 coefs_ rebuild the network from them
    a.coefs_[0] = a.coefs_[0] * np.float32(0.5)
    np.testing.assert_array_equal(a._ensure_net().weights[0], a.coefs_[0].T.astype(np.float64))
    c = pickle.loads(pickle.dumps(a))
    assert c.coefs_[0].dtype == np.float32
    np.testing.assert_array_equal(c.predict_proba(X32), a.predict_proba(X32))
    c.partial_fit(X32, y)
    assert c.coefs_[0].dtype == np.float32


# -- stopping rules -----------------------------------------------------------------

@pytest.mark.parametrize("name", ["MLPClassifier", "MLPRegressor"])
@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_convergence_warning_at_max_iter_warm_start_included(name, solver):
    from sklearn.datasets import load_iris
    X, y = load_iris(return_X_y=True)
    for est in (globals()[name], getattr(sk, name)):
        model = est(solver=solver, warm_start=True, max_iter=10, n_iter_no_change=np.inf,
                    random_state=0)
        with pytest.warns(ConvergenceWarning, match="(Maximum iterations|lbfgs failed)"):
            model.fit(X, y)
        assert model.n_iter_ == 10
        model.set_params(max_iter=20)
        with pytest.warns(ConvergenceWarning):
            model.fit(X, y)
        assert model.n_iter_ == 20


def test_n_iter_no_change_inf_never_stops_like_sklearn(digits):
    X, y = digits
    ours, theirs = fit_both("MLPClassifier", X[:100], y[:100] > 4, solver="sgd", tol=1e9,
                            max_iter=30, n_iter_no_change=np.inf)
    assert ours.n_iter_ == theirs.n_iter_ == 30
    assert ours._no_improvement_count == theirs._no_improvement_count == 29
    assert_same_network(ours, theirs)
    with pytest.raises(ValueError, match="n_iter_no_change"):
        MLPClassifier(n_iter_no_change=-np.inf).fit(X[:20], y[:20])


DIVERGING = dict(hidden_layer_sizes=100, activation="identity", solver="sgd",
                 learning_rate_init=1.0, max_iter=20, random_state=0)


def test_a_diverging_fit_with_early_stopping_ends_like_sklearn():
    from sklearn.datasets import load_iris
    X, y = load_iris(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = MLPRegressor(early_stopping=True, **DIVERGING).fit(X, y)
        theirs = sk.MLPRegressor(early_stopping=True, **DIVERGING).fit(X, y)
    s_ours, s_theirs = np.array(ours.validation_scores_), np.array(theirs.validation_scores_)
    np.testing.assert_array_equal(np.isnan(s_ours), np.isnan(s_theirs))
    assert np.isnan(s_ours[-1]) and isinstance(ours.validation_scores_[-1], float)
    assert ours.n_iter_ == theirs.n_iter_ == 20
    # the best (finite) parameters are restored, as scikit-learn does
    assert ours.best_validation_score_ == pytest.approx(theirs.best_validation_score_)
    assert_same_network(ours, theirs, atol=1e-6)
    assert np.isfinite(ours.predict(X)).all()


def test_a_diverging_fit_without_early_stopping_raises_like_sklearn():
    from sklearn.datasets import load_iris
    X, y = load_iris(return_X_y=True)
    for est in (MLPRegressor, sk.MLPRegressor):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.simplefilter("ignore", ConvergenceWarning)
            with pytest.raises(ValueError, match="Solver produced non-finite parameter weights"):
                est(**DIVERGING).fit(X, y)


def test_feature_names_kept_through_the_validation_split():
    pd = pytest.importorskip("pandas")
    rng = np.random.RandomState(0)
    X = pd.DataFrame(rng.randn(40, 2), columns=["a", "b"])
    for est, y in ((MLPClassifier, rng.randint(0, 2, 40)), (MLPRegressor, rng.randn(40))):
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = est(early_stopping=True, max_iter=3, random_state=0).fit(X, y)
        assert list(model.feature_names_in_) == ["a", "b"]


def test_one_class_fits_and_predicts_like_sklearn(digits):
    X, _ = digits
    y = np.full(50, 7)
    ours, theirs = fit_both("MLPClassifier", X[:50], y, max_iter=3)
    assert list(ours.classes_) == [7] and (ours.predict(X[:50]) == 7).all()
    np.testing.assert_allclose(ours.predict_proba(X[:50]), theirs.predict_proba(X[:50]),
                               atol=1e-9)


# -- compatibility shims --------------------------------------------------------------

@pytest.mark.parametrize("params", [
    dict(solver="sgd", learning_rate="invscaling", power_t=0.25),
    dict(solver="sgd", learning_rate="constant"),
    dict(solver="sgd", learning_rate="adaptive", tol=0.5, max_iter=300),
    dict(solver="sgd", learning_rate="adaptive", momentum=0.0, tol=0.5, max_iter=300),
    dict(solver="adam"),
])
def test_optimizer_learning_rate_is_sklearns(digits, params):
    X, y = digits
    params = dict(dict(max_iter=3), **params)
    ours, theirs = fit_both("MLPClassifier", X[:100], y[:100], **params)
    assert ours._optimizer.learning_rate == pytest.approx(theirs._optimizer.learning_rate,
                                                          rel=1e-12)
    assert ours.n_iter_ == theirs.n_iter_


@pytest.mark.parametrize("name, n_labels", [("MLPClassifier", 2), ("MLPClassifier", 3),
                                            ("MLPRegressor", None)])
def test_loss_grad_lbfgs_is_sklearns(name, n_labels):
    from sklearn.preprocessing import LabelBinarizer
    rng = np.random.RandomState(42)
    X = rng.rand(5, 10)
    if n_labels is None:
        y = rng.rand(5)
        Y = y.reshape(-1, 1)
    else:
        y = 1 + np.mod(np.arange(5) + 1, n_labels)
        Y = LabelBinarizer().fit_transform(y)
    ours, theirs = fit_both(name, X, y, solver="lbfgs", hidden_layer_sizes=10, alpha=1e-2,
                            max_iter=1, activation="tanh")
    theta = np.hstack([a.ravel() for a in theirs.coefs_ + theirs.intercepts_]) + 0.1
    units = [10, 10, theirs.n_outputs_]

    def lists():
        acts = [X] + [np.empty((5, u)) for u in units[1:]]
        deltas = [np.empty((5, u)) for u in units[1:]]
        return (acts, deltas, [np.empty((a, b)) for a, b in zip(units[:-1], units[1:])],
                [np.empty(b) for b in units[1:]])
    mine, its = lists(), lists()
    v_ours, g_ours = ours._loss_grad_lbfgs(theta, X, Y, None, *mine)
    v_theirs, g_theirs = theirs._loss_grad_lbfgs(theta, X, Y, None, *its)
    assert v_ours == pytest.approx(v_theirs, rel=1e-12)
    np.testing.assert_allclose(g_ours, g_theirs, rtol=1e-10, atol=1e-14)
    for a, b in zip(mine[2] + mine[3], its[2] + its[3]):  # what its callers read
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)
    assert_same_network(ours, theirs, atol=1e-14)  # both now hold theta


# -- class_weight -------------------------------------------------------------------------

@pytest.mark.parametrize("params", [dict(max_iter=3), dict(solver="lbfgs", max_iter=5),
                                    dict(solver="sgd", max_iter=3, early_stopping=True)])
def test_class_weight_is_the_equivalent_sample_weight(digits, params):
    X, y = digits
    cw = {int(c): 1.0 + 0.5 * c for c in range(10)}
    sw = np.random.default_rng(0).uniform(0.5, 2.0, len(y))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = MLPClassifier(class_weight=cw, random_state=0, **params).fit(X, y, sample_weight=sw)
        b = MLPClassifier(random_state=0, **params).fit(
            X, y, sample_weight=sw * np.array([cw[c] for c in y]))
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_array_equal(p, q)


def test_balanced_class_weight_is_the_formula_and_sklearns_sample_weight_fit(digits):
    X, y = digits
    y = np.where(y < 3, y, 3)  # unbalanced: 3 is most of it
    counts = np.bincount(y)
    formula = len(y) / (len(counts) * counts)
    from sklearn.utils.class_weight import compute_class_weight
    np.testing.assert_allclose(compute_class_weight("balanced", classes=np.arange(4), y=y),
                               formula)
    ours = MLPClassifier(class_weight="balanced", random_state=0, max_iter=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours.fit(X, y)
        theirs = sk.MLPClassifier(random_state=0, max_iter=3).fit(X, y,
                                                                  sample_weight=formula[y])
    assert_same_network(ours, theirs)
    # partial_fit's "balanced": the frequencies of each call's y
    part = MLPClassifier(class_weight="balanced", random_state=0)
    same = MLPClassifier(random_state=0)
    part.partial_fit(X[:100], y[:100], classes=np.arange(4))
    c = np.bincount(y[:100], minlength=4)
    present = c > 0
    w = np.zeros(4)
    w[present] = 100 / (present.sum() * c[present])
    same.partial_fit(X[:100], y[:100], classes=np.arange(4), sample_weight=w[y[:100]])
    for p, q in zip(part.coefs_, same.coefs_):
        np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("cw, match", [
    ("balance", "class_weight must be None, 'balanced', a dict"),
    ([{0: 1.0, 1: 2.0}], "a list of dicts is for multilabel y"),
    ([1.0, 2.0], "class_weight must be"),
    ({0: -1.0}, "class_weight's weights must be finite numbers >= 0"),
    ({0: np.nan}, "class_weight's weights"),
    ({0: "2"}, "class_weight's weights"),
    ({0: 1.0, 42: 2.0}, r"not in class_weight"),
])
def test_bad_class_weight_is_named(digits, cw, match):
    X, y = digits
    with pytest.raises(ValueError, match=match):
        MLPClassifier(class_weight=cw, max_iter=1).fit(X[:50], y[:50] % 3)


def test_multilabel_class_weight_is_the_product_of_the_labels_value_weights():
    X = np.random.default_rng(0).normal(size=(60, 3))
    Y = np.column_stack([X[:, 0] > 0, X[:, 1] > 1.0, X[:, 2] > -0.5]).astype(int)
    sw = np.random.default_rng(1).uniform(0.5, 2.0, len(X))
    dicts = [{0: 1.0, 1: 2.0}, {0: 0.5, 1: 3.0}, {0: 1.5, 1: 1.0}]
    by_dicts = np.prod([[d[v] for v in Y[:, j]] for j, d in enumerate(dicts)], axis=0)
    balanced = np.ones(len(X))
    for j in range(3):  # n / (2 · the value's weighted count), per label
        counts = np.array([sw[Y[:, j] == v].sum() for v in (0, 1)])
        balanced *= (sw.sum() / (2 * counts))[Y[:, j]]
    for cw, w in ((dicts, by_dicts), ("balanced", balanced)):
        a = MLPClassifier(class_weight=cw, random_state=0, max_iter=3)
        b = MLPClassifier(random_state=0, max_iter=3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            a.fit(X, Y, sample_weight=sw)
            b.fit(X, Y, sample_weight=sw * w)
        for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
            np.testing.assert_allclose(p, q, rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="got one dict"):
        MLPClassifier(class_weight={0: 1.0, 1: 2.0}, max_iter=1).fit(X, Y)
    with pytest.raises(ValueError, match=r"one dict per label \(3\), got 2"):
        MLPClassifier(class_weight=dicts[:2], max_iter=1).fit(X, Y)


def test_class_weight_in_get_params_and_clone():
    from sklearn.base import clone
    est = MLPClassifier(class_weight="balanced")
    assert est.get_params()["class_weight"] == "balanced"
    assert clone(est).class_weight == "balanced"
    assert "class_weight" not in MLPRegressor().get_params()


# -- activations beyond scikit-learn's four ------------------------------------

NEW_ACTIVATIONS = ("leaky_relu", "elu", "softplus", "silu")


@parametrize_with_checks([MLPClassifier(activation="silu", max_iter=50),
                          MLPRegressor(activation="elu", max_iter=50)],
                         expected_failed_checks=expected_failed_checks)
def test_sklearn_estimator_contract_new_activations(estimator, check):
    check(estimator)


@pytest.mark.parametrize("activation", NEW_ACTIVATIONS)
def test_new_activations_fit_and_start_from_glorot(digits, activation):
    """Each fits both estimators (to a good score on digits), from
    Glorot-uniform draws with scikit-learn's factor 6 for non-logistic units."""
    X, y = digits
    X = X / 16.0
    rs = np.random.RandomState(0)
    bound = np.sqrt(6.0 / (64 + 30))
    w0 = rs.uniform(-bound, bound, (64, 30))
    clf0 = MLPClassifier(hidden_layer_sizes=(30,), activation=activation, max_iter=1,
                         solver="sgd", learning_rate_init=1e-300, random_state=0).fit(X, y)
    np.testing.assert_allclose(clf0.coefs_[0], w0, rtol=0, atol=1e-12)
    clf = MLPClassifier(hidden_layer_sizes=(30,), activation=activation, max_iter=60,
                        random_state=0).fit(X, y)
    assert clf.score(X, y) > 0.85
    P = clf.predict_proba(X)
    assert P.shape == (len(y), 10) and np.allclose(P.sum(axis=1), 1.0)
    target = X @ np.linspace(-1, 1, 64)
    reg = MLPRegressor(hidden_layer_sizes=(20,), activation=activation, max_iter=200,
                       random_state=0).fit(X, target)
    assert reg.score(X, target) > 0.9
    assert reg.predict(X[:3]).shape == (3,)


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


# -- solver="lm" (Levenberg-Marquardt, fastbp's addition) -------------------------------

def _sklearn_objective(est, X, y, sw=None, alpha=0.0):
    """scikit-learn's regression objective at est's weights, by hand."""
    Y = est.predict(X).reshape(len(X), -1)
    y = np.asarray(y).reshape(len(X), -1)
    w = np.ones(len(X)) if sw is None else sw
    W2 = sum(float(np.sum(c ** 2)) for c in est.coefs_)
    return 0.5 * np.sum(w[:, None] * (y - Y) ** 2) / (w.sum() * y.shape[1]) + 0.5 * alpha * W2 / w.sum()


@pytest.mark.parametrize("alpha", [0.0, 0.5])
@pytest.mark.parametrize("weighted", [False, True])
def test_lm_minimises_sklearns_objective_and_keeps_its_curve(diabetes, alpha, weighted):
    X, y = diabetes
    X = (X - X.mean(0)) / X.std(0)
    y = (y - y.mean()) / y.std()
    sw = np.random.default_rng(0).uniform(0.5, 2.0, len(y)) if weighted else None
    est = MLPRegressor(hidden_layer_sizes=(8,), activation="tanh", solver="lm", alpha=alpha,
                       max_iter=40, random_state=0, tol=0.0, n_iter_no_change=np.inf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y, sample_weight=sw)
    assert est.n_iter_ == len(est.loss_curve_) == 40
    assert est.loss_ == pytest.approx(_sklearn_objective(est, X, y, sw, alpha), rel=1e-10)
    assert all(b < a for a, b in zip(est.loss_curve_, est.loss_curve_[1:]))
    lbfgs = MLPRegressor(hidden_layer_sizes=(8,), activation="tanh", solver="lbfgs", alpha=alpha,
                         max_iter=40, random_state=0).fit(X, y, sample_weight=sw)
    assert est.loss_ < lbfgs.loss_  # 40 LM iterations beat 40 of L-BFGS


def test_lm_first_iteration_is_the_twins_step_with_alpha_times_the_outputs(diabetes):
    from fastbp import reference as ref
    X, y = diabetes
    X = (X - X.mean(0)) / X.std(0)
    Y = np.column_stack([y, -y]) / y.std()
    kw = dict(hidden_layer_sizes=(5,), activation="tanh", alpha=0.3, random_state=0)
    est = MLPRegressor(solver="lm", max_iter=1, **kw)
    start = MLPRegressor(solver="sgd", learning_rate_init=1e-300, max_iter=1, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, Y)
        start.fit(X, Y)  # the same Glorot draws, not moved
    net0 = start._net
    step = ref.lm_step(net0, X, Y, 1e-3, alpha=0.3 * 2)  # α D_out in the normal equations
    np.testing.assert_allclose(est._net.params, net0.params + step, rtol=1e-10, atol=1e-12)


def test_lm_stops_on_tol_and_with_early_stopping_restores_the_best(diabetes):
    X, y = diabetes
    X = (X - X.mean(0)) / X.std(0)
    y = (y - y.mean()) / y.std()
    est = MLPRegressor(hidden_layer_sizes=(5,), solver="lm", tol=1e9, n_iter_no_change=3,
                       random_state=0).fit(X, y)
    # the first iteration sets the best loss; the next n_iter_no_change + 1 do not beat it by tol
    assert est.n_iter_ == 5
    est = MLPRegressor(hidden_layer_sizes=(30,), solver="lm", early_stopping=True,
                       n_iter_no_change=2, max_iter=300, random_state=0).fit(X, y)
    assert len(est.validation_scores_) == est.n_iter_ < 300
    assert est.best_validation_score_ == max(est.validation_scores_)
    best = est.predict(X)
    est._net.params[...] = est._best_params
    np.testing.assert_array_equal(est.predict(X), best)


def test_lm_convergence_warning_multioutput_sparse_and_refusals(diabetes):
    import scipy.sparse as sp
    X, y = diabetes
    X = (X - X.mean(0)) / X.std(0)
    Y = np.column_stack([y, y ** 0.5]) / y.std()
    with pytest.warns(ConvergenceWarning, match="Levenberg-Marquardt: Maximum iterations"):
        est = MLPRegressor(hidden_layer_sizes=(4,), solver="lm", max_iter=3, random_state=0).fit(X, Y)
    assert est.predict(X).shape == Y.shape
    Xs = X.copy()
    Xs[np.abs(Xs) < 0.7] = 0.0
    kw = dict(hidden_layer_sizes=(4,), solver="lm", max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a, b = MLPRegressor(**kw).fit(sp.csr_matrix(Xs), Y), MLPRegressor(**kw).fit(Xs, Y)
    # (the sparse first layer rounds otherwise; five Gauss-Newton solves amplify it)
    np.testing.assert_allclose(a.predict(sp.csr_matrix(Xs)), b.predict(Xs), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-8)
    with pytest.raises(ValueError, match="solver='lm' minimises a sum of squares"):
        MLPRegressor(solver="lm", loss="poisson").fit(X, np.abs(y))
    with pytest.raises(ValueError, match="solver must be one of"):
        MLPClassifier(solver="lm").fit(X, y > 100)
    with pytest.raises(AttributeError, match="partial_fit"):
        MLPRegressor(solver="lm").partial_fit(X, y)
