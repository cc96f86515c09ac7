#!/usr/bin/env bash
# Memory safety: the kernel tests against an ASan + UBSan build of the
# extension.  The build goes into a throw-away copy of the tree, so the
# in-place .so of src/fastbp is never touched.  Exits non-zero on any report.
#   PYTHON=...  interpreter to use (default: .venv/bin/python if present, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
case "$PY" in */*) PY=$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY");; *) PY=$(command -v "$PY");; esac

# build and test tools (the test venv has no Cython: its build was isolated)
# (and a venv's bundled setuptools is older than pyproject.toml's license field)
"$PY" -m pip install -q 'Cython>=3' 'numpy>=2' 'scipy>=1.11' 'setuptools>=77' pytest hypothesis 'threadpoolctl>=3'

WORK=$(mktemp -d /tmp/fastbp-sanitize.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cp -r "$ROOT/src" "$ROOT/tests" "$ROOT/setup.py" "$ROOT/pyproject.toml" "$WORK/"
find "$WORK/src" \( -name '*.so' -o -name '*.c' \) -delete
cd "$WORK"
FASTBP_SANITIZE=1 "$PY" setup.py -q build_ext --inplace -j 2 >build.log 2>&1 ||
    { cat build.log; exit 1; }

ASAN_LIB=$(gcc -print-file-name=libasan.so)
[ -f "$ASAN_LIB" ] || { echo "no libasan.so from gcc: install gcc's ASan runtime" >&2; exit 1; }

# The kernel test files (network ones too when the module is there; test_split
# runs the two-thread step).
TESTS=""
for f in test_kernels test_api test_fuzz test_numerics test_determinism test_reliability_network \
         test_split; do
    [ -f "tests/$f.py" ] && TESTS="$TESTS tests/$f.py"
done
# the tests must see the instrumented build, not an installed fastbp
so=$(PYTHONPATH="$WORK/src" LD_PRELOAD="$ASAN_LIB" ASAN_OPTIONS=detect_leaks=0 \
     "$PY" -c "import fastbp._kernels as k; print(k.__file__)")
case "$so" in "$WORK"/*) ;; *) echo "fastbp imported from $so, not the sanitized build" >&2; exit 1;; esac
ldd "$so" | grep -q libasan || { echo "$so is not linked against libasan" >&2; exit 1; }

# Python itself "leaks" at exit: leak detection off.  Any ASan or UBSan
# report halts the process (pytest then fails too) and is counted below.
set +e
LD_PRELOAD="$ASAN_LIB" \
ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=0:log_path="$WORK/asan" \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:log_path="$WORK/ubsan" \
PYTHONPATH="$WORK/src" "$PY" -m pytest -q -p no:cacheprovider $TESTS 2>&1 | tee pytest.log
status=${PIPESTATUS[0]}
set -e

reports=$(cat "$WORK"/asan.* "$WORK"/ubsan.* pytest.log 2>/dev/null |
          grep -cE 'ERROR: AddressSanitizer|runtime error:' || true)
cat "$WORK"/asan.* "$WORK"/ubsan.* 2>/dev/null | head -100 || true
echo "sanitizer reports: $reports (pytest exit status $status)"
[ "$reports" -eq 0 ] && [ "$status" -eq 0 ]
