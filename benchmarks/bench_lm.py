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
   1e-3, against the same solve by hand in NumPy/SciPy (J, JᵀJ, cho_factor,
   cho_solve), torch.func (jacrev of the residual vector in the flat θ,
   torch.linalg.cholesky, torch.cholesky_solve) and jax.jit (jacrev,
   cho_factor/cho_solve; compiled once before timing, compile time reported
   apart).  torch and jax are optional (skipped with a note).  Every peer's
   δ is compared with fastbp's.  ms per call is the median over interleaved
   rounds of repeated calls; the floor is SYRK + Cholesky of the form
   fastbp uses, timed on SciPy's BLAS (normal: JᵀJ, 442·601² + 601³/3 ≈
   232 MFLOP; dual, when N·D_out < P: J Jᵀ, 601·442² + 442³/3 ≈ 146 MFLOP).
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
    trace = []

    def fun(theta):
        r = residual(theta, X, y, H)
        trace.append((time.perf_counter() - t0, float(r @ r) / r.size))
        if goal is not None and (trace[-1][1] <= goal or trace[-1][0] > time_cap):
            raise _Reached
        return r

    t0 = time.perf_counter()
    try:
        res = least_squares(fun, theta0, jac=lambda th: jacobian(th, X, H), method="lm",
                            ftol=EPS_TOL, xtol=EPS_TOL, gtol=EPS_TOL, max_nfev=max_nfev)
        njev = res.njev
    except _Reached:
        njev = None
    return time.perf_counter() - t0, njev, trace


def fastbp_lm(net, theta0, X, T, epochs, goal=0.0):
    """fit(optimizer="lm") from theta0; returns (seconds, history, trace)."""
    net.params[...] = theta0
    trace = [(0.0, float(np.mean((net.forward(X) - T) ** 2)))]

    def stamp(epoch, history):
        trace.append((time.perf_counter() - t0, history["loss"][-1]))

    t0 = time.perf_counter()
    hist = net.fit(X, T, optimizer="lm", epochs=epochs, goal=goal, min_grad=0.0, callback=stamp,
                   progress=False)
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
    times = {"scipy": [], "fastbp": []}
    traces = {}
    for r in range(repeat):
        for who in (("scipy", "fastbp") if r % 2 == 0 else ("fastbp", "scipy")):
            if who == "scipy":
                total, _, trace = scipy_lm(theta0, X, T, max_nfev, GOAL, time_cap)
                trace = running_min(trace)
            else:
                total, hist, trace = fastbp_lm(net, theta0, X, T, 10000, GOAL)
            times[who].append(first_below(trace, GOAL))
            traces[who] = trace
    out = {}
    for who, ts in times.items():
        reached = [t for t in ts if t is not None]
        out[who] = {"seconds": statistics.median(reached) if len(reached) == len(ts) else None,
                    "runs": ts, "iterations": len(traces[who]) - 1, "last_mse": traces[who][-1][1]}
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
        return scipy.linalg.cho_solve(scipy.linalg.cho_factor(A), -(J.T @ e))

    peers = {"NumPy/SciPy": numpy_step}
    try:
        import torch
        import torch.func
    except ImportError:
        notes["torch.func"] = "skipped: torch is not installed"
    else:
        torch.set_num_threads(threads)
        Xt, yt, tht = (torch.tensor(a, dtype=torch.float64) for a in (X, y, theta))
        eye = torch.eye(theta.size, dtype=torch.float64)

        def res_t(th):
            W1, W2, b1, b2 = th[:500].view(50, 10), th[500:550], th[550:600], th[600]
            r = torch.tanh(Xt @ W1.T + b1) @ W2 + b2 - yt
            return r, r

        jac_t = torch.func.jacrev(res_t, has_aux=True)

        def torch_step():
            J, e = jac_t(tht)
            L = torch.linalg.cholesky(J.T @ J + MU * eye)
            return torch.cholesky_solve(-(J.T @ e)[:, None], L)[:, 0].numpy()

        peers["torch.func"] = torch_step
    try:
        import jax
    except ImportError:
        notes["jax.jit"] = "skipped: jax is not installed"
    else:
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp
        from jax.scipy.linalg import cho_factor, cho_solve

        def res_j(th, Xj, yj):
            W1, W2, b1, b2 = th[:500].reshape(50, 10), th[500:550], th[550:600], th[600]
            r = jnp.tanh(Xj @ W1.T + b1) @ W2 + b2 - yj
            return r, r

        @jax.jit
        def jstep(th, Xj, yj):
            J, e = jax.jacrev(res_j, has_aux=True)(th, Xj, yj)
            A = J.T @ J + MU * jnp.eye(th.shape[0])
            return cho_solve(cho_factor(A), -(J.T @ e))

        args = tuple(jnp.asarray(a) for a in (theta, X, y))
        t0 = time.perf_counter()
        jstep(*args).block_until_ready()
        notes["jax.jit"] = f"compile + first call {time.perf_counter() - t0:.2f} s"
        peers["jax.jit"] = lambda: np.asarray(jstep(*args).block_until_ready())
    return peers, notes


