"""fastbp.training (MLP.fit, MLP.loss): learning on small problems and on
scikit-learn's bundled data, the loop's bookkeeping (history, early
stopping, callbacks, shuffling), bitwise-reproducible fits, its input checks
and its thread guard."""

import io
import sys
import threading
import types

import numpy as np
import pytest

from fastbp.network import MLP
from fastbp.optim import SGD, Adam, Momentum

from conftest import params_bytes, random_regression


def test_xor_with_2_4_1_sigmoid():
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    T = np.array([[0], [1], [1], [0]], dtype=float)
    net = MLP([2, 4, 1], activation="sigmoid", output_activation="sigmoid", seed=0)
    hist = net.fit(X, T, epochs=3000, batch_size=4, lr=2.0, optimizer="momentum", seed=0)
    assert hist["loss"][-1] < 0.01
    np.testing.assert_array_equal(net.predict(X) > 0.5, T > 0.5)


def test_sine_regression():
    rng = np.random.default_rng(0)
    x = rng.uniform(-np.pi, np.pi, size=(256, 1))
    net = MLP([1, 16, 16, 1], activation="tanh", seed=1)
    hist = net.fit(x, np.sin(x), epochs=300, batch_size=16, lr=0.01, optimizer="adam", seed=0)
    grid = np.linspace(-3, 3, 50)[:, None]
    assert np.abs(net.predict(grid) - np.sin(grid)).max() < 0.1
    assert hist["loss"][-1] < 0.01 * hist["loss"][0]


def test_classification_with_integer_labels_and_one_hot_agree():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1)
    a = MLP([4, 8, 3], activation="relu", seed=2)
    b = MLP([4, 8, 3], activation="relu", seed=2)
    ha = a.fit(X, y, epochs=5, batch_size=7, loss="cross_entropy", lr=0.1, seed=4)
    hb = b.fit(X, np.eye(3)[y], epochs=5, batch_size=7, loss="cross_entropy", lr=0.1, seed=4)
    np.testing.assert_allclose(ha["loss"], hb["loss"], rtol=1e-12)
    np.testing.assert_allclose(a.params, b.params, rtol=1e-12, atol=1e-15)


def test_fit_without_shuffle_is_the_train_step_loop():
    rng = np.random.default_rng(5)
    X, T = rng.normal(size=(23, 3)), rng.normal(size=(23, 2))
    a = MLP([3, 5, 2], activation="tanh", seed=7)
    b = MLP([3, 5, 2], activation="tanh", seed=7)
    hist = a.fit(X, T, epochs=3, batch_size=5, lr=0.05, shuffle=False)
    for epoch in range(3):
        total = 0.0
        for s in range(0, 23, 5):
            total += b.train_step(X[s:s + 5], T[s:s + 5], lr=0.05) * len(X[s:s + 5])
        assert hist["loss"][epoch] == pytest.approx(total / 23, rel=1e-13)
    np.testing.assert_array_equal(a.params, b.params)


def test_shuffled_fit_is_seeded():
    rng = np.random.default_rng(6)
    X, T = rng.normal(size=(40, 3)), rng.normal(size=(40, 1))
    runs = []
    for seed in (1, 1, 2):
        net = MLP([3, 4, 1], seed=0)
        runs.append((net.fit(X, T, epochs=3, batch_size=8, seed=seed)["loss"], net.params.copy()))
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert not np.array_equal(runs[0][1], runs[2][1])
    # the epoch loss is the batches' loss over the whole set, whatever the order
    assert runs[0][0][0] == pytest.approx(runs[2][0][0], rel=0.2)


def test_history_and_validation_loss():
    rng = np.random.default_rng(7)
    X, T = rng.normal(size=(30, 2)), rng.normal(size=(30, 1))
    Xv, Tv = rng.normal(size=(11, 2)), rng.normal(size=(11, 1))
    net = MLP([2, 3, 1], seed=0)
    hist = net.fit(X, T, epochs=4, batch_size=8, validation_data=(Xv, Tv), reduction="sum")
    assert set(hist) == {"loss", "val_loss"} and len(hist["loss"]) == len(hist["val_loss"]) == 4
    assert hist["val_loss"][-1] == pytest.approx(float(((net.predict(Xv) - Tv) ** 2).sum()), rel=1e-12)
    assert net.loss(Xv, Tv, reduction="mean") == pytest.approx(hist["val_loss"][-1] / 11, rel=1e-12)
    assert set(MLP([2, 1]).fit(X, T, epochs=1)) == {"loss"}


