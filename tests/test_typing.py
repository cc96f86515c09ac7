"""Typing: every .pyi stub of a compiled module matches its real signatures,
the package ships py.typed, and mypy (when installed) passes on the package
and the examples.

Cross-cutting: these check the stubs and type annotations of every module at
once, no single module's behaviour (each module's own tests are in
tests/test_<module>.py)."""

import ast
import importlib
import inspect
import pathlib
import subprocess
import sys

import pytest

import fastbp

PKG = pathlib.Path(fastbp.__file__).parent
ROOT = pathlib.Path(__file__).resolve().parents[1]
# compiled modules with a stub next to them (_kernels.pyi at least)
STUBBED = sorted(p.stem for p in PKG.glob("_*.pyi"))


def _stub_tree(module):
    return ast.parse((PKG / f"{module}.pyi").read_text(encoding="utf-8"))


def _params(fn):
    args = fn.args
    names = [a.arg for a in args.posonlyargs + args.args]
    defaults = [None] * (len(names) - len(args.defaults)) + [
        ast.literal_eval(d) for d in args.defaults]
    keyword_only = [(a.arg, None if d is None else ast.literal_eval(d))
                    for a, d in zip(args.kwonlyargs, args.kw_defaults)]
    return list(zip(names, defaults)) + keyword_only


def _stub_functions(module):
    """name -> [(parameter, default)] of each def at the top of the stub."""
    return {n.name: _params(n) for n in _stub_tree(module).body if isinstance(n, ast.FunctionDef)}


def _stub_names(module, kind):
    tree = _stub_tree(module)
    if kind == "class":
        return {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    return {n.target.id for n in tree.body
            if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}


def _compiled(module):
    return importlib.import_module(f"fastbp.{module}")


def _compiled_functions(module):
    return {name: obj for name, obj in vars(_compiled(module)).items()
            if callable(obj) and not name.startswith("__") and not inspect.isclass(obj)}


def _signature(obj):
    return [(p.name, None if p.default is inspect.Parameter.empty else p.default)
            for p in inspect.signature(obj).parameters.values()]


def test_package_ships_py_typed_and_the_kernel_stub():
    assert (PKG / "py.typed").is_file()
    assert "_kernels" in STUBBED


@pytest.mark.parametrize("module", STUBBED)
def test_stub_declares_exactly_the_compiled_functions_and_classes(module):
    assert set(_stub_functions(module)) == set(_compiled_functions(module))
    classes = {n for n, v in vars(_compiled(module)).items()
               if inspect.isclass(v) and v.__module__ == f"fastbp.{module}"}
    assert _stub_names(module, "class") == classes


@pytest.mark.parametrize("module, name", [(m, n) for m in STUBBED
                                          for n in sorted(_compiled_functions(m))])
def test_stub_signature_matches_the_compiled_one(module, name):
    stub = _stub_functions(module)[name]
    got = _signature(getattr(_compiled(module), name))
    assert stub == got, f"{module}.{name}: stub {stub} != compiled {got}"


@pytest.mark.parametrize("module", STUBBED)
def test_stub_declares_the_public_constants(module):
    consts = {n for n, v in vars(_compiled(module)).items()
              if n.isupper() and isinstance(v, (tuple, int, float, str))}
    assert consts == _stub_names(module, "constant")


# Third-party packages without type information (every compiled module of
# fastbp has its stub).
MYPY_CONFIG = """\
[mypy]
warn_unused_ignores = True
[mypy-scipy.*,sklearn.*,threadpoolctl.*,matplotlib.*,tqdm.*,mpi4py.*]
ignore_missing_imports = True
"""


def test_mypy_passes_on_the_package_and_the_examples(tmp_path):
    pytest.importorskip("mypy")
    if not (ROOT / "src" / "fastbp").is_dir() or PKG != ROOT / "src" / "fastbp":
        pytest.skip("mypy runs on the source tree (this is an installed copy)")
    config = tmp_path / "mypy.ini"
    config.write_text(MYPY_CONFIG)
    targets = [str(PKG)] + sorted(str(p) for p in (ROOT / "examples").glob("*.py"))
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(config),
         "--cache-dir", str(ROOT / ".mypy_cache")]
        + targets, capture_output=True, text=True, cwd=ROOT / "src", timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
