"""Accuracy and bit-equality of src/fastbp/_fastmath.h, tested on the header
itself: a small C wrapper (tests/_fastmath_build.py) compiled with the system
``cc`` once per session and called through ctypes, so these run without the
extension being built.

- exp, sigmoid and tanh within 4 ulp of NumPy over many ranges (and of the
  correctly rounded value when mpmath is installed), special values exact,
  results independent of the array length, alignment, position and aliasing;
- the forward / backward epilogues and the squared error against plain NumPy,
  the fixed summation orders (bias gradient, loss) bit for bit; leaky relu,
  elu, softplus and silu (and their g', silu's from the kept Z) within a few
  ulp of NumPy over the same ranges;
- on x86-64, single-copy SSE2 / AVX2 (x86-64-v3) / AVX-512 builds: each one
  accurate, derivatives and reductions the same bits on all of them, the AVX2
  and AVX-512 activations the same bits, and the dispatched build the same
  bits as the single-copy build of the copy it runs.

Errors are counted in ulps as the distance between the two doubles in the
ordered sequence of all doubles: the usual ulp error for normal results, the
absolute error in units of 2**-1074 for subnormal ones.  An infinite or NaN
reference must be matched exactly.

Skipped, with the reason, when there is no C compiler, no src/fastbp next to
tests/ (the wheel check runs a copy of tests/ alone), or for a variant the
CPU cannot run.  Everything here takes a few seconds (there is no slow part).
"""

import numpy as np
import pytest

import _fastmath_build as fm
from _fastmath_build import call_elementwise, np_sigmoid, ptr

# The header's activation codes, its `act` argument: the one place they appear.
ACTS = {"identity": 0, "sigmoid": 1, "tanh": 2, "relu": 3, "leaky_relu": 4, "elu": 5,
        "softplus": 6, "silu": 7}
# activations whose forward uses fma (may differ by an ulp between SSE2 and AVX copies)
FMA_ACTS = ("sigmoid", "tanh", "elu", "softplus", "silu")
# bit-exact forwards (no rounding but the bias addition)
EXACT_ACTS = ("identity", "relu", "leaky_relu")

FUNCS = ("exp", "sigmoid", "tanh")
MAX_ULP = 4
RTOL = 1e-13
N_RANDOM = 200_000    # random values per range, dispatched build
N_VARIANT = 20_000    # per range, single-copy variant builds
N_MPMATH = 300        # per range, against mpmath

TINY = np.finfo(np.float64).tiny
FMAX = np.finfo(np.float64).max

SHAPES = [(0, 3), (3, 0), (1, 1), (7, 1), (5, 3), (13, 17), (40, 31), (9, 32), (64, 33),
          (100, 257), (3, 1000), (1000, 2), (700, 5)]
SQ_LENGTHS = [0, 1, 5, 7, 8, 9, 15, 16, 17, 31, 1000, 1007, 4097, 100003]


# ---------------------------------------------------------------- builds


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory):
    if not fm.HEADER.is_file():
        pytest.skip(f"no {fm.HEADER} (the tests need the source tree's headers)")
    if fm.compiler() is None:
        pytest.skip("no C compiler: $CC / cc is not on PATH")
    return tmp_path_factory.mktemp("fastmath")


@pytest.fixture(scope="session")
def lib(build_dir):
    """The header as the extension builds it: three copies, dispatched."""
    return fm.build(build_dir, "dispatched")


@pytest.fixture(scope="session")
def variant(build_dir):
    """variant(name): the single-copy build `name` (each built once), or a skip."""
    built = {}

    def get(name):
        reason = fm.variant_unavailable(name)
        if reason:
            pytest.skip(reason)
        if name not in built:
            built[name] = fm.build(build_dir, "variant_" + name, fm.VARIANTS[name][0])
        return built[name]

    return get


# ---------------------------------------------------------------- ulps


def ordinal(a):
    """Map doubles to int64 so that consecutive doubles differ by 1."""
    i = np.ascontiguousarray(a, dtype=np.float64).view(np.int64)
    return np.where(i < 0, np.int64(np.iinfo(np.int64).min) - i, i)


