"""Collect the benchmark files, ``bench_*.py``, as test modules.

pytest only collects ``test_*.py`` by default, and the project's pytest
settings point at tests/; this makes ``pytest benchmarks/ --benchmark-only``
find the suites without renaming them or changing the project's settings.
"""

import fnmatch

import pytest


def pytest_collect_file(file_path, parent):
    if file_path.suffix != ".py" or not file_path.name.startswith("bench_"):
        return None
    # Already collected when named on the command line, or when the
    # python_files setting matches it.
    if parent.session.isinitpath(file_path) or any(fnmatch.fnmatch(file_path.name, pat)
           for pat in parent.config.getini("python_files")):
        return None
    return pytest.Module.from_parent(parent, path=file_path)
