"""Peer implementations of the workloads: PyTorch, JAX, scikit-learn.

Each library is imported only when its peer is asked for, and every peer
works in float64 on the CPU, on the same inputs as fastbp, and is checked
against the NumPy reference like fastbp is.  A peer that is not installed,
or that has no API for a workload (scikit-learn has no kernel-level one),
raises :class:`PeerSkipped` with a one-line reason.
"""

import importlib
import importlib.util

import numpy as np

from fastbp.bench.workloads import Instance, network_activations

MODULES = {"torch": "torch", "jax": "jax", "sklearn": "sklearn"}


class PeerSkipped(Exception):
    """This peer cannot run here; the message says why, in one line."""


def find(name):
    """The peer's module name when it is installed, else raise PeerSkipped."""
    module = MODULES[name]
    if importlib.util.find_spec(module) is None:
        raise PeerSkipped(f"{name}: not installed, skipped "
                          f"(pip install {_PIP_NAME.get(name, name)})")
    return module


_PIP_NAME = {"sklearn": "scikit-learn", "jax": "jax jaxlib"}


def load(name):
    """Import the peer's library (once), or raise PeerSkipped."""
    module = find(name)
    try:
        lib = importlib.import_module(module)
    except Exception as exc:  # a broken install is a skip, not a crash
        raise PeerSkipped(f"{name}: import failed, skipped ({exc})") from None
    if name == "jax":
        lib.config.update("jax_enable_x64", True)  # float64, like fastbp
    return lib


def version(name):
    try:
        return getattr(load(name), "__version__", "?")
    except PeerSkipped:
        return None


def make(name, workload, inputs):
    """Instance of ``workload`` for peer ``name``, or raise PeerSkipped."""
    lib = load(name)
    build = _BUILDERS.get((name, workload.kind))
    if build is None:
        raise PeerSkipped(f"{name}: has no API for the {workload.suite} suite's "
                          f"workloads, skipped there")
    return build(lib, workload, inputs)


# --------------------------------------------------------------------------
# PyTorch: autograd for the kernels, nn.Linear + optim.SGD for the networks.
# --------------------------------------------------------------------------

def _torch_act(torch, name):
    return {"identity": lambda z: z, "sigmoid": torch.sigmoid,
            "tanh": torch.tanh, "relu": torch.relu}[name]


def _torch_matmul(torch, w, x):
    A = torch.from_numpy(x["A"]).requires_grad_()
    B = torch.from_numpy(x["B"]).requires_grad_()
    dC = torch.from_numpy(x["dC"])
    out = {}

    def run():
        C = A @ B.T
        out["C"] = C
        out["dA"], out["dB"] = torch.autograd.grad(C, (A, B), dC)
    return Instance(run, lambda: [out[k].detach().numpy() for k in ("C", "dA", "dB")])


def _torch_dense(torch, w, x):
    X = torch.from_numpy(x["X"]).requires_grad_()
    W = torch.from_numpy(x["W"]).requires_grad_()
    b = torch.from_numpy(x["b"]).requires_grad_()
    dY = torch.from_numpy(x["dY"])
    g = _torch_act(torch, w.activation)
    out = {}

    def run():
        Y = g(torch.addmm(b, X, W.T))
        out["Y"] = Y
        out["dX"], out["dW"], out["db"] = torch.autograd.grad(Y, (X, W, b), dY)
    return Instance(run, lambda: [out[k].detach().numpy() for k in ("Y", "dX", "dW", "db")])


def _torch_mlp(torch, w, x):
    acts = network_activations(len(x["weights"]))
    layers = []
    for W, b, act in zip(x["weights"], x["biases"], acts):
        lin = torch.nn.Linear(W.shape[1], W.shape[0], dtype=torch.float64)
        with torch.no_grad():  # nn.Linear's weight is (out, in), as ours
            lin.weight.copy_(torch.from_numpy(W))
            lin.bias.copy_(torch.from_numpy(b))
        layers.append(lin)
        if act == "sigmoid":
            layers.append(torch.nn.Sigmoid())
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=x["lr"])
    X, T = torch.from_numpy(x["X"]), torch.from_numpy(x["T"])
    n = X.shape[0]

    def run():
        opt.zero_grad()
        loss = ((model(X) - T) ** 2).sum() / n  # squared error, reduction "mean"
        loss.backward()
        opt.step()

    def result():
        lins = [m for m in model if isinstance(m, torch.nn.Linear)]
        return ([m.weight.detach().numpy() for m in lins]
                + [m.bias.detach().numpy() for m in lins])
    return Instance(run, result)


