"""What the benchmarks share: writing results, formatting numbers, plotting, synthesis rows."""

import json
from pathlib import Path

__all__ = ["write_results", "fmt", "fmt_int", "pyplot", "fits", "synthesis_row",
           "critical_path"]


def write_results(outdir, stem, summary, markdown):
    """``<stem>.json`` (``summary``) and ``<stem>.md`` (``markdown``) in ``outdir``."""
    outdir = Path(outdir)
    (outdir / f"{stem}.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (outdir / f"{stem}.md").write_text(markdown)


def fmt(value):
    """A table cell: floats with one decimal, ints with thousands separators."""
    if isinstance(value, float):
        return f"{value:,.1f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def fmt_int(value):
    """An integer cell, ``-`` for None."""
    return "-" if value is None else f"{value:,}"


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def fits(report):
    """Whether a build report (or a synthesis row carrying ``resources``) fits its device; a row
    with an ``error`` does not."""
    if "error" in report:
        return False
    return all(row["used"] <= row["available"] for row in report["resources"].values())


def synthesis_row(report, **facts):
    """A synthesis result row: ``facts`` (board, array, ...) and the report's figures."""
    res = report["resources"]

    def used(key):
        return res[key]["used"] if key in res else None

    return {**facts, "lut4": used("lut4"), "ff": used("ff"), "bram": used("bram"),
            "mult": used("mult"), "fmax_mhz": report["fmax_mhz"],
            "constraint_mhz": report["constraint_mhz"], "timing_met": report["timing_met"],
            "critical_path": report.get("critical_path"), "resources": res}


def critical_path(timing_log):
    """``"start -> end"`` of the worst path within the clock domain, from a nextpnr log."""
    lines = Path(timing_log).read_text(errors="replace").splitlines()
    for n, line in enumerate(lines):
        if "Critical path report for clock" in line:
            report = []
            for entry in lines[n + 1:]:
                if " ns logic, " in entry:
                    break
                report.append(entry)
            sources = [ln.split("Source ", 1)[1] for ln in report if "Source " in ln]
            sinks = [ln.split("Sink ", 1)[1] for ln in report if "Sink " in ln]
            return f"{sources[0]} -> {sinks[-1]}" if sources and sinks else None
    return None
