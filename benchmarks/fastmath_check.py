"""Accuracy, correctness and speed check of src/fastbp/_fastmath.h.

Compiles a tiny C wrapper around the header with the system ``cc``
(-O3 -fPIC -shared, no -march=native) into a temporary directory, loads it
with ctypes and

1. measures the error of exp, sigmoid and tanh against NumPy (and, when
   mpmath is installed, against the correctly rounded value) over random
   values in many ranges and the special values;
2. checks the forward/backward epilogues and the squared error against
   straightforward NumPy, including the fixed summation orders bit for bit;
3. builds the SSE2, AVX2 (x86-64-v3) and AVX-512 variants separately, checks
   each one's accuracy, that the derivatives and reductions are the same bits
   on all of them, and that the AVX2 and AVX-512 activations are the same
   bits (the SSE2 ones, without fma, may differ by an ulp or two);
4. times sigmoid on 2,048 doubles against ``np.exp``.

Errors are counted in ulps as the distance between the two doubles in the
ordered sequence of all doubles.  For normal results that is the usual ulp
error; for subnormal results it is the absolute error in units of 2**-1074.
The check fails (exit status 1) if any error exceeds 4 ulps, if an infinite or
NaN reference is not matched exactly, or if an epilogue mismatches.

Usage:  python benchmarks/fastmath_check.py [--quick] [--no-variants] [--no-mpmath] [--cflags=...]
"""

import argparse
import ctypes
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import timeit

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
INCLUDE = os.path.join(os.path.dirname(HERE), "src", "fastbp")
MAX_ULP = 4
RTOL = 1e-13

WRAPPER = r"""
#include <time.h>
#include <math.h>
#include "_fastmath.h"

void w_exp(const double *x, double *y, int64_t m) { fb_exp_array(x, y, m); }
void w_sigmoid(const double *x, double *y, int64_t m) { fb_sigmoid_array(x, y, m); }
void w_tanh(const double *x, double *y, int64_t m) { fb_tanh_array(x, y, m); }
void w_forward(double *Y, const double *b, int64_t n, int64_t d, int act)
{ fb_forward_epilogue(Y, b, n, d, act); }
void w_backward(const double *dY, const double *Y, double *dZ, double *db, int64_t n,
                int64_t d, int act)
{ fb_backward_epilogue(dY, Y, dZ, db, n, d, act); }
double w_squared_error(const double *Y, const double *T, double *dY, int64_t m,
                       double grad_scale, double loss_scale)
{ return fb_squared_error(Y, T, dY, m, grad_scale, loss_scale); }

/* The copy the header's dispatcher runs on this CPU. */
const char *w_isa(void)
{
#if defined(FASTBP_NO_CLONES)
    return "single copy (FASTBP_NO_CLONES)";
#else
    static const char *names[] = {"baseline (SSE2, no fma)", "AVX2 + FMA", "AVX-512F"};
    return names[fb_simd_level()];
#endif
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

D = ctypes.POINTER(ctypes.c_double)
I64 = ctypes.c_int64

# Single-copy builds (-DFASTBP_NO_CLONES) matching the header's three copies.
VARIANTS = [
    ("sse2 (default)", [], None),
    ("avx2 (x86-64-v3)", ["-march=x86-64-v3"], "avx2"),
    ("avx512f", ["-mavx512f", "-mfma"], "avx512f"),
]

FAILURES = []


def fail(msg):
    FAILURES.append(msg)
    print("  FAIL:", msg)


# ---------------------------------------------------------------- building


def build(tmp, name, extra=()):
    src = os.path.join(tmp, "wrapper.c")
    if not os.path.exists(src):
        with open(src, "w") as f:
            f.write(WRAPPER)
    out = os.path.join(tmp, name + ".so")
    cc = os.environ.get("CC", "cc")
    cmd = [cc, "-O3", "-fPIC", "-shared", "-Wall", "-I", INCLUDE, *extra, src, "-o", out, "-lm"]
    subprocess.run(cmd, check=True)
    return load(out)


def load(path):
    lib = ctypes.CDLL(path)
    for fn in ("w_exp", "w_sigmoid", "w_tanh"):
        getattr(lib, fn).argtypes = [D, D, I64]
        getattr(lib, fn).restype = None
    lib.w_forward.argtypes = [D, D, I64, I64, ctypes.c_int]
    lib.w_forward.restype = None
    lib.w_backward.argtypes = [D, D, D, D, I64, I64, ctypes.c_int]
    lib.w_backward.restype = None
    lib.w_squared_error.argtypes = [D, D, D, I64, ctypes.c_double, ctypes.c_double]
    lib.w_squared_error.restype = ctypes.c_double
    lib.w_isa.restype = ctypes.c_char_p
    lib.w_bench.argtypes = [ctypes.c_int, D, D, I64, I64]
    lib.w_bench.restype = ctypes.c_double
    return lib


def ptr(a):
    if a is None:
        return None
    assert a.dtype == np.float64 and a.flags.c_contiguous
    return a.ctypes.data_as(D)


def call_elementwise(lib, fname, x, inplace=False):
    x = np.ascontiguousarray(x, dtype=np.float64)
    if inplace:
        y = x.copy()
        getattr(lib, fname)(ptr(y), ptr(y), y.size)
    else:
        y = np.empty_like(x)
        getattr(lib, fname)(ptr(x), ptr(y), x.size)
    return y


# ---------------------------------------------------------------- references


def np_sigmoid(z):
    with np.errstate(all="ignore"):
        e = np.exp(-np.abs(z))
        return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def np_exp(x):
    with np.errstate(all="ignore"):
        return np.exp(x)


def np_tanh(x):
    return np.tanh(x)


REFS = {"exp": np_exp, "sigmoid": np_sigmoid, "tanh": np_tanh}


def ordinal(a):
    """Map doubles to int64 so that consecutive doubles differ by 1."""
    i = np.ascontiguousarray(a, dtype=np.float64).view(np.int64)
    return np.where(i < 0, np.int64(np.iinfo(np.int64).min) - i, i)


def ulp_distance(got, ref):
    """Per-element distance in ulps (inf where not comparable)."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    dist = np.full(ref.shape, np.inf)
    finite = np.isfinite(ref) & np.isfinite(got)
    og, orf = ordinal(got[finite]), ordinal(ref[finite])
    same_side = (og >= 0) == (orf >= 0)
    d = np.where(same_side, np.abs(og - np.where(same_side, orf, og)), np.iinfo(np.int64).max)
    dist[finite] = d.astype(np.float64)
    # non-finite references must be matched exactly
    nonfin = ~np.isfinite(ref)
    exact = (np.isnan(ref) & np.isnan(got)) | (ref == got)
    dist[nonfin] = np.where(exact[nonfin], 0.0, np.inf)
    return dist