def test_callback_stops_training():
    X, T = np.ones((5, 2)), np.ones((5, 1))
    seen = []

    def callback(epoch, history):
        seen.append((epoch, len(history["loss"])))
        return epoch == 2

    hist = MLP([2, 1], seed=0).fit(X, T, epochs=10, callback=callback)
    assert seen == [(0, 1), (1, 2), (2, 3)] and len(hist["loss"]) == 3


def test_early_stopping_restores_the_best_weights():
    rng = np.random.default_rng(8)
    X, T = rng.normal(size=(40, 3)), rng.normal(size=(40, 1))
    Xv, Tv = rng.normal(size=(20, 3)), rng.normal(size=(20, 1))  # noise: overfits fast
    net = MLP([3, 32, 1], activation="tanh", seed=0)
    saved = {}

    def remember(epoch, history):
        saved[epoch] = net.params.copy()

    hist = net.fit(X, T, epochs=500, batch_size=4, lr=0.05, optimizer="adam",
                   validation_data=(Xv, Tv), early_stopping=True, patience=5, callback=remember)
    val = hist["val_loss"]
    best = int(np.argmin(val))
    assert len(val) == best + 6 < 500  # stopped 5 epochs after the best
    np.testing.assert_array_equal(net.params, saved[best])
    # without restoring, the last epoch's parameters stay
    net = MLP([3, 32, 1], activation="tanh", seed=0)
    saved.clear()
    net.fit(X, T, epochs=500, batch_size=4, lr=0.05, optimizer="adam", validation_data=(Xv, Tv),
            early_stopping=True, patience=5, restore_best_weights=False, callback=remember)
    np.testing.assert_array_equal(net.params, saved[max(saved)])


def test_optimizer_objects_and_weight_decay():
    rng = np.random.default_rng(9)
    X, T = rng.normal(size=(20, 3)), rng.normal(size=(20, 1))
    opt = Adam(lr=0.01)
    net = MLP([3, 4, 1], seed=0)
    net.fit(X, T, epochs=2, optimizer=opt, batch_size=5)
    assert opt.t == 8
    # a strong L2 penalty shrinks the weights but leaves biases free
    big = MLP([3, 4, 1], seed=0)
    small = MLP([3, 4, 1], seed=0)
    big.fit(X, T, epochs=20, lr=0.05, batch_size=5, seed=0)
    small.fit(X, T, epochs=20, lr=0.05, batch_size=5, seed=0, weight_decay=5.0)
    assert np.abs(small.params[:small.n_weights]).sum() < 0.5 * np.abs(big.params[:big.n_weights]).sum()
    with pytest.raises(ValueError, match="optimizer must be one of"):
        net.fit(X, T, optimizer="lbfgs")
    SGD(lr=0.1)  # an object's own lr is used when fit's lr is not given


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(X=np.ones((5, 3)), T=np.ones((5, 1))), ValueError, "2 columns"),
    (dict(X=np.ones((5, 2)), T=np.ones((4, 1))), ValueError, "5 rows"),
    (dict(X=np.ones((5, 2)), T=np.ones((5, 2))), ValueError, "1 columns"),
    (dict(X=np.ones(5), T=np.ones(5)), ValueError, "2-D"),
    (dict(X=np.ones((0, 2)), T=np.ones((0, 1))), ValueError, "at least one row"),
    (dict(X=np.full((5, 2), np.inf), T=np.ones((5, 1))), ValueError, "X holds NaN"),
    (dict(X=np.ones((5, 2)), T=np.full((5, 1), np.nan)), ValueError, "T holds NaN"),
    (dict(X=np.ones((5, 2)), T=np.ones((5, 1)), epochs=-1), ValueError, "epochs"),
    (dict(X=np.ones((5, 2)), T=np.ones((5, 1)), batch_size=0), ValueError, "batch_size"),
    (dict(X=np.ones((5, 2)), T=np.ones((5, 1)), batch_size=2.5), TypeError, "batch_size"),
    (dict(X=np.ones((5, 2)), T=np.ones((5, 1)), validation_data=np.ones(3)), TypeError, "pair"),
    (dict(X=np.ones((5, 2)), T=np.ones((5, 1)), validation_data=(np.ones((3, 3)), np.ones((3, 1)))),
     ValueError, "X_val must have 2 columns"),
    (dict(X=np.ones((5, 2)), T=np.ones((5, 1)), callback=3), TypeError, "callback"),
    (dict(X=np.ones((5, 2)), T=np.ones((5, 1)), reduction="max"), ValueError, "reduction"),
])
def test_fit_bad_inputs(kwargs, err, match):
    net = MLP([2, 3, 1], seed=0)
    before = net.params.copy()
    X, T = kwargs.pop("X"), kwargs.pop("T")
    with pytest.raises(err, match=match):
        net.fit(X, T, **kwargs)
    np.testing.assert_array_equal(net.params, before)


