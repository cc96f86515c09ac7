"""Every examples/*.py runs to completion at tiny sizes (FASTBP_EXAMPLE_TINY=1),
as a subprocess, the way a user runs it.

Cross-cutting: the examples use the whole package, no single module (each
module's own tests are in tests/test_<module>.py)."""

import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = sorted(EXAMPLES.glob("*.py")) if EXAMPLES.is_dir() else []
# optional packages an example needs: skipped, not failed, without them
NEEDS = {"mlp_digits.py": "sklearn", "sklearn_estimators.py": "sklearn",
         "thread_limits.py": "threadpoolctl"}


def test_examples_are_found():
    if not EXAMPLES.is_dir():
        pytest.skip("no examples/ next to the tests (installed-wheel run)")
    assert {p.name for p in SCRIPTS} >= set(NEEDS) | {"single_neuron.py"}


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_example_runs(script):
    need = NEEDS.get(script.name)
    if need and importlib.util.find_spec(need) is None:
        pytest.skip(f"{script.name} needs {need}")
    env = dict(os.environ, FASTBP_EXAMPLE_TINY="1")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip(), f"{script.name} printed nothing"