# ---------------------------------------------------------------- inputs


def input_ranges(rng, n):
    u = rng.uniform
    sign = lambda k: rng.choice([-1.0, 1.0], size=k)  # noqa: E731
    tiny = np.finfo(np.float64).tiny
    ranges = {
        "uniform(-1,1)": u(-1, 1, n),
        "uniform(-0.7,0.7)": u(-0.7, 0.7, n),
        "uniform(-25,25)": u(-25, 25, n),
        "uniform(-800,800)": u(-800, 800, n),
        "+-[700,750]": sign(n) * u(700, 750, n),
        "exp subnormal [-745.2,-708.3]": u(-745.2, -708.3, n),
        "exp overflow edge [709,710]": u(709.0, 710.0, n),
        "tiny 1e-300..1e-5": sign(n) * 10.0 ** u(-300, -5, n),
        "subnormal inputs": sign(n) * rng.integers(1, 2**52, n).astype(np.uint64).view(np.float64),
        "huge 1e5..1e308": sign(n) * 10.0 ** u(5, 308, n),
        "log-uniform 1e-323..1e308": sign(n) * 10.0 ** u(-323, 308, n),
    }

    def around(v, k=64):
        v = np.float64(v)
        below = np.nextafter(v, -np.inf) - np.spacing(np.nextafter(v, -np.inf)) * np.arange(k)
        return np.concatenate([below, v + np.spacing(v) * np.arange(k + 1)])

    edges = [0.625, 22.0, 709.782712893384, -745.1332191019411, -708.3964185322641,
             -744.4400719213812, 36.0, 0.34657359027997264, 1.0, 0.5, 2.0, 19.0]
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, tiny, -tiny,
                         5e-324, -5e-324, np.finfo(np.float64).max, -np.finfo(np.float64).max,
                         1e308, -1e308, 710.0, -746.0, 709.78, -745.13, 745.13, -709.78, 1e-310])
    ranges["edges (0.625, 22, exp limits, ...)"] = np.concatenate(
        [around(e) for e in edges] + [-around(e) for e in edges])
    ranges["specials (0, inf, nan, max, ...)"] = specials
    return ranges


