"""scikit-learn's own MLP test suite, run against fastbp.sklearn.

The installed scikit-learn's ``sklearn/neural_network/tests/test_mlp.py`` is
copied at test time into a temporary directory with its one import line of
the estimators swapped for ``from fastbp.sklearn import MLPClassifier,
MLPRegressor``; a conftest.py beside it provides ``global_random_seed`` as
scikit-learn's conftest does (seed 42 unless SKLEARN_TESTS_GLOBAL_RANDOM_SEED
says otherwise).  One pytest run in a subprocess (so scikit-learn's test
module, its warnings filters and its fixtures stay out of this session)
writes a JUnit XML report; each scikit-learn test function is then one test
here, passing when all of its parametrisations passed, its failures' messages
in the assertion.  A skip is a failure when pandas is installed (only
test_preserve_feature_names needs it).
"""

import ast
import os
import pathlib
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

sklearn = pytest.importorskip("sklearn", minversion="1.6")

SUITE = pathlib.Path(sklearn.__file__).parent / "neural_network" / "tests" / "test_mlp.py"
THEIR_IMPORT = "from sklearn.neural_network import MLPClassifier, MLPRegressor\n"
OUR_IMPORT = "from fastbp.sklearn import MLPClassifier, MLPRegressor\n"
try:
    import pandas  # noqa: F401
    HAVE_PANDAS = True
except ImportError:
    HAVE_PANDAS = False

# scikit-learn's conftest.py parametrises global_random_seed from this
# variable, 42 by default; the part of it test_mlp.py needs
CONFTEST = '''\
import os


def pytest_generate_tests(metafunc):
    if "global_random_seed" in metafunc.fixturenames:
        var = os.environ.get("SKLEARN_TESTS_GLOBAL_RANDOM_SEED")
        if var is None:
            seeds = [42]
        elif var == "all":
            seeds = list(range(100))
        elif "-" in var:
            start, stop = var.split("-")
            seeds = list(range(int(start), int(stop) + 1))
        else:
            seeds = [int(var)]
        metafunc.parametrize("global_random_seed", seeds)
'''


def _test_names():
    """The test functions of scikit-learn's file (read without importing it)."""
    if not SUITE.exists():
        return []
    tree = ast.parse(SUITE.read_text())
    return [node.name for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")]


def _patched_source():
    source = SUITE.read_text()
    assert source.count(THEIR_IMPORT) == 1, (
        f"scikit-learn's {SUITE} no longer has the line {THEIR_IMPORT!r} exactly once")
    return source.replace(THEIR_IMPORT, OUR_IMPORT)


@pytest.fixture(scope="module")
def suite_results(tmp_path_factory):
    """{test function: [(test id, outcome, message)]} from one run of the copied suite."""
    if not SUITE.exists():
        pytest.skip(f"this scikit-learn ships no {SUITE}")
    tmp = tmp_path_factory.mktemp("sklearn_suite")
    (tmp / "test_mlp.py").write_text(_patched_source())
    (tmp / "conftest.py").write_text(CONFTEST)
    (tmp / "pytest.ini").write_text("[pytest]\n")  # not this repository's configuration
    report = tmp / "report.xml"
    import fastbp
    env = dict(os.environ)
    # the fastbp this session imports, whether from src/ or installed
    env["PYTHONPATH"] = os.pathsep.join(
        [str(pathlib.Path(fastbp.__file__).resolve().parents[1])]
        + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "test_mlp.py", "-q", "-p", "no:cacheprovider",
         "-rfEs", f"--junitxml={report}", "-c", "pytest.ini", "--rootdir", str(tmp)],
        cwd=tmp, env=env, capture_output=True, text=True, timeout=900)
    if not report.exists():
        pytest.fail(f"the copied suite did not run (exit {proc.returncode}):\n"
                    f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    results = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        test_id = case.get("name")
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
                message = (child.get("message") or "") + "\n" + (child.text or "")
                break
        results.setdefault(test_id.split("[")[0], []).append((test_id, outcome, message))
    return results


@pytest.mark.parametrize("name", _test_names())
def test_sklearn_mlp_suite(suite_results, name):
    cases = suite_results.get(name)
    assert cases, f"scikit-learn's {name} did not run in the copied suite"
    bad = [(test_id, outcome, message) for test_id, outcome, message in cases
           if outcome in ("failed", "error") or (outcome == "skipped" and HAVE_PANDAS)]
    if bad:  # the suite's own messages, not this wrapper's traceback
        pytest.fail("\n\n".join(f"{test_id}: {outcome}\n{message[-3000:]}"
                                  for test_id, outcome, message in bad), pytrace=False)
    skipped = [message for _, outcome, message in cases if outcome == "skipped"]
    if skipped and len(skipped) == len(cases):  # without pandas: shown as a skip here too
        pytest.skip(f"skipped in scikit-learn's suite: {skipped[0].strip()[:200]}")
