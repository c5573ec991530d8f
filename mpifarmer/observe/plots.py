"""The report's picture: busy slots over time per host/rank, and the histogram of run durations.

This module imports matplotlib (the ``report`` extra, ``pip install 'mpifarmer[report]'``), so
it is imported only when ``mpifarmer report -o FILE`` asks for a picture. It draws with
matplotlib's object interface (``Figure``, no pyplot), so no display or backend is needed. The
curves come from :func:`mpifarmer.observe.usage.busy_curve`: the mean busy slots in each time
bin, exact however short the runs, so a million runs of milliseconds draw as the load they were.
"""

from __future__ import annotations

import html
import io
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mpifarmer.observe.report import Report
from mpifarmer.observe.runs import Place
from mpifarmer.observe.usage import busy_curve
from mpifarmer.store.workdir import atomic_write

__all__ = ["BINS", "MAX_SERIES", "draw"]

#: Time bins of the busy-slots curve.
BINS = 400
#: More host/ranks than this are drawn per host; more hosts than this, as one total.
MAX_SERIES = 16


def draw(report: Report, path: Path, text: str) -> None:
    """Write the picture of ``report`` to ``path`` (.png, .svg, or .html: the SVG and ``text`` in
    one self-contained page), whole or not at all."""
    figure = _figure(report)
    suffix = path.suffix.lower()
    if suffix == ".html":
        svg = io.StringIO()
        figure.savefig(svg, format="svg")
        page = _page(report, text, svg.getvalue())
        with atomic_write(path) as stream:
            stream.write(page)
        return
    with atomic_write(path, binary=True) as stream:
        figure.savefig(stream, format=suffix[1:], dpi=120)


def _figure(report: Report) -> Figure:
    figure = Figure(figsize=(11, 8), layout="constrained")
    busy_axes, histogram_axes = figure.subplots(2, 1, height_ratios=[3, 2])
    overall = report.overall.utilization
    figure.suptitle(f"mpifarmer report: {report.farm.tasks} tasks, {report.farm.finished} finished, "
                    f"{report.farm.failed} failed"
                    + (f"; utilization {100 * overall:.1f}%" if overall is not None else ""))
    _busy(busy_axes, report)
    _histogram(histogram_axes, report)
    return figure


def _unit(span: float) -> tuple[float, str]:
    if span >= 3 * 3600:
        return 3600.0, "hours"
    if span >= 180:
        return 60.0, "minutes"
    return 1.0, "seconds"


def _series(report: Report) -> list[tuple[str, list[Place]]]:
    """What to stack: each host/rank, or each host when there are many, or the whole farm."""
    places = sorted((key, place) for key, place in report.farm.places.items() if len(place.t0))
    if len(places) <= MAX_SERIES:
        return [(place.label, [place]) for _, place in places]
    hosts: dict[str, list[Place]] = {}
    for (host, _), place in places:
        hosts.setdefault(host, []).append(place)
    if len(hosts) <= MAX_SERIES:
        return [(f"{host} ({len(group)} ranks)", group) for host, group in sorted(hosts.items())]
    return [(f"all {len(places)} host/ranks", [place for _, place in places])]


def _busy(axes, report: Report) -> None:  # noqa: ANN001 (matplotlib Axes)
    axes.set_title("busy slots over time (mean in each bin)")
    if report.span is None or report.span[1] <= report.span[0]:
        axes.text(0.5, 0.5, "no run has ended yet", ha="center", va="center", transform=axes.transAxes)
        return
    first, last = report.span
    scale, unit = _unit(last - first)
    edges = [first + (last - first) * i / BINS for i in range(BINS + 1)]
    x = [(edge - first) / scale for edge in edges]
    labels, curves = [], []
    for label, places in _series(report):
        total = [0.0] * BINS
        for place in places:
            for i, value in enumerate(busy_curve(place.t0, place.t1, place.units, edges)):
                total[i] += value
        labels.append(label)
        curves.append([*total, total[-1]])  # one more for the step to reach the last edge
    axes.stackplot(x, curves, labels=labels, step="post", alpha=0.85)
    sessions = [s for place in report.farm.places.values() for s in place.sessions]
    present = busy_curve([max(s.start, first) for s in sessions], [min(s.end, last) for s in sessions],
                         [s.slots for s in sessions], edges)
    axes.step(x, [*present, present[-1]], where="post", color="black", linewidth=1.2, label="slots present")
    axes.set_xlim(0, x[-1])
    axes.set_ylim(0, max([*present, *(sum(c[i] for c in curves) for i in range(BINS))], default=1) * 1.08 or 1)
    axes.set_xlabel(f"{unit} since the first start")
    axes.set_ylabel("slots")
    axes.legend(loc="upper right", fontsize="small", ncols=2 if len(labels) > 6 else 1)


def _histogram(axes, report: Report) -> None:  # noqa: ANN001 (matplotlib Axes)
    farm = report.farm
    values = [list(farm.finished_durations), list(farm.failed_durations)]
    names = ["finished", "failed (and retried)"]
    present = [(v, n) for v, n in zip(values, names, strict=True) if v]
    title = "run durations"
    if report.finished is not None:
        title += (f" (finished: median {report.finished.median:.3g} s, p90 {report.finished.p90:.3g} s, "
                  f"p99 {report.finished.p99:.3g} s)")
    axes.set_title(title)
    if not present:
        axes.text(0.5, 0.5, "no run has ended yet", ha="center", va="center", transform=axes.transAxes)
        return
    every = [value for group, _ in present for value in group]
    low, high = min(every), max(every)
    if low > 0 and high / low > 100:  # a long tail: logarithmic bins show both ends
        bins = [low * (high / low) ** (i / 50) for i in range(51)]
        axes.set_xscale("log")
    else:
        bins = 50 if high > low else 1
    colours = {"finished": "tab:green", "failed (and retried)": "tab:red"}
    axes.hist([group for group, _ in present], bins=bins, stacked=True, label=[name for _, name in present],
              color=[colours[name] for _, name in present])
    axes.set_xlabel("seconds")
    axes.set_ylabel("runs")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    if report.finished is not None:
        for value, style, name in ((report.finished.median, "--", "median"), (report.finished.p90, ":", "p90")):
            axes.axvline(value, color="black", linestyle=style, linewidth=1, label=f"finished {name}")
    axes.legend(loc="upper left", fontsize="small")


def _page(report: Report, text: str, svg: str) -> str:
    """One HTML page with the figures and the text, nothing fetched from elsewhere."""
    start = svg.find("<svg")
    title = html.escape(f"mpifarmer report: {report.farm.source}")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{title}</title>"
            "<style>body{font-family:sans-serif;margin:1.5em}pre{background:#f6f6f6;padding:1em;"
            "overflow-x:auto}svg{max-width:100%;height:auto}</style></head><body>"
            f"<h1>{title}</h1><pre>{html.escape(text)}</pre>{svg[start:] if start >= 0 else svg}</body></html>\n")
