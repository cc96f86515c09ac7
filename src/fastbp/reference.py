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


# g(z), and g'(z) written as a function of the output y = g(z).
_G = {
    "identity": lambda Z: Z,
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
    "relu": lambda Z: np.maximum(Z, 0.0),
}
_G_PRIME_OF_Y = {
    "identity": lambda Y: np.ones_like(Y),
    "sigmoid": lambda Y: Y * (1.0 - Y),  # σ' = σ(1 − σ)
    "tanh": lambda Y: 1.0 - Y * Y,  # tanh' = 1 − tanh²
    "relu": lambda Y: (Y > 0).astype(np.float64),  # relu' = [y > 0]
}


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


def dense_forward(X, W, b, activation="identity", out=None):
    """Z = X Wᵀ + b, Y = g(Z) (eqs 10, 11, one example per row)."""
    g = _G[_name(activation, ACTIVATIONS, "activation")]
    Z = X @ W.T + b
    return _store(out, g(Z))


def dense_backward(dY, X, W, Y, activation="identity", dX=None, dW=None,
                   db=None, need_dX=True):
    """δZ = δY ⊙ g'(Z) (21), δb = Σ_rows δZ (22), δW = δZᵀ X (23), δX = δZ W (24)."""
    g_prime = _G_PRIME_OF_Y[_name(activation, ACTIVATIONS, "activation")]
    dZ = dY * g_prime(Y)
    db = _store(db, dZ.sum(axis=0))
    dW = _store(dW, dZ.T @ X)
    dX = _store(dX, dZ @ W) if need_dX else None
    return dX, dW, db


def csr_forward(X, W, b, activation="identity", out=None):
    """fastbp._sparse's twin: Z = X Wᵀ + b, Y = g(Z) for a scipy.sparse X
    (scipy's own sparse product, never densified)."""
    g = _G[_name(activation, ACTIVATIONS, "activation")]
    Z = np.asarray(X @ W.T) + b
    return _store(out, g(Z))


def csr_backward(dY, X, Y, activation="identity"):
    """fastbp._sparse's twin: δZ = δY ⊙ g'(Y), δW = δZᵀ X (= (Xᵀ δZ)ᵀ with
    scipy's sparse product), δb = Σ_rows δZ; no δX (X is the input)."""
    g_prime = _G_PRIME_OF_Y[_name(activation, ACTIVATIONS, "activation")]
    dZ = dY * g_prime(Y)
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
