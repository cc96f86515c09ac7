#!/usr/bin/env bash
# Memory safety under memcheck: ci/valgrind_workload.py calls every kernel and
# training steps.  Fails on any invalid read or write whose stack passes
# through fastbp's compiled modules (other libraries' reports are listed).
#   PYTHON=...  interpreter to use (default: .venv/bin/python if present, else python3)
#   FASTBP_SRC=...  put this directory first on PYTHONPATH (an in-place build)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
# the interpreter itself, not a wrapper script (pyenv shims are shell scripts)
PY=$("$PY" -c "import sys; print(sys.executable)")

if ! command -v valgrind >/dev/null; then
    if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq valgrind >/dev/null
    else sudo apt-get update -qq && sudo apt-get install -y -qq valgrind >/dev/null; fi
fi

LOG=${VALGRIND_LOG:-$(mktemp /tmp/fastbp-valgrind.XXXXXX)}
[ -n "${VALGRIND_LOG:-}" ] || trap 'rm -f "$LOG"' EXIT
# pymalloc's arenas confuse memcheck: plain malloc for every Python object.
# One BLAS thread keeps the run short and the stacks readable.
PYTHONMALLOC=malloc OPENBLAS_NUM_THREADS=1 PYTHONPATH="${FASTBP_SRC:+$FASTBP_SRC:}${PYTHONPATH:-}" \
valgrind --tool=memcheck --error-limit=no --num-callers=30 --log-file="$LOG" \
    "$PY" ci/valgrind_workload.py

# One error = a block of lines from its "Invalid read/write" header to the
# next blank "==pid==" line.
"$PY" - "$LOG" <<'PYEOF'
import re, sys
text = open(sys.argv[1]).read()
blocks = re.split(r"^==\d+== *\n", text, flags=re.M)
fastbp = re.compile(r"fastbp/_\w+\.cpython|_kernels\.c|_network\.c|_optim\.c|_losses\.c|_sparse\.c|_derivatives\.c|_levmar\.c|_derivmath\.h|_checks\.c|_fastmath\.h|_lossmath\.h|_smallgemm\.h|_scratch\.h|_update\.h|_simd\.h|_blasinfo\.h|_team\.h")
invalid = [b for b in blocks if re.search(r"Invalid (read|write)", b)]
ours = [b for b in invalid if fastbp.search(b)]
other = [b for b in blocks if re.search(r"^==\d+== \S", b, re.M) and fastbp.search(b) and b not in ours]
if other:  # e.g. uninitialised values seen through fastbp: listed, not failed on
    print(f"{len(other)} other memcheck reports pass through fastbp's frames; first:\n{other[0]}",
          file=sys.stderr)
summary = re.findall(r"ERROR SUMMARY: .*", text)
print(summary[-1] if summary else "no valgrind summary", file=sys.stderr)
for b in ours[:10]:
    print(b, file=sys.stderr)
if len(invalid) > len(ours):
    print(f"({len(invalid) - len(ours)} invalid accesses outside fastbp's frames, e.g.:)\n"
          + "\n".join([b for b in invalid if b not in ours][0].splitlines()[:8]), file=sys.stderr)
print(f"valgrind invalid reads/writes in fastbp frames: {len(ours)} "
      f"(all invalid accesses: {len(invalid)})")
sys.exit(1 if ours else 0)
PYEOF