def test_fit_accepts_lists_and_one_column_targets():
    net = MLP([2, 1], seed=0)
    hist = net.fit([[0, 1], [1, 0], [1, 1]], [1.0, 2.0, 3.0], epochs=2, batch_size=2)
    assert len(hist["loss"]) == 2
    X = np.array([[np.nan, 1.0]])
    before = net.params.copy()
    with pytest.raises(FloatingPointError, match="loss is nan"):  # opted out: runs, diverges
        net.fit(X, [1.0], epochs=1, check_finite=False)
    np.testing.assert_array_equal(net.params, before)  # never left NaN


def test_second_concurrent_fit_raises():
    X, T = np.ones((8, 2)), np.ones((8, 1))
    net = MLP([2, 1], seed=0)
    inside, release = threading.Event(), threading.Event()

    def hold(epoch, history):
        net.predict(X)  # the fitting thread itself may use its network
        inside.set()
        release.wait(10)
        return True

    worker = threading.Thread(target=lambda: net.fit(X, T, epochs=5, callback=hold))
    worker.start()
    try:
        assert inside.wait(10)
        with pytest.raises(RuntimeError, match="in use by another thread"):
            net.fit(X, T, epochs=1)
        with pytest.raises(RuntimeError, match="in use by another thread"):
            net.train_step(X, T)
        with pytest.raises(RuntimeError, match="in use by another thread"):
            net.predict(X)
    finally:
        release.set()
        worker.join(10)
    net.fit(X, T, epochs=1)  # the lock is released after fit


def test_progress_bar_is_optional():
    X, T = np.ones((4, 2)), np.ones((4, 1))
    MLP([2, 1]).fit(X, T, epochs=2, progress=False)
    MLP([2, 1]).fit(X, T, epochs=2, progress=None)  # stderr is not a terminal under pytest
    try:
        import tqdm  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="tqdm"):
            MLP([2, 1]).fit(X, T, epochs=2, progress=True)
    else:
        MLP([2, 1]).fit(X, T, epochs=2, progress=True)


def test_progress_bar_auto_mode(monkeypatch):
    bars = []

    class FakeBar:  # stands in for tqdm
        def __init__(self, total, **kwargs):
            bars.append(total)

        def update(self, n):
            pass

        def set_postfix(self, **kwargs):
            pass

        def close(self):
            pass

    fake = types.ModuleType("tqdm.auto")
    fake.tqdm = FakeBar
    monkeypatch.setitem(sys.modules, "tqdm", types.ModuleType("tqdm"))
    monkeypatch.setitem(sys.modules, "tqdm.auto", fake)

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    monkeypatch.delenv("CI", raising=False)
    X, T = np.ones((100, 2)), np.ones((100, 1))
    MLP([2, 1]).fit(X, T, epochs=100, batch_size=1)  # 10 000 steps on a terminal: a bar
    assert bars == [100]
    MLP([2, 1]).fit(X, T, epochs=2, batch_size=1)  # a short fit: none
    monkeypatch.setenv("CI", "true")
    MLP([2, 1]).fit(X, T, epochs=100, batch_size=1)  # CI: none
    assert bars == [100]


