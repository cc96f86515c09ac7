"""fastbp.bench, the benchmark CLI, end to end on tiny shapes: structure and
verification, never speed (timings on a shared machine prove nothing in a
unit test)."""

import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastbp
from fastbp.bench import (cli, env_info, main, peers, plot, report, runner, timing,
                          workloads)
from fastbp.bench.progress import Progress

# Tiny everything: 2 kernel shapes × 5 kernels + 1 network.
TINY = ["--quick", "--shapes", "4,3x5x2", "--nets", "3-4-2@5"]
N_TINY_WORKLOADS = 2 * (1 + len(workloads.DEFAULT_ACTIVATIONS)) + 1


def run_main(argv, capsys):
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def check_against_schema(doc):
    """jsonschema when importable, else the schema's main promises by hand."""
    schema = report.load_schema()
    try:
        import jsonschema
    except ImportError:
        for key in schema["required"]:
            assert key in doc, key
        assert doc["schema_version"] == report.SCHEMA_VERSION
        row_keys = set(schema["properties"]["results"]["items"]["required"])
        for row in doc["results"]:
            assert set(row) == row_keys
            assert isinstance(row["verified"], bool)
            assert row["median_s"] >= 0 and row["samples"] >= 1
        return
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(doc, schema, cls=jsonschema.Draft202012Validator)


# --------------------------------------------------------------------------
# End to end
# --------------------------------------------------------------------------

def test_quick_run_writes_table_and_valid_json(tmp_path, capsys):
    out_json = tmp_path / "out.json"
    rc, out, err = run_main(TINY + ["--json", str(out_json)], capsys)
    assert rc == 0, err
    assert "numpy" in out and "scipy" in out and "DGEMM peak" in out
    assert "All" in out and "verified" in out
    assert err == ""  # no progress bar when stderr is not a terminal

    doc = load_json(out_json)
    check_against_schema(doc)
    assert doc["complete"] is True
    assert doc["settings"]["shapes"] == [[4, 4, 4], [3, 5, 2]]
    assert doc["settings"]["networks"] == [{"sizes": [3, 4, 2], "batch": 5}]
    rows = doc["results"]
    names = list(dict.fromkeys(r["workload"] for r in rows))
    assert len(names) == N_TINY_WORKLOADS
    assert "mlp 3-4-2 b5" in names
    for name in names:
        impls = {r["impl"]: r for r in rows if r["workload"] == name}
        assert set(impls) == {"fastbp", "numpy"}
        assert impls["numpy"]["speedup"] == pytest.approx(1.0)
    for r in rows:
        assert r["verified"] is True, r
        assert r["min_s"] <= r["median_s"] <= r["max_s"]
        assert r["workload"] in out  # every workload is in the printed table


def test_flops_recorded_are_the_workloads(tmp_path, capsys):
    out_json = tmp_path / "o.json"
    rc, _, err = run_main(["--quick", "--suite", "kernels", "--shapes", "3x5x2",
                           "--json", str(out_json)], capsys)
    assert rc == 0, err
    for r in load_json(out_json)["results"]:
        assert r["flops"] == 3 * 2 * 3 * 5 * 2
        assert r["gflops"] == pytest.approx(r["flops"] / r["median_s"] / 1e9)


