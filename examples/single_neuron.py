"""Seed 000's single neuron, y = x w with E = ½ (t − y)², trained by fastbp.

The seed derives Δw = ∂E/∂w = (y − t) x (its eq 1).  Here the same
neuron is a dense layer with one input and one output (no bias, identity
activation), its gradient comes from fastbp's compiled kernels, and it is
checked against the seed's formula before every step of gradient descent.

    python examples/single_neuron.py
"""

import os

import numpy as np

import fastbp

TINY = os.environ.get("FASTBP_EXAMPLE_TINY") == "1"


def gradient(x: float, t: float, w: float) -> tuple[float, float]:
    """E and ∂E/∂w for one example, through the kernels."""
    X = np.array([[x]])                      # one example, one feature
    W = np.array([[w]])                      # one neuron, one weight
    b = np.zeros(1)
    Y = fastbp.dense_forward(X, W, b, "identity")       # y = x w
    E, dY = fastbp.squared_error(Y, np.array([[t]]), "half")   # E = ½(t − y)², δy = y − t
    _, dW, _ = fastbp.dense_backward(dY, X, W, Y, "identity", need_dX=False)
    return E, float(dW[0, 0])


def main() -> float:
    x, t, w, lr = 1.5, 3.0, 0.1, 0.2
    steps = 5 if TINY else 50
    for step in range(steps):
        E, dw = gradient(x, t, w)
        seed_formula = (x * w - t) * x       # seed 000, eq 1: Δw = (y − t) x
        assert abs(dw - seed_formula) <= 1e-12 * abs(seed_formula) + 1e-300
        if step % max(steps // 5, 1) == 0:
            print(f"step {step:3d}  E = {E:.3e}  w = {w:.6f}  ∂E/∂w = {dw:+.3e}")
        w -= lr * dw
    print(f"w = {w:.6f} (the exact answer is t / x = {t / x:.6f})")
    return w


if __name__ == "__main__":
    main()