def floor_step(J, form):
    """SYRK + Cholesky of the form fastbp uses, on SciPy's BLAS."""
    JF = np.asfortranarray(J)
    trans = 1 if form == "normal" else 0  # normal: JᵀJ (P × P); dual: J Jᵀ (m × m)

    def run():
        A = blas.dsyrk(1.0, JF, trans=trans)
        A.flat[::A.shape[0] + 1] += MU
        lapack.dpotrf(A, lower=0, overwrite_a=1)
    return run


def lm_step_bench(rounds, calls, threads):
    X, T = diabetes()
    net = fastbp.MLP([10, 50, 1], activation="tanh", seed=0)
    theta = net.params.copy()
    N, P = X.shape[0], net.n_params
    form = fastbp.levmar._Solver(net, N, fastbp.levmar.LM_MEMORY, False).form
    buf = np.empty(P)
    peers, notes = step_peers(X, T, theta, threads)
    floor = floor_step(jacobian(theta, X, 50), form)
    fns = {"fastbp": lambda: net.lm_step(X, T, MU, out=buf), **peers, "floor": floor}
    ref = net.lm_step(X, T, MU).copy()
    diffs = {}
    for name, fn in peers.items():
        d = np.asarray(fn(), dtype=np.float64)
        diffs[name] = float(np.max(np.abs(d - ref)) / np.max(np.abs(ref)))
        notes.setdefault(name, "")
        notes[name] += ("; " if notes[name] else "") + (
            "δ agrees" if np.allclose(d, ref, rtol=1e-6, atol=1e-6 * np.max(np.abs(ref)))
            else "δ MISMATCH")
    times = {name: [] for name in fns}
    names = list(fns)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            fns[name]()  # (a call's caches warm before its round's clock starts)
            t0 = time.perf_counter()
            for _ in range(calls):
                fns[name]()
            times[name].append((time.perf_counter() - t0) / calls)
    ms = {name: 1e3 * statistics.median(ts) for name, ts in times.items()}
    flops = {"normal": N * P ** 2 + P ** 3 / 3, "dual": P * N ** 2 + N ** 3 / 3}
    return {"N": N, "P": P, "form": form, "ms": ms, "max_rel_diff": diffs, "notes": notes,
            "floor_mflop": {k: v / 1e6 for k, v in flops.items()},
            "floor_fraction": ms["floor"] / ms["fastbp"],
            "fastbp_gflops_normal_equiv": flops["normal"] / (ms["fastbp"] * 1e-3) / 1e9}


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


def header(args, found):
    lines = [", ".join(f"{k} {v}" for k, v in found.items()) + f"; threads {args.threads}; "
             f"repeat {args.repeat}{' (quick)' if args.quick else ''}; load average "
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
    lines = header(args, found)
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
    table(["method", "seconds", "iterations (last run)", "last MSE"],
          [[f"{who} lm", fmt(goal[who]["seconds"], ".4f"), str(goal[who]["iterations"]),
            f"{goal[who]['last_mse']:.3g}"] for who in ("scipy", "fastbp")]
          + [["SciPy / fastbp", fmt(goal["ratio"], ".1f", "n/a") + "×", "", ""]])

    curves = {"fastbp lm": traces["fastbp"], "SciPy lm": traces["scipy"]}
    budgets = {"fastbp lm's time to 1e-6": goal["fastbp"]["seconds"] or traces["fastbp"][-1][0],
               "SciPy lm's time to 1e-6": goal["scipy"]["seconds"] or traces["scipy"][-1][0]}
    horizon = min(1.2 * max(budgets.values()), 3.0 if quick else 60.0)
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

    step = result["lm_step"] = lm_step_bench(3 if quick else 9, 5 if quick else 30, args.threads)
    print(f"4. one lm_step, [10, 50, 1] tanh, N = {step['N']}, P = {step['P']}, mu = {MU:g}: "
          f"ms per call, median of interleaved rounds; fastbp used the {step['form']} form; "
          "target ≥ 3× faster than torch.func")
    ms = step["ms"]
    rows = [["fastbp", f"{ms['fastbp']:.3f}", "1.0×", "", ""]]
    for name in ms:
        if name not in ("fastbp", "floor"):
            rows.append([name, f"{ms[name]:.3f}", f"{ms[name] / ms['fastbp']:.1f}×",
                         f"{step['max_rel_diff'][name]:.1e}", step["notes"][name]])
    rows += [[f"floor: SYRK + Cholesky, {step['form']} form ({step['floor_mflop'][step['form']]:.0f} "
              "MFLOP)", f"{ms['floor']:.3f}", f"{ms['floor'] / ms['fastbp']:.2f}×", "", ""]]
    rows += [[name, "", "", "", note] for name, note in step["notes"].items() if name not in ms]
    table(["method", "ms/call", "vs fastbp", "max |δ − δ_fastbp| / max |δ_fastbp|", "note"], rows)
    print(f"fastbp reaches {100 * step['floor_fraction']:.0f} % of the floor's speed "
          f"(floor time / fastbp time); as the normal form's {step['floor_mflop']['normal']:.0f} "
          f"MFLOP, {step['fastbp_gflops_normal_equiv']:.2f} GFLOP/s")

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