# ---------------------------------------------------------------- 1. accuracy


def check_accuracy(lib, rng, n, use_mpmath):
    print("\n1. elementwise accuracy vs NumPy (max error in ulps; subnormal: units of 2**-1074)")
    ranges = input_ranges(rng, n)
    worst = {f: 0.0 for f in REFS}
    header = f"  {'range':38s}" + "".join(f"{f:>10s}" for f in REFS)
    print(header)
    for rname, x in ranges.items():
        row = f"  {rname:38s}"
        for f, ref_fn in REFS.items():
            got = call_elementwise(lib, "w_" + f, x)
            ref = ref_fn(x)
            dist = ulp_distance(got, ref)
            m = float(dist.max()) if dist.size else 0.0
            worst[f] = max(worst[f], m)
            row += f"{m:10.0f}" if np.isfinite(m) else f"{'MISMATCH':>10s}"
            if m > MAX_ULP:
                k = int(np.argmax(dist))
                fail(f"{f} on {rname}: {m} ulp at x={x[k]!r}: got {got[k]!r}, numpy {ref[k]!r}")
            # in place gives the same bits
            gi = call_elementwise(lib, "w_" + f, x, inplace=True)
            if not np.array_equal(gi.view(np.int64), got.view(np.int64)):
                fail(f"{f} on {rname}: in-place result differs from out-of-place")
        print(row)
    print("  " + "-" * (len(header) - 2))
    print(f"  {'max over all ranges':38s}" + "".join(f"{worst[f]:10.0f}" for f in REFS))

    # unaligned start and every length 0..40 (vector body + remainder paths)
    base = rng.uniform(-30, 30, 64)
    for f, ref_fn in REFS.items():
        for off in (0, 1, 3):
            for m in range(0, 41):
                x = base[off:off + m]
                xs = np.ascontiguousarray(x)
                y = np.full(m + 1, 7.0)
                getattr(lib, "w_" + f)(ptr(xs), ptr(y), m)
                if y[m] != 7.0:
                    fail(f"{f}: wrote past the end for m={m}")
                if m and ulp_distance(y[:m], ref_fn(xs)).max() > MAX_ULP:
                    fail(f"{f}: wrong for length {m}")

    # an element's bits do not depend on its position or on the array length
    x = rng.uniform(-40, 40, 1000)
    for f in REFS:
        full = call_elementwise(lib, "w_" + f, x)
        single = np.concatenate([call_elementwise(lib, "w_" + f, x[i:i + 1]) for i in range(x.size)])
        rev = call_elementwise(lib, "w_" + f, x[::-1].copy())[::-1]
        if not (np.array_equal(full.view(np.int64), single.view(np.int64))
                and np.array_equal(full.view(np.int64), rev.view(np.int64))):
            fail(f"{f}: result depends on the element's position in the array")

    if use_mpmath:
        check_truth(lib, rng, ranges)
    return worst


