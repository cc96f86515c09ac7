"""Data-parallel step time and scaling efficiency over MPI.

Network [1024, 1024, 1024, 1024] (sigmoid), squared error "mean", SGD, local
batch 512 and 1024, in three configurations:

    1 rank  x 1 BLAS thread     the per-core baseline
    1 rank  x 2 BLAS threads    the same 2 cores used by threads
    2 ranks x 1 BLAS thread     data-parallel: global batch 2 x local

A step is what ``MLP.fit(..., comm=)`` does: the compiled forward/backward
into the flat ``grads`` (compute), grads *= n_r / N (scale, "mean" only), one
in-place Allreduce of all P parameters (allreduce, including the wait for
the slower rank), the optimiser's update (update).

"in fit" is the step time of ``MLP.fit`` itself (one epoch, unshuffled,
including the epoch's loss reduction), a check on the hand-written loop.

Scaling efficiency = (global rows/s with 2 ranks) / (2 x rows/s of 1 rank x
1 thread).  ``--overlap`` adds the layer-by-layer variant: the backward is
composed in Python from the fused kernels and layer l's weight gradient is
sent with a non-blocking Iallreduce while layer l-1's backward runs (the
biases go in one message at the end); it is compared with the same composed
step and one blocking Allreduce, with and without MPICH's asynchronous
progress thread (MPIR_CVAR_ASYNC_PROGRESS=1).

    python benchmarks/bench_distributed.py [--overlap] [--steps 5]   # runs all, prints a table
    mpiexec -n 2 python benchmarks/bench_distributed.py --worker --mpi --threads 1

Not a test: it asserts nothing about speed.  On a shared machine use the
min (reported) rather than the mean.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

SIZES = [1024, 1024, 1024, 1024]
BATCHES = (512, 1024)
LR = 1e-3


def gemm_flops(sizes, n):
    """2 n k d per product: forward and δW for every layer, δX for all but the first."""
    pairs = list(zip(sizes[:-1], sizes[1:]))
    return sum(2 * n * k * d * (2 if l == 0 else 3) for l, (k, d) in enumerate(pairs))


# -- the worker: one configuration, every batch size -----------------------------

class Timer:
    def __init__(self):
        self.t = {}

    def add(self, key, seconds):
        self.t[key] = self.t.get(key, 0.0) + seconds


def fused_steps(net, X, T, opt, comm, steps):
    """`steps` steps as fit runs them; per-phase seconds (sums) and wall time."""
    from fastbp._enums import Reduction

    core, params, grads = net.core, net.params, net.grads
    mean = Reduction.RED_MEAN
    size = 1 if comm is None else comm.Get_size()
    tm = Timer()
    if comm is not None:
        from mpi4py import MPI
        comm.Barrier()
    wall = time.perf_counter()
    for _ in range(steps):
        t0 = time.perf_counter()
        core.step(X, T, reduction=mean)
        t1 = time.perf_counter()
        tm.add("compute", t1 - t0)
        if comm is not None:
            np.multiply(grads, 1.0 / size, out=grads)
            t2 = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, [grads, MPI.DOUBLE], op=MPI.SUM)
            t3 = time.perf_counter()
            tm.add("scale", t2 - t1)
            tm.add("allreduce", t3 - t2)
            t1 = t3
        opt.step(params, grads, n_decay=net.n_weights)
        tm.add("update", time.perf_counter() - t1)
    wall = time.perf_counter() - wall
    return wall / steps, {k: v / steps for k, v in tm.t.items()}


def composed_steps(net, X, T, opt, comm, steps, overlap):
    """The same step from the per-layer kernels, with the weight gradient of
    layer l sent by Iallreduce as soon as it exists (overlap) or everything
    by one Allreduce after the backward."""
    from mpi4py import MPI

    from fastbp import _kernels as K

    acts = net.activations
    Ws, bs, gWs, gbs = net.weights, net.biases, net.grad_weights, net.grad_biases
    L, n = len(Ws), X.shape[0]
    size = comm.Get_size()
    A = [X] + [np.empty((n, W.shape[0])) for W in Ws]
    dY = np.empty_like(A[-1])
    dX = [None] + [np.empty((n, W.shape[1])) for W in Ws[1:]]
    grads = net.grads
    b_all = grads[net.n_weights:]  # every bias gradient: one contiguous tail
    comm.Barrier()
    wall = time.perf_counter()
    for _ in range(steps):
        for l in range(L):
            K.dense_forward(A[l], Ws[l], bs[l], acts[l], out=A[l + 1])
        K.squared_error(A[-1], T, "mean", out=dY)
        d = dY
        reqs = []
        for l in range(L - 1, -1, -1):
            K.dense_backward(d, A[l], Ws[l], A[l + 1], acts[l], dX=dX[l], dW=gWs[l], db=gbs[l],
                             need_dX=l > 0)
            if overlap:
                flat = gWs[l].reshape(-1)
                np.multiply(flat, 1.0 / size, out=flat)
                reqs.append(comm.Iallreduce(MPI.IN_PLACE, [flat, MPI.DOUBLE], op=MPI.SUM))
            d = dX[l]
        if overlap:
            np.multiply(b_all, 1.0 / size, out=b_all)
            comm.Allreduce(MPI.IN_PLACE, [b_all, MPI.DOUBLE], op=MPI.SUM)
            MPI.Request.Waitall(reqs)
        else:
            np.multiply(grads, 1.0 / size, out=grads)
            comm.Allreduce(MPI.IN_PLACE, [grads, MPI.DOUBLE], op=MPI.SUM)
        opt.step(net.params, grads, n_decay=net.n_weights)
    return (time.perf_counter() - wall) / steps


def worker(args):
    from fastbp.network import MLP
    from fastbp.optim import SGD
    from fastbp.threads import threadpool_limits

    comm = None
    if args.mpi:
        from mpi4py import MPI
        comm = MPI.COMM_WORLD
    rank = 0 if comm is None else comm.Get_rank()
    size = 1 if comm is None else comm.Get_size()
    limiter = threadpool_limits(args.threads)
    rows = []
    for b in args.batches:
        rng = np.random.default_rng(rank)
        net = MLP(SIZES, activation="sigmoid", seed=0)
        X, T = rng.normal(size=(b, SIZES[0])), rng.normal(size=(b, SIZES[-1]))
        opt = SGD(lr=LR)
        net.core.reserve(b)
        fused_steps(net, X, T, opt, comm, 1)  # warm-up: workspace, pages, BLAS buffers
        best, phases = None, None
        for _ in range(args.repeats):
            step, ph = fused_steps(net, X, T, opt, comm, args.steps)
            if comm is not None:  # the job's step is the slowest rank's
                step = comm.allreduce(step, op=MPI.MAX)
            if best is None or step < best:
                best, phases = step, ph
        # end to end: MLP.fit over `steps` batches (unshuffled), one epoch
        Xs, Ts = np.tile(X, (args.steps, 1)), np.tile(T, (args.steps, 1))
        if comm is not None:
            comm.Barrier()
        t0 = time.perf_counter()
        net.fit(Xs, Ts, epochs=1, batch_size=b, lr=LR, shuffle=False, check_finite=False,
                progress=False, **({} if comm is None else {"comm": comm}))
        fit_step = (time.perf_counter() - t0) / args.steps
        if comm is not None:
            fit_step = comm.allreduce(fit_step, op=MPI.MAX)
        row = {"batch": b, "ranks": size, "threads": args.threads, "step_s": best,
               "fit_step_s": fit_step,
               "phases_s": phases, "rows_per_s": size * b / best,
               "gflops": size * gemm_flops(SIZES, b) / best / 1e9}
        if comm is not None:
            # the Allreduce alone, ranks aligned: the communication cost proper
            g = net.grads
            times = []
            for _ in range(5):
                comm.Barrier()
                t0 = time.perf_counter()
                comm.Allreduce(MPI.IN_PLACE, [g, MPI.DOUBLE], op=MPI.SUM)
                times.append(time.perf_counter() - t0)
            ar = comm.allreduce(min(times), op=MPI.MAX)
            row["allreduce_alone_s"] = ar
            row["allreduce_GBps"] = 2 * (size - 1) / size * g.size * 8 / ar / 1e9
            if args.overlap:
                for overlap in (False, True):
                    composed_steps(net, X, T, opt, comm, 1, overlap)
                    t = min(composed_steps(net, X, T, opt, comm, args.steps, overlap)
                            for _ in range(args.repeats))
                    row["composed_overlap_s" if overlap else "composed_blocking_s"] = \
                        comm.allreduce(t, op=MPI.MAX)
        rows.append(row)
    limiter.restore_original_limits()
    if rank == 0:
        print("RESULT " + json.dumps(rows), flush=True)


# -- the driver: every configuration, one table -----------------------------------

def _run(cmd, env_extra=None):
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env_extra or {}))
    env.pop("OPENBLAS_NUM_THREADS", None)  # threadpool_limits sets it
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}")
    line = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")][0]
    return json.loads(line[len("RESULT "):])


def driver(args):
    me = [sys.executable, os.path.abspath(__file__), "--worker", "--steps", str(args.steps),
          "--sizes", ",".join(map(str, SIZES)),
          "--repeats", str(args.repeats), "--batches", ",".join(map(str, args.batches))]
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if not os.access(mpiexec, os.X_OK):
        mpiexec = "mpiexec"
    ov = ["--overlap"] if args.overlap else []
    runs = {
        "1 rank x 1 thread": _run(me + ["--threads", "1"]),
        "1 rank x 2 threads": _run(me + ["--threads", "2"]),
        "2 ranks x 1 thread": _run([mpiexec, "-n", "2"] + me + ["--threads", "1", "--mpi"] + ov),
    }
    if args.overlap:
        runs["2 ranks x 1 thread, async progress"] = _run(
            [mpiexec, "-n", "2"] + me + ["--threads", "1", "--mpi"] + ov,
            {"MPIR_CVAR_ASYNC_PROGRESS": "1"})
    print(f"network {SIZES}, {sum(d * (k + 1) for k, d in zip(SIZES, SIZES[1:]))} parameters, "
          f"SGD, min of {args.repeats} x {args.steps} steps")
    for i, b in enumerate(args.batches):
        base = runs["1 rank x 1 thread"][i]["rows_per_s"]
        print(f"\nlocal batch {b}")
        print(f"{'configuration':36s} {'step ms':>8s} {'rows/s':>8s} {'GFLOP/s':>8s} {'eff.':>6s}"
              f"  phases (ms)")
        for name, rows in runs.items():
            r = rows[i]
            eff = r["rows_per_s"] / (r["ranks"] * r["threads"] * base)
            ph = " ".join(f"{k} {v * 1e3:.1f}" for k, v in r["phases_s"].items())
            print(f"{name:36s} {r['step_s'] * 1e3:8.1f} {r['rows_per_s']:8.0f} {r['gflops']:8.1f} "
                  f"{eff:6.2f}  {ph}; in fit {r['fit_step_s'] * 1e3:.1f}")
            if "allreduce_alone_s" in r:
                print(f"{'':36s} allreduce alone {r['allreduce_alone_s'] * 1e3:.1f} ms "
                      f"({r['allreduce_GBps']:.2f} GB/s algorithm bandwidth), "
                      f"{100 * r['phases_s']['allreduce'] / r['step_s']:.0f}% of the step in allreduce")
            if "composed_overlap_s" in r:
                blk, ovl = r["composed_blocking_s"], r["composed_overlap_s"]
                print(f"{'':36s} composed step: blocking {blk * 1e3:.1f} ms, per-layer Iallreduce "
                      f"{ovl * 1e3:.1f} ms ({100 * (blk - ovl) / blk:+.1f}%)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(runs, fh, indent=1)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", action="store_true", help="measure one configuration (internal)")
    p.add_argument("--mpi", action="store_true", help="worker: use MPI.COMM_WORLD")
    p.add_argument("--threads", type=int, default=1, help="worker: BLAS threads per rank")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--batches", type=lambda s: [int(x) for x in s.split(",")], default=list(BATCHES))
    p.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=SIZES,
                   help="layer widths (default 1024,1024,1024,1024)")
    p.add_argument("--overlap", action="store_true", help="also measure per-layer Iallreduce")
    p.add_argument("--json", help="driver: write every measurement to this file")
    args = p.parse_args()
    SIZES[:] = args.sizes
    (worker if args.worker else driver)(args)


if __name__ == "__main__":
    main()