def ulp_distance(got, ref):
    """Per-element distance in ulps; inf where a non-finite value is not matched."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    dist = np.full(ref.shape, np.inf)
    finite = np.isfinite(ref) & np.isfinite(got)
    og, orf = ordinal(got[finite]), ordinal(ref[finite])
    same_side = (og >= 0) == (orf >= 0)
    # exact in int64 on the same side of zero; across zero (which could
    # overflow int64) the sum of the two distances from zero, in float
    d_same = np.abs(og - np.where(same_side, orf, og)).astype(np.float64)
    d_across = np.abs(og).astype(np.float64) + np.abs(orf).astype(np.float64)
    dist[finite] = np.where(same_side, d_same, d_across)
    nonfin = ~np.isfinite(ref)
    exact = (np.isnan(ref) & np.isnan(got)) | (ref == got)
    dist[nonfin] = np.where(exact[nonfin], 0.0, np.inf)
    return dist


def fmt_ulps(d):
    return f"{d:.0f} ulp" if np.isfinite(d) else "non-finite mismatch"


def assert_within_ulps(f, x, got, ref, against, limit=MAX_ULP):
    """got = f(x) within `limit` ulps of ref, with the worst inputs in the message."""
    x, got, ref = (np.asarray(a, dtype=np.float64).reshape(-1) for a in (x, got, ref))
    dist = ulp_distance(got, ref)
    bad = np.flatnonzero(dist > limit)
    if bad.size:
        worst = bad[np.argsort(-dist[bad], kind="stable")[:5]]
        lines = "\n".join(f"  {f}({float(x[k])!r}) = {float(got[k])!r}, {against} {float(ref[k])!r}: "
                          f"{fmt_ulps(dist[k])}"
                          for k in worst)
        pytest.fail(f"{f}: {bad.size} of {x.size} values more than {limit} ulp from {against}; "
                    f"worst (max {fmt_ulps(dist[worst[0]])}):\n{lines}", pytrace=False)


def same_bits(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and np.array_equal(a.view(np.int64), b.view(np.int64))


def value_mismatch(a, b):
    """Where a and b differ in bits, a NaN matching any NaN (its sign and
    payload depend on which operand the hardware propagates)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.where(np.isnan(a) | np.isnan(b), np.isnan(a) != np.isnan(b),
                    a.view(np.int64) != b.view(np.int64))


def same_values(a, b):
    """The same bits (so -0.0 is not 0.0), except that NaN matches any NaN."""
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and not value_mismatch(a, b).any()