# ---------------------------------------------------------------------------
# Data no one here made: scikit-learn's bundled sets, against its own MLPs
# ---------------------------------------------------------------------------

EPOCHS = 60


def _split(X, y, rng):
    idx = rng.permutation(len(X))
    cut = int(0.75 * len(X))
    return X[idx[:cut]], X[idx[cut:]], y[idx[:cut]], y[idx[cut:]]


def test_digits_reaches_sklearn_mlpclassifier_accuracy():
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    Xtr, Xte, ytr, yte = _split(X, y, np.random.default_rng(0))
    sk = MLPClassifier(hidden_layer_sizes=(32,), activation="logistic", solver="adam",
                       learning_rate_init=1e-3, batch_size=32, max_iter=EPOCHS, alpha=0.0,
                       random_state=0, n_iter_no_change=EPOCHS + 1, tol=0.0)
    with pytest.warns(ConvergenceWarning):
        sk.fit(Xtr, ytr)
    sk_acc = float((sk.predict(Xte) == yte).mean())
    net = MLP([64, 32, 10], activation="sigmoid", output_activation="softmax", seed=0)
    net.fit(Xtr, ytr, epochs=EPOCHS, batch_size=32, lr=1e-3, optimizer="adam",
            loss="cross_entropy", seed=0)
    acc = float((net.predict(Xte).argmax(axis=1) == yte).mean())
    assert acc >= sk_acc - 0.01, (acc, sk_acc)
    assert acc > 0.9


