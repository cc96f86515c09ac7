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

from fastbp._enums import ACTIVATIONS, REDUCTIONS  # the names only: the algebra is all here


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