def check_truth(lib, rng, ranges, per_range=300):
    try:
        import mpmath as mp
    except ImportError:
        print("  (mpmath not installed: skipping the check against correctly rounded values)")
        return
    mp.mp.prec = 200

    def to_double(v):
        # correctly rounded to the nearest double, subnormals included
        if not mp.isfinite(v):
            return float(v)
        if v == 0:
            return 0.0
        if abs(v) < mp.ldexp(1, -1022):
            return float(mp.nint(v * mp.ldexp(1, 1074))) * 5e-324
        return float(v)

    truth = {
        "exp": lambda x: mp.exp(x),
        "sigmoid": lambda x: 1 / (1 + mp.exp(-x)),
        "tanh": lambda x: mp.tanh(x),
    }
    worst_ours = {f: 0.0 for f in truth}
    worst_np = {f: 0.0 for f in truth}
    for x in ranges.values():
        xs = x if x.size <= per_range else rng.choice(x, per_range, replace=False)
        xs = xs[np.isfinite(xs)]
        for f, t in truth.items():
            exact = np.array([to_double(t(mp.mpf(float(v)))) for v in xs])
            worst_ours[f] = max(worst_ours[f], float(ulp_distance(call_elementwise(lib, "w_" + f, xs), exact).max(initial=0)))
            worst_np[f] = max(worst_np[f], float(ulp_distance(REFS[f](xs), exact).max(initial=0)))
    print("\n  vs correctly rounded (mpmath, sample of each range): max ulp")
    print(f"  {'':38s}" + "".join(f"{f:>10s}" for f in truth))
    print(f"  {'_fastmath.h':38s}" + "".join(f"{worst_ours[f]:10.0f}" for f in truth))
    print(f"  {'numpy':38s}" + "".join(f"{worst_np[f]:10.0f}" for f in truth))
    for f, w in worst_ours.items():
        if w > MAX_ULP:
            fail(f"{f}: {w} ulp from the correctly rounded value")


# ---------------------------------------------------------------- 2. epilogues

ACTS = {"identity": 0, "sigmoid": 1, "tanh": 2, "relu": 3}


def np_act(name, z):
    with np.errstate(all="ignore"):
        return {"identity": lambda: z.copy(), "sigmoid": lambda: np_sigmoid(z),
                "tanh": lambda: np.tanh(z), "relu": lambda: np.maximum(z, 0)}[name]()


def np_dact(name, y):
    with np.errstate(all="ignore"):
        return {"identity": lambda: np.ones_like(y), "sigmoid": lambda: y * (1 - y),
                "tanh": lambda: 1 - y * y, "relu": lambda: (y > 0).astype(np.float64)}[name]()


def row_order_sum(a):
    """Column sums added in row order from +0.0: the header's fixed order."""
    acc = np.zeros(a.shape[1])
    for row in a:
        acc = acc + row
    return acc


def same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


SHAPES = [(0, 3), (3, 0), (1, 1), (7, 1), (5, 3), (13, 17), (40, 31), (9, 32), (64, 33),
          (100, 257), (3, 1000), (1000, 2), (700, 5)]


