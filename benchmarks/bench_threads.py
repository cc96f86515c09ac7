"""Threads, both ways round (a benchmark, not a test: timings need a quiet machine).

1. GIL release: two Python threads each running a large kernel, BLAS held
   to one thread, against one thread doing the same calls alone.  If the
   kernels release the GIL the pair takes about as long as one on two cores;
   a GIL-bound control (pure Python) shows what holding it looks like (≈2×).
2. BLAS threads per size: each kernel timed with the BLAS limited to 1 and
   to 2 threads, with the OS threads that actually ran (CPU ticks per
   thread from /proc) — small layers must not be slowed by threads.

    python benchmarks/bench_threads.py [--quick]
"""

import argparse
import os
import threading
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

import fastbp


def task_cpu():
    """CPU clock ticks used so far by each thread of this process (Linux)."""
    ticks = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks[tid] = int(fields[11]) + int(fields[12])  # utime + stime
        except (FileNotFoundError, ProcessLookupError):
            pass
    return ticks


def timed(fn, repeat, min_seconds=0.3):
    """(best seconds per call, number of OS threads that ran) over at least
    ``repeat`` calls and ``min_seconds`` (so every busy thread gets ticks)."""
    fn()
    time.sleep(0.3)  # let BLAS workers of an earlier run stop spinning
    best, calls = float("inf"), 0
    me = str(threading.get_native_id())
    before, start = task_cpu(), time.perf_counter()
    while calls < repeat or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        best, calls = min(best, time.perf_counter() - t0), calls + 1
    after = task_cpu()
    busy = {tid: t - before.get(tid, 0) for tid, t in after.items()}
    # threads that did at least a tenth of the calling thread's work
    used = sum(1 for t in busy.values() if t > 0 and t >= 0.1 * max(busy.get(me, 0), 1))
    return best, used


def in_threads(fn, n_threads, calls):
    """Wall time for ``n_threads`` threads each making ``calls`` calls of fn."""
    start = threading.Barrier(n_threads + 1)

    def worker():
        start.wait()
        for _ in range(calls):
            fn()

    threads = [threading.Thread(target=worker) for _ in range(n_threads)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def gil_release(size, calls):
    rng = np.random.default_rng(0)
    X, W = rng.standard_normal((size, size)), rng.standard_normal((size, size))
    b, dY = rng.standard_normal(size), rng.standard_normal((size, size))
    Y = fastbp.dense_forward(X, W, b, "sigmoid")

    def python_loop():  # the control: holds the GIL throughout
        s = 0
        for i in range(300_000):
            s += i
        return s

    work = {
        f"matmul_abt ({size}³)": lambda: fastbp.matmul_abt(X, W),
        f"dense_forward sigmoid ({size}³)": lambda: fastbp.dense_forward(X, W, b, "sigmoid"),
        f"dense_backward sigmoid ({size}³)": lambda: fastbp.dense_backward(dY, X, W, Y, "sigmoid"),
        "control: pure-Python loop": python_loop,
    }
    print(f"\n1. GIL release: {calls} calls per thread, BLAS limited to 1 thread, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"{'kernel':36s} {'1 thread':>10s} {'2 threads':>10s} {'ratio':>7s}")
    with threadpool_limits(1, user_api="blas"):
        for name, fn in work.items():
            fn()
            one = min(in_threads(fn, 1, calls) for _ in range(3))
            two = min(in_threads(fn, 2, calls) for _ in range(3))
            print(f"{name:36s} {one:9.3f}s {two:9.3f}s {two / one:6.2f}×")
    print("(≈1× = both threads ran at once; ≈2× = serialised by the GIL — or a busy machine:")
    print(f" load average now {os.getloadavg()[0]:.1f}; so also, robust to load:)")
    print(f"{'kernel':36s} {'Python steps/s while it runs, vs alone':>40s}")
    work.pop("control: pure-Python loop")
    work["control: sorted() of 1e6 floats"] = sort_floats
    with threadpool_limits(1, user_api="blas"):
        for name, fn in work.items():
            print(f"{name:36s} {progress_during(fn, calls):39.0%}")
    print("(a C call that holds the GIL stops every other Python thread until it returns)")


def progress_during(fn, calls):
    """Steps/s of a pure-Python counter thread while ``fn`` runs in another
    thread, as a fraction of its rate alone."""
    def count(stop, out):
        n = 0
        while not stop.is_set():
            n += 1
        out.append(n)

    def rate(busy):
        stop, out = threading.Event(), []
        t = threading.Thread(target=count, args=(stop, out))
        t0 = time.perf_counter()
        t.start()
        busy()
        stop.set()
        t.join()
        return out[0] / (time.perf_counter() - t0)

    alone = rate(lambda: time.sleep(0.3))
    return rate(lambda: [fn() for _ in range(calls)]) / alone


def sort_floats(values=np.random.default_rng(2).random(1_000_000).tolist()):
    return sorted(values)  # one C call that holds the GIL throughout


def threads_per_size(sizes, repeat):
    rng = np.random.default_rng(1)
    print("\n2. BLAS threads per size (n = k = d): best time per call, and the OS "
          "threads that used CPU during the calls")
    print(f"{'size':>5s} {'kernel':15s} {'1 BLAS thread':>20s} "
          f"{'2 BLAS threads':>20s} {'faster':>7s}")
    for s in sizes:
        X, W, b = rng.standard_normal((s, s)), rng.standard_normal((s, s)), rng.standard_normal(s)
        dY = rng.standard_normal((s, s))
        Y = fastbp.dense_forward(X, W, b, "tanh")
        calls = {
            "matmul_abt": lambda: fastbp.matmul_abt(X, W),
            "dense_forward": lambda: fastbp.dense_forward(X, W, b, "tanh"),
            "dense_backward": lambda: fastbp.dense_backward(dY, X, W, Y, "tanh"),
        }
        for name, fn in calls.items():
            reps = max(5, min(repeat, int(2e8 / s ** 3)))
            res = {}
            for nt in (1, 2):
                with threadpool_limits(nt, user_api="blas"):
                    res[nt] = timed(fn, reps)
            cells = [f"{t * 1e6:10.1f} µs ({u} thr)" for t, u in (res[1], res[2])]
            faster = "1" if res[1][0] <= res[2][0] else "2"
            print(f"{s:5d} {name:15s} {cells[0]:>20s} {cells[1]:>20s} {faster:>7s}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    args = p.parse_args()
    blas = [i for i in threadpool_info() if i["user_api"] == "blas"]
    for i in blas:
        print(f"BLAS: {i['internal_api']} {i['version']} ({i['architecture']}), "
              f"{i['num_threads']} threads by default: {os.path.basename(i['filepath'])}")
    gil_release(600 if args.quick else 1000, 3 if args.quick else 5)
    sizes = [8, 16, 32, 48, 64, 128, 256] + ([] if args.quick else [512])
    threads_per_size(sizes, 50 if args.quick else 200)


if __name__ == "__main__":
    main()
