"""``fastbp-bench``: fastbp against a plain NumPy implementation, side by side.

Bad input (an unknown suite or peer, a malformed shape, an output path that
cannot be written, an option whose optional dependency is missing) is one
line on stderr and exit status 2, before anything is measured.  Ctrl-C
prints the rows measured so far.  Exit status: 0 ok, 1 a result differed
from the reference, 2 bad usage, 130 interrupted.
"""

import argparse
import contextlib
import dataclasses
import os
import sys

import fastbp
from fastbp.bench import env_info, plot, report, runner, timing, workloads
from fastbp.bench.progress import Progress

EXIT_OK, EXIT_MISMATCH, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """Bad input: reported as one line and exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line, not argparse's usage block: the message names the option.
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _positive(text, what, example):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"expected {what}, e.g. {example}, got {text!r}")
    return value


def parse_shapes(text):
    """'8,32x64x64' → [(8, 8, 8), (32, 64, 64)]: N or NxKxD, comma-separated."""
    what = "a comma-separated list of N or NxKxD with positive integers"
    shapes = []
    for item in text.split(","):
        item = item.strip()
        dims = item.lower().split("x")
        if len(dims) not in (1, 3):
            raise argparse.ArgumentTypeError(f"expected {what}, e.g. 8,32x64x64, "
                                             f"got {item!r}")
        try:
            dims = [_positive(d, what, "8,32x64x64") for d in dims]
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(f"expected {what}, e.g. 8,32x64x64, "
                                             f"got {item!r}") from None
        shapes.append(tuple(dims * 3 if len(dims) == 1 else dims))
    return shapes


def parse_networks(text):
    """'64-64-64-1@32,784-256-10@128' → [((64, 64, 64, 1), 32), ...]."""
    what = "a comma-separated list of SIZES@BATCH, SIZES as 2 or more layer widths joined by -"
    example = "64-64-64-1@32"
    nets = []
    for item in text.split(","):
        item = item.strip()
        sizes, at, batch = item.partition("@")
        parts = sizes.split("-")
        if not at or len(parts) < 2 or not all(p.strip() for p in parts):
            raise argparse.ArgumentTypeError(f"expected {what}, e.g. {example}, got {item!r}")
        nets.append((tuple(_positive(p, what, example) for p in parts),
                     _positive(batch, what, example)))
    return nets


def parse_peers(text):
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in workloads.PEER_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of {', '.join(workloads.PEER_NAMES)}, "
            f"got {text!r}" + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
    return list(dict.fromkeys(names))


def build_parser():
    p = _Parser(prog="fastbp-bench",
                description="Time fastbp's compiled kernels and a training step against "
                            "a plain NumPy implementation of the same equations, in the "
                            "same run, after checking that both agree.",
                epilog="--quick drops the 1024 shapes and the largest network and takes "
                       "fewer, shorter samples. On a loaded or 2-core machine, --threads 1 "
                       "gives steadier numbers. Exit status: 0 every row verified, 1 a "
                       "result differed from the NumPy reference, 2 bad usage, 130 "
                       "interrupted (the rows measured so far are printed).")
    p.add_argument("--quick", action="store_true",
                   help="smaller default shapes, fewer and shorter samples")
    p.add_argument("--suite", choices=("kernels", "networks", "derivatives", "all"),
                   default="all",
                   help="which workloads to run (default: all, the kernels and networks; "
                        "derivatives: input_jacobian, hvp and param_jacobian of the MLP)")
    p.add_argument("--shapes", type=parse_shapes, metavar="LIST",
                   help="kernel shapes (N examples, K inputs, D outputs): N for NxNxN or "
                        "NxKxD, comma-separated; default 8,32x64x64,256,1024")
    p.add_argument("--nets", type=parse_networks, metavar="LIST",
                   help="networks as layer widths @ batch size, comma-separated; default "
                        "64-64-64-1@32,784-256-256-10@128,1024-1024-1024-1024@1024")
    p.add_argument("--threads", type=lambda t: _positive(t, "a positive integer", "2"),
                   metavar="N", help="limit every loaded BLAS (numpy's and scipy's) to N "
                                     "threads, through threadpoolctl")
    p.add_argument("--peers", type=parse_peers, default=[], metavar="LIST",
                   help="also time these on the same workloads when installed: "
                        + ",".join(workloads.PEER_NAMES))
    p.add_argument("--json", metavar="FILE", help="write the results as JSON "
                   "(schema fastbp/bench/schema.json)")
    p.add_argument("--plot", metavar="FILE.png",
                   help="write speedup bars to a PNG (needs matplotlib)")
    p.add_argument("--version", action="version",
                   version=f"fastbp-bench {fastbp.__version__}")
    return p


def _check_output(path, option):
    if os.path.isdir(path):
        raise UsageError(f"{option}: {path!r} is a directory, expected a file path")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UsageError(f"{option}: cannot write {path!r}: directory {directory!r} "
                         "does not exist")
    if not os.access(directory, os.W_OK):
        raise UsageError(f"{option}: cannot write {path!r}: directory {directory!r} "
                         "is not writable")


def _threadpoolctl():
    try:
        import threadpoolctl
    except ImportError:
        raise UsageError("--threads needs threadpoolctl: pip install threadpoolctl "
                         "(or pip install 'fastbp[bench]')") from None
    return threadpoolctl


def _thread_limits(n):
    """Limit every loaded BLAS/OpenMP pool to n threads until the with-block
    ends (threadpool_limits applies the limit as soon as it is made)."""
    return _threadpoolctl().threadpool_limits(limits=n)


def _select_workloads(args, run):
    selected = workloads.default_workloads(args.suite, args.quick, args.shapes, args.nets)
    if any(w.suite in ("networks", "derivatives") for w in selected):
        ok, why = workloads.network_available()
        if not ok:
            run.note(f"networks suite skipped: {why}")
            selected = [w for w in selected if w.suite not in ("networks", "derivatives")]
    return selected


def _load_peers(names, run, threads):
    from fastbp.bench import peers  # imports no peer library by itself
    loaded = {}
    for name in names:
        try:
            lib = peers.load(name)
        except peers.PeerSkipped as exc:
            run.note(str(exc))
            continue
        loaded[name] = getattr(lib, "__version__", "?")
        if threads and name == "jax":
            run.note("jax: XLA's CPU thread pool is not limited by --threads")
    return loaded


def _settings(args, plan, selected):
    kernels = [w for w in selected if w.suite == "kernels"]
    nets = [w for w in selected if w.suite == "networks"]
    return {"suite": args.suite, "quick": args.quick, "threads": args.threads,
            "peers": list(args.peers), "rtol": runner.RTOL,
            "shapes": [list(s) for s in dict.fromkeys(w.shape for w in kernels)],
            "networks": [{"sizes": list(w.sizes), "batch": w.batch} for w in nets],
            "plan": dataclasses.asdict(plan)}


@contextlib.contextmanager
def _torch_threads(n):
    """torch's own intra-op pool, which threadpoolctl does not see, to n."""
    if not n:
        yield
        return
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _measure(args, run, selected, peer_names, plan):
    """Run everything inside the thread limits; the header is read there too."""
    limits = _thread_limits(args.threads) if args.threads else contextlib.nullcontext()
    with limits, _torch_threads(args.threads if "torch" in peer_names else None):
        run.env = env_info.collect({n: v for n, v in peer_names.items()})
        progress = Progress()
        try:
            runner.execute(run, selected, list(peer_names), plan,
                           peak_n=1024 if args.quick else 2048, progress=progress,
                           settle=args.threads != 1)
        except KeyboardInterrupt:
            run.interrupted = True
        finally:
            progress.close()


def main(argv=None):
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse's --help, --version and errors
        return exc.code
    try:
        return _main(args)
    except UsageError as exc:
        print(f"fastbp-bench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # before measuring started, or while writing
        print("fastbp-bench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _main(args):
    if args.json:
        _check_output(args.json, "--json")
    if args.plot:
        _check_output(args.plot, "--plot")
        if not plot.available():
            raise UsageError(f"--plot needs matplotlib: {plot.INSTALL_HINT}")
    if args.threads:
        _threadpoolctl()  # fail now, not after the run
    plan = timing.QUICK_PLAN if args.quick else timing.DEFAULT_PLAN
    run = runner.Run(env={}, settings={})
    selected = _select_workloads(args, run)
    peer_versions = _load_peers(args.peers, run, args.threads)
    run.settings = _settings(args, plan, selected)
    _measure(args, run, selected, peer_versions, plan)

    print(report.render(run), flush=True)
    try:
        if args.json:
            report.write_json(run, args.json)
        if args.plot and run.rows:
            plot.speedup_png(run, args.plot)
    except OSError as exc:
        raise UsageError(f"cannot write output: {exc}") from None
    if run.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if run.all_verified else EXIT_MISMATCH