def check_epilogues(lib, rng):
    print("\n2. fused epilogues and squared error vs NumPy")
    nchecks = 0
    for n, d in SHAPES:
        for act, code in ACTS.items():
            Z = rng.standard_normal((n, d)) * 4
            b = rng.standard_normal(d)
            if n * d >= 4:  # edge values mixed in
                flat = Z.reshape(-1)
                flat[rng.choice(flat.size, min(flat.size, 4), replace=False)] = \
                    rng.choice([np.nan, np.inf, -np.inf, 1e308, -1e308, 800.0, -800.0], 4)[: min(flat.size, 4)]
            ref = np_act(act, Z + b)
            Y = Z.copy()
            lib.w_forward(ptr(Y), ptr(b), n, d, code)
            nchecks += 1
            ok = Y.shape == ref.shape and np.allclose(Y, ref, rtol=RTOL, atol=0, equal_nan=True)
            if act in ("identity", "relu") and not same(Y, ref):
                ok = False
            if act in ("sigmoid", "tanh") and n * d:
                flat = call_elementwise(lib, "w_" + act, (Z + b).reshape(-1))
                if not same(Y.reshape(-1), flat):
                    fail(f"forward {act} {n}x{d}: differs from fb_{act}_array(Z + b)")
            if not ok:
                fail(f"forward {act} {n}x{d}: max |diff| {np.nanmax(np.abs(Y - ref), initial=0)}")

            # backward from the forward output, plus NaN/inf cases
            Yf = np.where(np.isfinite(ref), ref, 0.5) if act != "relu" else ref
            dY = rng.standard_normal((n, d))
            if n * d >= 3:
                dY.reshape(-1)[rng.choice(n * d, 2, replace=False)] = [np.inf, np.nan]
            with np.errstate(invalid="ignore"):
                dZ_ref = dY * np_dact(act, Yf)
            db_ref = row_order_sum(dZ_ref)
            dZ = np.full((n, d), -1.0)
            db = np.full(d, 123.0)
            lib.w_backward(ptr(dY), ptr(Yf), ptr(dZ), ptr(db), n, d, code)
            nchecks += 1
            if not same(dZ, dZ_ref):
                fail(f"backward {act} {n}x{d}: dZ differs from dY * g'(Y)")
            if not same(db, db_ref):
                fail(f"backward {act} {n}x{d}: db is not the row-order sum of dZ")
            with np.errstate(invalid="ignore"):
                npsum = dZ_ref.sum(axis=0)
                scale = np.abs(dZ_ref).sum(axis=0)
            fin = np.isfinite(npsum)
            if not np.allclose(db[fin], npsum[fin], rtol=RTOL, atol=0) and \
                    not np.all(np.abs(db[fin] - npsum[fin]) <= RTOL * scale[fin]):
                fail(f"backward {act} {n}x{d}: db differs from dZ.sum(axis=0)")
            # in place: dZ == dY
            dY2 = dY.copy()
            db2 = np.empty(d)
            lib.w_backward(ptr(dY2), ptr(Yf), ptr(dY2), ptr(db2), n, d, code)
            nchecks += 1
            if not (same(dY2, dZ_ref) and same(db2, db_ref)):
                fail(f"backward {act} {n}x{d}: in place (dZ is dY) differs")
            if act == "identity":
                db3 = np.empty(d)
                lib.w_backward(ptr(dY), ptr(Yf), None, ptr(db3), n, d, code)
                nchecks += 1
                if not same(db3, row_order_sum(dY)):
                    fail(f"backward identity {n}x{d}: dZ=NULL db differs")

    # relu specifics: NaN propagates forward; relu'(NaN) = 0 but dY*0 keeps NaN/inf
    Z = np.array([[np.nan, -1.0, 0.0, -0.0, 2.0, -np.inf, np.inf]])
    Y = Z.copy()
    lib.w_forward(ptr(Y), ptr(np.zeros(7)), 1, 7, ACTS["relu"])
    if not same(Y, np.maximum(Z, 0)):
        fail(f"relu forward NaN/inf handling: {Y} vs {np.maximum(Z, 0)}")
    dY = np.array([[1.0, np.inf, np.nan, 2.0, 3.0, 1.0, 1.0]])
    dZ, db = np.empty((1, 7)), np.empty(7)
    lib.w_backward(ptr(dY), ptr(Y), ptr(dZ), ptr(db), 1, 7, ACTS["relu"])
    with np.errstate(invalid="ignore"):
        want = dY * (Y > 0)
    if not same(dZ, want):
        fail(f"relu backward NaN handling: {dZ} vs {want}")
    nchecks += 2

    # squared error
    for m in [0, 1, 5, 7, 8, 9, 16, 17, 1000, 4097, 100003]:
        Yv = rng.standard_normal(m)
        Tv = rng.standard_normal(m)
        for gs, ls in [(1.0, 0.5), (2.0, 1.0), (1.0 / max(m, 1), 0.5 / max(m, 1))]:
            e = Yv - Tv
            sq = (Tv - Yv) ** 2
            pad = np.zeros((m + 7) // 8 * 8)
            pad[:m] = sq
            acc = np.zeros(8)
            for blk in pad.reshape(-1, 8):
                acc = acc + blk
            fixed = ls * (((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])))
            dYv = np.full(m, np.nan)
            loss = lib.w_squared_error(ptr(Yv), ptr(Tv), ptr(dYv), m, gs, ls)
            loss0 = lib.w_squared_error(ptr(Yv), ptr(Tv), None, m, gs, ls)
            Yc = Yv.copy()
            loss_inplace = lib.w_squared_error(ptr(Yc), ptr(Tv), ptr(Yc), m, gs, ls)
            nchecks += 3
            if not same(dYv, gs * e):
                fail(f"squared_error m={m}: dY differs from grad_scale*(Y-T)")
            if not same(Yc, gs * e) or loss_inplace != loss:
                fail(f"squared_error m={m}: in place (dY is Y) differs")
            if loss != fixed or loss0 != fixed:
                fail(f"squared_error m={m}: loss {loss!r} / {loss0!r} is not the fixed-order sum {fixed!r}")
            if not np.isclose(loss, ls * np.sum(sq), rtol=RTOL, atol=0):
                fail(f"squared_error m={m}: loss {loss!r} vs numpy {ls * np.sum(sq)!r}")
    nan_loss = lib.w_squared_error(ptr(np.array([1.0, np.nan])), ptr(np.zeros(2)), None, 2, 1.0, 1.0)
    if not np.isnan(nan_loss):
        fail("squared_error: NaN in Y does not give a NaN loss")
    print(f"  {nchecks} epilogue / loss cases checked"
          + ("" if any("backward" in f or "forward" in f or "squared" in f for f in FAILURES)
             else ": all match (dZ, db, dY and the loss bit for bit, forward within rtol 1e-13)"))


