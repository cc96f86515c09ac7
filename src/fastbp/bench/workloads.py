"""The one definition of every benchmark workload.

The CLI (``fastbp-bench``) and the pytest-benchmark suites in
``benchmarks/`` both build their workloads here, so a shape, a flop count
or an input distribution is written once.

A workload makes, for one implementation ("fastbp", "numpy" or a peer), an
:class:`Instance`: a zero-argument ``run`` that does one timed call on
inputs and output buffers allocated beforehand, and ``result`` that returns
the arrays one call produced (compared against the NumPy reference before
anything is timed).  Every implementation starts from the same inputs: the
same seed gives the same arrays.
"""

from dataclasses import dataclass

import numpy as np

import fastbp
from fastbp import reference

IMPL_FASTBP = "fastbp"
IMPL_REFERENCE = "numpy"
PEER_NAMES = ("torch", "jax", "sklearn")

# The default suite: kernels at these (N, K, D) ...
KERNEL_SHAPES = ((8, 8, 8), (32, 64, 64), (256, 256, 256), (1024, 1024, 1024))
# ... and one training step of these networks (layer sizes, batch size).
NETWORKS = (((64, 64, 64, 1), 32), ((784, 256, 256, 10), 128),
            ((1024, 1024, 1024, 1024), 1024))
# The derivatives suite (issue 16's table): (method, layer sizes, N), tanh
# hidden layers, identity output; hvp on squared error, reduction "sum".
DERIVATIVES = (("input_jacobian", (8, 64, 64, 4), 1024), ("hvp", (64, 64, 64, 1), 256),
               ("param_jacobian", (10, 50, 1), 442))
DERIVATIVE_ACTIVATION = "tanh"
# --quick drops the largest of each.
QUICK_KERNEL_SHAPES = KERNEL_SHAPES[:3]
QUICK_NETWORKS = NETWORKS[:2]

# OpenBLAS runs a GEMM on one thread below m·n·k = 65536 · 4
# (SMP_THRESHOLD_MIN · GEMM_MULTITHREAD_THRESHOLD); at or above it, its
# worker threads wake up, and the timing has to let them settle.
BLAS_THREADED_MNK = 65536 * 4

TRAIN_LR = 1e-3
HIDDEN_ACTIVATION = "sigmoid"
OUTPUT_ACTIVATION = "identity"


@dataclass
class Instance:
    """One implementation of one workload, ready to be timed."""

    run: object          # () -> None: one call, outputs into preallocated buffers
    result: object       # () -> list of ndarray: what the last call produced


@dataclass(frozen=True)
class Workload:
    name: str            # unique, e.g. "dense sigmoid 32x64x64"
    suite: str           # "kernels" or "networks"
    kind: str            # "matmul_abt", "dense" or "mlp"
    flops: int           # floating-point operations of one call (GEMMs only)
    shape: tuple = ()    # (N, K, D) for kernels
    activation: str = ""  # dense kernels only
    sizes: tuple = ()    # layer sizes, networks and derivatives
    batch: int = 0       # networks and derivatives (N)
    method: str = ""     # derivatives only: the MLP method timed

    @property
    def threaded(self):
        """Whether its largest GEMM is big enough for OpenBLAS to use threads."""
        if self.kind in ("mlp", "derivative"):
            mnk = max(self.batch * k * d for k, d in zip(self.sizes[:-1], self.sizes[1:]))
        else:
            n, k, d = self.shape
            mnk = n * k * d
        return mnk >= BLAS_THREADED_MNK

    def inputs(self, seed=0):
        """Fresh input arrays, identical for every implementation."""
        return _INPUTS[self.kind](self, np.random.default_rng(seed))

    def make(self, impl, seed=0):
        """Build an :class:`Instance` of this workload for fastbp or the
        reference (a peer's is made by fastbp.bench.peers.make)."""
        if impl == IMPL_FASTBP:
            return _FASTBP[self.kind](self, self.inputs(seed))
        if impl == IMPL_REFERENCE:
            return _REFERENCE[self.kind](self, self.inputs(seed))
        raise ValueError(f"impl must be {IMPL_FASTBP!r} or {IMPL_REFERENCE!r}, got {impl!r}")


