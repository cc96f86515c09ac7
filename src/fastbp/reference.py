"""NumPy twins of the compiled kernels, written from the equations.

Every function here has the signature of its compiled twin in
``fastbp`` and is the oracle of the tests: short, obviously right, and not
fast.  Equation numbers are those of seed 002 (Kamper, "Yet another
introduction to backpropagation"); the losses follow seeds 000 and 001.

Batches are row-major: one example per row.  ``X``/``A`` is (N, K),
``W``/``B`` is (D, K) (one row per output neuron), ``b`` is (D,), and
``Y``/``C`` is (N, D).
"""

import numpy as np

from fastbp._enums import ACTIVATIONS, DAMPINGS, REDUCTIONS  # the names only: the algebra is all here


def _sigmoid(Z):
    # Stable form: exp only ever sees -|z|, so it never overflows.
    e = np.exp(-np.abs(Z))
    return np.where(Z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


LEAKY_SLOPE = 0.01  # leaky relu's slope for z < 0


def _silu_prime(Z):
    s = _sigmoid(Z)
    return s * (1.0 + Z * (1.0 - s))  # (z σ(z))' = σ + z σ (1 − σ)


# g(z), and g'(z) written as a function of the output y = g(z) -- except for
# silu, whose g' has no form in y: it takes Z (_G_PRIME_OF_Z).
_G = {
    "identity": lambda Z: Z,
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
    "relu": lambda Z: np.maximum(Z, 0.0),
    "leaky_relu": lambda Z: np.where(Z < 0, LEAKY_SLOPE * Z, Z),
    "elu": lambda Z: np.where(Z > 0, Z, np.expm1(np.minimum(Z, 0.0))),  # α = 1
    "softplus": lambda Z: np.maximum(Z, 0.0) + np.log1p(np.exp(-np.abs(Z))),  # log(1 + eᶻ), stably
    "silu": lambda Z: Z * _sigmoid(Z),
}
_G_PRIME_OF_Y = {
    "identity": lambda Y: np.ones_like(Y),
    "sigmoid": lambda Y: Y * (1.0 - Y),  # σ' = σ(1 − σ)
    "tanh": lambda Y: 1.0 - Y * Y,  # tanh' = 1 − tanh²
    "relu": lambda Y: (Y > 0).astype(np.float64),  # relu' = [y > 0]
    "leaky_relu": lambda Y: np.where(Y > 0, 1.0, LEAKY_SLOPE),
    "elu": lambda Y: np.where(Y > 0, 1.0, Y + 1.0),  # z ≤ 0: (eᶻ − 1)' = eᶻ = y + 1
    "softplus": lambda Y: -np.expm1(-Y),  # σ(z) = 1 − e^(−y)
}
_G_PRIME_OF_Z = {"silu": _silu_prime}


def _g_prime(activation, Y, Z=None):
    """g' at a layer's output Y (silu: at its pre-activation Z)."""
    if activation in _G_PRIME_OF_Z:
        return _G_PRIME_OF_Z[activation](Z)
    return _G_PRIME_OF_Y[activation](Y)


def _name(value, valid, argname):
    if value not in valid:
        raise ValueError(f"{argname} must be one of {valid}, got {value!r}")
    return value


def _store(out, value):
    """Write ``value`` into ``out`` when given, as the compiled kernels do."""
    if out is None:
        return np.ascontiguousarray(value, dtype=np.float64)
    out[...] = value
    return out


def matmul_abt(A, B, out=None):
    """C = A Bᵀ (seed 002 section 5.1)."""
    return _store(out, A @ B.T)


def matmul_abt_backward(dC, A, B, dA=None, dB=None):
    """δA = δC B (eq 26), δB = δCᵀ A (eq 25)."""
    return _store(dA, dC @ B), _store(dB, dC.T @ A)


def _check_z(fn, activation, Z, required):
    """Z, silu's pre-activation: refused for the activations whose g' comes
    from Y, and needed (``required``) by silu's backward."""
    _name(activation, ACTIVATIONS, "activation")
    if activation in _G_PRIME_OF_Z and Z is None and required:
        raise ValueError(f"{fn}: activation {activation!r} needs Z")
    if activation not in _G_PRIME_OF_Z and Z is not None:
        raise ValueError(f"{fn}: Z is for activation 'silu' only, not {activation!r}")


def dense_forward(X, W, b, activation="identity", out=None, *, Z=None):
    """Z = X Wᵀ + b, Y = g(Z) (eqs 10, 11, one example per row); Z (silu
    only) is written when given."""
    _check_z("dense_forward", activation, Z, False)
    g = _G[activation]
    pre = X @ W.T + b
    if Z is not None:
        Z[...] = pre
    return _store(out, g(pre))


def dense_backward(dY, X, W, Y, activation="identity", dX=None, dW=None,
                   db=None, need_dX=True, *, Z=None):
    """δZ = δY ⊙ g'(Z) (21), δb = Σ_rows δZ (22), δW = δZᵀ X (23), δX = δZ W (24).

    g' from Y, or from Z for silu (which requires Z)."""
    _check_z("dense_backward", activation, Z, True)
    dZ = dY * _g_prime(activation, Y, Z)
    db = _store(db, dZ.sum(axis=0))
    dW = _store(dW, dZ.T @ X)
    dX = _store(dX, dZ @ W) if need_dX else None
    return dX, dW, db


def csr_forward(X, W, b, activation="identity", out=None, *, Z=None):
    """fastbp._sparse's twin: Z = X Wᵀ + b, Y = g(Z) for a scipy.sparse X
    (scipy's own sparse product, never densified); Z (silu only) is written
    when given."""
    _check_z("csr_forward", activation, Z, False)
    g = _G[activation]
    pre = np.asarray(X @ W.T) + b
    if Z is not None:
        Z[...] = pre
    return _store(out, g(pre))


def csr_backward(dY, X, Y, activation="identity", *, Z=None):
    """fastbp._sparse's twin: δZ = δY ⊙ g'(Y) (silu: g'(Z)), δW = δZᵀ X
    (= (Xᵀ δZ)ᵀ with scipy's sparse product), δb = Σ_rows δZ; no δX (X is
    the input)."""
    _check_z("csr_backward", activation, Z, True)
    dZ = dY * _g_prime(activation, Y, Z)
    return np.ascontiguousarray(np.asarray(X.T @ dZ).T), dZ.sum(axis=0)


def squared_error(Y, T, reduction="sum", out=None):
    """Squared-error loss and its gradient with respect to Y.

    "sum":  J = Σ (T − Y)²,      δY = 2 (Y − T)   (seeds 001, 002)
    "half": E = ½ Σ (T − Y)²,    δY = Y − T       (seed 000)
    "mean": J / N and δY / N, N the number of rows (mean of seed 001's c_i);
            an empty batch gives loss 0.
    """
    _name(reduction, REDUCTIONS, "reduction")
    scale = {"sum": 1.0, "half": 0.5, "mean": 1.0 / max(Y.shape[0], 1)}[reduction]
    loss = scale * float(np.sum((T - Y) ** 2))
    return loss, _store(out, 2.0 * scale * (Y - T))


def _scale_and_rows(Z, reduction, sample_weight):
    """The reduction's scale and the row weights r_i = w_i N / Σ w (ones without w)."""
    _name(reduction, REDUCTIONS, "reduction")
    n = Z.shape[0]
    scale = {"sum": 1.0, "half": 0.5, "mean": 1.0 / max(n, 1)}[reduction]
    r = np.ones(n) if sample_weight is None else sample_weight * n / np.sum(sample_weight)
    return scale, r[:, None]


def binary_cross_entropy(Z, T, reduction="sum", sample_weight=None, out=None):
    """Binary cross entropy of P = σ(Z), taken from the logits Z:

    J = s Σ_i r_i Σ_j −[t log p + (1 − t) log(1 − p)], with −log σ(z) =
    log(1 + e^{−z}) and −log(1 − σ(z)) = log(1 + e^{z}) (np.logaddexp, so
    any finite z is fine); δZ = s r_i (P − T).  s: 1 ("sum"), ½ ("half"),
    1/N ("mean"); r_i = w_i N / Σ w.
    """
    scale, r = _scale_and_rows(Z, reduction, sample_weight)
    with np.errstate(under="ignore"):  # e^{−|z|} → 0 is the right limit
        per = T * np.logaddexp(0.0, -Z) + (1.0 - T) * np.logaddexp(0.0, Z)
    return scale * float(np.sum(r * per)), _store(out, scale * r * (_sigmoid(Z) - T))


def poisson(Z, T, reduction="sum", sample_weight=None, out=None):
    """Half the Poisson deviance of Ŷ = exp(Z), taken from the logits Z:

    J = s Σ_i r_i Σ_j [t log(t / ŷ) − t + ŷ], with log(t / ŷ) = log t − z
    and 0 log 0 = 0; δZ = s r_i (Ŷ − T).  s and r_i as in binary_cross_entropy.
    """
    scale, r = _scale_and_rows(Z, reduction, sample_weight)
    Y = np.exp(Z)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_log_t = np.where(T > 0, T * np.log(np.where(T > 0, T, 1.0)), 0.0)
    per = t_log_t - T * Z - T + Y
    return scale * float(np.sum(r * per)), _store(out, scale * r * (Y - T))


# ---------------------------------------------------------------------------
# Network twins: the derivatives of fastbp.MLP beyond the gradient
# (fastbp.derivatives), from DESIGN.md's algebra.  ``net`` is an MLP, read
# through its weights, biases, activations and sizes only.
# ---------------------------------------------------------------------------

# g″ (in z), from the output y where g′ is, from z for silu (_G_PRIME_OF_Z)
_G_SECOND_OF_Y = {
    "identity": lambda Y: np.zeros_like(Y),
    "sigmoid": lambda Y: (1.0 - 2.0 * Y) * Y * (1.0 - Y),  # σ″ = σ′ (1 − 2σ)
    "tanh": lambda Y: -2.0 * Y * (1.0 - Y * Y),  # tanh″ = −2 tanh tanh′
    "relu": lambda Y: np.zeros_like(Y),  # 0 off the kink (almost everywhere)
    "leaky_relu": lambda Y: np.zeros_like(Y),
    "elu": lambda Y: np.where(Y > 0, 0.0, Y + 1.0),  # z ≤ 0: (eᶻ)′ = eᶻ = y + 1
    "softplus": lambda Y: -np.expm1(-Y) * np.exp(-Y),  # σ(1 − σ), σ = 1 − e^(−y)
}


def _silu_second(Z):
    s = _sigmoid(Z)
    return s * (1.0 - s) * (2.0 + Z * (1.0 - 2.0 * s))  # (σ + z σ′)′ = 2σ′ + z σ″


def _g_second(activation, Y, Z):
    if activation in _G_PRIME_OF_Z:
        return _silu_second(Z)
    return _G_SECOND_OF_Y[activation](Y)


_FUSED = {"cross_entropy", "binary_cross_entropy", "poisson"}


def _layers(net, loss=None):
    """(W, b, g) per layer; a fused loss (or a softmax / exp output) takes
    the last layer's logits: identity there."""
    acts = list(net.activations)
    if loss in _FUSED or acts[-1] in ("softmax", "exp"):
        acts[-1] = "identity"
    return list(zip(net.weights, net.biases, acts))


def _forward_pass(layers, X):
    """A[0..L] and Z[0..L-1]: A_0 = X, Z_l = A_l W_lᵀ + b_l, A_{l+1} = g(Z_l)."""
    A, Z = [X], []
    for W, b, g in layers:
        Z.append(np.asarray(A[-1] @ W.T) + b)
        A.append(_G[g](Z[-1]))
    return A, Z


def _output(net, U):
    """ŷ of the last layer's values U (softmax / exp outputs apply theirs)."""
    out = net.activations[-1]
    if out == "softmax":
        E = np.exp(U - U.max(axis=1, keepdims=True))
        return E / E.sum(axis=1, keepdims=True)
    return np.exp(U) if out == "exp" else U


def _output_jvp(net, Yhat, T):
    """(∂ŷ/∂U) T row by row; symmetric, so also the vjp."""
    out = net.activations[-1]
    if out == "softmax":
        return Yhat * (T - np.sum(Yhat * T, axis=1, keepdims=True))
    return Yhat * T if out == "exp" else T


def _split(net, flat):
    """Per-layer (Ẇ, ḃ) of a flat vector laid out as net.params."""
    flat = np.asarray(flat, dtype=np.float64)
    if flat.shape != (net.n_params,):
        raise ValueError(f"a parameter vector must have shape ({net.n_params},), got {flat.shape}")
    Ws, off = [], 0
    for W in net.weights:
        Ws.append(flat[off:off + W.size].reshape(W.shape))
        off += W.size
    bs = []
    for b in net.biases:
        bs.append(flat[off:off + b.size])
        off += b.size
    return Ws, bs


def _flat(dWs, dbs):
    return np.concatenate([w.ravel() for w in dWs] + [b.ravel() for b in dbs])


def _loss_terms(net, loss, reduction, U, T, sample_weight):
    """(J, ∂J/∂U, H·): the loss of gradients on the last layer's values U (ŷ
    for squared error, the logits for a fused loss), its gradient and its
    Hessian's product with a tangent of U."""
    if loss not in ("squared_error",) + tuple(_FUSED):
        raise ValueError(f"loss must be one of squared_error, {', '.join(sorted(_FUSED))}, got {loss!r}")
    if loss == "cross_entropy" and reduction == "half":
        raise ValueError("reduction for cross_entropy must be 'sum' or 'mean', got 'half'")
    s, r = _scale_and_rows(U, reduction, None if sample_weight is None
                           else np.asarray(sample_weight, dtype=np.float64))
    if loss == "squared_error":
        J = s * float(np.sum(r * (T - U) ** 2))
        return J, 2.0 * s * r * (U - T), lambda dU: 2.0 * s * r * dU
    if loss == "binary_cross_entropy":
        J, dU = binary_cross_entropy(U, T, reduction, sample_weight)
        P = _sigmoid(U)
        return J, dU, lambda dU_: s * r * P * (1.0 - P) * dU_
    if loss == "poisson":
        J, dU = poisson(U, T, reduction, sample_weight)
        return J, dU, lambda dU_: s * r * np.exp(U) * dU_
    T = np.eye(U.shape[1])[T] if np.ndim(T) == 1 else T  # int labels: one-hot rows
    tsum = T.sum(axis=1, keepdims=True)
    lse = np.logaddexp.reduce(U, axis=1, keepdims=True)
    P = np.exp(U - lse)
    J = s * float(np.sum(r * (tsum * lse - np.sum(T * U, axis=1, keepdims=True))))
    return J, s * r * (tsum * P - T), lambda dU: s * r * tsum * P * (dU - np.sum(P * dU, axis=1, keepdims=True))


def _tangent_pass(layers, A, Z, dX, dWs, dbs):
    """Ż_l and Ȧ_{l+1}: Ż = Ȧ Wᵀ + A Ẇᵀ + ḃ, Ȧ' = g′ ⊙ Ż (a None is 0)."""
    Adot, Zdot = [dX if dX is not None else np.zeros(np.shape(A[0]))], []
    for l, (W, b, g) in enumerate(layers):
        zd = Adot[-1] @ W.T
        if dWs is not None:
            zd = zd + np.asarray(A[l] @ dWs[l].T) + dbs[l]
        Zdot.append(zd)
        Adot.append(_g_prime(g, A[l + 1], Z[l]) * zd)
    return Adot, Zdot


def _backward_pass(layers, A, Z, top):
    """Per-layer (δW, δb) and δX of the cotangent top = ∂/∂A_L."""
    dWs, dbs = [None] * len(layers), [None] * len(layers)
    d = top
    for l in reversed(range(len(layers))):
        W, b, g = layers[l]
        dZ = d * _g_prime(g, A[l + 1], Z[l])
        dWs[l] = np.asarray((A[l].T @ dZ).T) if hasattr(A[l], "toarray") else dZ.T @ A[l]
        dbs[l] = dZ.sum(axis=0)
        d = dZ @ W
    return dWs, dbs, d


def _check_rows(name, a, n, width):
    a = np.asarray(a, dtype=np.float64)
    if a.shape != (n, width):
        raise ValueError(f"{name} must have shape ({n}, {width}), got {a.shape}")
    return a


def input_jacobian(net, X, out=None):
    """J[i] = ∂ŷ_i/∂x_i (N, D_out, D_in): reverse mode from each output unit."""
    layers = _layers(net)
    A, Z = _forward_pass(layers, X)
    Yhat = _output(net, A[-1])
    n, d = Yhat.shape
    J = np.empty((n, d, net.sizes[0]))
    for k in range(d):
        e = np.zeros((n, d))
        e[:, k] = 1.0
        J[:, k, :] = _backward_pass(layers, A, Z, _output_jvp(net, Yhat, e))[2]
    return _store(out, J)


def input_gradient(net, X, T, loss="squared_error", reduction="sum", sample_weight=None, out=None):
    """(J, ∂J/∂X): the loss of gradients and the δ of the first layer."""
    layers = _layers(net, loss)
    A, Z = _forward_pass(layers, X)
    J, dU, _ = _loss_terms(net, loss, reduction, A[-1], T, sample_weight)
    return J, _store(out, _backward_pass(layers, A, Z, dU)[2])


def jvp(net, X, dX=None, dparams=None, out=None):
    """(ŷ, ẏ): ŷ and its tangent along dX and/or dparams (forward mode)."""
    if dX is None and dparams is None:
        raise ValueError("jvp needs a tangent: dX (N, D_in) and/or dparams (P,), got neither")
    n = X.shape[0]
    if dX is not None:
        dX = _check_rows("dX", dX, n, net.sizes[0])
    dWs, dbs = _split(net, dparams) if dparams is not None else (None, None)
    layers = _layers(net)
    A, Z = _forward_pass(layers, X)
    Adot, _ = _tangent_pass(layers, A, Z, dX, dWs, dbs)
    Yhat = _output(net, A[-1])
    Y_out, dY_out = (None, None) if out is None else out
    return _store(Y_out, Yhat), _store(dY_out, _output_jvp(net, Yhat, Adot[-1]))


def vjp(net, X, dY, out=None):
    """(dX, dparams): the cotangent dY on ŷ pulled back (reverse mode)."""
    dY = _check_rows("dY", dY, X.shape[0], net.sizes[-1])
    layers = _layers(net)
    A, Z = _forward_pass(layers, X)
    dWs, dbs, dX = _backward_pass(layers, A, Z, _output_jvp(net, _output(net, A[-1]), dY))
    dX_out, dp_out = (None, None) if out is None else out
    return _store(dX_out, dX), _store(dp_out, _flat(dWs, dbs))


def _r_op(net, X, T, v, loss, reduction, sample_weight, gauss_newton):
    """Hv by Pearlmutter's R-operator, or Gv (the first terms only)."""
    dWs, dbs = _split(net, v)
    layers = _layers(net, loss)
    A, Z = _forward_pass(layers, X)
    Adot, Zdot = _tangent_pass(layers, A, Z, None, dWs, dbs)
    _, d, hess = _loss_terms(net, loss, reduction, A[-1], T, sample_weight)
    Rd = hess(Adot[-1])  # R(δ_L) = H_u u̇
    if gauss_newton:
        return _flat(*_backward_pass(layers, A, Z, Rd)[:2])
    HW, Hb = [None] * len(layers), [None] * len(layers)
    for l in reversed(range(len(layers))):
        W, b, g = layers[l]
        g1 = _g_prime(g, A[l + 1], Z[l])
        dZ = d * g1
        RdZ = Rd * g1 + d * _g_second(g, A[l + 1], Z[l]) * Zdot[l]
        HW[l] = (np.asarray((A[l].T @ RdZ).T) if hasattr(A[l], "toarray") else RdZ.T @ A[l]) \
            + dZ.T @ Adot[l]
        Hb[l] = RdZ.sum(axis=0)
        d, Rd = dZ @ W, RdZ @ W + dZ @ dWs[l]
    return _flat(HW, Hb)


def hvp(net, X, T, v, loss="squared_error", reduction="sum", sample_weight=None, out=None):
    """H v, H the Hessian of the loss (as gradients takes it) in the parameters."""
    return _store(out, _r_op(net, X, T, v, loss, reduction, sample_weight, False))


def gnvp(net, X, T, v, loss="squared_error", reduction="sum", sample_weight=None, out=None):
    """G v, G = J_uᵀ H_u J_u the generalised Gauss-Newton matrix."""
    return _store(out, _r_op(net, X, T, v, loss, reduction, sample_weight, True))


def _rowwise(net, layers, A, Z, tops):
    """Row r of the result: the flat parameter gradient of the cotangent
    tops[r] on A_L of example r // m (m = len(tops) // N)."""
    m = tops.shape[0] // max(A[0].shape[0], 1)
    rows = []
    for r in range(tops.shape[0]):
        i = r // m
        Ai = [a[i:i + 1] for a in A]  # (a CSR X's row stays sparse)
        Zi = [z[i:i + 1] for z in Z]
        rows.append(_flat(*_backward_pass(layers, Ai, Zi, tops[r:r + 1])[:2]))
    return np.array(rows).reshape(tops.shape[0], net.n_params)


def param_jacobian(net, X, out=None):
    """Row i·D_out + k: ∂ŷ_ik/∂θ, one backward pass per output unit."""
    layers = _layers(net)
    A, Z = _forward_pass(layers, X)
    Yhat = _output(net, A[-1])
    n, d = Yhat.shape
    tops = np.zeros((n * d, d))
    for k in range(d):
        e = np.zeros((n, d))
        e[:, k] = 1.0
        tops[k::d] = _output_jvp(net, Yhat, e)
    return _store(out, _rowwise(net, layers, A, Z, tops))


def per_example_gradients(net, X, T, loss="squared_error", reduction="sum", sample_weight=None,
                          out=None):
    """Row i: the gradient of example i's term s r_i ℓ_i of the reduced loss."""
    layers = _layers(net, loss)
    A, Z = _forward_pass(layers, X)
    _, dU, _ = _loss_terms(net, loss, reduction, A[-1], T, sample_weight)
    return _store(out, _rowwise(net, layers, A, Z, dU))


def lm_step(net, X, T, mu, damping="identity", sample_weight=None, out=None, *, alpha=0.0):
    """δ of Levenberg-Marquardt's (JᵀJ + αΛ + μD) δ = −(Jᵀe + αΛθ):
    e = √r (ŷ − T) row by row, J = ∂e/∂θ (from param_jacobian), Λ the
    weights, D = I or diag(JᵀJ) (its zeros as 1), by numpy.linalg.solve."""
    _name(damping, DAMPINGS, "damping")
    T = np.asarray(T, dtype=np.float64).reshape(X.shape[0], -1)
    n, d = T.shape
    r = np.ones(n) if sample_weight is None else sample_weight * n / np.sum(sample_weight)
    root = np.repeat(np.sqrt(r), d)
    J = param_jacobian(net, X) * root[:, None]
    e = (_output(net, _forward_pass(_layers(net), X)[0][-1]) - T).ravel() * root
    JtJ = J.T @ J
    D = np.ones(net.n_params) if damping == DAMPINGS[0] else np.where(np.diag(JtJ) > 0, np.diag(JtJ), 1.0)
    penalty = np.zeros(net.n_params)
    penalty[:net.n_weights] = alpha
    delta = -np.linalg.solve(JtJ + np.diag(penalty + mu * D), J.T @ e + penalty * net.params)
    return _store(out, delta)