# --------------------------------------------------------------------------
# JAX: jit-compiled vjp for the kernels and a jit-compiled SGD step.
# --------------------------------------------------------------------------

def _jax_act(jax, name):
    return {"identity": lambda z: z, "sigmoid": jax.nn.sigmoid,
            "tanh": jax.numpy.tanh, "relu": jax.nn.relu}[name]


def _jax_run(jax, fn, args):
    out = {}

    def run():
        out["r"] = jax.block_until_ready(fn(*args))
    return Instance(run, lambda: [np.asarray(a) for a in out["r"]])


def _jax_matmul(jax, w, x):
    def f(A, B, dC):
        C, vjp = jax.vjp(lambda a, b: a @ b.T, A, B)
        return (C, *vjp(dC))
    args = [jax.device_put(x[k]) for k in ("A", "B", "dC")]
    return _jax_run(jax, jax.jit(f), args)


def _jax_dense(jax, w, x):
    g = _jax_act(jax, w.activation)

    def f(X, W, b, dY):
        Y, vjp = jax.vjp(lambda X, W, b: g(X @ W.T + b), X, W, b)
        return (Y, *vjp(dY))
    args = [jax.device_put(x[k]) for k in ("X", "W", "b", "dY")]
    return _jax_run(jax, jax.jit(f), args)


def _jax_mlp(jax, w, x):
    jnp = jax.numpy
    acts = [_jax_act(jax, a) for a in network_activations(len(x["weights"]))]
    lr = x["lr"]

    def loss(params, X, T):
        Y = X
        for (W, b), g in zip(params, acts):
            Y = g(Y @ W.T + b)
        return jnp.sum((Y - T) ** 2) / X.shape[0]

    @jax.jit
    def step(params, X, T):
        grads = jax.grad(loss)(params, X, T)
        return [(W - lr * dW, b - lr * db) for (W, b), (dW, db) in zip(params, grads)]

    state = {"p": [(jax.device_put(W), jax.device_put(b))
                   for W, b in zip(x["weights"], x["biases"])]}
    X, T = jax.device_put(x["X"]), jax.device_put(x["T"])

    def run():
        state["p"] = jax.block_until_ready(step(state["p"], X, T))

    def result():
        return ([np.asarray(W) for W, _ in state["p"]]
                + [np.asarray(b) for _, b in state["p"]])
    return Instance(run, result)


# --------------------------------------------------------------------------
# scikit-learn: MLPRegressor.partial_fit, one SGD step per call.
# --------------------------------------------------------------------------

