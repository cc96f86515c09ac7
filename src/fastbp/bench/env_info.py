"""What the numbers were measured on: versions, BLAS libraries, CPU, env vars.

fastbp's compiled core calls the BLAS of ``scipy.linalg.cython_blas``
(scipy's OpenBLAS), which can be a different library from NumPy's; the
header lists every BLAS loaded in the process, each with the package that
brought it.
"""

import importlib.metadata
import os
import platform

import numpy as np
import scipy

import fastbp

# Set, these override OpenBLAS's own detection of the CPU; on current
# OpenBLAS on a current CPU that makes it slower, so the header says so.
OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _owner(filepath):
    """Which installed package shipped a shared library, from its path."""
    path = filepath.replace("\\", "/").lower()
    for name in ("numpy", "scipy", "torch", "jaxlib", "sklearn"):
        if f"/{name}.libs/" in path or f"/{name}/" in path:
            return name
    return "system"


def thread_pools():
    """threadpoolctl's view of the loaded BLAS/OpenMP libraries, or None."""
    try:
        import threadpoolctl
    except ImportError:
        return None
    pools = []
    for info in threadpoolctl.threadpool_info():
        pools.append({
            "owner": _owner(info.get("filepath", "")),
            "user_api": info.get("user_api"),
            "internal_api": info.get("internal_api"),
            "version": info.get("version"),
            "architecture": info.get("architecture"),
            "num_threads": info.get("num_threads"),
            "threading_layer": info.get("threading_layer"),
            "filepath": info.get("filepath"),
        })
    return pools


def _dist_version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def collect(peer_versions=None):
    """Everything the report's header and JSON ``environment`` hold."""
    return {
        "fastbp": getattr(fastbp, "__version__", "?"),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threadpoolctl": _dist_version("threadpoolctl"),
        "thread_pools": thread_pools(),
        "openblas_env": {k: os.environ.get(k) for k in OPENBLAS_VARS},
        "thread_env": {k: os.environ[k] for k in THREAD_VARS if k in os.environ},
        "peers": dict(peer_versions or {}),
        "load_average": load_average(),
    }


def load_average():
    """The 1-minute load average when the run starts (None where unknown).

    Above the number of CPUs, other processes take cores from the BLAS's
    worker threads, and multi-threaded timings swing by large factors.
    """
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def header_lines(env):
    """The report's header, one fact per line."""
    lines = [f"fastbp {env['fastbp']} | numpy {env['numpy']} | scipy {env['scipy']}"
             f" | Python {env['python']}",
             f"CPU: {env['cpu']} ({env['cpu_count']} logical CPUs) | {env['platform']}"]
    pools = env["thread_pools"]
    if pools is None:
        lines.append("BLAS: threadpoolctl not installed, BLAS libraries and threads "
                     "unknown (pip install threadpoolctl)")
    else:
        for p in pools:
            role = " (fastbp's core)" if p["owner"] == "scipy" else ""
            name = os.path.basename(p["filepath"] or "?")
            lines.append(f"{p['user_api'].upper()} of {p['owner']}{role}: "
                         f"{p['internal_api']} {p['version']} {p['architecture'] or ''}"
                         f", {p['num_threads']} threads"
                         f"{', ' + p['threading_layer'] if p.get('threading_layer') else ''}"
                         f" [{name}]")
    set_vars = {k: v for k, v in env["openblas_env"].items() if v is not None}
    if set_vars:
        lines.append("OpenBLAS variables: "
                     + ", ".join(f"{k}={v}" for k, v in set_vars.items())
                     + " (note: they override OpenBLAS's CPU detection and slow current"
                       " OpenBLAS; compare with env -u OPENBLAS_CORETYPE"
                       " -u OPENBLAS_L2_SIZE fastbp-bench)")
    else:
        lines.append("OpenBLAS variables: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset")
    if env["thread_env"]:
        lines.append("Thread variables: "
                     + ", ".join(f"{k}={v}" for k, v in env["thread_env"].items()))
    load, cpus = env.get("load_average"), env["cpu_count"] or 1
    if load is not None:
        busy = (" - busy: other processes compete for the cores, so timings are noisy"
                " (--threads 1 is steadier)" if load >= 0.75 * cpus else "")
        lines.append(f"Load average at start: {load:.2f} on {cpus} logical CPUs{busy}")
    for name, ver in env["peers"].items():
        lines.append(f"peer {name}: {ver if ver else 'not installed'}")
    return lines
