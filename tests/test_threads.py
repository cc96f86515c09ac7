"""fastbp.threadpool_limits: it limits the BLAS fastbp calls, restores it,
and says how to install threadpoolctl when it is missing."""

import builtins

import numpy as np
import pytest

import fastbp
from fastbp import threads


def test_missing_threadpoolctl_says_how_to_install(monkeypatch):
    real_import = builtins.__import__

    def no_threadpoolctl(name, *args, **kwargs):
        if name == "threadpoolctl":
            raise ImportError("No module named 'threadpoolctl'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_threadpoolctl)
    with pytest.raises(ImportError, match="pip install threadpoolctl"):
        threads.threadpool_limits(1)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_bad_limits_are_refused(bad):
    with pytest.raises(ValueError, match="limits"):
        threads.threadpool_limits(bad)


def test_limit_applies_to_fastbps_blas_and_is_restored():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    libs = threads.blas_info()
    if not libs:
        pytest.skip("threadpoolctl sees no BLAS in this process")
    before = {lib["filepath"]: lib["num_threads"] for lib in threadpoolctl.threadpool_info()}
    with threads.threadpool_limits(1):
        now = {lib["filepath"]: lib["num_threads"] for lib in threads.blas_info()}
        assert set(now.values()) == {1}
        A = np.ones((300, 300))
        assert fastbp.matmul_abt(A, A)[0, 0] == 300.0  # the kernels still run
        others = {lib["filepath"]: lib["num_threads"] for lib in threadpoolctl.threadpool_info()
                  if lib["filepath"] not in now}
        assert all(others[p] == before[p] for p in others)  # NumPy's own BLAS untouched
    after = {lib["filepath"]: lib["num_threads"] for lib in threadpoolctl.threadpool_info()}
    assert after == before


def test_scipy_bundled_blas_is_chosen_over_numpys():
    pytest.importorskip("threadpoolctl")
    import scipy

    libs = threads.blas_info()
    scipy_dirs = threads._scipy_dirs()
    bundled = [lib for lib in libs if lib["filepath"].startswith(scipy_dirs)]
    if not bundled:
        pytest.skip(f"SciPy {scipy.__version__} shares a system BLAS here")
    assert bundled == libs