def _sklearn_mlp(sklearn, w, x):
    import warnings
    from sklearn.neural_network import MLPRegressor

    Ws, bs, X, T = x["weights"], x["biases"], x["X"], x["T"]
    y = T.ravel() if T.shape[1] == 1 else T
    # scikit-learn's squared loss is ½·mean, so its gradient is half of our
    # "mean" one: twice the learning rate gives the same step.
    reg = MLPRegressor(hidden_layer_sizes=tuple(w.sizes[1:-1]), activation="logistic",
                       solver="sgd", alpha=0.0, batch_size=X.shape[0],
                       learning_rate="constant", learning_rate_init=2 * x["lr"],
                       momentum=0.0, nesterovs_momentum=False, shuffle=False,
                       random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg.partial_fit(X, y)  # allocates its coefs_; overwritten just below
    for dst, W in zip(reg.coefs_, Ws):
        dst[...] = W.T  # scikit-learn stores (fan_in, fan_out)
    for dst, b in zip(reg.intercepts_, bs):
        dst[...] = b

    def run():
        reg.partial_fit(X, y)

    def result():
        return [c.T for c in reg.coefs_] + list(reg.intercepts_)
    return Instance(run, result)


# --------------------------------------------------------------------------
# The derivatives suite: torch.func (vmap of jacrev, jvp of grad) and
# jax.jit of the same transforms, on the workload's tanh network.
# --------------------------------------------------------------------------

def _layers_of(x):
    return list(zip(x["weights"], x["biases"]))


def _split_flat(flat, x, lib_reshape):
    """Per-layer (Ẇ, ḃ) of a flat vector in net.params' layout."""
    Ws, bs, off = [], [], 0
    for W in x["weights"]:
        Ws.append(lib_reshape(flat[off:off + W.size], W.shape))
        off += W.size
    for b in x["biases"]:
        bs.append(flat[off:off + b.size])
        off += b.size
    return list(zip(Ws, bs))


def _tanh_mlp(tanh):
    """f(params, a): the workload's network (tanh hidden layers, identity
    output) in a peer's array library."""
    def f(params, a):
        for l, (W, b) in enumerate(params):
            a = a @ W.T + b
            if l < len(params) - 1:
                a = tanh(a)
        return a
    return f


def _torch_derivative(torch, w, x):
    from torch.func import grad, jacrev, jvp, vmap

    params = [(torch.from_numpy(W), torch.from_numpy(b)) for W, b in _layers_of(x)]
    X, T = torch.from_numpy(x["X"]), torch.from_numpy(x["T"])

    f = _tanh_mlp(torch.tanh)

    out = {}
    if w.method == "input_jacobian":
        jac = vmap(jacrev(lambda a: f(params, a)))

        def run():
            out["r"] = jac(X)
    elif w.method == "hvp":
        v = _split_flat(torch.from_numpy(x["v"]), x, lambda a, s: a.reshape(s))
        loss = lambda p: ((f(p, X) - T) ** 2).sum()  # noqa: E731

        def run():
            out["r"] = jvp(grad(loss), (params,), (v,))[1]
    else:
        jac = vmap(jacrev(lambda p, a: f(p, a[None])[0]), in_dims=(None, 0))

        def run():
            out["r"] = jac(params, X)

    def result():
        return [_flat_result(w, out["r"], lambda t: t.detach().numpy())]
    return Instance(run, result)


def _flat_result(w, r, to_numpy):
    """A peer's result in fastbp's layout: J as is; Hv and the parameter
    Jacobian's per-layer parts flattened as net.params (weights, then biases)."""
    if w.method == "input_jacobian":
        return to_numpy(r)
    parts = [(to_numpy(W), to_numpy(b)) for W, b in r]
    if w.method == "hvp":
        return np.concatenate([W.ravel() for W, _ in parts] + [b.ravel() for _, b in parts])
    n = parts[0][0].shape[0]  # (N, D_out, ...) per parameter
    rows = n * parts[0][1].shape[1]
    return np.concatenate([W.reshape(rows, -1) for W, _ in parts]
                          + [b.reshape(rows, -1) for _, b in parts], axis=1)


def _jax_derivative(jax, w, x):
    jnp = jax.numpy
    params = [(jax.device_put(W), jax.device_put(b)) for W, b in _layers_of(x)]
    X, T = jax.device_put(x["X"]), jax.device_put(x["T"])

    f = _tanh_mlp(jnp.tanh)

    if w.method == "input_jacobian":
        fn = jax.jit(jax.vmap(jax.jacrev(lambda a: f(params, a))))
        args = (X,)
    elif w.method == "hvp":
        v = _split_flat(jax.device_put(x["v"]), x, jnp.reshape)
        loss = lambda p: jnp.sum((f(p, X) - T) ** 2)  # noqa: E731
        fn = jax.jit(lambda p, t: jax.jvp(jax.grad(loss), (p,), (t,))[1])
        args = (params, v)
    else:
        fn = jax.jit(jax.vmap(jax.jacrev(lambda p, a: f(p, a)), in_axes=(None, 0)))
        args = (params, X)
    out = {}

    def run():
        out["r"] = jax.block_until_ready(fn(*args))

    run()  # the compile step, outside the timing
    return Instance(run, lambda: [_flat_result(w, out["r"], np.asarray)])


_BUILDERS = {
    ("torch", "derivative"): _torch_derivative, ("jax", "derivative"): _jax_derivative,
    ("torch", "matmul_abt"): _torch_matmul, ("torch", "dense"): _torch_dense,
    ("torch", "mlp"): _torch_mlp,
    ("jax", "matmul_abt"): _jax_matmul, ("jax", "dense"): _jax_dense,
    ("jax", "mlp"): _jax_mlp,
    ("sklearn", "mlp"): _sklearn_mlp,
}
