"""fastbp.checkpoint (MLP.save, MLP.load): exact round trips, atomic writes
(a failure or a killed process between write and rename keeps the previous
checkpoint), clear errors on bad files."""

import os
import signal
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

from fastbp import checkpoint
from fastbp.checkpoint import CheckpointError
from fastbp.network import MLP

from conftest import params_bytes, random_regression


def trained_net():
    rng = np.random.default_rng(0)
    net = MLP([4, 7, 5, 3], activation=["tanh", "relu"], output_activation="softmax", seed=3)
    net.fit(rng.normal(size=(30, 4)), rng.integers(0, 3, 30), epochs=2, loss="cross_entropy", seed=0)
    return net


def test_round_trip_is_exact(tmp_path):
    net = trained_net()
    path = tmp_path / "model.npz"
    net.save(path)
    back = MLP.load(path)
    assert back.sizes == net.sizes and back.activations == net.activations
    np.testing.assert_array_equal(back.params, net.params)
    X = np.random.default_rng(1).normal(size=(6, 4))
    np.testing.assert_array_equal(back.predict(X), net.predict(X))
    # the copy is independent of the original
    back.params[0] += 1.0
    assert back.params[0] != net.params[0]
    # only the file asked for is left behind (no temporaries)
    assert os.listdir(tmp_path) == ["model.npz"]


def test_pickle_and_deepcopy():
    import copy
    import pickle
    net = trained_net()
    X = np.random.default_rng(2).normal(size=(5, 4))
    for other in (pickle.loads(pickle.dumps(net)), copy.deepcopy(net)):
        assert other.sizes == net.sizes and other.activations == net.activations
        np.testing.assert_array_equal(other.params, net.params)
        np.testing.assert_array_equal(other.predict(X), net.predict(X))
        assert not np.shares_memory(other.params, net.params)
        other.train_step(X, np.zeros(5, dtype=np.int64), loss="cross_entropy")  # a working core


def test_single_layer_and_str_paths(tmp_path):
    net = MLP([3, 2], output_activation="sigmoid", seed=0)
    net.save(str(tmp_path / "one"))
    assert MLP.load(str(tmp_path / "one")).activations == ("sigmoid",)


def test_overwrite_replaces_and_a_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    MLP([2, 2], seed=0).save(path)
    new = MLP([2, 2], seed=1)
    new.save(path)
    np.testing.assert_array_equal(MLP.load(path).params, new.params)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        MLP([2, 2], seed=2).save(path)
    monkeypatch.undo()
    np.testing.assert_array_equal(MLP.load(path).params, new.params)
    assert os.listdir(tmp_path) == ["m.npz"]


def test_save_into_a_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        MLP([2, 1]).save(tmp_path / "no" / "such" / "m.npz")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no fastbp checkpoint"):
        MLP.load(tmp_path / "nope.npz")


def test_truncated_file(tmp_path):
    path = tmp_path / "m.npz"
    trained_net().save(path)
    data = path.read_bytes()
    for cut in (10, len(data) // 2, len(data) - 30):
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="not a readable fastbp MLP checkpoint|missing"):
            MLP.load(path)


def test_foreign_files(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"this is not a zip file at all" * 10)
    with pytest.raises(CheckpointError):
        MLP.load(junk)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.ones(3))
    with pytest.raises(CheckpointError, match="missing"):
        MLP.load(other)
    single = tmp_path / "single.npy"
    np.save(single, np.ones(3))
    with pytest.raises(CheckpointError, match="single .npy"):
        MLP.load(single)
    with pytest.raises(CheckpointError):
        MLP.load(tmp_path)  # a directory
    with zipfile.ZipFile(tmp_path / "z.npz", "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(CheckpointError):
        MLP.load(tmp_path / "z.npz")


def _fields(net):
    return dict(format=np.array(checkpoint.FORMAT), version=np.array(checkpoint.VERSION),
                sizes=np.array(net.sizes), activations=np.array(net.activations[:-1], dtype="U16"),
                output_activation=np.array(net.output_activation), params=net.params)


@pytest.mark.parametrize("change, match", [
    (dict(format=np.array("someone.else")), "format"),
    (dict(version=np.array(99)), "version 99"),
    (dict(params=np.ones(5)), "params must be"),
    (dict(params=np.ones(23, dtype=np.float32)), "params must be"),
    (dict(sizes=np.array([3, 0, 2])), "sizes"),
    (dict(activations=np.array(["tanh", "tanh"])), "hidden activation"),
    (dict(activations=np.array(["swish"])), "activation must be one of"),
    (dict(output_activation=np.array("softmin")), "output_activation"),
])
def test_inconsistent_contents(tmp_path, change, match):
    net = MLP([3, 4, 2], seed=0)
    fields = _fields(net)
    fields.update(change)
    path = tmp_path / "bad.npz"
    np.savez(path, **fields)
    with pytest.raises(CheckpointError, match=match):
        MLP.load(path)


def test_pickled_contents_are_refused(tmp_path):
    net = MLP([3, 4, 2], seed=0)
    fields = _fields(net)
    fields["sizes"] = np.array([object()], dtype=object)
    path = tmp_path / "pickle.npz"
    np.savez(path, **fields)
    with pytest.raises(CheckpointError):
        MLP.load(path)


# ---------------------------------------------------------------------------
# Bitwise round trips and interrupted writes
# ---------------------------------------------------------------------------

def test_save_then_load_is_bitwise(tmp_path):
    net = MLP([5, 8, 3], activation="tanh", output_activation="sigmoid", seed=4)
    net.save(tmp_path / "m.npz")
    back = MLP.load(tmp_path / "m.npz")
    assert params_bytes(back) == params_bytes(net)
    X, _ = random_regression()
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