def gemm_flops(n, k, d):
    """2·N·K·D: one multiply and one add per term of an (N,K)·(K,D) product."""
    return 2 * n * k * d


# the activations benchmarked by default: the four the peers (torch, jax) have too
DEFAULT_ACTIVATIONS = ("identity", "sigmoid", "tanh", "relu")


def kernel_workloads(shapes, activations=None):
    """matmul_abt fwd+bwd and dense fwd+bwd per activation (by default
    DEFAULT_ACTIVATIONS; any of fastbp.ACTIVATIONS), at each (N, K, D)."""
    activations = tuple(activations or DEFAULT_ACTIVATIONS)
    out = []
    for n, k, d in shapes:
        s = f"{n}x{k}x{d}"
        # forward C = A Bᵀ, then δA = δC B and δB = δCᵀ A: three GEMMs.
        flops = 3 * gemm_flops(n, k, d)
        out.append(Workload(f"matmul_abt {s}", "kernels", "matmul_abt", flops,
                            shape=(n, k, d)))
        for act in activations:
            out.append(Workload(f"dense {act} {s}", "kernels", "dense", flops,
                                shape=(n, k, d), activation=act))
    return out


def network_flops(sizes, batch):
    """Forward GEMMs + δW GEMMs + δX GEMMs (none for the first layer)."""
    per_layer = [gemm_flops(batch, k, d) for k, d in zip(sizes[:-1], sizes[1:])]
    return 2 * sum(per_layer) + sum(per_layer[1:])


def network_workloads(networks):
    out = []
    for sizes, batch in networks:
        sizes = tuple(sizes)
        name = "mlp " + "-".join(map(str, sizes)) + f" b{batch}"
        out.append(Workload(name, "networks", "mlp", network_flops(sizes, batch),
                            sizes=sizes, batch=batch))
    return out


def derivative_flops(method, sizes, n):
    """The GEMM flops of one call, written from the shapes (forward pass
    included): input_jacobian, reverse mode over N·D_out cotangent rows (the
    top layer's rows need no product: the output is diagonal); hvp,
    Pearlmutter's R-op (forward, tangent pass, backward pass and its
    R-image: 1 + 2 + 5 products per layer, less those with Ȧ_0 = 0 and the
    first layer's δX); param_jacobian, the forward pass and one
    block pass over N·D_out rows (the Jacobian's writes are not flops)."""
    pairs = list(zip(sizes[:-1], sizes[1:]))
    fwd = sum(gemm_flops(n, k, d) for k, d in pairs)
    m = sizes[-1]
    if method == "input_jacobian":
        return fwd + sum(gemm_flops(n * m, d, k) for k, d in pairs[:-1])
    if method == "hvp":
        per = [gemm_flops(n, k, d) for k, d in pairs]
        return 3 * per[0] + 8 * sum(per[1:])
    return fwd + sum(gemm_flops(n * m, d, k) for k, d in pairs[1:])


def derivative_workloads(cases=DERIVATIVES):
    out = []
    for method, sizes, n in cases:
        name = f"{method} " + "-".join(map(str, sizes)) + f" N{n}"
        out.append(Workload(name, "derivatives", "derivative",
                            derivative_flops(method, sizes, n), sizes=tuple(sizes), batch=n,
                            method=method))
    return out


