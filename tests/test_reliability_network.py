"""Reliability of fastbp.MLP: its thread model, interrupted checkpoints,
bitwise-reproducible fit, cross entropy at logits of ±1e300, and fuzzed
arguments of its public methods."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastbp import reference as ref

network = pytest.importorskip("fastbp.network")
MLP = network.MLP


def data(n=64, k=5, d=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, k)), rng.standard_normal((n, d))


def params_bytes(net):
    return b"".join(np.ascontiguousarray(a).tobytes() for a in (*net.weights, *net.biases))


# --- thread model -------------------------------------------------------------

def test_thread_model_is_stated_in_the_docstrings():
    for doc in (network.__doc__, MLP.__doc__, MLP.fit.__doc__):
        assert "thread" in doc.lower()
    assert "RuntimeError" in network.__doc__ and "RuntimeError" in MLP.fit.__doc__


def blocked_fit(net, X, T, **kw):
    """Start net.fit in a thread that then waits inside its first epoch's
    callback (holding the network) until the returned event is set."""
    inside, release, result = threading.Event(), threading.Event(), {}

    def callback(epoch, history):
        inside.set()
        release.wait(30)

    def run():
        try:
            result["history"] = net.fit(X, T, callback=callback, **kw)
        except BaseException as e:  # surfaced by the test
            result["error"] = e

    t = threading.Thread(target=run)
    t.start()
    assert inside.wait(30), "fit never reached its first callback"
    return t, release, result


def test_second_concurrent_fit_on_one_network_is_refused_clearly():
    X, T = data()
    net = MLP([5, 8, 3], activation="tanh", seed=0)
    t, release, result = blocked_fit(net, X, T, epochs=2, batch_size=16, lr=0.01, seed=0)
    try:
        with pytest.raises(RuntimeError, match="another thread"):
            net.fit(X, T, epochs=1, lr=0.01)
        with pytest.raises(RuntimeError, match="another thread"):
            net.train_step(X, T, lr=0.01)
        with pytest.raises(RuntimeError, match="another thread"):
            net.gradients(X, T)
    finally:
        release.set()
        t.join(30)
    assert "error" not in result, result.get("error")
    # the refused calls changed nothing: same weights as an undisturbed fit
    alone = MLP([5, 8, 3], activation="tanh", seed=0)
    alone.fit(X, T, epochs=2, batch_size=16, lr=0.01, seed=0)
    assert params_bytes(net) == params_bytes(alone)
    net.fit(X, T, epochs=1, lr=0.01)  # and the network is usable again


INFER_DURING_FIT = textwrap.dedent("""
    import threading, numpy as np
    from fastbp.network import MLP
    rng = np.random.default_rng(0)
    X, T = rng.standard_normal((512, 5)), rng.standard_normal((512, 3))
    alone = MLP([5, 32, 3], activation="tanh", seed=0)
    alone.fit(X, T, epochs=20, batch_size=64, lr=0.01, seed=0)

    def infer(net, stop):
        rows = 65
        while not stop.is_set():
            try:  # each call a bigger batch than fit's: the workspace must grow
                net.predict(rng.standard_normal((rows, 5)))
            except RuntimeError:
                pass
            rows = rows + 1 if rows < 512 else 65

    for attempt in range(5):  # a race: a few tries make it show
        net, stop = MLP([5, 32, 3], activation="tanh", seed=0), threading.Event()
        t = threading.Thread(target=infer, args=(net, stop), daemon=True)
        t.start()
        for _ in range(10000):  # fit itself may be refused while predict runs
            try:
                net.fit(X, T, epochs=20, batch_size=64, lr=0.01, seed=0)
                break
            except RuntimeError:
                pass
        else:
            raise SystemExit(0)  # always refused: consistent with the thread model
        stop.set()
        t.join()
        if not all(np.array_equal(a, b) for a, b in zip(net.weights, alone.weights)):
            raise SystemExit(3)
