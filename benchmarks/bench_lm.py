"""Levenberg-Marquardt (MLP.fit(optimizer="lm"), MLP.lm_step) against its peers.

Issue 17's benchmark, one interleaved run per invocation:

1. Seconds per LM iteration, fastbp against ``scipy.optimize.least_squares
   (method="lm")`` (MINPACK, its default x_scale="jac") given an analytic
   NumPy Jacobian of the one-hidden-layer tanh net, both from θ0 =
   ``MLP(seed=0).params``, on (a) the smooth 2-D target (500 points uniform
   on [0, 1]², y = sin(2πx₁)·cos(πx₂), [2, 20, 1], P = 81) and (b)
   diabetes (X and y standardised, [10, 20, 1], P = 241).  SciPy: wall time
   / res.njev (one Jacobian per iteration); fastbp: wall time /
   len(history["loss"]) of a fit of a fixed number of iterations (goal=0,
   min_grad=0).  Target: fastbp ≥ 5× faster.
2. Wall time to training MSE ≤ 1e-6 on the 2-D target: fastbp
   ``fit(goal=1e-6)`` (its callback stamps each iteration) against SciPy's
   LM, whose residual function is wrapped to stamp (time, MSE) at every
   evaluation; each is the first stamp with MSE ≤ 1e-6.  Target: fastbp ≤ ¼.
   A third row runs fastbp with a gentler μ schedule (mu_dec=1/3,
   mu_inc=2, not the default), to show what the iteration count costs.
3. The MSE reached in the same wall time, at two budgets (both printed):
   fastbp LM's time to 1e-6 and SciPy LM's.  Adam is ``MLP.fit(optimizer=
   "adam", lr=0.01, batch_size=32)`` from the same θ0, the full-data MSE
   taken by a callback after every epoch (the callback's own time is taken
   out of the clock).  L-BFGS (fastbp.sklearn's and scikit-learn's
   MLPRegressor, hidden (20,), tanh, alpha=0, tol=0, random_state=0, so
   their own initialisation) has no per-iteration hook: its curve is
   separate fits of increasing max_iter (10, 30, 100, 300, 1000, 3000),
   each timed once, the two libraries interleaved.  Every MSE is computed
   from the predictions (scikit-learn's loss_ is ½·MSE).
4. One ``lm_step`` on [10, 50, 1] tanh, diabetes (N = 442, P = 601), μ =
   1e-3, against the same solve by hand in NumPy/SciPy (the NumPy J, JᵀJ,
   cho_factor/cho_solve without finiteness checks), torch.func
   (torch.linalg.cholesky, torch.cholesky_solve) and jax.jit (cho_factor/
   cho_solve; compiled once before timing, compile time reported apart),
   each of the last two with J two ways: per example (vmap of the gradient
   of the scalar output) and jacrev of the whole residual vector (N
   vector-Jacobian products).  torch and jax are optional (skipped with a
   note).  Every peer's δ is compared with fastbp's.  ms per call is the
   median over interleaved rounds of repeated calls (fewer calls for a slow
   peer).  The floor is SYRK + Cholesky timed on SciPy's BLAS, for both
   forms: normal, JᵀJ, 442·601² + 601³/3 ≈ 232 MFLOP; dual, J Jᵀ,
   601·442² + 442³/3 ≈ 146 MFLOP, which fastbp uses when N·D_out < P (the
   form it took is printed).  fastbp's dual form builds J Jᵀ from the
   layers (Σ (Δ Δᵀ) ⊙ (A Aᵀ + 1)) without J, so it can beat that "floor".
   Target: fastbp ≥ 3× faster than torch.func.

    PYTHONPATH=src python benchmarks/bench_lm.py [--repeat 3] [--threads 2] [--quick]
        [--json PATH] [--plot PATH]
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_lm.py ...

--threads caps every BLAS of the process (threadpoolctl) and torch's
threads; XLA's thread pool is left alone.  --plot (matplotlib, optional)
draws MSE against wall time on the 2-D target for every method.

A benchmark, not a test: nothing here asserts a speed.
"""