def test_subprocess_smoke(tmp_path):
    env = dict(os.environ)
    src = str(Path(fastbp.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    out_json = tmp_path / "out.json"
    proc = subprocess.run([sys.executable, "-m", "fastbp.bench", "--quick", "--shapes",
                           "4,5,6", "--json", str(out_json)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    for s in ("4x4x4", "5x5x5", "6x6x6"):
        assert f"matmul_abt {s}" in proc.stdout
    rows = load_json(out_json)["results"]
    assert rows and all(r["verified"] for r in rows)
    assert f"All {len(rows)} rows verified" in proc.stdout


def test_plot_writes_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "speedup.png"
    rc, _, err = run_main(["--quick", "--suite", "kernels", "--shapes", "4",
                           "--plot", str(png)], capsys)
    assert rc == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------
# Bad input: one line, exit 2, nothing measured
# --------------------------------------------------------------------------

@pytest.mark.parametrize("argv, words", [
    (["--suite", "bogus"], ["--suite", "bogus"]),
    (["--shapes", "8x"], ["--shapes", "'8x'", "NxKxD"]),
    (["--shapes", "8,0"], ["--shapes", "'0'"]),
    (["--shapes", "2x3"], ["--shapes", "'2x3'"]),
    (["--nets", "64-1"], ["--nets", "SIZES@BATCH", "'64-1'"]),
    (["--peers", "torch,tensorflow"], ["--peers", "tensorflow"]),
    (["--threads", "0"], ["--threads", "'0'"]),
    (["--json", "/nonexistent/dir/x.json"], ["--json", "/nonexistent/dir"]),
    (["--plot", "/nonexistent/dir/x.png"], ["--plot", "/nonexistent/dir"]),
    (["--no-such-option"], ["--no-such-option"]),
])
def test_bad_arguments_exit_2_with_one_line(argv, words, capsys):
    rc, out, err = run_main(["--quick"] + argv, capsys)
    assert rc == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert "error" in err
    for w in words:
        assert w in err


def test_json_path_that_is_a_directory(tmp_path, capsys):
    rc, _, err = run_main(["--json", str(tmp_path)], capsys)
    assert rc == 2 and "is a directory" in err


def test_threads_without_threadpoolctl(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # import fails
    rc, out, err = run_main(TINY + ["--threads", "1"], capsys)
    assert rc == 2 and out == ""
    assert "pip install threadpoolctl" in err


def test_plot_without_matplotlib(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(plot, "available", lambda: False)
    rc, out, err = run_main(TINY + ["--plot", str(tmp_path / "x.png")], capsys)
    assert rc == 2 and out == "" and "matplotlib" in err


def test_help_exits_0(capsys):
    rc, out, _ = run_main(["--help"], capsys)
    assert rc == 0 and "--peers" in out


# --------------------------------------------------------------------------
# Peers, threads, interruption, verification failures
# --------------------------------------------------------------------------

def test_missing_peers_are_a_note_not_an_error(monkeypatch, capsys):
    monkeypatch.setattr(peers, "MODULES", {n: f"fastbp_absent_{n}" for n in peers.MODULES})
    rc, out, err = run_main(["--quick", "--suite", "kernels", "--shapes", "3",
                             "--peers", "torch,jax,sklearn"], capsys)
    assert rc == 0, err
    for name in ("torch", "jax", "sklearn"):
        assert f"note: {name}: not installed, skipped" in out
    assert "All 10 rows verified" in out  # fastbp and numpy still measured


@pytest.mark.parametrize("name, module", [("torch", "torch"), ("jax", "jax"),
                                          ("sklearn", "sklearn")])
def test_installed_peer_is_timed_and_verified(name, module, tmp_path, capsys):
    pytest.importorskip(module)
    out_json = tmp_path / "p.json"
    rc, out, err = run_main(["--quick", "--shapes", "3x4x5", "--nets", "3-4-2@5",
                             "--peers", name, "--json", str(out_json)], capsys)
    assert rc == 0, out + err
    rows = [r for r in load_json(out_json)["results"] if r["impl"] == name]
    kinds = {r["kind"] for r in rows}
    assert "mlp" in kinds
    if name == "sklearn":
        assert kinds == {"mlp"} and "sklearn: has no API for the kernels" in out
    else:
        assert kinds == {"matmul_abt", "dense", "mlp"}
    assert all(r["verified"] for r in rows)


def test_threads_limits_every_blas(capsys):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    seen = {}
    real = env_info.thread_pools
    before = [p["num_threads"] for p in threadpoolctl.threadpool_info()]

    def spy():
        pools = real()
        seen["pools"] = pools
        return pools

    try:
        env_info.thread_pools = spy
        rc, out, err = run_main(["--quick", "--suite", "kernels", "--shapes", "3",
                                 "--threads", "1"], capsys)
    finally:
        env_info.thread_pools = real
    assert rc == 0, err
    blas = [p for p in seen["pools"] if p["user_api"] == "blas"]
    assert blas and all(p["num_threads"] == 1 for p in blas)
    assert "1 threads" in out
    # and the limit is lifted afterwards
    assert [p["num_threads"] for p in threadpoolctl.threadpool_info()] == before


def test_ctrl_c_prints_what_was_measured(monkeypatch, tmp_path, capsys):
    real = runner.measure_workload
    calls = []

    def interrupt_second(run, w, *args, **kw):
        calls.append(w.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(run, w, *args, **kw)

    monkeypatch.setattr(runner, "measure_workload", interrupt_second)
    out_json = tmp_path / "partial.json"
    rc, out, err = run_main(TINY + ["--json", str(out_json)], capsys)
    assert rc == 130
    assert calls[0] in out and calls[1] not in out
    assert f"Interrupted: 1 of {N_TINY_WORKLOADS} workloads measured" in out
    doc = load_json(out_json)
    check_against_schema(doc)
    assert doc["complete"] is False
    assert {r["workload"] for r in doc["results"]} == {calls[0]}


def test_wrong_result_is_reported_and_exits_1(monkeypatch, tmp_path, capsys):
    real = workloads._FASTBP["matmul_abt"]

    def off_by_a_little(w, x):
        inst = real(w, x)
        run = inst.run

        def wrong():
            run()
            inst.result()[0][0, 0] *= 1 + 1e-7  # above rtol 1e-9
        return workloads.Instance(wrong, inst.result)

    monkeypatch.setitem(workloads._FASTBP, "matmul_abt", off_by_a_little)
    out_json = tmp_path / "bad.json"
    rc, out, _ = run_main(["--quick", "--suite", "kernels", "--shapes", "3",
                           "--json", str(out_json)], capsys)
    assert rc == 1
    assert "MISMATCH" in out and "matmul_abt 3x3x3 (fastbp)" in out
    bad = [r for r in load_json(out_json)["results"] if not r["verified"]]
    assert [(r["workload"], r["impl"]) for r in bad] == [("matmul_abt 3x3x3", "fastbp")]


def test_network_suite_skipped_with_a_note_without_mlp(monkeypatch, capsys):
    monkeypatch.setattr(workloads, "network_available", lambda: (False, "no MLP"))
    rc, out, err = run_main(TINY, capsys)
    assert rc == 0, err
    assert "note: networks suite skipped: no MLP" in out
    assert "mlp " not in out.split("note:")[0]


# --------------------------------------------------------------------------
# The pieces
# --------------------------------------------------------------------------

def test_parse_shapes():
    assert cli.parse_shapes("8") == [(8, 8, 8)]
    assert cli.parse_shapes("8, 32x64X16") == [(8, 8, 8), (32, 64, 16)]


def test_parse_networks():
    assert cli.parse_networks("64-64-1@32,5-2@1") == [((64, 64, 1), 32), ((5, 2), 1)]


def test_parse_peers_dedupes():
    assert cli.parse_peers("jax,torch,jax") == ["jax", "torch"]


def test_compare_rule():
    a = np.array([[1.0, -2.0], [1e-20, 3.0]])
    assert runner.compare([a * (1 + 1e-12)], [a])[0]
    # an entry that cancels to ~0 is judged on the array's scale
    b = a.copy()
    b[1, 0] = 1e-15
    assert runner.compare([b], [a])[0]
    assert not runner.compare([a * (1 + 1e-8)], [a])[0]
    assert not runner.compare([np.full_like(a, np.nan)], [a])[0]
    assert not runner.compare([a[:1]], [a])[0]
    assert not runner.compare([a], [a, a])[0]


def test_flop_counts():
    k = workloads.kernel_workloads([(2, 3, 4)])
    assert [w.flops for w in k] == [3 * 2 * 2 * 3 * 4] * (1 + len(workloads.DEFAULT_ACTIVATIONS))
    # [3, 4, 2] at batch 5: forward 2·5·(3·4 + 4·2), δW the same, δX of layer 2 only.
    (net,) = workloads.network_workloads([((3, 4, 2), 5)])
    assert net.flops == 2 * 5 * (12 + 8) * 2 + 2 * 5 * 8


def test_default_suite_is_the_issues():
    names = [w.name for w in workloads.default_workloads()]
    assert len(names) == 4 * (1 + len(workloads.DEFAULT_ACTIVATIONS)) + 3
    for s in ("8x8x8", "32x64x64", "256x256x256", "1024x1024x1024"):
        assert f"matmul_abt {s}" in names and f"dense sigmoid {s}" in names
    assert names[-3:] == ["mlp 64-64-64-1 b32", "mlp 784-256-256-10 b128",
                          "mlp 1024-1024-1024-1024 b1024"]


def test_same_seed_same_inputs_for_every_impl():
    (w,) = workloads.network_workloads([((3, 4, 2), 5)])
    a, b = w.inputs(7), w.inputs(7)
    for x, y in zip(a["weights"] + [a["X"]], b["weights"] + [b["X"]]):
        np.testing.assert_array_equal(x, y)


def test_atomic_write_keeps_old_file_on_failure(monkeypatch, tmp_path):
    path = tmp_path / "r.json"
    path.write_text("old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        report.write_atomic(str(path), "new")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["r.json"]  # no temporary file left


def test_header_notes_openblas_variables(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.delenv("OPENBLAS_L2_SIZE", raising=False)
    text = "\n".join(env_info.header_lines(env_info.collect()))
    assert "OPENBLAS_CORETYPE=Haswell" in text and "slow current OpenBLAS" in text
    monkeypatch.delenv("OPENBLAS_CORETYPE")
    text = "\n".join(env_info.header_lines(env_info.collect()))
    assert "OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset" in text


def test_header_without_threadpoolctl(monkeypatch):
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)
    env = env_info.collect()
    assert env["thread_pools"] is None
    assert "threadpoolctl not installed" in "\n".join(env_info.header_lines(env))


def test_progress_bar_only_on_a_terminal():
    quiet = io.StringIO()
    p = Progress(quiet)
    p.update(1, 4, "dense sigmoid 256")
    p.close()
    assert quiet.getvalue() == ""
    shown = io.StringIO()
    p = Progress(shown, width=8, enabled=True)
    p.update(1, 4, "dense sigmoid 256")
    assert shown.getvalue() == "\r[##      ] 1/4 dense sigmoid 256"


def test_header_warns_when_the_machine_is_busy():
    env = env_info.collect()
    env["cpu_count"], env["load_average"] = 2, 7.5
    text = "\n".join(env_info.header_lines(env))
    assert "Load average at start: 7.50 on 2 logical CPUs - busy" in text
    env["load_average"] = 0.1
    assert "busy" not in "\n".join(env_info.header_lines(env))


def test_peer_that_fails_to_import_is_a_note(monkeypatch, tmp_path, capsys):
    (tmp_path / "fastbp_broken_peer.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(peers.MODULES, "torch", "fastbp_broken_peer")
    rc, out, err = run_main(["--quick", "--suite", "kernels", "--shapes", "3",
                             "--peers", "torch"], capsys)
    assert rc == 0, err
    assert "note: torch: import failed, skipped (boom)" in out


class FakeClock:
    """Time that moves only when a fake workload runs: schedules, not speed."""

    def __init__(self):
        self.now, self.log = 0.0, []

    def __call__(self):
        return self.now

    def work(self, name, seconds):
        def run():
            self.log.append(name)
            self.now += seconds
        return run


def _sampled_order(log):
    """Names of the calls, consecutive repeats collapsed: A A B B A → A B A."""
    return [n for i, n in enumerate(log) if i == 0 or log[i - 1] != n]


def test_samples_alternate_a_b_a_b():
    clock = FakeClock()
    runs = {"A": clock.work("A", 1e-3), "B": clock.work("B", 1e-3)}
    plan = timing.Plan(warmup_s=2e-3, sample_s=2e-3, budget_s=0.02, min_samples=3,
                       max_samples=11)
    t = timing.sample_interleaved(runs, {"A": 0.5, "B": 0.5}, plan, clock=clock)
    assert t["A"].samples == t["B"].samples == 5  # 20 ms / (2 × 2 ms)
    assert t["A"].number == 2 and t["A"].median == pytest.approx(1e-3)
    assert t["A"].cold == 0.5
    sampled = clock.log[4:]  # after the two warm-ups of 2 calls
    assert _sampled_order(sampled) == ["A", "B"] * 5


def test_settling_pauses_before_each_visit():
    clock = FakeClock()
    pauses = []
    runs = {"A": clock.work("A", 1e-3), "B": clock.work("B", 1e-3)}
    plan = timing.Plan(warmup_s=2e-3, sample_s=2e-3, budget_s=0.04, visits=2,
                       settle_s=0.15)

    def sleep(s):
        pauses.append((len(clock.log), s))

    t = timing.sample_interleaved(runs, {"A": 0.0, "B": 0.0}, plan, settle=True,
                                  clock=clock, sleep=sleep)
    # 2 visits each; a visit = pause, one untimed call, 10 ms / 2 ms = 5 samples.
    assert [s for _, s in pauses] == [0.15] * 4
    assert t["A"].samples == t["B"].samples == 2 * 5
    sampled = clock.log[4:]
    assert _sampled_order(sampled) == ["A", "B", "A", "B"]
    assert len(sampled) == 4 * (1 + 5 * 2)
    assert [i for i, _ in pauses] == [4 + v * 11 for v in range(4)]  # before each visit


def test_only_threaded_workloads_settle():
    small, big = workloads.kernel_workloads([(32, 64, 64), (64, 64, 64)])[::5]
    assert not small.threaded and big.threaded
    nets = workloads.network_workloads(workloads.NETWORKS)
    assert [n.threaded for n in nets] == [False, True, True]


def test_derivatives_suite_is_the_issues():
    ws = workloads.default_workloads("derivatives")
    assert [w.name for w in ws] == ["input_jacobian 8-64-64-4 N1024", "hvp 64-64-64-1 N256",
                                    "param_jacobian 10-50-1 N442"]
    ij, hvp, pj = ws
    fwd = 2 * 1024 * (8 * 64 + 64 * 64 + 64 * 4)
    # reverse mode over 1024·4 rows: layers 1 and 0 (the top one has no product)
    assert ij.flops == fwd + 2 * 4096 * (64 * 64 + 64 * 8)
    # R-op: 3 products in the first layer (Ȧ_0 = 0, no δX), 8 in the others
    assert hvp.flops == 2 * 256 * (3 * 64 * 64 + 8 * (64 * 64 + 64 * 1))
    assert pj.flops == 2 * 442 * (10 * 50 + 50 * 1) + 2 * 442 * 50
    assert "derivatives" not in {w.suite for w in workloads.default_workloads()}


def test_derivatives_suite_runs_verified_against_the_twins(tmp_path, capsys):
    out_json = tmp_path / "d.json"
    argv = ["--quick", "--suite", "derivatives", "--json", str(out_json)]
    peers = [p for p in ("torch", "jax") if importlib.util.find_spec(p) is not None]
    if peers:
        argv += ["--peers", ",".join(peers)]
    rc, out, err = run_main(argv, capsys)
    assert rc == 0, out + err
    doc = load_json(out_json)
    check_against_schema(doc)
    rows = doc["results"]
    assert {r["impl"] for r in rows} == {"fastbp", "numpy", *peers}
    assert {r["params"]["method"] for r in rows} == {"input_jacobian", "hvp", "param_jacobian"}
    assert all(r["verified"] for r in rows), [r for r in rows if not r["verified"]]
