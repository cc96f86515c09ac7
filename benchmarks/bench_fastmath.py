"""Speed of src/fastbp/_fastmath.h: exp, sigmoid and tanh on 2,048 doubles.

Builds the header with the system ``cc`` (-O3 -fPIC -shared, no -march) into
a temporary directory, with the C wrapper and ctypes loader that the header's
tests use (tests/_fastmath_build.py), and times

- np.exp, the NumPy reference sigmoid, and fb_sigmoid_array through ctypes;
- inside C (no call overhead): fb_exp/sigmoid/tanh_array and a plain libm
  sigmoid loop, for the dispatched build and for each single-copy build
  (SSE2, AVX2 = x86-64-v3, AVX-512) the CPU can run.

A benchmark, not a test: nothing is asserted.  The accuracy and bit-equality
claims of the header are tests: tests/test__fastmath.py.

    python benchmarks/bench_fastmath.py [--no-variants] [--cflags=...]
"""

import argparse
import importlib.util
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import timeit

import numpy as np

_HELPER = pathlib.Path(__file__).resolve().parents[1] / "tests" / "_fastmath_build.py"
_spec = importlib.util.spec_from_file_location("_fastmath_build", _HELPER)
fm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fm)


def check_speed(lib, variant_libs, m=2048, rounds=15):
    """Best time per call over interleaved rounds: the machine may be shared,
    so every contender is measured in every round, close together in time."""
    print(f"speed on {m} doubles (µs per call, best of {rounds} interleaved rounds)")
    rng = np.random.default_rng(1)
    x = rng.uniform(-10, 10, m)
    y = np.empty_like(x)
    sx, sy = fm.ptr(x), fm.ptr(y)
    py = {
        "np.exp(x, out=y)": lambda: np.exp(x, out=y),
        "numpy reference sigmoid": lambda: fm.np_sigmoid(x),
        "fb_sigmoid_array through ctypes": lambda: lib.w_sigmoid(sx, sy, m),
    }
    libs = [("dispatched: " + lib.w_isa().decode(), lib)] + list(variant_libs.items())
    kernels = ["exp", "sigmoid", "tanh", "libm sigmoid loop"]
    best_py = {k: np.inf for k in py}
    best_c = {(n, w): np.inf for n, _ in libs for w in range(len(kernels))}
    for _ in range(rounds):
        for k, fn in py.items():
            best_py[k] = min(best_py[k], timeit.timeit(fn, number=200) / 200 * 1e6)
        for n, v in libs:
            for w in range(len(kernels)):
                best_c[n, w] = min(best_c[n, w], v.w_bench(w, sx, sy, m, 200) / 1e3)
    for k, t in best_py.items():
        print(f"  {k:42s}{t:8.2f}")
    print(f"  {'kernel time inside C (no call overhead)':42s}" + "".join(f"{k:>10s}" for k in kernels[:3])
          + f"{'libm loop':>11s}")
    for n, _ in libs:
        print(f"  {n:42s}" + "".join(f"{best_c[n, w]:10.2f}" for w in range(len(kernels))))
    t_sig, t_np = best_c[libs[0][0], 1], best_py["np.exp(x, out=y)"]
    print(f"  -> fb_sigmoid_array {t_sig:.2f} µs vs np.exp {t_np:.2f} µs: {t_np / t_sig:.2f}x"
          f" (through ctypes {best_py['fb_sigmoid_array through ctypes']:.2f} µs);"
          f" {best_c[libs[0][0], 3] / t_sig:.1f}x faster than the libm loop")
    return t_sig, t_np


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--no-variants", action="store_true",
                    help="time the dispatched build only, not the single-copy builds")
    ap.add_argument("--cflags", default="",
                    help="extra compiler flags for the dispatched build, e.g. '-O2'")
    args = ap.parse_args()

    cc = fm.compiler()
    if cc is None:
        print(f"no C compiler ({os.environ.get('CC', 'cc')!r} is not on PATH)", file=sys.stderr)
        return 2
    print(f"platform {platform.machine()} {platform.system()}, numpy {np.__version__}, cc:",
          subprocess.run([*cc, "--version"], capture_output=True, text=True).stdout.splitlines()[0])
    with tempfile.TemporaryDirectory(prefix="bench_fastmath_") as tmp:
        lib = fm.build(tmp, "fastmath", args.cflags.split())
        print("copy the dispatcher runs on this CPU:", lib.w_isa().decode())
        variants = {}
        if not args.no_variants:
            for name, (flags, _) in fm.VARIANTS.items():
                reason = fm.variant_unavailable(name)
                if reason:
                    print(f"  ({reason}: not timed)")
                    continue
                variants[name] = fm.build(tmp, "variant_" + name, flags)
        check_speed(lib, variants)
    return 0


if __name__ == "__main__":
    sys.exit(main())