""")


def test_inference_during_fit_is_refused_or_harmless():
    """predict on a network another thread is fitting must raise RuntimeError
    or leave that fit bitwise unchanged (run in a child: a use-after-free of
    the workspace must not take the test session down).  fit itself may be
    refused while a predict holds the network; it is retried."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run([sys.executable, "-c", INFER_DURING_FIT], env=env, timeout=300,
                          capture_output=True, text=True)
    assert proc.returncode != 3, "fit's weights were changed by a concurrent predict"
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_separate_networks_train_in_parallel_threads_exactly_as_alone():
    X, T = data(n=128)
    nets = [MLP([5, 16, 3], activation="sigmoid", seed=s) for s in range(4)]
    alone = [MLP([5, 16, 3], activation="sigmoid", seed=s) for s in range(4)]
    for a in alone:
        a.fit(X, T, epochs=3, batch_size=16, lr=0.05, seed=7)
    X.flags.writeable = T.flags.writeable = False  # shared, read-only
    start = threading.Barrier(4)

    def run(net):
        start.wait()
        net.fit(X, T, epochs=3, batch_size=16, lr=0.05, seed=7)

    threads = [threading.Thread(target=run, args=(n,)) for n in nets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for n, a in zip(nets, alone):
        assert params_bytes(n) == params_bytes(a)


# --- determinism --------------------------------------------------------------

@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_fit_with_a_seed_gives_bitwise_the_same_weights_twice(optimizer):
    X, T = data(n=100)
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


# --- checkpoints ----------------------------------------------------------------

def test_save_then_load_is_bitwise(tmp_path):
    net = MLP([5, 8, 3], activation="tanh", output_activation="sigmoid", seed=4)
    net.save(tmp_path / "m.npz")
    back = MLP.load(tmp_path / "m.npz")
    assert params_bytes(back) == params_bytes(net)
    X, _ = data()
    assert back.predict(X).tobytes() == net.predict(X).tobytes()


def test_failure_between_write_and_rename_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    old = MLP([5, 8, 3], seed=1)
    old.save(path)
    new = MLP([5, 8, 3], seed=2)

    def crash(src, dst):
        assert os.path.getsize(src) > 0  # the new file was fully written
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", crash)
    monkeypatch.setattr(os, "rename", crash)
    with pytest.raises(OSError, match="simulated"):
        new.save(path)
    monkeypatch.undo()
    assert params_bytes(MLP.load(path)) == params_bytes(old)
    assert os.listdir(tmp_path) == ["model.npz"]  # no temporary left behind


KILLED_SAVE = textwrap.dedent("""
    import os, signal, sys
    from fastbp.network import MLP
    path = sys.argv[1]
    MLP([5, 8, 3], seed=1).save(path)
    def killed(src, dst):  # the process dies after the write, before the rename
        os.kill(os.getpid(), signal.SIGKILL)
    os.replace = os.rename = killed
    MLP([5, 8, 3], seed=2).save(path)
""")


def test_process_killed_between_write_and_rename_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "model.npz"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(path)], env=env, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert params_bytes(MLP.load(path)) == params_bytes(MLP([5, 8, 3], seed=1))
    MLP([5, 8, 3], seed=3).save(path)  # a leftover temporary does not block the next save
    assert params_bytes(MLP.load(path)) == params_bytes(MLP([5, 8, 3], seed=3))


