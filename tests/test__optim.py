"""fastbp._optim: the compiled update loops (vectorised in _update.h) against
scalar code, bit for bit, and their refusal of buffers that share memory.
(The optimiser objects of fastbp.optim are in tests/test_optim.py.)"""

import math

import numpy as np
import pytest

from fastbp import _optim


def scalar_run(kind, p, g, m, v, n_decay, steps):
    """The update formulas one element at a time in Python floats (IEEE double,
    no fma), in the operation order of the compiled loops."""
    p, m, v = list(p), list(m), list(v)
    lr, wd, mu, b1, b2, eps = 0.03, 0.1, 0.8, 0.85, 0.99, 1e-7
    for t in range(1, steps + 1):
        c1, c2 = 1.0 / (1.0 - b1 ** t), 1.0 / (1.0 - b2 ** t)
        for j in range(len(p)):
            gt = g[j] + wd * p[j] if j < n_decay else g[j]
            if kind == "sgd":
                p[j] = p[j] - lr * gt
            elif kind in ("momentum", "nesterov"):
                v[j] = mu * v[j] + gt
                p[j] = p[j] - lr * (gt + mu * v[j] if kind == "nesterov" else v[j])
            else:
                m[j] = b1 * m[j] + (1.0 - b1) * gt
                v[j] = b2 * v[j] + (1.0 - b2) * gt * gt
                p[j] = p[j] - lr * (m[j] * c1) / (math.sqrt(v[j] * c2) + eps)
    return [np.array(a) for a in (p, m, v)]


def compiled_run(kind, p, g, m, v, n_decay, steps):
    p, m, v = p.copy(), m.copy(), v.copy()
    for t in range(1, steps + 1):
        if kind == "sgd":
            _optim.sgd_update(p, g, 0.03, 0.1, n_decay)
        elif kind in ("momentum", "nesterov"):
            _optim.momentum_update(p, g, v, 0.03, 0.8, kind == "nesterov", 0.1, n_decay)
        else:
            _optim.adam_update(p, g, m, v, 0.03, t, beta1=0.85, beta2=0.99, eps=1e-7,
                               weight_decay=0.1, n_decay=n_decay)
    return [p, m, v]


def update_inputs(n, seed):
    # magnitudes over many decades, so every rounding in the formulas matters
    rng = np.random.default_rng(seed)
    p, g, m = (rng.normal(size=n) * 10.0 ** rng.integers(-6, 4, size=n) for _ in range(3))
    v = np.abs(rng.normal(size=n)) * 10.0 ** rng.integers(-12, 2, size=n)
    g[::5] = 0.0
    return p, g, m, v


@pytest.mark.parametrize("kind", ["sgd", "momentum", "nesterov", "adam"])
@pytest.mark.parametrize("n", [1, 7, 8, 9, 31, 7510])
@pytest.mark.parametrize("where", ["none", "middle", "all"])
def test_compiled_updates_are_bitwise_scalar_code(kind, n, where):
    # sizes around the vector widths (2, 4, 8 doubles): vector body and scalar tail
    n_decay = {"none": 0, "middle": n // 2, "all": n}[where]
    p, g, m, v = update_inputs(n, seed=n)
    got = compiled_run(kind, p, g, m, v, n_decay, steps=2)
    want = scalar_run(kind, p, g, m, v, n_decay, steps=2)
    for name, a, b in zip("pmv", got, want):
        assert np.array_equal(a, b), f"{kind} n={n} n_decay={n_decay}: {name} differs"


@pytest.mark.parametrize("kind", ["sgd", "momentum", "nesterov", "adam"])
@pytest.mark.parametrize("n_decay_short, n_decay_long", [(0, 0), (5, 5), (9, 7510)])
def test_compiled_updates_do_not_depend_on_the_length(kind, n_decay_short, n_decay_long):
    # element 8 is in the scalar tail of a length-9 update, in the vector body of a long one
    long = update_inputs(7510, seed=3)
    short = [a[:9].copy() for a in long]
    got_short = compiled_run(kind, *short, n_decay_short, steps=2)
    got_long = compiled_run(kind, *long, n_decay_long, steps=2)
    for a, b in zip(got_short, got_long):
        assert np.array_equal(a, b[:9])


@pytest.mark.parametrize("kind", ["sgd", "momentum", "adam"])
def test_updates_refuse_buffers_that_share_memory(kind):
    buf = np.zeros(20)
    other = np.zeros(10)
    p, overlapping = buf[:10], buf[5:15]
    calls = {
        "sgd": lambda: _optim.sgd_update(p, p, 0.1),
        "momentum": lambda: _optim.momentum_update(p, other.copy(), overlapping, 0.1, 0.9),
        "adam": lambda: _optim.adam_update(p, other.copy(), np.zeros(10), overlapping, 0.1, 1,
                                           beta1=0.9, beta2=0.99, eps=1e-8),
    }
    before = buf.copy()
    with pytest.raises(ValueError, match="share memory"):
        calls[kind]()
    assert np.array_equal(buf, before)