def default_workloads(suite="all", quick=False, shapes=None, networks=None):
    """The workloads of a run: the default suite unless shapes/networks given
    ("all" is kernels and networks; "derivatives" runs on its own)."""
    if shapes is None:
        shapes = QUICK_KERNEL_SHAPES if quick else KERNEL_SHAPES
    if networks is None:
        networks = QUICK_NETWORKS if quick else NETWORKS
    out = []
    if suite in ("kernels", "all"):
        out += kernel_workloads(shapes)
    if suite in ("networks", "all"):
        out += network_workloads(networks)
    if suite == "derivatives":
        out += derivative_workloads()
    return out


def network_activations(n_layers):
    """Sigmoid hidden layers, identity output (the issue's training step)."""
    return [HIDDEN_ACTIVATION] * (n_layers - 1) + [OUTPUT_ACTIVATION]


# --------------------------------------------------------------------------
# Inputs.  Weights are scaled by 1/√K so activations stay out of saturation
# and the gradients compared are not all ~0.
# --------------------------------------------------------------------------

def _matmul_inputs(w, rng):
    n, k, d = w.shape
    return {"A": rng.standard_normal((n, k)),
            "B": rng.standard_normal((d, k)) / np.sqrt(max(k, 1)),
            "dC": rng.standard_normal((n, d))}


def _dense_inputs(w, rng):
    n, k, d = w.shape
    return {"X": rng.standard_normal((n, k)),
            "W": rng.standard_normal((d, k)) / np.sqrt(max(k, 1)),
            "b": 0.1 * rng.standard_normal(d),
            "dY": rng.standard_normal((n, d))}


def _mlp_inputs(w, rng):
    sizes, n = w.sizes, w.batch
    Ws = [rng.standard_normal((d, k)) / np.sqrt(k) for k, d in zip(sizes[:-1], sizes[1:])]
    bs = [0.1 * rng.standard_normal(d) for d in sizes[1:]]
    return {"X": rng.standard_normal((n, sizes[0])),
            "T": rng.standard_normal((n, sizes[-1])),
            "weights": Ws, "biases": bs, "lr": TRAIN_LR}


def _derivative_inputs(w, rng):
    sizes, n = w.sizes, w.batch
    x = _mlp_inputs(w, rng)
    x["v"] = rng.standard_normal(sum(d * k + d for k, d in zip(sizes[:-1], sizes[1:])))
    return x


_INPUTS = {"matmul_abt": _matmul_inputs, "dense": _dense_inputs, "mlp": _mlp_inputs,
           "derivative": _derivative_inputs}


# --------------------------------------------------------------------------
# fastbp and NumPy-reference instances: the same calls on the two modules,
# with every output buffer allocated here, before timing.
# --------------------------------------------------------------------------

def _matmul_instance(mod):
    def build(w, x):
        n, k, d = w.shape
        A, B, dC = x["A"], x["B"], x["dC"]
        C, dA, dB = np.empty((n, d)), np.empty((n, k)), np.empty((d, k))
        fwd, bwd = mod.matmul_abt, mod.matmul_abt_backward

        def run():
            fwd(A, B, out=C)
            bwd(dC, A, B, dA=dA, dB=dB)
        return Instance(run, lambda: [C, dA, dB])
    return build


def _dense_instance(mod):
    def build(w, x):
        n, k, d = w.shape
        act = w.activation
        X, W, b, dY = x["X"], x["W"], x["b"], x["dY"]
        Y, dX, dW, db = np.empty((n, d)), np.empty((n, k)), np.empty((d, k)), np.empty(d)
        Z = np.empty((n, d)) if act == "silu" else None  # silu's g' needs the pre-activation
        fwd, bwd = mod.dense_forward, mod.dense_backward

        def run():
            fwd(X, W, b, act, out=Y, Z=Z)
            bwd(dY, X, W, Y, act, dX=dX, dW=dW, db=db, Z=Z)
        return Instance(run, lambda: [Y, dX, dW, db])
    return build


