#!/usr/bin/env bash
# Wheel check: build the wheel, install it into a fresh virtual environment,
# and run the test suite against the installed wheel from a directory that
# holds copies of tests/, docs/, examples/ and ci/ but not src/ (so the
# source tree is not on the path: a .pyi, py.typed or compiled module missing
# from the wheel fails here).
#
#   bash ci/wheel_check.sh            # extras: test,sklearn,bench,mpi (+ the mpich runtime)
#   EXTRAS=test bash ci/wheel_check.sh
#
# Exits with pytest's status.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC="$PWD"
PYTHON="${PYTHON:-python3}"
EXTRAS="${EXTRAS:-test,sklearn,bench,mpi}"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/fastbp-wheel.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# 1. the wheel, built as pip builds it for a user (isolated build)
rm -rf dist
"$PYTHON" -m pip wheel . -w dist --no-deps
WHEEL="$(ls dist/fastbp-*.whl)"
echo "built $WHEEL"

# 2. a fresh environment with the wheel and its extras
"$PYTHON" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install --upgrade pip >/dev/null
"$WORK/venv/bin/python" -m pip install "${SRC}/${WHEEL}[${EXTRAS}]"
# an MPI runtime for the mpi extra's tests (mpiexec lands next to the venv's python)
case ",$EXTRAS," in *,mpi,*) "$WORK/venv/bin/python" -m pip install mpich ;; esac
# pandas (not a dependency) so that scikit-learn's own test_mlp.py, run
# against fastbp.sklearn by tests/test_sklearn_suite.py, skips nothing
case ",$EXTRAS," in *,sklearn,*) "$WORK/venv/bin/python" -m pip install pandas ;; esac

# 3. the tests (and the docs and examples they check), away from the source tree
mkdir "$WORK/run"
for dir in tests docs examples ci; do
    if [ -d "$dir" ]; then cp -r "$dir" "$WORK/run/$dir"; fi
done
cd "$WORK/run"
"$WORK/venv/bin/python" - <<PY
import pathlib, fastbp
where = pathlib.Path(fastbp.__file__).resolve()
print("testing", where)
assert not str(where).startswith("${SRC}/"), "fastbp was imported from the source tree"
for name in ("py.typed", "_kernels.pyi"):
    assert (where.parent / name).is_file(), f"the wheel lacks {name}"
PY
status=0
"$WORK/venv/bin/python" -m pytest -p no:cacheprovider -q tests || status=$?
exit "$status"
