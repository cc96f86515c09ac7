"""fastbp._kernels: Hypothesis fuzzing of every public kernel at the API boundary.

Each argument is drawn either valid or broken (wrong dtype, shape, strides,
alignment, None, a list, 0-d/3-d, read-only or aliasing out buffers) and
filled with normal, huge (~1e150) or non-finite values.  An independent
rule (``problems``) says from the arguments alone whether the call is
valid.  Allowed outcomes: a valid call returns the reference's result into
the given buffers; an invalid one raises the README's TypeError/ValueError
with a message that names an offending argument.  A crash, a hang or any
other outcome fails.
"""

import faulthandler
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastbp
from fastbp import reference as ref

# name -> (inputs as (name, dims)), (outputs as (name, dims)), keyword choice
SPECS = {
    "matmul_abt": ((("A", "nk"), ("B", "dk")), (("out", "nd"),), None),
    "matmul_abt_backward": ((("dC", "nd"), ("A", "nk"), ("B", "dk")),
                            (("dA", "nk"), ("dB", "dk")), None),
    "dense_forward": ((("X", "nk"), ("W", "dk"), ("b", "d")), (("out", "nd"),), "activation"),
    "dense_backward": ((("dY", "nd"), ("X", "nk"), ("W", "dk"), ("Y", "nd")),
                       (("dX", "nk"), ("dW", "dk"), ("db", "d")), "activation"),
    "squared_error": ((("Y", "nd"), ("T", "nd")), (("out", "nd"),), "reduction"),
}
NAMES = {"activation": fastbp.ACTIVATIONS, "reduction": fastbp.REDUCTIONS}
BAD_NAMES = ["softmax", "RELU", "", None, 3, b"relu", ["sum"]]

# Variants of an array argument that keep a call valid, and broken ones.
INPUT_OK = ["ok", "ok", "readonly", "same_as_other"]
INPUT_BAD = ["float32", "int64", "complex", "bool", "object", "bigendian", "list", "none",
             "scalar", "0d", "3d", "flat", "wrongshape", "fortran", "strided", "reversed",
             "misaligned", "transposed"]
OUT_OK = ["none", "none", "ok", "adjacent_input"]
OUT_BAD = ["readonly", "float32", "list", "0d", "3d", "wrongshape", "fortran", "strided",
           "misaligned", "alias_input", "alias_out"]
SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e150, -1e150]
SENTINEL = 12345.678  # pre-fills out buffers: every element must be overwritten

COUNT = {"valid": 0, "refused": 0}


@pytest.fixture(autouse=True, scope="module")
def report_count(request):
    yield
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    cm = request.config.pluginmanager.get_plugin("capturemanager")
    if tr is not None and cm is not None:
        with cm.global_and_fixture_disabled():
            tr.write_line(f"\n[test__kernels_fuzz] fuzz cases tried: {sum(COUNT.values())} "
                          f"({COUNT['valid']} valid calls checked against the reference, "
                          f"{COUNT['refused']} refused with the documented error)")