def first_difference(got, want):
    """'k of n differ, first at [i, j]: got ..., want ... (u ulp)'."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return f"shape {got.shape}, want {want.shape}"
    diff = value_mismatch(got, want)
    if not diff.any():  # only NaN payloads differ
        diff = got.view(np.int64) != want.view(np.int64)
    if not diff.any():
        return "no difference"
    idx = tuple(int(i) for i in np.argwhere(diff)[0])
    g, w = float(got[idx]), float(want[idx])
    return (f"{int(diff.sum())} of {diff.size} differ, first at {list(idx)}: got {g!r}, "
            f"want {w!r} ({fmt_ulps(ulp_distance(g, w))})")


# ---------------------------------------------------------------- inputs


def input_ranges(rng, n):
    """{name: inputs}: random values in many ranges, the edges, the specials.
    (Names usable in pytest -k: letters, digits, '-', '.'.)"""
    u = rng.uniform

    def sign(k):
        return rng.choice([-1.0, 1.0], size=k)

    ranges = {
        "uniform-1..1": u(-1, 1, n),
        "uniform-0.7..0.7": u(-0.7, 0.7, n),
        "uniform-25..25": u(-25, 25, n),
        "uniform-800..800": u(-800, 800, n),
        "pm700..750": sign(n) * u(700, 750, n),
        "exp-subnormal-745.2..-708.3": u(-745.2, -708.3, n),
        "exp-overflow-709..710": u(709.0, 710.0, n),
        "tiny-1e-300..1e-5": sign(n) * 10.0 ** u(-300, -5, n),
        "subnormal-inputs": sign(n) * rng.integers(1, 2**52, n).astype(np.uint64).view(np.float64),
        "huge-1e5..1e308": sign(n) * 10.0 ** u(5, 308, n),
        "log-uniform-1e-323..1e308": sign(n) * 10.0 ** u(-323, 308, n),
    }

    def around(v, k=64):
        v = np.float64(v)
        below = np.nextafter(v, -np.inf) - np.spacing(np.nextafter(v, -np.inf)) * np.arange(k)
        return np.concatenate([below, v + np.spacing(v) * np.arange(k + 1)])

    # the branch points (tanh's 0.625 and 22, sigmoid's 36), exp's overflow
    # and underflow limits and the subnormal boundary, the reduction's ln2/2
    edges = [0.625, 22.0, 709.782712893384, -745.1332191019411, -708.3964185322641,
             -744.4400719213812, 36.0, 0.34657359027997264, 1.0, 0.5, 2.0, 19.0]
    ranges["edges"] = np.concatenate([around(e) for e in edges] + [-around(e) for e in edges])
    ranges["specials"] = np.array(
        [0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, TINY, -TINY, 5e-324, -5e-324, FMAX, -FMAX,
         1e308, -1e308, 710.0, -746.0, 709.78, -745.13, 745.13, -709.78, 1e-310])
    return ranges


RANGE_NAMES = list(input_ranges(np.random.default_rng(0), 1))


@pytest.fixture(scope="module")
def ranges():
    return input_ranges(np.random.default_rng(20240601), N_RANDOM)


def np_tanh(x):
    return np.tanh(x)


def np_exp(x):
    with np.errstate(all="ignore"):
        return np.exp(x)


NUMPY = {"exp": np_exp, "sigmoid": np_sigmoid, "tanh": np_tanh}


# ---------------------------------------------------------------- elementwise


@pytest.mark.parametrize("range_name", RANGE_NAMES)
@pytest.mark.parametrize("f", FUNCS)
def test_within_4_ulp_of_numpy(lib, ranges, f, range_name):
    x = ranges[range_name]
    assert_within_ulps(f, x, call_elementwise(lib, f, x), NUMPY[f](x), "numpy")


# (x, f(x) exactly): limits, overflow to inf, underflow to +0, NaN, signed zeros
SPECIAL_VALUES = {
    "exp": [(0.0, 1.0), (-0.0, 1.0), (np.inf, np.inf), (-np.inf, 0.0), (np.nan, np.nan),
            (-np.nan, np.nan), (709.79, np.inf), (710.0, np.inf), (745.13, np.inf),
            (1e308, np.inf), (FMAX, np.inf), (-746.0, 0.0), (-800.0, 0.0), (-1e308, 0.0),
            (-FMAX, 0.0), (5e-324, 1.0), (-5e-324, 1.0), (TINY, 1.0), (-TINY, 1.0),
            (1e-17, 1.0), (-1e-17, 1.0)],
    "sigmoid": [(0.0, 0.5), (-0.0, 0.5), (np.inf, 1.0), (-np.inf, 0.0), (np.nan, np.nan),
                (-np.nan, np.nan), (40.0, 1.0), (800.0, 1.0), (1e308, 1.0), (FMAX, 1.0),
                (-746.0, 0.0), (-800.0, 0.0), (-1e308, 0.0), (-FMAX, 0.0), (5e-324, 0.5),
                (-5e-324, 0.5), (1e-17, 0.5), (-1e-17, 0.5)],
    "tanh": [(0.0, 0.0), (-0.0, -0.0), (np.inf, 1.0), (-np.inf, -1.0), (np.nan, np.nan),
             (-np.nan, np.nan), (20.0, 1.0), (22.0, 1.0), (22.5, 1.0), (800.0, 1.0),
             (1e308, 1.0), (FMAX, 1.0), (-20.0, -1.0), (-22.5, -1.0), (-1e308, -1.0),
             (-FMAX, -1.0), (5e-324, 5e-324), (-5e-324, -5e-324), (1e-310, 1e-310),
             (-1e-310, -1e-310), (TINY, TINY), (-TINY, -TINY), (1e-200, 1e-200),
             (1e-10, 1e-10), (-1e-10, -1e-10)],
}


@pytest.mark.parametrize("f", FUNCS)
def test_special_values_exact(lib, f):
    x, want = (np.array(c) for c in zip(*SPECIAL_VALUES[f]))
    for inplace in (False, True):
        got = call_elementwise(lib, f, x, inplace=inplace)
        ok = np.where(np.isnan(want), np.isnan(got), got.view(np.int64) == want.view(np.int64))
        assert ok.all(), f"{f}{' in place' if inplace else ''}: " + "; ".join(
            f"{f}({float(x[k])!r}) = {float(got[k])!r}, want exactly {float(want[k])!r}"
            for k in np.flatnonzero(~ok))


@pytest.mark.parametrize("f", FUNCS)
def test_within_4_ulp_of_correctly_rounded(lib, ranges, f):
    mp = pytest.importorskip("mpmath", reason="mpmath is not installed")
    mp.mp.prec = 200
    rng = np.random.default_rng(99)

    def to_double(v):
        # correctly rounded to the nearest double, subnormals included
        if not mp.isfinite(v):
            return float(v)
        if v == 0:
            return 0.0
        if abs(v) < mp.ldexp(1, -1022):
            return float(mp.nint(v * mp.ldexp(1, 1074))) * 5e-324
        return float(v)

    truth = {"exp": mp.exp, "sigmoid": lambda x: 1 / (1 + mp.exp(-x)), "tanh": mp.tanh}[f]
    samples = [x if x.size <= N_MPMATH else rng.choice(x, N_MPMATH, replace=False)
               for x in ranges.values()]
    xs = np.concatenate(samples)
    xs = xs[np.isfinite(xs)]
    exact = np.array([to_double(truth(mp.mpf(float(v)))) for v in xs])
    assert_within_ulps(f, xs, call_elementwise(lib, f, xs), exact, "correctly rounded")


@pytest.mark.parametrize("f", FUNCS)
def test_every_length_and_alignment(lib, f):
    """Lengths 0..40 from offsets 0, 1, 3 (vector body and remainder paths):
    accurate, and nothing written past the end."""
    base = np.random.default_rng(5).uniform(-30, 30, 64)
    for off in (0, 1, 3):
        for m in range(41):
            x = np.ascontiguousarray(base[off:off + m])
            buf = np.full(m + 2, 7.0)
            out = buf[1:]  # an 8-byte-aligned but not 16-byte-aligned output too
            getattr(lib, "w_" + f)(ptr(x), ptr(out), m)
            assert buf[0] == 7.0 and out[m] == 7.0, \
                f"{f}: length {m} at offset {off} wrote outside y[0:{m}]"
            assert_within_ulps(f, x, out[:m], NUMPY[f](x), f"numpy (length {m}, offset {off})")


@pytest.mark.parametrize("f", FUNCS)
def test_bits_independent_of_position(lib, f):
    """An element's bits depend on its value only: not on the array length,
    its index, or the elements around it."""
    x = np.random.default_rng(6).uniform(-40, 40, 1000)
    full = call_elementwise(lib, f, x)
    single = np.concatenate([call_elementwise(lib, f, x[i:i + 1]) for i in range(x.size)])
    rev = call_elementwise(lib, f, x[::-1])[::-1]
    assert same_bits(full, single), f"{f}: one element at a time vs the whole array: " \
        + first_difference(single, full)
    assert same_bits(full, rev), f"{f}: reversed array: " + first_difference(rev, full)


@pytest.mark.parametrize("f", FUNCS)
def test_in_place_same_bits_as_out_of_place(lib, ranges, f):
    x = np.concatenate(list(ranges.values()))
    got = call_elementwise(lib, f, x, inplace=True)
    want = call_elementwise(lib, f, x)
    assert same_bits(got, want), f"{f}: in place (x is y) vs out of place: " \
        + first_difference(got, want)


# ---------------------------------------------------------------- epilogues


def np_act(name, z):
    with np.errstate(all="ignore"):
        return {"identity": lambda: z.copy(), "sigmoid": lambda: np_sigmoid(z),
                "tanh": lambda: np.tanh(z), "relu": lambda: np.maximum(z, 0),
                "leaky_relu": lambda: np.where(z < 0, 0.01 * z, z),
                "elu": lambda: np.where(z > 0, z, np.expm1(z)),
                "softplus": lambda: np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z))),
                "silu": lambda: z * np_sigmoid(z)}[name]()


def np_dact(name, y, z=None):
    """g' from the output y (silu: from the pre-activation z)."""
    with np.errstate(all="ignore"):
        if name == "silu":
            s = np_sigmoid(z)
            return s * (1 + z * (1 - s))
        return {"identity": lambda: np.ones_like(y), "sigmoid": lambda: y * (1 - y),
                "tanh": lambda: 1 - y * y, "relu": lambda: (y > 0).astype(np.float64),
                "leaky_relu": lambda: np.where(y > 0, 1.0, 0.01),
                "elu": lambda: np.where(y > 0, 1.0, y + 1),
                "softplus": lambda: -np.expm1(-y)}[name]()


