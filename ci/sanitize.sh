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

# The kernel tests (tests/_kernels/ but its RSS tests, which ASan's allocator
# would fail), the compiled network core's (test__network.py runs the
# two-thread step), and fastbp.MLP's reliability tests by name (threads,
# extreme logits, fuzzed methods, reproducible fit, interrupted saves: their
# files also hold slow training runs and an RSS test).  A name that no longer
# exists is an error of pytest's, not a silently smaller run.
TESTS="tests/_kernels/test__kernels_vs_reference.py tests/_kernels/test__kernels_boundary.py
       tests/_kernels/test__kernels_fuzz.py tests/_kernels/test__kernels_numerics.py
       tests/_kernels/test__kernels_determinism.py tests/test__network.py tests/test__optim.py
       tests/test__losses.py tests/test__sparse.py tests/test__derivatives.py
       tests/test_derivatives.py tests/test__levmar.py tests/test_levmar.py"
for t in test_network.py::test_thread_model_is_stated_in_the_docstrings \
         test_network.py::test_second_concurrent_fit_on_one_network_is_refused_clearly \
         test_network.py::test_inference_during_fit_is_refused_or_harmless \
         test_network.py::test_separate_networks_train_in_parallel_threads_exactly_as_alone \
         test_network.py::test_cross_entropy_is_finite_for_logits_up_to_1e300 \
         test_network.py::test_extreme_logits_train_without_warnings \
         test_network.py::test_network_methods_give_the_right_answer_or_a_clear_error \
         test_training.py::test_fit_with_a_seed_gives_bitwise_the_same_weights_twice \
         test_checkpoint.py::test_save_then_load_is_bitwise \
         test_checkpoint.py::test_failure_between_write_and_rename_keeps_the_previous_checkpoint \
         test_checkpoint.py::test_process_killed_between_write_and_rename_keeps_the_previous_checkpoint \
         test_checkpoint.py::test_truncated_checkpoint_is_refused; do
    TESTS="$TESTS tests/$t"
done
# the tests must see the instrumented build, not an installed fastbp
so=$(PYTHONPATH="$WORK/src" LD_PRELOAD="$ASAN_LIB" ASAN_OPTIONS=detect_leaks=0 \
     "$PY" -c "import fastbp._kernels as k; print(k.__file__)")
case "$so" in "$WORK"/*) ;; *) echo "fastbp imported from $so, not the sanitized build" >&2; exit 1;; esac
# (ldd's output is read whole first: under pipefail, `ldd | grep -q` fails
# whenever grep exits before ldd has written its last line)
deps=$(ldd "$so")
grep -q libasan <<<"$deps" || { echo "$so is not linked against libasan" >&2; exit 1; }

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