# ---------------------------------------------------------------- 3. variants


def battery(lib, rng_seed=7):
    """Outputs of every function on fixed inputs, for bitwise comparison.

    Returns (activations, exact): the activations use fma in the AVX2/AVX-512
    copies and so may differ by an ulp from the SSE2 copy; the exact part
    (identity/relu forward, backward, squared error) must be the same bits on
    every variant."""
    rng = np.random.default_rng(rng_seed)
    act, exact = [], []
    for x in input_ranges(rng, 20000).values():
        for f in REFS:
            act.append(call_elementwise(lib, "w_" + f, x))
    for n, d in SHAPES:
        for name, code in ACTS.items():
            Y = rng.standard_normal((n, d)) * 4
            b = rng.standard_normal(d)
            lib.w_forward(ptr(Y), ptr(b), n, d, code)
            (act if name in ("sigmoid", "tanh") else exact).append(Y.copy())
            Yin = np.clip(rng.standard_normal((n, d)), -0.99, 0.99)  # the same Y everywhere
            dY = rng.standard_normal((n, d))
            dZ, db = np.empty((n, d)), np.empty(d)
            lib.w_backward(ptr(dY), ptr(Yin), ptr(dZ), ptr(db), n, d, code)
            exact += [dZ, db]
    for m in (0, 7, 1001, 65536 + 3):
        Yv, Tv = rng.standard_normal(m) * 3, rng.standard_normal(m)
        dYv = np.empty(m)
        exact += [np.array([lib.w_squared_error(ptr(Yv), ptr(Tv), ptr(dYv), m, 2.0, 1.0)]), dYv]
    return act, exact


def max_ulp_vs_numpy(lib, n=20000):
    rng = np.random.default_rng(3)
    worst = {f: 0.0 for f in REFS}
    for x in input_ranges(rng, n).values():
        for f, ref_fn in REFS.items():
            worst[f] = max(worst[f], float(ulp_distance(call_elementwise(lib, "w_" + f, x), ref_fn(x)).max()))
    return worst


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def check_variants(tmp, main_lib):
    print("\n3. ISA variants built separately (-DFASTBP_NO_CLONES)")
    flags = cpu_flags()
    ref_act, ref_exact = battery(main_lib)
    libs = {}
    print(f"  {'variant':20s}{'max ulp vs numpy':>28s}   {'derivatives+reductions':24s} activations vs dispatched")
    print(f"  {'':20s}{'exp':>10s}{'sigmoid':>9s}{'tanh':>9s}")
    for name, extra, need in VARIANTS:
        if need and need not in flags:
            print(f"  {name:20s} skipped (CPU lacks {need})")
            continue
        lib = build(tmp, "variant_" + name.split()[0], ["-DFASTBP_NO_CLONES", *extra])
        libs[name] = lib
        act, exact = battery(lib)
        same_exact = all(np.array_equal(a.view(np.int64), b.view(np.int64)) for a, b in zip(ref_exact, exact))
        ndiff = sum(int(np.sum(a.view(np.int64) != b.view(np.int64))) for a, b in zip(ref_act, act))
        total = sum(a.size for a in act)
        maxd = max(float(ulp_distance(a, b).max(initial=0)) for a, b in zip(act, ref_act))
        worst = max_ulp_vs_numpy(lib)
        print(f"  {name:20s}" + "".join(f"{worst[f]:9.0f}" for f in REFS) + "   "
              + f"{'identical bits' if same_exact else 'DIFFERENT BITS':24s} "
              + ("identical" if ndiff == 0 else f"{ndiff}/{total} differ, max {maxd:.0f} ulp"))
        if not same_exact:
            fail(f"variant {name}: derivatives/reductions differ from the dispatched build")
        if need and ndiff and "fma" in flags and "avx2" in flags:
            fail(f"variant {name}: fma activations differ from the dispatched (fma) build")
        for f, w in worst.items():
            if w > MAX_ULP:
                fail(f"variant {name}: {f} is {w} ulp from numpy")
    return libs