def row_order_sum(a):
    """Column sums added in row order from +0.0: the header's fixed order."""
    acc = np.zeros(a.shape[1])
    for row in a:
        acc = acc + row
    return acc


def forward_case(act, n, d):
    """Z (with NaN/inf/huge values mixed in), b, and NumPy's g(Z + b)."""
    rng = np.random.default_rng([ACTS[act], n, d])
    Z = rng.standard_normal((n, d)) * 4
    b = rng.standard_normal(d)
    if n * d >= 4:
        k = min(n * d, 4)
        Z.reshape(-1)[rng.choice(n * d, k, replace=False)] = \
            rng.choice([np.nan, np.inf, -np.inf, 1e308, -1e308, 800.0, -800.0], k)
    with np.errstate(all="ignore"):
        return Z, b, np_act(act, Z + b)


def backward_case(act, n, d):
    """dY (with inf and NaN mixed in), the forward output Y, the
    pre-activation Z (silu; None otherwise), dZ = dY * g'(Y) (silu: g'(Z))."""
    Zf, b, ref = forward_case(act, n, d)
    Y = ref if act == "relu" else np.where(np.isfinite(ref), ref, 0.5)
    Z = np.where(np.isfinite(Zf + b), Zf + b, -0.5) if act == "silu" else None
    rng = np.random.default_rng([10 + ACTS[act], n, d])
    dY = rng.standard_normal((n, d))
    if n * d >= 3:
        dY.reshape(-1)[rng.choice(n * d, 2, replace=False)] = [np.inf, np.nan]
    with np.errstate(invalid="ignore"):
        return dY, Y, Z, dY * np_dact(act, Y, Z)


def run_forward(lib, act, Z, b, keep=None):
    """g(Z + b); keep: a buffer for the kept pre-activation (or None)."""
    Y = Z.copy()
    lib.w_forward(ptr(Y), ptr(keep), ptr(b), Y.shape[0], Y.shape[1], ACTS[act])
    return Y