def reference_train_step(weights, biases, X, T, lr, activations):
    """One SGD step in plain NumPy from fastbp.reference; updates in place.

    Forward (eqs 10, 11), squared error with reduction "mean", backward
    (eqs 21-24) layer by layer, then W -= lr δW, b -= lr δb.  δX of a layer is
    taken before its weights change, as the equations require.
    """
    outs, Zs = [X], []
    for W, b, act in zip(weights, biases, activations):
        Zs.append(np.empty((X.shape[0], W.shape[0])) if act == "silu" else None)
        outs.append(reference.dense_forward(outs[-1], W, b, act, Z=Zs[-1]))
    loss, dY = reference.squared_error(outs[-1], T, "mean")
    for layer in reversed(range(len(weights))):
        dX, dW, db = reference.dense_backward(
            dY, outs[layer], weights[layer], outs[layer + 1], activations[layer],
            need_dX=layer > 0, Z=Zs[layer])
        weights[layer] -= lr * dW
        biases[layer] -= lr * db
        dY = dX
    return loss


def _mlp_reference(w, x):
    Ws, bs, X, T, lr = x["weights"], x["biases"], x["X"], x["T"], x["lr"]
    acts = network_activations(len(Ws))

    def run():
        reference_train_step(Ws, bs, X, T, lr, acts)
    return Instance(run, lambda: Ws + bs)


def _mlp_fastbp(w, x):
    from fastbp.network import MLP  # ImportError → the CLI skips the suite
    net = MLP(list(w.sizes), activation=HIDDEN_ACTIVATION,
              output_activation=OUTPUT_ACTIVATION, seed=0)
    # Start from the workload's weights, written into the net's own arrays,
    # so every implementation takes its step from the same point.
    for dst, src in zip(net.weights, x["weights"]):
        dst[...] = src
    for dst, src in zip(net.biases, x["biases"]):
        dst[...] = src
    X, T, lr = x["X"], x["T"], x["lr"]

    def run():
        net.train_step(X, T, lr=lr, loss="squared_error", reduction="mean")
    return Instance(run, lambda: list(net.weights) + list(net.biases))


def derivative_net(w, x):
    """The MLP of a derivatives workload, with the workload's parameters."""
    from fastbp.network import MLP
    net = MLP(list(w.sizes), activation=DERIVATIVE_ACTIVATION, output_activation="identity",
              seed=0)
    net.weights = x["weights"]
    net.biases = x["biases"]
    return net


def _derivative_call(w, x, method):
    """One call of ``method`` (an MLP's, or its reference twin's with the
    net first) into preallocated buffers."""
    net = derivative_net(w, x)
    X, T, v = x["X"], x["T"], x["v"]
    n, di, do, P = X.shape[0], w.sizes[0], w.sizes[-1], net.n_params
    out = {"input_jacobian": np.empty((n, do, di)), "hvp": np.empty(P),
           "param_jacobian": np.empty((n * do, P))}[w.method]
    args = {"input_jacobian": (X,), "hvp": (X, T, v), "param_jacobian": (X,)}[w.method]
    if method is None:
        fn = getattr(net, w.method)
        return Instance(lambda: fn(*args, out=out), lambda: [out])
    fn = getattr(reference, w.method)
    return Instance(lambda: fn(net, *args, out=out), lambda: [out])


_FASTBP = {"matmul_abt": _matmul_instance(fastbp), "dense": _dense_instance(fastbp),
           "mlp": _mlp_fastbp, "derivative": lambda w, x: _derivative_call(w, x, None)}
_REFERENCE = {"matmul_abt": _matmul_instance(reference),
              "dense": _dense_instance(reference), "mlp": _mlp_reference,
              "derivative": lambda w, x: _derivative_call(w, x, "reference")}


def network_available():
    """(True, "") when fastbp.network.MLP can be imported, else (False, why)."""
    try:
        from fastbp.network import MLP  # noqa: F401
    except ImportError as exc:
        return False, f"fastbp.network.MLP is not importable ({exc})"
    return True, ""