def test_diabetes_reaches_sklearn_mlpregressor_r2():
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_diabetes
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPRegressor
    X, y = load_diabetes(return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    y = (y - y.mean()) / y.std()
    Xtr, Xte, ytr, yte = _split(X, y, np.random.default_rng(1))
    sk = MLPRegressor(hidden_layer_sizes=(16,), activation="tanh", solver="adam",
                      learning_rate_init=1e-3, batch_size=16, max_iter=EPOCHS, alpha=0.0,
                      random_state=0, n_iter_no_change=EPOCHS + 1, tol=0.0)
    with pytest.warns(ConvergenceWarning):
        sk.fit(Xtr, ytr)

    def r2(pred):
        return 1.0 - ((pred - yte) ** 2).sum() / ((yte - yte.mean()) ** 2).sum()

    sk_r2 = r2(sk.predict(Xte))
    net = MLP([10, 16, 1], activation="tanh", seed=0)
    net.fit(Xtr, ytr, epochs=EPOCHS, batch_size=16, lr=1e-3, optimizer="adam", seed=0)
    fb_r2 = r2(net.predict(Xte)[:, 0])
    assert fb_r2 >= sk_r2 - 0.01, (fb_r2, sk_r2)
    assert fb_r2 > 0.3


def test_loss_over_many_chunks_matches_predict():
    rng = np.random.default_rng(10)
    net = MLP([3, 5, 4], activation="relu", seed=0)
    X = rng.normal(size=(1300, 3))
    T = rng.normal(size=(1300, 4))
    labels = rng.integers(0, 4, 1300)
    Y = net.predict(X)
    assert net.loss(X, T, reduction="sum") == pytest.approx(((Y - T) ** 2).sum(), rel=1e-12)
    assert net.loss(X, T, reduction="half") == pytest.approx(0.5 * ((Y - T) ** 2).sum(), rel=1e-12)
    logp = Y - Y.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    want = -logp[np.arange(1300), labels].mean()
    assert net.loss(X, labels, loss="cross_entropy") == pytest.approx(want, rel=1e-12)


def test_fit_with_sample_weight_is_the_weighted_train_step_loop():
    rng = np.random.default_rng(5)
    X, T = rng.normal(size=(50, 3)), rng.normal(size=(50, 2))
    w = rng.uniform(0.0, 2.0, 50)
    w[10:20] = 0.0  # one whole batch of weight 0: skipped
    a, b = MLP([3, 5, 2], seed=1), MLP([3, 5, 2], seed=1)
    hist = a.fit(X, T, epochs=2, batch_size=10, lr=0.1, shuffle=False, sample_weight=w)
    want, weight = [], w.sum()
    for _ in range(2):
        total = 0.0
        for s in range(0, 50, 10):
            if w[s:s + 10].sum() == 0:
                continue
            J = b.train_step(X[s:s + 10], T[s:s + 10], lr=0.1, optimizer="sgd",
                             sample_weight=w[s:s + 10])
            total += J * w[s:s + 10].sum()
        want.append(total / weight)
    np.testing.assert_array_equal(a.params, b.params)
    np.testing.assert_allclose(hist["loss"], want, rtol=1e-14)


def test_fit_sample_weight_scale_does_not_matter_and_shuffles_with_the_rows():
    rng = np.random.default_rng(6)
    X, T = rng.normal(size=(40, 3)), rng.normal(size=(40, 1))
    w = rng.uniform(0.1, 2.0, 40)
    a, b = MLP([3, 4, 1], seed=2), MLP([3, 4, 1], seed=2)
    ha = a.fit(X, T, epochs=3, batch_size=8, seed=3, sample_weight=w)
    hb = b.fit(X, T, epochs=3, batch_size=8, seed=3, sample_weight=10.0 * w)
    np.testing.assert_allclose(a.params, b.params, rtol=1e-12)
    np.testing.assert_allclose(ha["loss"], hb["loss"], rtol=1e-12)
    c = MLP([3, 4, 1], seed=2)
    c.fit(X, T, epochs=3, batch_size=8, seed=3, sample_weight=np.ones(40))
    d = MLP([3, 4, 1], seed=2)
    d.fit(X, T, epochs=3, batch_size=8, seed=3)
    np.testing.assert_allclose(c.params, d.params, rtol=1e-12)
    assert not np.allclose(a.params, d.params)


@pytest.mark.parametrize("w,match", [
    (np.ones(3), "shape"), (-np.ones(40), ">= 0"), (np.zeros(40), "positive sum"),
    (np.full(40, np.nan), ">= 0"),
])
def test_fit_bad_sample_weight(w, match):
    X, T = np.zeros((40, 3)), np.zeros((40, 1))
    net = MLP([3, 2, 1], seed=0)
    before = net.params.copy()
    with pytest.raises(ValueError, match=match):
        net.fit(X, T, epochs=1, sample_weight=w)
    assert np.array_equal(net.params, before)


# ---------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_fit_with_a_seed_gives_bitwise_the_same_weights_twice(optimizer):
    X, T = random_regression(n=100)
    runs = []
    for _ in range(2):
        net = MLP([5, 16, 8, 3], activation="relu", seed=3)
        history = net.fit(X, T, epochs=4, batch_size=32, lr=0.01, optimizer=optimizer,
                          shuffle=True, seed=11)
        runs.append((params_bytes(net), history["loss"]))
    assert runs[0] == runs[1]
    other = MLP([5, 16, 8, 3], activation="relu", seed=3)
    other.fit(X, T, epochs=4, batch_size=32, lr=0.01, optimizer=optimizer, shuffle=True, seed=12)
    assert params_bytes(other) != runs[0][0]  # the seed does drive the shuffle


# -- divergence ------------------------------------------------------------------

def _diverging_problem():
    """A linear net with SGD at lr=0.5: the loss overflows in epoch 7."""
    rng = np.random.default_rng(0)
    return rng.normal(size=(32, 3)), rng.normal(size=(32, 1))


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_divergence_restores_the_epoch_before_and_raises(optimizer):
    from fastbp import DivergenceError
    X, T = _diverging_problem()
    lr = 0.5 if optimizer != "adam" else 0.01
    kw = dict(batch_size=8, lr=lr, seed=3)
    if optimizer == "adam":  # Adam's steps are bounded: blow the weights up after epoch 2

        def blow_up(epoch, history):
            if epoch == 2:
                net_of[0].params[...] *= 1e200
        kw["callback"] = blow_up
    net_of = [None]
    net = net_of[0] = MLP([3, 4, 1], activation="identity", seed=0)
    opt = {"sgd": SGD(lr=lr), "momentum": Momentum(lr=lr, momentum=0.5),
           "adam": Adam(lr=lr)}[optimizer]
    with pytest.raises(DivergenceError) as info:
        net.fit(X, T, epochs=500, optimizer=opt, **kw)
    err = info.value
    assert isinstance(err, FloatingPointError)
    assert err.epoch > 0 and not np.isfinite(err.loss) and err.lr == lr
    msg = str(err)
    assert f"epoch {err.epoch}" in msg and str(err.loss) in msg and f"lr={lr}" in msg
    assert "smaller learning rate" in msg and "restored" in msg
    # the same fit stopped before that epoch: the same parameters, optimiser
    # state and history, bit for bit
    twin = net_of[0] = MLP([3, 4, 1], activation="identity", seed=0)
    twin_opt = type(opt)(**({"lr": lr, "momentum": 0.5} if optimizer == "momentum" else {"lr": lr}))
    hist = twin.fit(X, T, epochs=err.epoch, optimizer=twin_opt, **kw)
    assert np.isfinite(net.params).all()
    assert params_bytes(net) == params_bytes(twin)
    assert err.history == hist and len(err.history["loss"]) == err.epoch
    for name in ("velocity", "m", "v"):
        if getattr(opt, name, None) is not None:
            np.testing.assert_array_equal(getattr(opt, name), getattr(twin_opt, name))
    if optimizer == "adam":
        assert opt.t == twin_opt.t


def test_divergence_in_the_first_epoch_keeps_the_initial_weights_and_validation_history():
    from fastbp import DivergenceError
    X, T = _diverging_problem()
    net = MLP([3, 4, 1], activation="identity", seed=0)
    before = net.params.copy()
    with pytest.raises(DivergenceError, match="epoch 0") as info:
        net.fit(X * 1e150, T, epochs=3, batch_size=8, lr=0.5, optimizer="sgd",
                validation_data=(X, T), early_stopping=True)
    np.testing.assert_array_equal(net.params, before)
    assert info.value.history == {"loss": [], "val_loss": []}


def test_non_finite_parameters_after_a_finite_loss_are_divergence(monkeypatch):
    """The last batch's update can overflow while the epoch's loss (taken
    before the updates) is still finite: that epoch is the diverged one."""
    from fastbp import DivergenceError, sync
    X, T = _diverging_problem()
    net = MLP([3, 4, 1], activation="identity", seed=0)
    net.fit(X, T, epochs=2, batch_size=8, lr=0.01, optimizer="sgd", seed=0)
    after_two = net.params.copy()
    calls = []

    def poisoned(self, params):  # the parameters go non-finite in epoch 2
        calls.append(1)
        if len(calls) == 3:
            params[0] = np.nan
        return np.isfinite(params).all()
    monkeypatch.setattr(sync.LocalSync, "all_finite", poisoned)
    net2 = MLP([3, 4, 1], activation="identity", seed=0)
    with pytest.raises(DivergenceError, match="parameters became non-finite") as info:
        net2.fit(X, T, epochs=5, batch_size=8, lr=0.01, optimizer="sgd", seed=0)
    assert info.value.epoch == 2 and np.isfinite(info.value.loss)
    np.testing.assert_array_equal(net2.params, after_two)


@pytest.mark.parametrize("fmt", ["csr_matrix", "csr_array", "csc_array"])
@pytest.mark.parametrize("shuffle", [True, False])
def test_fit_on_sparse_X_equals_fit_on_the_dense_X(fmt, shuffle):
    import scipy.sparse as sp
    rng = np.random.default_rng(3)
    X = getattr(sp, fmt)(sp.random(150, 40, density=0.1, format="csr", random_state=3))
    Xd = X.toarray()
    T = rng.integers(0, 4, 150)
    w = rng.random(150)
    runs = []
    for A in (X, Xd):
        net = MLP([40, 16, 4], activation="relu", seed=1)
        h = net.fit(A, T, epochs=4, batch_size=32, loss="cross_entropy", optimizer="adam",
                    lr=1e-2, seed=7, shuffle=shuffle, validation_data=(A[:50], T[:50]),
                    early_stopping=True, patience=2, sample_weight=w)
        runs.append((h, net.params.copy()))
    np.testing.assert_allclose(runs[0][0]["loss"], runs[1][0]["loss"], rtol=1e-10)
    np.testing.assert_allclose(runs[0][0]["val_loss"], runs[1][0]["val_loss"], rtol=1e-10)
    np.testing.assert_allclose(runs[0][1], runs[1][1], rtol=1e-10, atol=1e-14)
