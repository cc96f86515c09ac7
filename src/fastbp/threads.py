"""Cap the threads of the BLAS that fastbp's compiled core calls.

fastbp's GEMMs go through ``scipy.linalg.cython_blas``, so they run on
SciPy's BLAS.  SciPy's PyPI wheels bundle their own OpenBLAS (in
``scipy.libs``), a different library from the one NumPy's wheels bundle
(``numpy.libs``): limiting one leaves the other alone.  When SciPy and NumPy
share one BLAS (conda, distribution packages), the two are the same library
and a limit applies to both.  See docs/threads.md.

threadpoolctl is optional: it is imported when a limit is first asked for.
"""

import os

__all__ = ["blas_info", "threadpool_limits"]

_INSTALL_HINT = (
    "fastbp.threadpool_limits needs threadpoolctl; install it with "
    "`pip install threadpoolctl` (or `pip install 'fastbp[bench]'`)")


def _controller():
    try:
        import threadpoolctl
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    # scipy.linalg is what loads SciPy's BLAS; make sure it is in the process
    import scipy.linalg.cython_blas  # noqa: F401
    return threadpoolctl.ThreadpoolController()


def _scipy_dirs():
    import scipy

    root = os.path.dirname(os.path.realpath(scipy.__file__))
    parent = os.path.dirname(root)
    # wheels put the bundled BLAS next to the package (scipy.libs, delvewheel)
    # or inside it (scipy/.dylibs on macOS)
    return (root + os.sep, os.path.join(parent, "scipy.libs") + os.sep)


def _fastbp_blas(controller):
    """The BLAS libraries fastbp's kernels use: SciPy's own when its wheel
    bundles one, else every BLAS of the process (SciPy then shares NumPy's)."""
    blas = controller.select(user_api="blas")
    dirs = _scipy_dirs()
    own = [lib.filepath for lib in blas.lib_controllers
           if os.path.realpath(lib.filepath).startswith(dirs)]
    return blas.select(filepath=own) if own else blas


def blas_info():
    """threadpoolctl's info dicts of the BLAS library(ies) fastbp calls."""
    return _fastbp_blas(_controller()).info()


def threadpool_limits(limits=1):
    """Limit the BLAS threads of fastbp's kernels to ``limits``.

    The limit applies at once, process-wide, to SciPy's BLAS (the one
    fastbp calls), and is undone by leaving the ``with`` block or by calling
    ``.restore_original_limits()`` on the returned object::

        with fastbp.threadpool_limits(1):
            net.fit(X, T)          # fastbp's GEMMs run on one thread

    NumPy's own BLAS (``X @ W``) is left alone when it is a separate library,
    as in the PyPI wheels; use ``threadpoolctl.threadpool_limits`` to limit
    every library.  ``limits`` is a positive int, or None for no change.
    """
    if limits is not None and (isinstance(limits, bool) or not isinstance(limits, int)
                               or limits < 1):
        raise ValueError(f"limits must be a positive int or None, got {limits!r}")
    return _fastbp_blas(_controller()).limit(limits=limits)