def run_backward(lib, act, dY, Y, Z=None):
    n, d = dY.shape
    dZ, db = np.full((n, d), -1.0), np.full(d, 123.0)
    lib.w_backward(ptr(dY), ptr(Y), ptr(Z), ptr(dZ), ptr(db), n, d, ACTS[act])
    return dZ, db


@pytest.mark.parametrize("act", ACTS)
def test_forward_epilogue_matches_numpy(lib, act):
    """g(Z + b) in place: identity and relu bit for bit, sigmoid and tanh
    within rtol 1e-13; NaN and inf where NumPy has them."""
    for n, d in SHAPES:
        Z, b, ref = forward_case(act, n, d)
        Y = run_forward(lib, act, Z, b)
        if act in EXACT_ACTS:
            assert same_values(Y, ref), f"forward {act} {n}x{d}: " + first_difference(Y, ref)
        else:
            assert Y.shape == ref.shape and np.allclose(Y, ref, rtol=RTOL, atol=0, equal_nan=True), \
                f"forward {act} {n}x{d}: beyond rtol {RTOL}: " + first_difference(Y, ref)


@pytest.mark.parametrize("range_name", RANGE_NAMES)
@pytest.mark.parametrize("act", ["leaky_relu", "elu", "softplus", "silu"])
def test_new_activations_within_4_ulp_of_numpy(lib, ranges, act, range_name):
    """leaky relu, elu (its expm1 near 0 too: the tiny range), softplus and
    silu, elementwise (the epilogue with b = 0) against NumPy over every range."""
    for x, what in ((ranges[range_name], "numpy"), (-ranges[range_name], "numpy (negated inputs)")):
        got = run_forward(lib, act, x.reshape(1, -1), np.zeros(x.size)).reshape(-1)
        ref = np_act(act, x)
        if act == "silu":  # below -708 sigmoid(z) is subnormal, its digits lost (NumPy's too)
            lost = x < -708
            with np.errstate(invalid="ignore"):  # silu(-inf) is NaN, as in NumPy
                ok = (np.abs(got[lost] - ref[lost]) <= 1e-300) | (np.isnan(got[lost]) & np.isnan(ref[lost]))
            assert ok.all(), f"silu far below 0 vs {what}"
            x, got, ref = x[~lost], got[~lost], ref[~lost]
        assert_within_ulps(act, x, got, ref, what)


@pytest.mark.parametrize("range_name", RANGE_NAMES)
@pytest.mark.parametrize("act", ["leaky_relu", "elu", "softplus"])
def test_new_derivatives_within_4_ulp_of_numpy(lib, ranges, act, range_name):
    """g' from y (softplus' = -expm1(-y), accurate for tiny y) against NumPy's."""
    y = np.abs(ranges[range_name]) if act == "softplus" else ranges[range_name]
    y = y[np.isfinite(y)].reshape(1, -1)
    dY = np.ones_like(y)
    dZ, _ = run_backward(lib, act, dY, y)
    assert_within_ulps(act + "'", y, dZ, np_dact(act, y), "numpy")


def test_silu_derivative_from_z_within_4_ulp(lib, ranges):
    """silu' = s (1 + z (1 - s)) from z, away from its root near z = -1.278
    (where any rounding of s is amplified) and above -708 (where s is
    subnormal), against NumPy's."""
    z = np.concatenate([ranges[r] for r in RANGE_NAMES])
    z = z[np.isfinite(z) & (np.abs(z + 1.2785) > 0.05) & (z > -708)].reshape(1, -1)
    dZ, _ = run_backward(lib, "silu", np.ones_like(z), z * 0.0, z)
    assert_within_ulps("silu'", z, dZ, np_dact("silu", None, z), "numpy", limit=64)


@pytest.mark.parametrize("act", ACTS)
def test_forward_epilogue_keeps_z(lib, act):
    """With a Z buffer: Z = Z_in + b exactly, and Y the same bits as without."""
    for n, d in SHAPES:
        Z, b, _ = forward_case(act, n, d)
        keep = np.full((n, d), -7.0)
        Y = run_forward(lib, act, Z, b, keep)
        assert same_values(keep, Z + b), f"kept Z {act} {n}x{d}: " + first_difference(keep, Z + b)
        Y0 = run_forward(lib, act, Z, b)
        assert same_bits(Y, Y0), f"forward {act} {n}x{d} with Z kept vs without: " \
            + first_difference(Y, Y0)


@pytest.mark.parametrize("act", ["sigmoid", "tanh"])
def test_forward_epilogue_same_bits_as_elementwise(lib, act):
    """Narrow rows (blocked) and wide rows alike: fb_<act>_array(Z + b)'s bits."""
    for n, d in SHAPES:
        Z, b, _ = forward_case(act, n, d)
        Y = run_forward(lib, act, Z, b)
        want = call_elementwise(lib, act, Z + b).reshape(n, d)
        assert same_bits(Y, want), f"forward {act} {n}x{d} vs fb_{act}_array(Z + b): " \
            + first_difference(Y, want)