# ---------------------------------------------------------------- 4. timing


def check_speed(lib, variant_libs, m=2048, rounds=15):
    """Best time per call over interleaved rounds: the machine may be shared,
    so every contender is measured in every round, close together in time."""
    print(f"\n4. speed on {m} doubles (µs per call, best of {rounds} interleaved rounds)")
    rng = np.random.default_rng(1)
    x = rng.uniform(-10, 10, m)
    y = np.empty_like(x)
    sx, sy = ptr(x), ptr(y)
    py = {
        "np.exp(x, out=y)": lambda: np.exp(x, out=y),
        "numpy reference sigmoid": lambda: np_sigmoid(x),
        "fb_sigmoid_array through ctypes": lambda: lib.w_sigmoid(sx, sy, m),
    }
    libs = [("dispatched: " + lib.w_isa().decode(), lib)] + list(variant_libs.items())
    kernels = ["exp", "sigmoid", "tanh", "libm sigmoid loop"]
    best_py = {k: np.inf for k in py}
    best_c = {(n, w): np.inf for n, _ in libs for w in range(4)}
    for _ in range(rounds):
        for k, fn in py.items():
            best_py[k] = min(best_py[k], timeit.timeit(fn, number=200) / 200 * 1e6)
        for n, l in libs:
            for w in range(4):
                best_c[n, w] = min(best_c[n, w], l.w_bench(w, sx, sy, m, 200) / 1e3)
    for k, t in best_py.items():
        print(f"  {k:42s}{t:8.2f}")
    print(f"  {'kernel time inside C (no call overhead)':42s}" + "".join(f"{k:>10s}" for k in kernels[:3])
          + f"{'libm loop':>11s}")
    for n, _ in libs:
        print(f"  {n:42s}" + "".join(f"{best_c[n, w]:10.2f}" for w in range(4)))
    t_sig, t_np = best_c[libs[0][0], 1], best_py["np.exp(x, out=y)"]
    print(f"  -> fb_sigmoid_array {t_sig:.2f} µs vs np.exp {t_np:.2f} µs: {t_np / t_sig:.2f}x"
          f" (through ctypes {best_py['fb_sigmoid_array through ctypes']:.2f} µs);"
          f" {best_c[libs[0][0], 3] / t_sig:.1f}x faster than the libm loop")
    return t_sig, t_np


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer random values per range")
    ap.add_argument("--no-variants", action="store_true", help="skip the per-ISA builds")
    ap.add_argument("--no-mpmath", action="store_true", help="skip the correctly-rounded check")
    ap.add_argument("--cflags", default="", help="extra compiler flags for the main build, e.g. '-O0'")
    args = ap.parse_args()

    print(f"platform {platform.machine()} {platform.system()}, numpy {np.__version__}, cc:",
          subprocess.run([os.environ.get("CC", "cc"), "--version"], capture_output=True,
                         text=True).stdout.splitlines()[0])
    tmp = tempfile.mkdtemp(prefix="fastmath_check_")
    try:
        lib = build(tmp, "fastmath", args.cflags.split())
        print("copy the dispatcher runs on this CPU:", lib.w_isa().decode())
        rng = np.random.default_rng(20240601)
        check_accuracy(lib, rng, 20000 if args.quick else 200000, not args.no_mpmath)
        check_epilogues(lib, rng)
        variants = {}
        if not args.no_variants and platform.machine() in ("x86_64", "AMD64"):
            variants = check_variants(tmp, lib)
        check_speed(lib, variants)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    if FAILURES:
        print(f"\nFAILED: {len(FAILURES)} problem(s)")
        return 1
    print("\nOK: all errors within", MAX_ULP, "ulp, all epilogues match")
    return 0


if __name__ == "__main__":
    sys.exit(main())