@pytest.fixture(autouse=True)
def no_hang():
    # a kernel stuck in C would ignore Python signals: dump and exit instead
    faulthandler.dump_traceback_later(600, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


# --- building arguments -------------------------------------------------------

def values(data, shape):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    a = rng.standard_normal(shape)
    kind = data.draw(st.sampled_from(["normal", "normal", "huge", "special"]), label="values")
    if kind == "huge":
        a *= 1e150
    elif kind == "special" and a.size:
        for _ in range(data.draw(st.integers(1, 3))):
            a.flat[rng.integers(a.size)] = SPECIAL[rng.integers(len(SPECIAL))]
    return a


def misaligned(a):
    raw = np.zeros(a.nbytes + 8, np.uint8)[1:1 + a.nbytes]
    m = raw.view(np.float64).reshape(a.shape)
    m[...] = a
    return m


def broken(kind, a, shape):
    """``a`` (C-contiguous float64 of ``shape``) turned into variant ``kind``."""
    if kind == "readonly":
        a.flags.writeable = False
        return a
    dtypes = {"float32": np.float32, "int64": np.int64, "complex": np.complex128,
              "bool": np.bool_, "object": object, "bigendian": ">f8"}
    if kind in dtypes:
        with np.errstate(invalid="ignore", over="ignore"):
            return np.nan_to_num(a).astype(dtypes[kind])
    if kind == "list":
        return a.tolist()
    if kind == "none":
        return None
    if kind == "scalar":
        return 1.5
    if kind == "0d":
        return np.array(1.5)
    if kind == "3d":
        return a.reshape((1,) + shape)
    if kind == "flat":  # 2-D -> 1-D, 1-D -> 2-D
        return a.reshape(-1) if len(shape) == 2 else a.reshape(1, -1)
    if kind == "wrongshape":
        return np.ones(tuple(s + 1 for s in shape))
    if kind == "fortran":
        return np.asfortranarray(a)
    if kind == "strided":
        wide = np.zeros(shape[:-1] + (2 * shape[-1],))
        wide[..., ::2] = a
        return wide[..., ::2]
    if kind == "reversed":
        return a[::-1]
    if kind == "misaligned":
        return misaligned(a)
    if kind == "transposed":
        return np.ascontiguousarray(a.T).T
    raise AssertionError(kind)


def draw_call(data, fname):
    ins, outs, word = SPECS[fname]
    dims = {c: data.draw(st.integers(0, 6), label=c) for c in "nkd"}
    shape = lambda s: tuple(dims[c] for c in s)  # noqa: E731
    # half the calls valid, a quarter with one broken argument, a quarter with any
    mode = data.draw(st.sampled_from(["valid", "valid", "one", "any"]), label="mode")
    slots = [n for n, _ in ins + outs] + ([word] if word else [])
    broken_one = data.draw(st.sampled_from(slots), label="broken") if mode == "one" else None

    def kind_of(name, ok, bad):
        if mode == "any":
            return data.draw(st.sampled_from(ok + bad), label=name)
        return data.draw(st.sampled_from(bad if name == broken_one else ok), label=name)

    args = {}
    for name, s in ins:
        kind = kind_of(name, INPUT_OK, INPUT_BAD)
        a = values(data, shape(s))
        if kind == "same_as_other":  # inputs may alias each other
            same = [args[m] for m, t in ins if m in args and t == s]
            args[name] = same[0] if same else a
        else:
            args[name] = a if kind == "ok" else broken(kind, a, shape(s))
    kw = {}
    for name, s in outs:
        kind = kind_of(name, OUT_OK, OUT_BAD)
        if kind == "none":
            continue
        buf = np.full(shape(s), SENTINEL)
        if kind in ("alias_input", "adjacent_input"):
            # an input rebuilt inside a larger buffer; out overlaps it or just follows it
            tname = data.draw(st.sampled_from([m for m, _ in ins]), label=f"{name}_target")
            t = args[tname]
            if not (isinstance(t, np.ndarray) and t.dtype == np.float64 and t.flags.c_contiguous):
                continue
            base = np.full(t.size + buf.size, SENTINEL)
            base[:t.size] = t.reshape(-1)
            args[tname] = base[:t.size].reshape(t.shape)
            off = t.size if kind == "adjacent_input" else data.draw(st.integers(0, max(t.size - 1, 0)))
            kw[name] = base[off:off + buf.size].reshape(buf.shape)
        elif kind == "alias_out":
            prev = [v for v in kw.values() if isinstance(v, np.ndarray) and v.size >= buf.size]
            kw[name] = prev[0].reshape(-1)[:buf.size].reshape(buf.shape) if prev else buf
        else:
            kw[name] = buf if kind == "ok" else broken(kind, buf, shape(s))
    if word:
        kw[word] = data.draw(st.sampled_from(BAD_NAMES if word == broken_one else list(NAMES[word])
                                             if mode != "any" else list(NAMES[word]) + BAD_NAMES),
                             label=word)
    if fname == "dense_backward":
        kw["need_dX"] = data.draw(st.sampled_from([True, True, False, 0, 1]), label="need_dX")
        if kw.get("activation") == "silu":  # its g' comes from the pre-activation Z (valid here)
            kw["Z"] = values(data, shape("nd"))
    return fname, args, kw


# --- the validity rule, written from the README ----------------------------

def _span(a):
    start = a.__array_interface__["data"][0]
    return start, start + a.nbytes


def _overlap(a, b):
    (a0, a1), (b0, b1) = _span(a), _span(b)
    return a.nbytes > 0 and b.nbytes > 0 and a0 < b1 and b0 < a1


def _array_problems(name, a, ndim, out):
    """(exception type, name) for what is wrong with one array, or []."""
    if out and a is None:
        return []
    if not isinstance(a, np.ndarray):
        return [(TypeError, name)]
    if a.dtype != np.float64 or not a.dtype.isnative:
        return [(ValueError if out else TypeError, name)]
    if a.ndim != ndim or not a.flags.c_contiguous or not a.flags.aligned:
        return [(ValueError, name)]
    if out and not a.flags.writeable:
        return [(ValueError, name)]
    return []


def problems(fname, args, kw):
    ins, outs, word = SPECS[fname]
    found = []
    if word and (not isinstance(kw[word], str) or kw[word] not in NAMES[word]):
        found.append((ValueError, word))
    for name, s in ins:
        found += _array_problems(name, args[name], len(s), out=False)
    if found:
        return found
    dims = {}  # every input carrying a dimension must agree on it
    for name, s in ins:
        for c, size in zip(s, args[name].shape):
            dims.setdefault(c, []).append((name, size))
    for c, seen in dims.items():
        if len({size for _, size in seen}) > 1:
            found += [(ValueError, name) for name, _ in seen]
    if found:
        return found
    size = {c: seen[0][1] for c, seen in dims.items()}
    given = [args[name] for name, _ in ins]
    for name, s in outs:
        o = kw.get(name)
        if name == "dX" and not kw.get("need_dX", True):
            if o is not None:
                found.append((ValueError, "dX"))
            continue
        p = _array_problems(name, o, len(s), out=True)
        if not p and o is not None:
            if o.shape != tuple(size[c] for c in s) or any(_overlap(o, g) for g in given):
                p = [(ValueError, name)]
            given.append(o)
        found += p
    return found


# --- what a valid call must return -------------------------------------------

def finite_abs(a):
    """|a| with NaN and ±inf set to 0: the finite inputs' share of a bound."""
    return np.nan_to_num(np.abs(a), nan=0.0, posinf=0.0, neginf=0.0)


def assert_agrees(got, want, bound, overflow=None, saturates=False):
    """Within 1e-12 of the sum of |terms| where that is finite (no overflow is
    possible in any summation order); elsewhere NaN and ±inf exactly as in
    the reference — except where a product of two FINITE inputs overflows
    (``overflow``): an FMA (OpenBLAS's kernels) keeps such a product exact
    and gives ±inf where separate rounding gives NaN, so there the result
    need only be non-finite (or a saturated activation: 0, ±1)."""
    got, want, bound = (np.asarray(v, dtype=np.float64) for v in (got, want, bound))
    assert got.shape == want.shape
    fin = np.isfinite(bound)
    with np.errstate(invalid="ignore", over="ignore"):
        close = np.abs(got - want) <= 1e-12 * (bound + np.abs(want))
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    ok = np.where(fin, close | same, same)
    if overflow is not None:
        loose = ~np.isfinite(got) | (np.isin(got, (0.0, 1.0, -1.0)) if saturates else False)
        ok |= np.asarray(overflow) & loose
    assert ok.all(), f"got {got[~ok][:4]}, want {want[~ok][:4]}, bound {bound[~ok][:4]}"


def check_result(fname, args, kw, result):
    a = {k: v.copy() for k, v in args.items()}
    f = {k: finite_abs(v) for k, v in a.items()}
    with np.errstate(all="ignore"):
        want = getattr(ref, fname)(*a.values(), **{k: v for k, v in kw.items()
                                                    if not isinstance(v, np.ndarray) or k == "Z"})
        if fname == "matmul_abt":
            A, B = a["A"], a["B"]
            checks = [(result, want, abs(A) @ abs(B).T, f["A"] @ f["B"].T)]
        elif fname == "matmul_abt_backward":
            dC, A, B = a["dC"], a["A"], a["B"]
            checks = [(result[0], want[0], abs(dC) @ abs(B), f["dC"] @ f["B"]),
                      (result[1], want[1], abs(dC).T @ abs(A), f["dC"].T @ f["A"])]
        elif fname == "dense_forward":
            X, W, b = a["X"], a["W"], a["b"]
            checks = [(result, want, abs(X) @ abs(W).T + abs(b), f["X"] @ f["W"].T + f["b"])]
        elif fname == "dense_backward":
            dY, X, W, Y = a["dY"], a["X"], a["W"], a["Y"]
            dZ = abs(dY * ref._g_prime(kw["activation"], Y, kw.get("Z")))  # elementwise
            if kw["activation"] in ("softplus", "silu"):  # g' through exp: a few ulp
                dZ = 1.1 * dZ + 1.1 * abs(dY)
            fdZ = finite_abs(dZ)
            checks = [(result[1], want[1], dZ.T @ abs(X), fdZ.T @ f["X"]),
                      (result[2], want[2], dZ.sum(axis=0), None)]
            if kw["need_dX"]:
                checks.append((result[0], want[0], dZ @ abs(W), fdZ @ f["W"]))
            else:
                assert result[0] is None
        else:
            assert isinstance(result[0], float)
            checks = [(result[0], want[0], want[0], None), (result[1], want[1], np.abs(want[1]), None)]
    saturates = fname == "dense_forward" and kw["activation"] != "identity"
    for got, w, bound, finite_bound in checks:
        over = None if finite_bound is None else np.isinf(finite_bound)
        assert_agrees(got, w, bound, over, saturates)


def returned_buffers(fname, result):
    if fname in ("matmul_abt", "dense_forward"):
        return {"out": result}
    if fname == "squared_error":
        return {"out": result[1]}
    names = ("dA", "dB") if fname == "matmul_abt_backward" else ("dX", "dW", "db")
    return dict(zip(names, result))


# Four times the profile's examples per kernel: the argument space is large.
@pytest.mark.parametrize("fname", sorted(SPECS))
@settings(max_examples=4 * settings().max_examples)
@given(data=st.data())
def test_kernel_gives_the_right_answer_or_the_documented_error(fname, data):
    fname, args, kw = draw_call(data, fname)
    expected = problems(fname, args, kw)
    inputs_before = [a.copy() if isinstance(a, np.ndarray) else a for a in args.values()]
    try:
        result = getattr(fastbp, fname)(*args.values(), **kw)
    except (TypeError, ValueError) as e:
        assert expected, f"valid call refused: {e!r}"
        COUNT["refused"] += 1
        types = {t for t, _ in expected}
        names = {n for _, n in expected}
        assert type(e) in types, f"{type(e).__name__}: {e}; expected {types} for {names}"
        assert any(re.search(rf"\b{re.escape(n)}\b", str(e)) for n in names), (str(e), names)
        return
    assert not expected, f"invalid call accepted: {expected}"
    COUNT["valid"] += 1
    for name, buf in returned_buffers(fname, result).items():
        if isinstance(kw.get(name), np.ndarray):
            assert buf is kw[name], f"{name}= was not returned"
    for before, after in zip(inputs_before, args.values()):
        np.testing.assert_array_equal(before, after)  # inputs untouched
    check_result(fname, args, kw, result)