# derivatives through exp (softplus' = -expm1(-y), silu' from sigmoid(z)):
# within rounding of NumPy's, not its bits
ROUNDED_DERIVATIVES = ("softplus", "silu")


def derivative_bound(act, dY, Y, Z):
    """|dY| times the sum of the magnitudes of g''s terms: the scale of the
    rounding of dY * g' (silu's g' = s + z s (1 - s) cancels near z = -1.28)."""
    with np.errstate(all="ignore"):
        if act == "silu":
            s = np_sigmoid(Z)
            return np.abs(dY) * (s + np.abs(Z) * s * (1 - s))
        return np.abs(dY * np_dact(act, Y))


@pytest.mark.parametrize("act", ACTS)
def test_backward_epilogue_dz_is_dy_times_derivative(lib, act):
    """dZ = dY * g'(Y) with g' from the output (silu: g'(Z)), bit for bit --
    within RTOL of NumPy's where g' goes through exp -- NaN and inf in dY
    included."""
    for n, d in SHAPES:
        dY, Y, Z, dZ_ref = backward_case(act, n, d)
        dZ, _ = run_backward(lib, act, dY, Y, Z)
        if act in ROUNDED_DERIVATIVES:
            fin = np.isfinite(dZ_ref)
            assert same_values(dZ[~fin], dZ_ref[~fin]), f"backward {act} {n}x{d}: non-finite dZ"
            bound = derivative_bound(act, dY, Y, Z)[fin]
            assert np.all(np.abs(dZ[fin] - dZ_ref[fin]) <= RTOL * bound), \
                f"backward {act} {n}x{d}: dZ vs dY * g': " + first_difference(dZ[fin], dZ_ref[fin])
        else:
            assert same_values(dZ, dZ_ref), f"backward {act} {n}x{d}: dZ vs dY * g'(Y): " \
                + first_difference(dZ, dZ_ref)


@pytest.mark.parametrize("act", ACTS)
def test_backward_epilogue_bias_gradient_row_order(lib, act):
    """db is overwritten with dZ's column sums added in row order from +0.0,
    bit for bit, and agrees with NumPy's (pairwise) dZ.sum(axis=0)."""
    for n, d in SHAPES:
        dY, Y, Z, dZ_ref = backward_case(act, n, d)
        dZ, db = run_backward(lib, act, dY, Y, Z)
        want = row_order_sum(dZ)
        assert same_values(db, want), f"backward {act} {n}x{d}: db vs the row-order sum: " \
            + first_difference(db, want)
        with np.errstate(invalid="ignore"):
            npsum, scale = dZ_ref.sum(axis=0), np.abs(dZ_ref).sum(axis=0)
        if act in ROUNDED_DERIVATIVES:
            scale = derivative_bound(act, dY, Y, Z).sum(axis=0)
        fin = np.isfinite(npsum)
        assert np.all(np.abs(db[fin] - npsum[fin]) <= 2 * RTOL * scale[fin]), \
            f"backward {act} {n}x{d}: db vs dZ.sum(axis=0): " + first_difference(db[fin], npsum[fin])


@pytest.mark.parametrize("act", ACTS)
def test_backward_epilogue_in_place(lib, act):
    """dZ may be dY: the same dZ and db bits as out of place."""
    for n, d in SHAPES:
        dY, Y, Z, _ = backward_case(act, n, d)
        dZ_ref, db_ref = run_backward(lib, act, dY, Y, Z)
        buf, db = dY.copy(), np.empty(d)
        lib.w_backward(ptr(buf), ptr(Y), ptr(Z), ptr(buf), ptr(db), n, d, ACTS[act])
        assert same_values(buf, dZ_ref), f"backward {act} {n}x{d} in place: dZ: " \
            + first_difference(buf, dZ_ref)
        assert same_values(db, db_ref), f"backward {act} {n}x{d} in place: db: " \
            + first_difference(db, db_ref)


def test_backward_identity_without_dz(lib):
    """dZ = NULL (identity): db alone, the row-order column sums of dY."""
    for n, d in SHAPES:
        dY, Y, _, _ = backward_case("identity", n, d)
        db = np.full(d, 123.0)
        lib.w_backward(ptr(dY), ptr(Y), None, None, ptr(db), n, d, ACTS["identity"])
        assert same_values(db, row_order_sum(dY)), f"backward identity {n}x{d}, dZ NULL: " \
            + first_difference(db, row_order_sum(dY))


