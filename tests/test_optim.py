"""fastbp.optim: the optimisers against the update rules written in NumPy,
their arguments and state.  (The compiled loops themselves, fastbp._optim,
are in tests/test__optim.py.)"""

import numpy as np
import pytest

import fastbp
from fastbp import optim


def numpy_run(kind, p, grads_seq, lr, wd, n_decay, **hp):
    """The update rules, step by step, in NumPy (the oracle)."""
    p = p.copy()
    v = np.zeros_like(p)
    m = np.zeros_like(p)
    mask = np.zeros_like(p)
    mask[:n_decay] = 1.0
    for t, g in enumerate(grads_seq, start=1):
        g = g + wd * mask * p
        if kind == "sgd":
            p = p - lr * g
        elif kind in ("momentum", "nesterov"):
            v = hp["momentum"] * v + g
            p = p - lr * (g + hp["momentum"] * v if kind == "nesterov" else v)
        else:
            b1, b2, eps = hp["beta1"], hp["beta2"], hp["eps"]
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            p = p - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    return p


def make(kind, lr, wd):
    if kind == "sgd":
        return optim.SGD(lr=lr, weight_decay=wd), {}
    if kind in ("momentum", "nesterov"):
        return optim.Momentum(lr=lr, momentum=0.8, nesterov=kind == "nesterov", weight_decay=wd), \
            {"momentum": 0.8}
    return optim.Adam(lr=lr, beta1=0.85, beta2=0.99, eps=1e-7, weight_decay=wd), \
        {"beta1": 0.85, "beta2": 0.99, "eps": 1e-7}


@pytest.mark.parametrize("kind", ["sgd", "momentum", "nesterov", "adam"])
@pytest.mark.parametrize("wd, n_decay", [(0.0, None), (0.1, None), (0.1, 7)])
def test_updates_match_numpy_rules(kind, wd, n_decay):
    rng = np.random.default_rng(len(kind))
    n = 13
    p0 = rng.normal(size=n)
    grads_seq = [rng.normal(size=n) for _ in range(5)]
    opt, hp = make(kind, 0.03, wd)
    params = p0.copy()
    buf = params  # updated in place: the same object throughout
    for g in grads_seq:
        opt.step(params, g, n_decay=n_decay)
    assert params is buf
    want = numpy_run(kind, p0, grads_seq, 0.03, wd, n if n_decay is None else n_decay, **hp)
    np.testing.assert_allclose(params, want, rtol=1e-13, atol=1e-15)


def test_lr_argument_overrides_and_defaults():
    assert optim.SGD().lr == 0.01 and optim.Adam().lr == 0.001
    p = np.ones(3)
    optim.SGD(lr=1.0).step(p, np.ones(3), lr=0.5)
    np.testing.assert_array_equal(p, 0.5)


def test_make_optimizer_names_and_objects():
    assert isinstance(optim.make_optimizer("sgd", lr=0.1), optim.SGD)
    nes = optim.make_optimizer("nesterov", lr=0.1, weight_decay=0.01)
    assert isinstance(nes, optim.Momentum) and nes.nesterov and nes.weight_decay == 0.01
    adam = optim.Adam()
    assert optim.make_optimizer(adam) is adam
    with pytest.raises(ValueError, match="optimizer must be one of"):
        optim.make_optimizer("rmsprop")


@pytest.mark.parametrize("call, err, match", [
    (lambda: optim.SGD(lr=0.0), ValueError, "lr must be"),
    (lambda: optim.SGD(lr="fast"), TypeError, "lr must be a number"),
    (lambda: optim.Momentum(momentum=1.0), ValueError, "momentum"),
    (lambda: optim.Adam(beta2=-0.1), ValueError, "beta2"),
    (lambda: optim.SGD(weight_decay=-1), ValueError, "weight_decay"),
    (lambda: optim.SGD().step(np.ones(3), np.ones(4)), ValueError, "3 values"),
    (lambda: optim.SGD().step(np.ones(3, dtype=np.float32), np.ones(3)), TypeError, "float64"),
    (lambda: optim.SGD().step(np.ones(3), np.ones(3), n_decay=4), ValueError, "n_decay"),
    (lambda: optim.Adam().step([1.0, 2.0], np.ones(2)), ValueError, "1-D float64"),
])
def test_bad_arguments(call, err, match):
    with pytest.raises(err, match=match):
        call()


def test_state_is_bound_to_one_size():
    opt = optim.Momentum()
    opt.step(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="state for 3 parameters"):
        opt.step(np.ones(4), np.ones(4))
    opt.reset()
    opt.step(np.ones(4), np.ones(4))


def test_read_only_params_are_refused():
    p = np.ones(3)
    p.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        optim.SGD().step(p, np.ones(3))


@pytest.mark.parametrize("kind", ["sgd", "momentum", "nesterov", "adam"])
def test_minimises_a_quadratic(kind):
    # f(θ) = ½ θᵀ diag(c) θ: every optimiser drives θ to 0
    c = np.array([1.0, 3.0, 0.5])
    opt = optim.make_optimizer(kind, lr=0.05 if kind != "adam" else 0.05)
    p = np.array([1.0, -2.0, 3.0])
    for _ in range(2000):
        opt.step(p, c * p)
    assert np.abs(p).max() < 1e-3


@pytest.mark.parametrize("make, change", [
    (lambda cls: cls(lr=0.05, momentum=0.9), dict(momentum=0.5)),
    (lambda cls: cls(lr=0.01), dict(beta1=0.5, beta2=0.9, eps=1e-3)),
])
def test_constants_changed_between_steps_reach_the_fused_step(make, change):
    """An optimiser's attributes set after a step are the next fused step's,
    as they are its own Python-level step's (a subclass is never fused)."""
    base = optim.Momentum if "momentum" in change else optim.Adam
    plain_cls = type("Plain" + base.__name__, (base,), {})
    rng = np.random.default_rng(0)
    X, T = rng.standard_normal((8, 3)), rng.standard_normal((8, 2))
    nets = [fastbp.MLP([3, 4, 2], seed=1) for _ in range(2)]
    opts = [make(base), make(plain_cls)]
    assert opts[0].update_spec(nets[0].params) is not None and opts[1].update_spec(nets[1].params) is None
    for net, opt in zip(nets, opts):
        net.train_step(X, T, optimizer=opt)
        for name, value in change.items():
            setattr(opt, name, value)
        net.train_step(X, T, optimizer=opt)
    np.testing.assert_array_equal(nets[0].params, nets[1].params)
