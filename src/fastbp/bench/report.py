"""Rendering a run: the text table, and the versioned JSON document.

The JSON follows ``schema.json`` beside this file (``SCHEMA_VERSION``); it
is written atomically, through a temporary file in the same directory and
``os.replace``, so a reader never sees half a file.
"""

import datetime
import json
import math
from importlib import resources

from fastbp._atomic import write_atomic as _write_atomic
from fastbp.bench import env_info
from fastbp.bench.runner import RTOL

SCHEMA_VERSION = 1


def load_schema():
    return json.loads(resources.files("fastbp.bench").joinpath("schema.json")
                      .read_text(encoding="utf-8"))


def fmt_time(seconds):
    """3 significant digits in ns, us, ms or s."""
    for unit, scale in (("ns", 1e-9), ("us", 1e-6), ("ms", 1e-3)):
        if seconds < 1000 * scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds:.3g} s"


def _finite(x):
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


COLUMNS = ("workload", "impl", "time/call (median)", "[min - max]", "cold",
           "GFLOP/s", "% peak", "speedup", "check")


def _cells(row, first):
    t = row.timing
    pf = row.peak_fraction
    return (row.workload if first else "", row.impl, fmt_time(t.median),
            f"[{fmt_time(t.min)} - {fmt_time(t.max)}]", fmt_time(t.cold),
            f"{row.gflops:.3g}", "-" if not math.isfinite(pf) else f"{100 * pf:.1f}%",
            f"{row.speedup:.2f}x", "ok" if row.verified else
            f"MISMATCH ({row.max_rel_error:.1e})")


def table(rows):
    """The results as aligned text, one line per implementation."""
    lines, prev = [], None
    for r in rows:
        lines.append(_cells(r, r.workload != prev))
        prev = r.workload
    cells = [COLUMNS] + lines
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    left = {0, 1, 8}
    out = []
    for c in cells:
        out.append("  ".join(v.ljust(widths[i]) if i in left else v.rjust(widths[i])
                             for i, v in enumerate(c)).rstrip())
    out.insert(1, "-" * len(out[0]))
    return "\n".join(out)


def render(run):
    """Header, yardstick, table, notes and the verdict: the CLI's stdout."""
    lines = env_info.header_lines(run.env)
    if run.peak:
        lines.append(f"DGEMM peak (NumPy A @ B at {run.peak['n']}^3, best of 3): "
                     f"{run.peak['gflops']:.1f} GFLOP/s")
    lines.append("Time per call: median of interleaved samples [min - max]; cold = "
                 "first call; speedup = NumPy reference median / median.")
    lines.append("")
    if run.rows:
        lines.append(table(run.rows))
    else:
        lines.append("(no workload measured)")
    if run.notes:
        lines.append("")
        lines += [f"note: {n}" for n in run.notes]
    lines.append("")
    if run.interrupted:
        lines.append(f"Interrupted: {run.workloads_done} of {run.workloads_total} "
                     "workloads measured (shown above).")
    bad = [f"{r.workload} ({r.impl})" for r in run.rows if not r.verified]
    if bad:
        lines.append(f"MISMATCH against the NumPy reference (rtol {RTOL:g}): "
                     + ", ".join(bad))
    elif run.rows:
        lines.append(f"All {len(run.rows)} rows verified against the NumPy reference "
                     f"(rtol {RTOL:g}) before timing.")
    return "\n".join(lines)


def to_json(run, created=None):
    created = created or datetime.datetime.now(datetime.timezone.utc)
    results = []
    for r in run.rows:
        t = r.timing
        results.append({
            "workload": r.workload, "suite": r.suite, "kind": r.kind,
            "params": r.params, "impl": r.impl, "flops": r.flops,
            "verified": r.verified, "max_rel_error": _finite(r.max_rel_error),
            "cold_s": t.cold, "median_s": t.median, "min_s": t.min, "max_s": t.max,
            "samples": t.samples, "calls_per_sample": t.number,
            "gflops": _finite(r.gflops), "peak_fraction": _finite(r.peak_fraction),
            "speedup": _finite(r.speedup),
        })
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": "fastbp-bench",
        "created": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "complete": not run.interrupted,
        "settings": run.settings,
        "environment": run.env,
        "peak": run.peak,
        "notes": list(run.notes),
        "results": results,
    }


def write_atomic(path, text):
    """Write ``text`` to ``path`` whole or not at all."""
    _write_atomic(path, lambda f: f.write(text), binary=False)


def write_json(run, path):
    write_atomic(path, json.dumps(to_json(run), indent=2, allow_nan=False) + "\n")