def test_relu_propagates_nan_and_inf(lib):
    """relu(NaN) is NaN as in np.maximum; relu'(NaN) is 0, but dY * 0 keeps
    dY's NaN and turns its inf into NaN, as dY * (Y > 0) does."""
    Z = np.array([[np.nan, -1.0, 0.0, -0.0, 2.0, -np.inf, np.inf]])
    Y = run_forward(lib, "relu", Z, np.zeros(7))
    want = np.maximum(Z, 0)
    assert same_values(Y, want), f"relu forward: {Y} vs np.maximum: {want}"
    dY = np.array([[1.0, np.inf, np.nan, 2.0, 3.0, 1.0, 1.0]])
    dZ, db = run_backward(lib, "relu", dY, Y)
    with np.errstate(invalid="ignore"):
        want = dY * (Y > 0)
    assert same_values(dZ, want), f"relu backward: {dZ} vs dY * (Y > 0): {want}"
    assert same_values(db, want[0]), f"relu backward db: {db} vs {want[0]}"


def squared_error_cases(m, draws=32):
    """(draw, Y, T, grad_scale, loss_scale): errors Y - T of unit size and over
    12 orders of magnitude, several draws (so that a sum in another order
    cannot give the same bits by chance in all of them), each with the scales
    of a plain sum, of 2 * half a sum, and of a mean."""
    for k in range(draws):
        rng = np.random.default_rng([77, m, k])
        T = rng.standard_normal(m)
        spread = 10.0 ** rng.uniform(-6, 6, m) if k % 4 == 3 else 1.0
        Y = T + rng.standard_normal(m) * spread
        for gs, ls in [(1.0, 0.5), (2.0, 1.0), (1.0 / max(m, 1), 0.5 / max(m, 1))]:
            yield k, Y, T, gs, ls


