"""Every kernel (every activation, reduction, out= form, several sizes),
refused calls and training steps, for memcheck to watch (ci/valgrind.sh).

Shapes are small: memcheck runs the code about 50 times slower."""

import numpy as np

import fastbp

rng = np.random.default_rng(0)
# empty dimensions, tiny and larger products, narrow and wide epilogue rows
SHAPES = [(0, 3, 2), (3, 0, 2), (1, 1, 1), (5, 7, 3), (9, 33, 40), (40, 41, 42), (70, 5, 1)]

for n, k, d in SHAPES:
    X, W, b = rng.standard_normal((n, k)), rng.standard_normal((d, k)), rng.standard_normal(d)
    dY, T = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    fastbp.matmul_abt(X, W)
    fastbp.matmul_abt(X, W, out=np.empty((n, d)))
    fastbp.matmul_abt_backward(dY, X, W)
    fastbp.matmul_abt_backward(dY, X, W, dA=np.empty((n, k)), dB=np.empty((d, k)))
    for act in fastbp.ACTIVATIONS:
        z = {"Z": np.empty((n, d))} if act == "silu" else {}  # silu keeps its Z
        Y = fastbp.dense_forward(X, W, b, act, **z)
        fastbp.dense_forward(X, W, b, act, out=np.empty((n, d)), **z)
        fastbp.dense_backward(dY, X, W, Y, act, **z)
        fastbp.dense_backward(dY, X, W, Y, act, need_dX=False, **z)
        fastbp.dense_backward(dY, X, W, Y, act, dX=np.empty((n, k)), dW=np.empty((d, k)),
                              db=np.empty(d), **z)
    for red in fastbp.REDUCTIONS:
        fastbp.squared_error(dY, T, red)
        fastbp.squared_error(dY, T, red, out=np.empty((n, d)))

# Refused calls must not touch memory either.
for bad in (np.ones((3, 4), np.float32), np.ones((4, 3)).T, [[1.0]], None, np.ones(3)):
    try:
        fastbp.matmul_abt(bad, np.ones((2, 3)))
    except (TypeError, ValueError):
        pass

# Training steps: the network object if it is there, else the same step by hand.
X, T = rng.standard_normal((64, 8)), rng.standard_normal((64, 3))
try:
    from fastbp.network import MLP
except ImportError:
    MLP = None
if MLP is not None:
    net = MLP([8, 16, 3], activation="tanh", seed=0)
    for _ in range(3):
        net.train_step(X, T, lr=0.01)
    clf = MLP([8, 16, 3], activation="relu", seed=1)
    labels = rng.integers(0, 3, size=64)
    onehot = np.eye(3)[labels]
    for _ in range(3):
        clf.train_step(X, onehot, lr=0.01, loss="cross_entropy")
    net.fit(X, T, epochs=2, batch_size=16, lr=0.01, seed=0)
    # the fused losses on the logits, and a silu layer's Z
    multi = MLP([8, 16, 3], activation="silu", output_activation="sigmoid", seed=2)
    multi.fit(X, (T > 0).astype(float), epochs=2, batch_size=16, lr=0.01, seed=0,
              loss="binary_cross_entropy")
    counts = MLP([8, 16, 3], activation="softplus", output_activation="exp", seed=3)
    counts.fit(X, np.abs(T), epochs=2, batch_size=16, lr=0.01, seed=0, loss="poisson")
    # a CSR X's first layer (fastbp._sparse), shuffled batches read in place
    import scipy.sparse as sp
    Xs = sp.random(64, 200, density=0.05, format="csr", random_state=0)
    wide = MLP([200, 16, 3], activation="silu", seed=4)
    wide.fit(Xs, T, epochs=2, batch_size=16, lr=0.01, seed=0)
    wide.predict(Xs)
    # the derivative passes (fastbp._derivatives), dense and CSR, chunked and split
    v = rng.standard_normal(multi.n_params)
    multi.input_jacobian(X)
    multi.param_jacobian(X)
    multi.jvp(X, rng.standard_normal(X.shape), v)
    multi.vjp(X, T)
    multi.hvp(X, (T > 0).astype(float), v, loss="binary_cross_entropy")
    multi.gnvp(X, (T > 0).astype(float), v, loss="binary_cross_entropy")
    multi.per_example_gradients(X, (T > 0).astype(float), loss="binary_cross_entropy")
    multi.input_gradient(X, (T > 0).astype(float), loss="binary_cross_entropy")
    w = rng.standard_normal(wide.n_params)
    wide.hvp(Xs, T, w)
    wide.param_jacobian(Xs)
    wide.input_jacobian(Xs)
    from fastbp import _derivatives
    small = _derivatives.Derivatives(counts.core, budget=300)  # many chunks
    small.hvp(X, np.abs(T), rng.standard_normal(counts.n_params), loss=3)
    small.param_jacobian(X)
    # Levenberg-Marquardt (fastbp._levmar): the dual form, the normal form in
    # row blocks, weights, a penalty, CSR
    fit_net = MLP([8, 6, 3], activation="tanh", seed=5)
    fit_net.fit(X, T, optimizer="lm", epochs=3, sample_weight=np.abs(T[:, 0]) + 0.1)
    fit_net.lm_step(X[:4], T[:4], 0.1, damping="diagonal", alpha=0.5)
    P = fit_net.n_params
    fit_net.derivative_core.normal_equations(X, T, np.zeros((P, P)), np.zeros(P), block_rows=5)
    wide.lm_step(Xs, T, 0.1)
else:
    W1, b1 = rng.standard_normal((16, 8)), np.zeros(16)
    W2, b2 = rng.standard_normal((3, 16)), np.zeros(3)
    for _ in range(3):
        H = fastbp.dense_forward(X, W1, b1, "tanh")
        Y = fastbp.dense_forward(H, W2, b2, "identity")
        _, dY = fastbp.squared_error(Y, T, "mean")
        dH, dW2, db2 = fastbp.dense_backward(dY, H, W2, Y, "identity")
        _, dW1, db1 = fastbp.dense_backward(dH, X, W1, H, "tanh", need_dX=False)
        for p, g in ((W1, dW1), (b1, db1), (W2, dW2), (b2, db2)):
            p -= 0.01 * g
print("workload done")
