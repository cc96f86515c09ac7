"""``--plot FILE.png``: speedup over the NumPy reference, one bar group per
workload.  matplotlib is an optional extra (``fastbp[plot]``), imported only
here, and through its object API with the Agg canvas, so no GUI backend or
global pyplot state is touched.
"""

import importlib.util

from fastbp.bench.workloads import IMPL_REFERENCE

INSTALL_HINT = "pip install matplotlib (or pip install 'fastbp[plot]')"


def available():
    return importlib.util.find_spec("matplotlib") is not None


def speedup_png(run, path):
    """Write the bar chart of ``run``'s rows to ``path`` (PNG)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    workloads = list(dict.fromkeys(r.workload for r in run.rows))
    impls = list(dict.fromkeys(r.impl for r in run.rows if r.impl != IMPL_REFERENCE))
    speed = {(r.workload, r.impl): r.speedup for r in run.rows}

    fig = Figure(figsize=(8, 1.2 + 0.32 * max(len(workloads), 1) * max(len(impls), 1)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    height = 0.8 / max(len(impls), 1)
    for j, impl in enumerate(impls):
        ys = [i + (j - (len(impls) - 1) / 2) * height for i in range(len(workloads))]
        xs = [speed.get((w, impl), 0.0) for w in workloads]
        bars = ax.barh(ys, xs, height=height, label=impl)
        ax.bar_label(bars, labels=[f"{x:.3g}x" if x else "" for x in xs],
                     fontsize=7, padding=2)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_yticks(range(len(workloads)), labels=workloads, fontsize=8)
    ax.set_ylim(len(workloads) - 0.5, -0.5)  # first workload on top, no empty band
    ax.set_xlabel("speedup over the NumPy reference (median time, log scale; 1 = same)")
    env = run.env
    ax.set_title(f"fastbp {env['fastbp']} on {env['cpu']}, "
                 f"numpy {env['numpy']}, scipy {env['scipy']}", fontsize=9)
    if len(impls) > 1:
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