def test_truncated_checkpoint_is_refused(tmp_path):
    path = tmp_path / "m.npz"
    MLP([5, 8, 3], seed=1).save(path)
    raw = path.read_bytes()
    for cut in (0, 10, len(raw) // 2, len(raw) - 1):
        path.write_bytes(raw[:cut])
        with pytest.raises(ValueError):
            MLP.load(path)


# --- cross entropy at ±1e300 -----------------------------------------------------

@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_cross_entropy_is_finite_for_logits_up_to_1e300(reduction):
    # one linear layer: the logits are W x + b, set to ±1e300 and 0
    net = MLP([2, 3], output_activation="identity", seed=0)
    net.weights[0][...] = [[1e300, 0.0], [-1e300, 0.0], [0.0, 1.0]]
    X = np.array([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [0.0, 0.5]])
    labels = np.array([0, 0, 1, 2])
    # log-sum-exp: row 0 is right (0), row 1 off by 2e300, row 2 by 2e300,
    # row 3 softmax of (0, 0, 0.5)
    lse3 = np.log(2.0 + np.exp(0.5))
    want = np.array([0.0, 2e300, 2e300, lse3 - 0.5])
    want_total = want.sum() / (4 if reduction == "mean" else 1)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        for T in (labels, np.eye(3)[labels]):
            J, gW, gb = net.gradients(X, T, loss="cross_entropy", reduction=reduction)
            assert np.isfinite(J) and J == pytest.approx(want_total, rel=1e-12)
            assert all(np.isfinite(g).all() for g in (*gW, *gb))
            assert np.isfinite(net.loss(X, T, loss="cross_entropy", reduction=reduction))
    # δZ = P − T with P exactly one-hot on the ±1e300 rows
    Z = X @ net.weights[0].T
    P = np.exp(Z - Z.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    dZ = (P - np.eye(3)[labels]) / (4 if reduction == "mean" else 1)
    np.testing.assert_allclose(gW[0], dZ.T @ X, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(gb[0], dZ.sum(axis=0), rtol=1e-12, atol=1e-300)


def test_extreme_logits_train_without_warnings():
    net = MLP([2, 3], output_activation="softmax", seed=0)
    net.weights[0][...] = [[1e300, 0.0], [-1e300, 0.0], [0.0, 1.0]]
    X = np.array([[1.0, 0.0], [-1.0, 0.0]])
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        J = net.train_step(X, np.array([1, 2]), lr=1e-310, loss="cross_entropy")
        P = net.predict(X)
    assert np.isfinite(J) and np.isfinite(P).all()
    np.testing.assert_array_equal(P.sum(axis=1), 1.0)


# --- fuzzing the network's public methods ------------------------------------

SIZES = [3, 4, 2]


def reference_gradients(net, X, T, reduction):
    """Squared-error gradients of the network, layer by layer from the twins."""
    acts = net.activations
    A = [X]
    for W, b, g in zip(net.weights, net.biases, acts):
        A.append(ref.dense_forward(A[-1], np.asarray(W), np.asarray(b), g))
    J, dY = ref.squared_error(A[-1], T, reduction)
    gW, gb = [], []
    for l in reversed(range(len(net.weights))):
        dY, dW, db = ref.dense_backward(dY, A[l], np.asarray(net.weights[l]), A[l + 1], acts[l])
        gW.insert(0, dW)
        gb.insert(0, db)
    return J, gW, gb


def variants(rng, shape, rows_too):
    a = rng.standard_normal(shape)
    more_rows = [("rows", np.ones((shape[0] + 1, shape[1])))] if rows_too else []
    return st.sampled_from(more_rows + [
        ("ok", a), ("ok", a), ("list", a.tolist()), ("float32", a.astype(np.float32)),
        ("int", (a * 3).astype(np.int64)), ("fortran", np.asfortranarray(a)),
        ("strided", np.repeat(a, 2, axis=1)[:, ::2]), ("none", None), ("0d", np.array(1.0)),
        ("3d", a[None]), ("1d", a.ravel()), ("wide", np.ones((shape[0], shape[1] + 1))),
        ("nan", np.where(a > 1, np.nan, a)),
        ("inf", np.where(a > 1, np.inf, a)), ("huge", a * 1e150), ("str", "abc"),
        ("object", a.astype(object)), ("bigendian", a.astype(">f8"))])


NET_COUNT = [0]


@pytest.fixture(autouse=True, scope="module")
def report_count(request):
    yield
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    cm = request.config.pluginmanager.get_plugin("capturemanager")
    if tr is not None and cm is not None and NET_COUNT[0]:
        with cm.global_and_fixture_disabled():
            tr.write_line(f"\n[test_reliability_network] network fuzz cases tried: {NET_COUNT[0]}")


@settings(max_examples=4 * settings().max_examples)
@given(data=st.data())
def test_network_methods_give_the_right_answer_or_a_clear_error(data):
    n = data.draw(st.integers(0, 5), label="n")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    xk, X = data.draw(variants(rng, (n, SIZES[0]), False), label="X")
    tk, T = data.draw(variants(rng, (n, SIZES[-1]), True), label="T")
    method = data.draw(st.sampled_from(["gradients", "train_step", "predict", "fit", "loss"]))
    reduction = data.draw(st.sampled_from(["sum", "mean", "half", "avg", None]), label="reduction")
    net = MLP(SIZES, activation="tanh", seed=0)
    before = params_bytes(net)
    NET_COUNT[0] += 1
    try:
        with np.errstate(all="ignore"):
            if method == "gradients":
                out = net.gradients(X, T, reduction=reduction)
            elif method == "train_step":
                out = net.train_step(X, T, lr=0.1, reduction=reduction)
            elif method == "predict":
                out = net.predict(X, check_finite=False)
            elif method == "fit":
                out = net.fit(X, T, epochs=1, batch_size=2, lr=0.1, reduction=reduction, seed=0,
                              progress=False)
            else:
                out = net.loss(X, T, reduction=reduction, check_finite=False)
    except (TypeError, ValueError) as e:
        assert str(e), "an error without a message"
        assert params_bytes(net) == before, "a refused call changed the weights"
        # whatever is fine must not have been refused
        must_work = xk == "ok" and (tk == "ok" or method == "predict") and \
            (reduction in ("sum", "mean", "half") or method == "predict") and \
            not (method == "fit" and n == 0)
        assert not must_work, f"{method} refused valid input: {e}"
        return
    # accepted: the input must have been usable, and the answer right
    assert xk in ("ok", "list", "float32", "int", "fortran", "strided", "nan", "inf", "huge",
                  "object", "bigendian"), f"{method} accepted X of kind {xk}"
    Xf = np.asarray(X, dtype=np.float64)
    if method == "predict":
        fresh = MLP(SIZES, activation="tanh", seed=0)
        Y = Xf
        for W, b, g in zip(fresh.weights, fresh.biases, fresh.activations):
            Y = ref.dense_forward(Y, np.asarray(W), np.asarray(b), g)
        np.testing.assert_allclose(out, Y, rtol=1e-12, atol=1e-300)
    elif method == "gradients" and xk in ("ok", "huge") and tk in ("ok", "huge"):
        J, gW, gb = reference_gradients(net, Xf, np.asarray(T, dtype=np.float64), reduction)
        np.testing.assert_allclose(out[0], J, rtol=1e-10)
        for g, w in zip((*out[1], *out[2]), (*gW, *gb)):
            np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12 * (1 + np.abs(w).max(initial=0)))