import argparse
import json
import os
import statistics
import sys
import time
import warnings

import numpy as np
import scipy
import scipy.linalg
import sklearn
import threadpoolctl
from scipy.linalg import blas, lapack
from scipy.optimize import least_squares
from sklearn import neural_network as sk
from sklearn.datasets import load_diabetes
from sklearn.exceptions import ConvergenceWarning

import fastbp
import fastbp.levmar
import fastbp.sklearn as fb

GOAL = 1e-6
MU = 1e-3
ADAM = {"lr": 0.01, "batch_size": 32}
# not the default (trainlm's 0.1 and 10): a gentler μ schedule, printed beside it
GENTLE = {"mu_dec": 1 / 3, "mu_inc": 2.0}
LBFGS_ITERS = (10, 30, 100, 300, 1000, 3000)
EPS_TOL = 1e-15  # MINPACK refuses tolerances at machine epsilon; this never stops it early


def smooth2d():
    X = np.random.default_rng(0).uniform(size=(500, 2))
    y = np.sin(2 * np.pi * X[:, 0]) * np.cos(np.pi * X[:, 1])
    return X, y[:, None]


def diabetes():
    X, y = load_diabetes(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    return np.ascontiguousarray(X), ((y - y.mean()) / y.std())[:, None]


PROBLEMS = {"2-D target": (smooth2d, [2, 20, 1]), "diabetes": (diabetes, [10, 20, 1])}


# -- the one-hidden-layer tanh net in plain NumPy, fastbp's parameter layout --

def unpack(theta, d_in, H):
    """W1 (H, d_in), W2 (H,), b1 (H,), b2: every W row-major, then every b."""
    n1 = H * d_in
    return theta[:n1].reshape(H, d_in), theta[n1:n1 + H], theta[n1 + H:n1 + 2 * H], theta[-1]


def residual(theta, X, y, H):
    W1, W2, b1, b2 = unpack(theta, X.shape[1], H)
    return np.tanh(X @ W1.T + b1) @ W2 + b2 - y


def jacobian(theta, X, H):
    """∂ŷ/∂θ (N, P) from the equations: ∂ŷ/∂W1[j,:] = W2[j](1 − h_j²) x, ..."""
    N, d = X.shape
    W1, W2, b1, _ = unpack(theta, d, H)
    h = np.tanh(X @ W1.T + b1)
    g = W2 * (1.0 - h * h)
    J = np.empty((N, H * d + 2 * H + 1))
    J[:, :H * d] = (g[:, :, None] * X[:, None, :]).reshape(N, H * d)
    J[:, H * d:H * d + H] = h
    J[:, H * d + H:H * d + 2 * H] = g
    J[:, -1] = 1.0
    return J


def check_jacobian(sizes, X):
    net = fastbp.MLP(sizes, activation="tanh", seed=0)
    np.testing.assert_allclose(jacobian(net.params, X, sizes[1]), net.param_jacobian(X),
                               rtol=1e-10, atol=1e-14)


# -- the two LMs, each traced as [(seconds since start, MSE)] ------------------

class _Reached(Exception):
    pass


def scipy_lm(theta0, X, T, max_nfev, goal=None, time_cap=np.inf):
    """least_squares(method="lm"); with goal, stops at the first evaluation
    with MSE ≤ goal (or past time_cap).  Returns (seconds, njev, trace)."""
    y, H = T[:, 0], (theta0.size - 1) // (X.shape[1] + 2)
    trace, njev = [], [0]

    def jac(theta):
        njev[0] += 1
        return jacobian(theta, X, H)

    def fun(theta):
        r = residual(theta, X, y, H)
        trace.append((time.perf_counter() - t0, float(r @ r) / r.size))
        if goal is not None and (trace[-1][1] <= goal or trace[-1][0] > time_cap):
            raise _Reached
        return r

    t0 = time.perf_counter()
    try:
        least_squares(fun, theta0, jac=jac, method="lm", ftol=EPS_TOL, xtol=EPS_TOL,
                      gtol=EPS_TOL, max_nfev=max_nfev)
    except _Reached:
        pass
    return time.perf_counter() - t0, njev[0], trace


def fastbp_lm(net, theta0, X, T, epochs, goal=0.0, **options):
    """fit(optimizer="lm") from theta0; returns (seconds, history, trace)."""
    net.params[...] = theta0
    trace = [(0.0, float(np.mean((net.forward(X) - T) ** 2)))]

    def stamp(epoch, history):
        trace.append((time.perf_counter() - t0, history["loss"][-1]))

    t0 = time.perf_counter()
    hist = net.fit(X, T, optimizer="lm", epochs=epochs, goal=goal, min_grad=0.0, callback=stamp,
                   progress=False, **options)
    return time.perf_counter() - t0, hist, trace


def first_below(trace, goal):
    return next((t for t, mse in trace if mse <= goal), None)


def running_min(trace):
    out, best = [], np.inf
    for t, mse in trace:  # an LM iterate is the best point so far; the rest are rejected trials
        best = min(best, mse)
        out.append((t, best))
    return out


def per_iteration(repeat, iters):
    rows = {}
    for name, (make, sizes) in PROBLEMS.items():
        X, T = make()
        check_jacobian(sizes, X)
        net = fastbp.MLP(sizes, activation="tanh", seed=0)
        theta0 = net.params.copy()
        fastbp_lm(net, theta0, X, T, 2)  # warm-up: workspace, system buffers
        scipy_lm(theta0, X, T, 3)
        sp, fa = [], []
        for r in range(repeat):
            for who in (("scipy", "fastbp") if r % 2 == 0 else ("fastbp", "scipy")):
                if who == "scipy":
                    s, njev, trace = scipy_lm(theta0, X, T, iters)
                    sp.append(s / njev)
                    sp_info = (njev, running_min(trace)[-1][1])
                else:
                    s, hist, _ = fastbp_lm(net, theta0, X, T, iters)
                    fa.append(s / len(hist["loss"]))
                    fa_info = (len(hist["loss"]), hist["loss"][-1], hist["stop"])
        rows[name] = {"P": net.n_params, "N": X.shape[0], "scipy_s": statistics.median(sp),
                      "fastbp_s": statistics.median(fa), "scipy_iters": sp_info[0],
                      "scipy_mse": sp_info[1], "fastbp_iters": fa_info[0], "fastbp_mse": fa_info[1],
                      "fastbp_stop": fa_info[2]}
        rows[name]["ratio"] = rows[name]["scipy_s"] / rows[name]["fastbp_s"]
    return rows


def time_to_goal(repeat, max_nfev, time_cap):
    X, T = smooth2d()
    net = fastbp.MLP([2, 20, 1], activation="tanh", seed=0)
    theta0 = net.params.copy()
    times = {"scipy": [], "fastbp": [], "fastbp_gentle": []}
    traces, iterations = {}, {}
    names = list(times)
    for r in range(repeat):
        for who in names[r % 3:] + names[:r % 3]:
            if who == "scipy":
                _, n_iter, trace = scipy_lm(theta0, X, T, max_nfev, GOAL, time_cap)
                trace = running_min(trace)
            else:
                _, hist, trace = fastbp_lm(net, theta0, X, T, 10000, GOAL,
                                           **(GENTLE if who == "fastbp_gentle" else {}))
                n_iter = len(hist["loss"])
            times[who].append(first_below(trace, GOAL))
            traces[who], iterations[who] = trace, n_iter
    out = {}
    for who, ts in times.items():
        reached = [t for t in ts if t is not None]
        out[who] = {"seconds": statistics.median(reached) if len(reached) == len(ts) else None,
                    "runs": ts, "iterations": iterations[who], "last_mse": traces[who][-1][1]}
    both = out["scipy"]["seconds"] and out["fastbp"]["seconds"]
    out["ratio"] = out["scipy"]["seconds"] / out["fastbp"]["seconds"] if both else None
    return out, traces


# -- first-order methods on the 2-D target, as MSE against time ---------------

def adam_curve(horizon):
    X, T = smooth2d()
    net = fastbp.MLP([2, 20, 1], activation="tanh", seed=0)
    trace = [(0.0, float(net.loss(X, T)))]
    skipped = [0.0]

    def stamp(epoch, history):
        t = time.perf_counter()
        trace.append((t - t0 - skipped[0], float(net.loss(X, T))))
        skipped[0] += time.perf_counter() - t
        return trace[-1][0] > horizon

    t0 = time.perf_counter()
    net.fit(X, T, optimizer="adam", epochs=10 ** 7, seed=0, callback=stamp, progress=False, **ADAM)
    return trace


def lbfgs_curves(horizon, iters):
    X, T = smooth2d()
    y = T[:, 0]
    curves = {"fastbp.sklearn lbfgs": [], "scikit-learn lbfgs": []}
    libs = {"fastbp.sklearn lbfgs": fb, "scikit-learn lbfgs": sk}
    for i, k in enumerate(iters):
        names = list(curves) if i % 2 == 0 else list(curves)[::-1]
        for name in names:
            est = libs[name].MLPRegressor(hidden_layer_sizes=(20,), activation="tanh", solver="lbfgs",
                                          alpha=0.0, max_iter=k, tol=0.0, max_fun=100 * k,
                                          random_state=0)
            t0 = time.perf_counter()
            est.fit(X, y)
            curves[name].append((time.perf_counter() - t0, float(np.mean((est.predict(X) - y) ** 2))))
        if min(c[-1][0] for c in curves.values()) > horizon:
            break
    return curves


def mse_at(trace, budget):
    """The lowest MSE recorded by the budget (None: nothing finished by then)."""
    done = [mse for t, mse in trace if t <= budget]
    return min(done) if done else None


# -- one lm_step on [10, 50, 1] ----------------------------------------------

def step_peers(X, T, theta, threads):
    """name -> (δ function, note); the optional ones built here."""
    y, H, notes = T[:, 0], 50, {}

    def numpy_step():
        J = jacobian(theta, X, H)
        e = residual(theta, X, y, H)
        A = J.T @ J
        A.flat[::A.shape[0] + 1] += MU
        c = scipy.linalg.cho_factor(A, overwrite_a=True, check_finite=False)
        return scipy.linalg.cho_solve(c, -(J.T @ e), check_finite=False)

    peers = {"NumPy/SciPy": numpy_step}
    try:
        import torch
        import torch.func
    except ImportError:
        notes["torch.func"] = "skipped: torch is not installed"
    else:
        peers.update(torch_peers(torch, X, y, theta, threads))
    try:
        import jax
    except ImportError:
        notes["jax.jit"] = "skipped: jax is not installed"
    else:
        jax_made, notes["jax.jit, per example"], notes["jax.jit, jacrev of e"] = jax_peers(jax, X, y, theta)
        peers.update(jax_made)
    return peers, notes


def _unpack_50(th):
    return th[:500].reshape(50, 10), th[500:550], th[550:600], th[600]


def torch_peers(torch, X, y, theta, threads):
    """Two Jacobians: per example (vmap of jacrev of the scalar output), and
    jacrev of the whole residual vector (442 vector-Jacobian products)."""
    torch.set_num_threads(threads)
    Xt, yt, tht = (torch.tensor(a, dtype=torch.float64) for a in (X, y, theta))
    eye = torch.eye(theta.size, dtype=torch.float64)

    def out_one(th, x):
        W1, W2, b1, b2 = _unpack_50(th)
        return torch.tanh(W1 @ x + b1) @ W2 + b2

    def res(th):
        W1, W2, b1, b2 = _unpack_50(th)
        r = torch.tanh(Xt @ W1.T + b1) @ W2 + b2 - yt
        return r, r

    per_example = torch.func.vmap(torch.func.jacrev(out_one), in_dims=(None, 0))
    whole = torch.func.jacrev(res, has_aux=True)

    def solve(J, e):
        L = torch.linalg.cholesky(J.T @ J + MU * eye)
        return torch.cholesky_solve(-(J.T @ e)[:, None], L)[:, 0].numpy()

    return {"torch.func, per example": lambda: solve(per_example(tht, Xt), res(tht)[0]),
            "torch.func, jacrev of e": lambda: solve(*whole(tht))}


def jax_peers(jax, X, y, theta):
    """The same two Jacobians under jax.jit; returns (peers, two compile notes)."""
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from jax.scipy.linalg import cho_factor, cho_solve

    def out_one(th, x):
        W1, W2, b1, b2 = _unpack_50(th)
        return jnp.tanh(W1 @ x + b1) @ W2 + b2

    def res(th, Xj, yj):
        W1, W2, b1, b2 = _unpack_50(th)
        r = jnp.tanh(Xj @ W1.T + b1) @ W2 + b2 - yj
        return r, r

    def solve(J, e):
        A = J.T @ J + MU * jnp.eye(J.shape[1])
        return cho_solve(cho_factor(A), -(J.T @ e))

    steps = {"per example": jax.jit(lambda th, Xj, yj: solve(
                 jax.vmap(jax.grad(out_one), in_axes=(None, 0))(th, Xj), res(th, Xj, yj)[0])),
             "jacrev of e": jax.jit(lambda th, Xj, yj: solve(
                 *jax.jacrev(res, has_aux=True)(th, Xj, yj)))}
    args = tuple(jnp.asarray(a) for a in (theta, X, y))
    peers, notes = {}, []
    for name, step in steps.items():
        t0 = time.perf_counter()
        step(*args).block_until_ready()
        notes.append(f"compile + first call {time.perf_counter() - t0:.2f} s")
        peers[f"jax.jit, {name}"] = (lambda step=step: np.asarray(step(*args).block_until_ready()))
    return peers, notes[0], notes[1]


def floor_step(J, form):
    """SYRK + Cholesky of one form, on SciPy's BLAS (fastbp's)."""
    JF = np.asfortranarray(J)
    trans = 1 if form == "normal" else 0  # normal: JᵀJ (P × P); dual: J Jᵀ (m × m)

    def run():
        A = blas.dsyrk(1.0, JF, trans=trans)
        A.flat[::A.shape[0] + 1] += MU
        lapack.dpotrf(A, lower=0, overwrite_a=1)
    return run


def lm_step_bench(rounds, calls, threads, sample_s):
    X, T = diabetes()
    net = fastbp.MLP([10, 50, 1], activation="tanh", seed=0)
    theta = net.params.copy()
    N, P = X.shape[0], net.n_params
    form = fastbp.levmar._Solver(net, N, fastbp.levmar.LM_MEMORY, False).form
    buf = np.empty(P)
    peers, notes = step_peers(X, T, theta, threads)
    J = jacobian(theta, X, 50)
    fns = {"fastbp": lambda: net.lm_step(X, T, MU, out=buf), **peers,
           "floor, normal": floor_step(J, "normal"), "floor, dual": floor_step(J, "dual")}
    ref = net.lm_step(X, T, MU).copy()
    diffs, n_calls = {}, {}
    for name, fn in fns.items():
        t0 = time.perf_counter()
        d = fn()
        # calls per round: `calls`, fewer for a slow peer (a round of it ≈ sample_s)
        n_calls[name] = max(1, min(calls, round(sample_s / (time.perf_counter() - t0))))
        if name in peers:
            d = np.asarray(d, dtype=np.float64)
            diffs[name] = float(np.max(np.abs(d - ref)) / np.max(np.abs(ref)))
            ok = np.allclose(d, ref, rtol=1e-6, atol=1e-6 * np.max(np.abs(ref)))
            notes[name] = "; ".join(filter(None, [notes.get(name), "δ agrees" if ok else "δ MISMATCH"]))
    times = {name: [] for name in fns}
    names = list(fns)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            fns[name]()  # (a call's caches warm before its round's clock starts)
            t0 = time.perf_counter()
            for _ in range(n_calls[name]):
                fns[name]()
            times[name].append((time.perf_counter() - t0) / n_calls[name])
    ms = {name: 1e3 * statistics.median(ts) for name, ts in times.items()}
    mflop = {"normal": (N * P ** 2 + P ** 3 / 3) / 1e6, "dual": (P * N ** 2 + N ** 3 / 3) / 1e6}
    return {"N": N, "P": P, "form": form, "ms": ms, "calls_per_round": n_calls, "rounds": rounds,
            "max_rel_diff": diffs, "notes": notes, "floor_mflop": mflop,
            "floor_fraction": {f: ms[f"floor, {f}"] / ms["fastbp"] for f in mflop},
            "fastbp_gflops": {f: mflop[f] / ms["fastbp"] for f in mflop}}


# -- output --------------------------------------------------------------------

def versions():
    out = {"python": sys.version.split()[0], "numpy": np.__version__, "scipy": scipy.__version__,
           "sklearn": sklearn.__version__, "fastbp": fastbp.__version__}
    for mod in ("torch", "jax"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            out[mod] = None
    return out


def header(args, found, repeat):
    lines = [", ".join(f"{k} {v}" for k, v in found.items()) + f"; threads {args.threads}; "
             f"repeat {repeat}{' (quick)' if args.quick else ''}; load average "
             + " ".join(f"{x:.2f}" for x in os.getloadavg())]
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        lines.append(f"{var}={os.environ[var]}" if var in os.environ else f"{var} unset")
    for lib in threadpoolctl.threadpool_info():
        if lib.get("user_api") == "blas":
            lines.append(f"BLAS {os.path.basename(os.path.dirname(lib['filepath']))}: "
                         f"{lib.get('internal_api')} {lib.get('version')}, {lib.get('num_threads')} "
                         f"threads, core type {lib.get('architecture')}")
    return lines


def table(cols, rows):
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


def fmt(x, spec=".3g", none="never"):
    return none if x is None else format(x, spec)


def plot(path, curves):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"(no plot: matplotlib is not installed; {path} not written)")
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, trace in curves.items():
        pts = [(t, m) for t, m in trace if t > 0]
        ax.plot(*zip(*pts), marker="." if "lbfgs" in name else None, label=name)
    ax.axhline(GOAL, color="grey", ls="--", lw=1, label="MSE 1e-6")
    ax.set(xscale="log", yscale="log", xlabel="wall time (s)", ylabel="training MSE",
           title="[2, 20, 1] tanh on sin(2πx₁)·cos(πx₂), 500 points")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot written to {path}")


def run(args):
    quick = args.quick
    repeat = min(args.repeat, 1) if quick else args.repeat
    found = versions()
    lines = header(args, found, repeat)
    for line in lines:
        print(line)
    print()
    result = {"header": lines, "versions": found, "threads": args.threads, "quick": quick,
              "env": {v: os.environ.get(v) for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}}

    iters = 20 if quick else 200
    rows = result["per_iteration"] = per_iteration(repeat, iters)
    print(f"1. seconds per LM iteration, {iters}-iteration runs, median of {repeat} interleaved "
          "(SciPy: wall / njev; fastbp: wall / len(history['loss'])); target ≥ 5×")
    table(["problem", "N × P", "SciPy lm (ms/it)", "fastbp lm (ms/it)", "speed-up",
           "iterations SciPy / fastbp", "final MSE SciPy / fastbp", "fastbp stop"],
          [[name, f"{r['N']} × {r['P']}", f"{1e3 * r['scipy_s']:.3f}", f"{1e3 * r['fastbp_s']:.3f}",
            f"{r['ratio']:.1f}×", f"{r['scipy_iters']} / {r['fastbp_iters']}",
            f"{r['scipy_mse']:.3g} / {r['fastbp_mse']:.3g}", r["fastbp_stop"]]
           for name, r in rows.items()])

    goal, traces = time_to_goal(repeat, 2000 if quick else 20000, 5.0 if quick else 120.0)
    result["time_to_goal"] = goal
    print(f"2. wall time to training MSE ≤ {GOAL:g} on the 2-D target, median of {repeat} "
          "interleaved; target: fastbp ≤ ¼ of SciPy's")
    table(["method", "seconds", "iterations (Jacobians; last run)", "last MSE"],
          [[label, fmt(goal[who]["seconds"], ".4f"), str(goal[who]["iterations"]),
            f"{goal[who]['last_mse']:.3g}"] for who, label in (
               ("scipy", "SciPy lm"), ("fastbp", "fastbp lm (trainlm's mu_dec=0.1, mu_inc=10)"),
               ("fastbp_gentle", "fastbp lm, mu_dec=1/3, mu_inc=2 (not the default)"))]
          + [["SciPy / fastbp (default options)", fmt(goal["ratio"], ".1f", "n/a") + "×", "", ""]])

    curves = {"fastbp lm": traces["fastbp"], "SciPy lm": traces["scipy"]}
    budgets = {"fastbp lm's time to 1e-6": goal["fastbp"]["seconds"] or traces["fastbp"][-1][0],
               "SciPy lm's time to 1e-6": goal["scipy"]["seconds"] or traces["scipy"][-1][0]}
    # the first-order curves run past both budgets, for the plot
    horizon = min(max(1.2 * max(budgets.values()), 1.0 if quick else 5.0), 60.0)
    curves["fastbp adam"] = adam_curve(horizon)
    curves.update(lbfgs_curves(horizon, LBFGS_ITERS[:3] if quick else LBFGS_ITERS))
    same = {name: {b: mse_at(tr, s) for b, s in budgets.items()} for name, tr in curves.items()}
    result["same_time"] = {"budgets_s": budgets, "mse": same, "adam": ADAM,
                           "lbfgs_max_iter": LBFGS_ITERS, "curves": curves}
    print("3. training MSE reached by each budget on the 2-D target (adam: lr=0.01, "
          "batch_size=32, MSE after each epoch; lbfgs: separate fits, max_iter "
          + ", ".join(map(str, LBFGS_ITERS[:3] if quick else LBFGS_ITERS))
          + "; —: no fit finished by then)")
    table(["method"] + [f"MSE by {b} ({s:.3f} s)" for b, s in budgets.items()],
          [[name] + [fmt(v, ".3g", "—") for v in by.values()] for name, by in same.items()])

    step = result["lm_step"] = lm_step_bench(3 if quick else 9, 5 if quick else 30, args.threads,
                                             0.05 if quick else 0.3)
    print(f"4. one lm_step, [10, 50, 1] tanh, N = {step['N']}, P = {step['P']}, mu = {MU:g}: "
          f"ms per call, median of {step['rounds']} interleaved rounds of up to "
          f"{max(step['calls_per_round'].values())} calls; fastbp used the {step['form']} form; "
          "target: ≥ 3× faster than torch.func")
    ms = step["ms"]
    rows = []
    for name, t in ms.items():
        floor = name.startswith("floor")
        label = (f"{name} form: SYRK + Cholesky ({step['floor_mflop'][name.split()[-1]]:.0f} MFLOP)"
                 if floor else name)
        rows.append([label, f"{t:.3f}", f"{t / ms['fastbp']:.2f}×",
                     "" if name not in step["max_rel_diff"] else f"{step['max_rel_diff'][name]:.1e}",
                     step["notes"].get(name, "")])
    rows += [[name, "", "", "", note] for name, note in step["notes"].items() if name not in ms]
    table(["method", "ms/call", "time / fastbp's", "max |δ − δ_fastbp| / max |δ_fastbp|", "note"], rows)
    print("fastbp against the floor (floor time / fastbp time): "
          + "; ".join(f"{f} form {100 * step['floor_fraction'][f]:.0f} % "
                      f"({step['fastbp_gflops'][f]:.1f} GFLOP/s as its {step['floor_mflop'][f]:.0f} MFLOP)"
                      for f in ("normal", "dual")))
    print()

    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
        print(f"figures written to {args.json}")
    if args.plot:
        plot(args.plot, curves)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="interleaved repeats (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="BLAS and torch threads (default 2)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: one repeat, short runs")
    parser.add_argument("--json", metavar="PATH", help="write every figure to PATH")
    parser.add_argument("--plot", metavar="PATH", help="PNG of MSE against time (matplotlib)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", ConvergenceWarning)
    with threadpoolctl.threadpool_limits(args.threads, user_api="blas"):
        return run(args)


if __name__ == "__main__":
    main()
