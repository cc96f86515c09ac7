#!/usr/bin/env bash
# The README's test command, verbatim: a fresh virtual environment, the
# package built and installed from this tree (an isolated build, as a user's
# pip does it), then the test suite against the installed package.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv && .venv/bin/pip install '.[test]' && .venv/bin/python -m pytest
