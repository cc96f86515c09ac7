"""The package's import graph (ci/import_graph.py, read from the source) has
no cycle, at module level or through function-local imports: a cross-cutting
check of the house's one direction of dependency."""

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "ci" / "import_graph.py"


def test_no_import_cycles():
    if not (SCRIPT.is_file() and (ROOT / "src" / "fastbp").is_dir()):
        pytest.skip("needs the source tree (this is a copy of the tests)")
    out = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and out.stdout.rstrip().endswith("no cycles"), out.stdout + out.stderr