def fixed_order_loss(Y, T, loss_scale):
    """Element i into accumulator i mod 8, in increasing i (np.cumsum adds in
    order); then ((a0+a1)+(a2+a3)) + ((a4+a5)+(a6+a7))."""
    m = Y.size
    pad = np.zeros((m + 7) // 8 * 8 + 8)  # at least one block (of +0.0) for m = 0
    pad[:m] = (T - Y) ** 2
    acc = np.cumsum(pad.reshape(-1, 8), axis=0)[-1]
    return loss_scale * (((acc[0] + acc[1]) + (acc[2] + acc[3]))
                         + ((acc[4] + acc[5]) + (acc[6] + acc[7])))


@pytest.mark.parametrize("m", SQ_LENGTHS)
def test_squared_error_loss_fixed_summation_order(lib, m):
    """The loss is the fixed-order sum, bit for bit (with and without dY),
    and within rtol 1e-13 of NumPy's sum."""
    for k, Y, T, gs, ls in squared_error_cases(m):
        want = float(fixed_order_loss(Y, T, ls))
        loss = lib.w_squared_error(ptr(Y), ptr(T), ptr(np.empty(m)), m, gs, ls)
        loss_only = lib.w_squared_error(ptr(Y), ptr(T), None, m, gs, ls)
        for what, got in (("with dY", loss), ("dY NULL", loss_only)):
            assert same_bits(got, want), (
                f"squared_error m={m} draw {k} scales ({gs}, {ls}), {what}: loss {got!r} is not the "
                f"fixed-order sum {want!r} ({fmt_ulps(ulp_distance(got, want))})")
        npsum = ls * np.sum((T - Y) ** 2)
        assert np.isclose(loss, npsum, rtol=RTOL, atol=0), \
            f"squared_error m={m} draw {k}: loss {loss!r} vs numpy {npsum!r}"


@pytest.mark.parametrize("m", SQ_LENGTHS)
def test_squared_error_gradient(lib, m):
    """dY = grad_scale * (Y - T) bit for bit, also in place (dY is Y), where
    the loss is unchanged."""
    for k, Y, T, gs, ls in squared_error_cases(m, draws=2):
        want = gs * (Y - T)
        dY = np.full(m, np.nan)
        loss = lib.w_squared_error(ptr(Y), ptr(T), ptr(dY), m, gs, ls)
        assert same_bits(dY, want), f"squared_error m={m} draw {k} grad_scale {gs}: dY: " \
            + first_difference(dY, want)
        Yc = Y.copy()
        loss_in_place = lib.w_squared_error(ptr(Yc), ptr(T), ptr(Yc), m, gs, ls)
        assert same_bits(Yc, want), f"squared_error m={m} draw {k} in place: dY: " \
            + first_difference(Yc, want)
        assert same_bits(loss_in_place, loss), \
            f"squared_error m={m} draw {k} in place: loss {loss_in_place!r} vs {loss!r}"


def test_squared_error_nan_gives_nan(lib):
    loss = lib.w_squared_error(ptr(np.array([1.0, np.nan])), ptr(np.zeros(2)), None, 2, 1.0, 1.0)
    assert np.isnan(loss), f"squared_error with a NaN in Y: loss {loss!r}, want NaN"


# ---------------------------------------------------------------- variants


def battery(lib, seed=7):
    """Every function's outputs on fixed inputs, for bitwise comparison:
    (activations, exact).  The activations use fma in the AVX2 / AVX-512
    copies and may differ from the SSE2 copy by an ulp or two; the exact part
    (identity/relu forward, every backward, the squared error) uses no fma
    and must be the same bits on every copy."""
    rng = np.random.default_rng(seed)
    act, exact = {}, {}
    for rname, x in input_ranges(rng, N_VARIANT).items():
        for f in FUNCS:
            act[f"{f} on {rname}"] = (x, call_elementwise(lib, f, x))
    for n, d in SHAPES:
        for name, code in ACTS.items():
            Z = rng.standard_normal((n, d)) * 4
            b = rng.standard_normal(d)
            Y = run_forward(lib, name, Z, b)
            (act if name in FMA_ACTS else exact)[f"forward {name} {n}x{d}"] = (Z + b, Y)
            Yin = np.clip(rng.standard_normal((n, d)), -0.99, 0.99)
            dY = rng.standard_normal((n, d))
            dZ, db = run_backward(lib, name, dY, np.abs(Yin) if name == "softplus" else Yin,
                                  Yin * 4 if name == "silu" else None)
            exact[f"backward {name} {n}x{d} dZ"] = (dY, dZ)
            exact[f"backward {name} {n}x{d} db"] = (None, db)
    for m in (0, 7, 1001, 65536 + 3):
        Yv, Tv = rng.standard_normal(m) * 3, rng.standard_normal(m)
        dYv = np.empty(m)
        loss = lib.w_squared_error(ptr(Yv), ptr(Tv), ptr(dYv), m, 2.0, 1.0)
        exact[f"squared_error m={m} loss"] = (None, np.array([loss]))
        exact[f"squared_error m={m} dY"] = (None, dYv)
    return act, exact


@pytest.fixture(scope="session")
def battery_of():
    done = {}

    def get(name, lib):
        if name not in done:
            done[name] = battery(lib)
        return done[name]

    return get


def assert_same_battery(part, name_a, a, name_b, b):
    """Every output of the battery part the same bits in builds a and b."""
    diffs = []
    for key, (x, got) in a.items():
        want = b[key][1]
        if not same_bits(got, want):
            msg = f"  {key}: " + first_difference(got, want)
            if x is not None and got.shape == want.shape:
                k = np.flatnonzero(got.reshape(-1).view(np.int64) != want.reshape(-1).view(np.int64))[0]
                msg += f" (input {float(x.reshape(-1)[k])!r})"
            diffs.append(msg)
    assert not diffs, (f"{part}: {name_a} and {name_b} differ in {len(diffs)} of {len(a)} outputs:\n"
                       + "\n".join(diffs[:10]))


@pytest.mark.parametrize("f", FUNCS)
@pytest.mark.parametrize("name", list(fm.VARIANTS))
def test_variant_within_4_ulp_of_numpy(variant, name, f):
    lib = variant(name)
    for rname, x in input_ranges(np.random.default_rng(3), N_VARIANT).items():
        assert_within_ulps(f, x, call_elementwise(lib, f, x), NUMPY[f](x),
                           f"numpy ({name} build, {rname})")


@pytest.mark.parametrize("name", list(fm.VARIANTS))
def test_variant_derivatives_and_reductions_same_bits(lib, variant, battery_of, name):
    """identity/relu forward, backward dZ and db, squared error loss and dY:
    the same bits in each single-copy build as in the dispatched one."""
    v = variant(name)
    assert_same_battery("derivatives and reductions", name, battery_of(name, v)[1],
                        "the dispatched build", battery_of("dispatched", lib)[1])


def test_avx2_and_avx512_activations_same_bits(variant, battery_of):
    """Both use fma at the same places: exp, sigmoid, tanh and the forward
    epilogues give the same bits (only SSE2, without fma, may differ)."""
    avx512 = variant("avx512f")
    avx2 = variant("avx2")
    assert_same_battery("activations", "avx2", battery_of("avx2", avx2)[0],
                        "avx512f", battery_of("avx512f", avx512)[0])


def test_dispatched_copy_same_bits_as_its_variant(lib, variant, battery_of):
    """The dispatcher runs the copy it says (fb_simd_level), and that copy gives
    the same bits as the single-copy build for its instruction set."""
    level = lib.w_simd_level()
    name = fm.LEVEL_VARIANT[level]
    v = variant(name)
    mine, theirs = battery_of("dispatched", lib), battery_of(name, v)
    for part, i in (("activations", 0), ("derivatives and reductions", 1)):
        assert_same_battery(part, f"the dispatched build ({lib.w_isa().decode()})", mine[i],
                            f"the {name} build", theirs[i])
