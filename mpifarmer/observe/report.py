"""``mpifarmer report``: what a farm did, in figures that size the next run.

Read-only: the work directory is read through :mod:`mpifarmer.observe.runs` (no lock, nothing
written there). The text goes to stdout; ``-o FILE`` also draws the picture
(:mod:`mpifarmer.observe.plots`, which needs matplotlib, the ``report`` extra), and only then is
matplotlib imported.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from mpifarmer.errors import UsageError
from mpifarmer.observe.runs import Farm, Place, read_farm
from mpifarmer.observe.usage import Durations, busy_seconds, capacity, durations, tail_below_half, utilization
from mpifarmer.scheduling import records as rec
from mpifarmer.store.workdir import WorkDir
from mpifarmer.wording import counted

__all__ = ["PICTURE_SUFFIXES", "TAIL_FRACTION", "Report", "Row", "make_report", "render_json", "render_text",
           "write_report"]

#: What ``-o`` can write, by file name suffix.
PICTURE_SUFFIXES = (".png", ".svg", ".html")
#: The tail is this last part of the span.
TAIL_FRACTION = 0.1


@dataclass(frozen=True)
class Row:
    """Utilization of one host/rank, or of the whole farm."""

    label: str
    slots: int  # the most slots it had at once (its pools' slots summed, for the whole farm)
    busy: float  # slot-seconds
    offered: float  # slot-seconds
    runs: int

    @property
    def utilization(self) -> float | None:
        return utilization(self.busy, self.offered)


@dataclass(frozen=True)
class Report:
    farm: Farm
    span: tuple[float, float] | None  # first start, last end
    finished: Durations | None
    failed: Durations | None
    rows: list[Row]
    overall: Row
    tail: tuple[float, float] | None  # (its length, how long fewer than half the slots were busy)


def make_report(farm: Farm) -> Report:
    """The figures of ``farm`` (see :mod:`mpifarmer.observe.usage` for what each means)."""
    places = [place for place in farm.places.values() if len(place.t0) or place.sessions]
    timed = [place for place in places if len(place.t0)]
    span = (min(min(p.t0) for p in timed), max(max(p.t1) for p in timed)) if timed else None
    rows = [_row(place, span) for place in sorted(places, key=lambda p: p.label)]
    sessions = [session for place in places for session in place.sessions]
    overall = Row("overall", sum(_most_slots(place) for place in places), math.fsum(r.busy for r in rows),
                  math.fsum(r.offered for r in rows), sum(r.runs for r in rows))
    tail = None
    if span is not None and span[1] > span[0]:
        tail = tail_below_half(_joined(timed, "t0"), _joined(timed, "t1"), _joined(timed, "units"), sessions, span,
                               TAIL_FRACTION)
    return Report(farm, span, durations(farm.finished_durations), durations(farm.failed_durations), rows, overall,
                  tail)


def _joined(places: list[Place], name: str) -> list:
    return [value for place in places for value in getattr(place, name)]


def _most_slots(place: Place) -> int:
    """The most slots that the pools of ``place`` had at one time."""
    changes = sorted([(s.start, s.slots) for s in place.sessions] + [(s.end, -s.slots) for s in place.sessions],
                     key=lambda change: (change[0], change[1]))
    most = now = 0
    for _, change in changes:
        now += change
        most = max(most, now)
    return most


def _row(place: Place, span: tuple[float, float] | None) -> Row:
    busy = busy_seconds(place.t0, place.t1, place.units)
    offered = capacity(place.sessions, span) if span is not None else 0.0
    return Row(place.label, _most_slots(place), busy, offered, len(place.t0))


# -- text -------------------------------------------------------------------------------------


def _seconds(value: float) -> str:
    """A duration for people: 0.004 s, 2.50 s, 7 min 30 s, 3 h 05 min."""
    if value < 10:
        return f"{value:.3g} s" if value < 1 else f"{value:.2f} s"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{int(value // 60)} min {int(value % 60):02d} s"
    return f"{int(value // 3600)} h {int(value % 3600 // 60):02d} min"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _durations_line(name: str, figures: Durations | None) -> str:
    if figures is None:
        return f"  {name:<9} none"
    return (f"  {name:<9} {counted(figures.count, 'run')}: min {_seconds(figures.minimum)}, median "
            f"{_seconds(figures.median)}, p90 {_seconds(figures.p90)}, p99 {_seconds(figures.p99)}, max "
            f"{_seconds(figures.maximum)}")


def render_text(report: Report) -> str:
    """The report as text, one figure a line, for a terminal or a batch log."""
    farm = report.farm
    left = farm.tasks - farm.finished - farm.failed
    out = [f"mpifarmer report: {farm.source}"]
    if report.span is not None:
        first, last = report.span
        out.append(f"wall time: {_seconds(last - first)}, from the first start ({_when(first)}) to the last end "
                   f"({_when(last)})")
    else:
        out.append("wall time: no run has ended yet")
    out.append(f"tasks: {farm.tasks} in all: {farm.finished} finished, {farm.failed} failed, {left} left (not run yet, "
               "running or interrupted)")
    runs = farm.runs
    out.append(f"runs: {sum(runs.values())} in all: {runs[rec.FINISHED]} finished, {runs[rec.FAILED]} failed, "
               f"{runs[rec.RETRYING]} failed and retried, {runs[rec.INTERRUPTED]} interrupted"
               + (f" ({farm.untimed} done by PyTaskFarmer before mpifarmer took over, without times)"
                  if farm.untimed else ""))
    out.append("durations:")
    out.append(_durations_line("finished", report.finished))
    out.append(_durations_line("failed", report.failed))
    if farm.failures:
        out.append("failures by exit code and reason (runs):")
        ordered = sorted(farm.failures.items(), key=lambda item: (-sum(item[1]), item[0]))
        for (code, reason), (final, retried) in ordered:
            out.append(f"  {code:<16} {reason:<12} {final} failed, {retried} retried")
    else:
        out.append("failures: none")
    if runs[rec.RETRYING]:
        out.append(f"retries used: {counted(runs[rec.RETRYING], 'run')}, by {counted(farm.tasks_retried, 'task')}"
                   f" ({farm.retried_then_finished} of them finished in the end)")
    else:
        out.append("retries used: none")
    out.extend(_utilization_lines(report))
    if report.tail is not None:
        length, below = report.tail
        out.append(f"tail: in the last {int(100 * TAIL_FRACTION)}% of the span ({_seconds(length)}), fewer than half "
                   f"the slots were busy for {_seconds(below)} ({_percent(below / length if length else None)} of it)")
    out.extend(f"note: {note}" for note in farm.notes)
    return "\n".join(out) + "\n"


def _utilization_lines(report: Report) -> list[str]:
    overall = report.overall
    if report.span is None:
        return ["utilization: no run has ended yet"]
    hours = f" ({overall.busy / 3600:.1f} slot-hours)" if overall.busy >= 360 else ""
    out = [f"utilization: {_percent(overall.utilization)} overall: {overall.busy:.1f} busy slot-seconds{hours} "
           f"of {overall.offered:.1f} offered (slots x the time each pool was there within the span)"]
    width = max(len(row.label) for row in report.rows) if report.rows else 4
    out.append(f"  {'where':<{width}}  {'slots':>5}  {'runs':>8}  {'busy slot-s':>12}  {'offered':>12}  utilization")
    for row in report.rows:
        out.append(f"  {row.label:<{width}}  {row.slots:>5}  {row.runs:>8}  {row.busy:>12.1f}  {row.offered:>12.1f}  "
                   f"{_percent(row.utilization):>11}")
    return out


def _durations_json(figures: Durations | None) -> dict[str, float] | None:
    if figures is None:
        return None
    return {"count": figures.count, "min": figures.minimum, "median": figures.median, "p90": figures.p90,
            "p99": figures.p99, "max": figures.maximum}


def _row_json(row: Row) -> dict[str, object]:
    return {"where": row.label, "slots": row.slots, "runs": row.runs, "busy_slot_s": row.busy,
            "offered_slot_s": row.offered, "utilization": row.utilization}


def render_json(report: Report) -> dict[str, object]:
    """The report as one JSON object (the README's report section lists its keys)."""
    farm, runs = report.farm, report.farm.runs
    return {
        "source": farm.source,
        "first_start": report.span[0] if report.span else None,
        "last_end": report.span[1] if report.span else None,
        "wall_s": report.span[1] - report.span[0] if report.span else None,
        "tasks": farm.tasks, "finished": farm.finished, "failed": farm.failed,
        "left": farm.tasks - farm.finished - farm.failed,
        "runs": {state: runs[state] for state in (rec.FINISHED, rec.FAILED, rec.RETRYING, rec.INTERRUPTED)},
        "durations": {"finished": _durations_json(report.finished), "failed": _durations_json(report.failed)},
        "failures": [{"code": code, "reason": reason, "failed": final, "retried": retried}
                     for (code, reason), (final, retried) in sorted(farm.failures.items())],
        "retries": {"runs": runs[rec.RETRYING], "tasks": farm.tasks_retried,
                    "finished_after": farm.retried_then_finished},
        "utilization": {"overall": _row_json(report.overall), "places": [_row_json(row) for row in report.rows]},
        "tail": {"fraction": TAIL_FRACTION, "window_s": report.tail[0], "below_half_s": report.tail[1]}
        if report.tail else None,
        "notes": farm.notes,
    }


# -- the command ------------------------------------------------------------------------------


def write_report(workdir: WorkDir, picture: str | None, stream: TextIO, as_json: bool = False) -> int:
    """Print the report of ``workdir`` on ``stream`` (as text, or one JSON object); with
    ``picture``, draw it there too."""
    suffix = Path(picture).suffix.lower() if picture else None
    if picture is not None and suffix not in PICTURE_SUFFIXES:
        raise UsageError(f"-o {picture}: the picture's name must end in {', '.join(PICTURE_SUFFIXES)}")
    draw = None
    if picture is not None:
        try:  # before reading anything: a missing extra is said at once
            from mpifarmer.observe.plots import draw
        except ImportError as error:
            raise UsageError(f"-o needs matplotlib ({error}); install it with: pip install 'mpifarmer[report]' "
                             "(or pip install matplotlib), or leave -o out for the text alone") from None
    report = make_report(read_farm(workdir))
    text = render_text(report)
    if draw is not None:
        draw(report, Path(picture), text)
    if as_json:
        stream.write(json.dumps(render_json(report) | {"picture": picture}, indent=1) + "\n")
    else:
        stream.write(text + (f"picture: {picture}\n" if picture else ""))
    return 0
