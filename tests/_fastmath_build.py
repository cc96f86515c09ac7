"""Build src/fastbp/_fastmath.h into a small shared library and load it with ctypes.

The one place that knows how: tests/test__fastmath.py (accuracy and
bit-equality) and benchmarks/bench_fastmath.py (speed) both use it, the
benchmark by loading this file by its path.  Not a test module itself.

The header is compiled as the extension compiles it, without -march: the
"dispatched" build holds the header's three copies (AVX-512, AVX2 + FMA,
SSE2) and runs the best one the CPU has.  VARIANTS are single-copy builds
(-DFASTBP_NO_CLONES) for one instruction set each.

The headers come from src/fastbp next to tests/ (a source checkout), or from
the directory in FASTBP_FASTMATH_INCLUDE: point it at a scratch copy of the
headers to see what the tests say about a changed one.  The compiler is $CC,
else ``cc``.
"""

import ctypes
import os
import pathlib
import platform
import shlex
import shutil
import subprocess

import numpy as np

INCLUDE = pathlib.Path(
    os.environ.get("FASTBP_FASTMATH_INCLUDE")
    or pathlib.Path(__file__).resolve().parents[1] / "src" / "fastbp")
HEADER = INCLUDE / "_fastmath.h"
CFLAGS = ["-O3", "-fPIC", "-shared", "-Wall"]

WRAPPER = r"""
#include <time.h>
#include <math.h>
#include "_fastmath.h"

void w_exp(const double *x, double *y, int64_t m) { fb_exp_array(x, y, m); }
void w_sigmoid(const double *x, double *y, int64_t m) { fb_sigmoid_array(x, y, m); }
void w_tanh(const double *x, double *y, int64_t m) { fb_tanh_array(x, y, m); }
void w_forward(double *Y, double *Z, const double *b, int64_t n, int64_t d, int act)
{ fb_forward_epilogue(Y, Z, b, n, d, act); }
void w_backward(const double *dY, const double *Y, const double *Z, double *dZ, double *db,
                int64_t n, int64_t d, int act)
{ fb_backward_epilogue(dY, Y, Z, dZ, db, n, d, act); }
double w_squared_error(const double *Y, const double *T, double *dY, int64_t m,
                       double grad_scale, double loss_scale)
{ return fb_squared_error(Y, T, dY, m, grad_scale, loss_scale); }

/* The copy the header's dispatcher runs on this CPU: 0 SSE2, 1 AVX2 + FMA,
   2 AVX-512F; -1 in a single-copy build. */
int w_simd_level(void)
{
#if defined(FASTBP_NO_CLONES)
    return -1;
#else
    return fb_simd_level();
#endif
}

const char *w_isa(void)
{
    static const char *names[] = {"baseline (SSE2, no fma)", "AVX2 + FMA", "AVX-512F"};
    int level = w_simd_level();
    return level < 0 ? "single copy (FASTBP_NO_CLONES)" : names[level];
}

/* Plain libm loop, for comparison: what a naive kernel would cost. */
static void libm_sigmoid(const double *x, double *y, int64_t m)
{
    for (int64_t i = 0; i < m; i++) {
        double e = exp(-fabs(x[i]));
        y[i] = (x[i] >= 0.0 ? 1.0 : e) / (1.0 + e);
    }
}

/* Nanoseconds per call of kernel `which` on m elements, averaged over reps
   calls (timed inside C, so without the ctypes call overhead). */
double w_bench(int which, const double *x, double *y, int64_t m, int64_t reps)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int64_t r = 0; r < reps; r++) {
        switch (which) {
        case 0: fb_exp_array(x, y, m); break;
        case 1: fb_sigmoid_array(x, y, m); break;
        case 2: fb_tanh_array(x, y, m); break;
        default: libm_sigmoid(x, y, m); break;
        }
        __asm__ __volatile__("" ::: "memory");
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / (double)reps;
}
"""

# Single-copy builds matching the header's three copies: name -> (compiler
# flags, the /proc/cpuinfo flag the CPU needs to run it).
VARIANTS = {
    "sse2": (["-DFASTBP_NO_CLONES"], None),
    "avx2": (["-DFASTBP_NO_CLONES", "-march=x86-64-v3"], "avx2"),
    "avx512f": (["-DFASTBP_NO_CLONES", "-mavx512f", "-mfma"], "avx512f"),
}
# the variant each fb_simd_level() value runs
LEVEL_VARIANT = {0: "sse2", 1: "avx2", 2: "avx512f"}

D = ctypes.POINTER(ctypes.c_double)
I64 = ctypes.c_int64


class BuildError(RuntimeError):
    pass


def compiler():
    """The compiler command as a list, or None when there is none."""
    cmd = shlex.split(os.environ.get("CC", "cc"))
    return cmd if cmd and shutil.which(cmd[0]) else None


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def variant_unavailable(name):
    """Why variant `name` cannot run here, or None if it can."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return f"the {name} variant is an x86-64 build (this is {platform.machine()})"
    need = VARIANTS[name][1]
    if need and need not in cpu_flags():
        return f"this CPU cannot run the {name} variant (no {need} in /proc/cpuinfo)"
    return None


def build(tmp, name, extra=()):
    """Compile the wrapper (-O3 -fPIC -shared + extra) into tmp/name.so and load it."""
    cc = compiler()
    if cc is None:
        raise BuildError(f"no C compiler ({os.environ.get('CC', 'cc')!r} is not on PATH)")
    tmp = pathlib.Path(tmp)
    src = tmp / "fastmath_wrapper.c"
    if not src.exists():
        src.write_text(WRAPPER)
    out = tmp / f"{name}.so"
    cmd = [*cc, *CFLAGS, "-I", str(INCLUDE), *extra, str(src), "-o", str(out), "-lm"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise BuildError(f"{' '.join(cmd)} failed:\n{res.stderr}")
    return load(out)


def load(path):
    lib = ctypes.CDLL(str(path))
    for fn in ("w_exp", "w_sigmoid", "w_tanh"):
        getattr(lib, fn).argtypes = [D, D, I64]
        getattr(lib, fn).restype = None
    lib.w_forward.argtypes = [D, D, D, I64, I64, ctypes.c_int]
    lib.w_forward.restype = None
    lib.w_backward.argtypes = [D, D, D, D, D, I64, I64, ctypes.c_int]
    lib.w_backward.restype = None
    lib.w_squared_error.argtypes = [D, D, D, I64, ctypes.c_double, ctypes.c_double]
    lib.w_squared_error.restype = ctypes.c_double
    lib.w_simd_level.restype = ctypes.c_int
    lib.w_isa.restype = ctypes.c_char_p
    lib.w_bench.argtypes = [ctypes.c_int, D, D, I64, I64]
    lib.w_bench.restype = ctypes.c_double
    return lib


def ptr(a):
    """A double* to a C-contiguous float64 array (None for NULL)."""
    if a is None:
        return None
    assert a.dtype == np.float64 and a.flags.c_contiguous
    return a.ctypes.data_as(D)


def call_elementwise(lib, f, x, inplace=False):
    """fb_<f>_array (f: exp, sigmoid, tanh) on a copy of x."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    if inplace:
        y = x.copy()
        getattr(lib, "w_" + f)(ptr(y), ptr(y), y.size)
    else:
        y = np.empty_like(x)
        getattr(lib, "w_" + f)(ptr(x), ptr(y), x.size)
    return y


def np_sigmoid(z):
    """The stable NumPy sigmoid the header copies."""
    with np.errstate(all="ignore"):
        e = np.exp(-np.abs(z))
        return np.where(z >= 0, 1 / (1 + e), e / (1 + e))
