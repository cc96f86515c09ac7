"""An MLP on scikit-learn's bundled digits (8×8 images, 10 classes) with
fastbp.MLP: softmax + cross entropy, Adam, mini-batches.

    python examples/mlp_digits.py        # needs scikit-learn for the data
"""

import os

import numpy as np

from fastbp.network import MLP

TINY = os.environ.get("FASTBP_EXAMPLE_TINY") == "1"


def load() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X / 16.0, y.astype(np.int64)       # pixels in [0, 1], labels 0..9


def main() -> float:
    X, y = load()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(X))
    n_train = 300 if TINY else 1500
    train, test = order[:n_train], order[n_train:]
    hidden = 16 if TINY else 64
    net = MLP([64, hidden, 10], activation="relu", output_activation="softmax", seed=0)
    history = net.fit(X[train], y[train], epochs=3 if TINY else 30, batch_size=32, lr=0.01,
                      optimizer="adam", loss="cross_entropy", seed=0,
                      validation_data=(X[test], y[test]))
    accuracy = float(np.mean(net.predict(X[test]).argmax(axis=1) == y[test]))
    print(f"epochs: {len(history['loss'])}, last training loss {history['loss'][-1]:.4f}")
    print(f"test accuracy: {accuracy:.3f}")
    return accuracy


if __name__ == "__main__":
    main()
