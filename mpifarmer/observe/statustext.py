"""``mpifarmer status`` for people: the figures of a :class:`~mpifarmer.observe.status.FarmStatus`
as a few aligned lines of plain text (no colours: it is read in logs and over ssh as often as on
a terminal)."""

from __future__ import annotations

import time

from mpifarmer.observe.rates import WINDOWS
from mpifarmer.observe.status import ALIVE, DEAD, LATE, STOPPED, FarmerRow, FarmStatus
from mpifarmer.observe.words import duration, rate_text

__all__ = ["render"]

#: Farmers that have left are listed up to this many, the latest first.
GONE_LISTED = 5
_WIDTH = 60  # commands are cut to this many characters


def render(status: FarmStatus) -> str:
    lines = [f"mpifarmer status of {status.workdir} at {_clock(status.now)}"]
    lines += _totals(status)
    lines += _farmers(status)
    lines += _failures(status)
    lines += _longest(status)
    lines += [f"note: {note}" for note in status.notes]
    return "\n".join(lines) + "\n"


def _totals(status: FarmStatus) -> list[str]:
    total = status.total
    share = f" ({100.0 * status.finished / total:.1f}%)" if total else ""
    dead = f" ({status.held_by_dead:,} of them held by dead farmers)" if status.held_by_dead else ""
    rates = ", ".join(f"{rate_text(rate)} over {duration(window)}" for window, rate in status.rates.by_window)
    if status.left == 0:
        eta = "none: nothing is left"
    elif status.eta_s is None:
        no_farmer = not any(row.state in (ALIVE, LATE) for row in status.farmers)
        eta = "unknown" + (" (no farmer is running)" if no_farmer else "")
    else:
        eta = f"{duration(status.eta_s)} (at the {duration(WINDOWS[1])} rate, {status.left:,} tasks left)"
    return [f"tasks    {total:,}: {status.finished:,} finished{share}, {status.failed:,} failed, "
            f"{status.running:,} running, {status.pending:,} pending{dead}",
            f"rate     {rates}",
            f"ETA      {eta}"]


def _farmers(status: FarmStatus) -> list[str]:
    rows = status.farmers
    if not rows:
        return ["farmers  none has registered yet"]
    counts = {state: sum(row.state == state for row in rows) for state in (ALIVE, LATE, DEAD, STOPPED)}
    lines = ["farmers  " + ", ".join(f"{n} {state}" for state, n in counts.items() if n)]
    current = [row for row in rows if row.state != STOPPED]
    gone = sorted((row for row in rows if row.state == STOPPED), key=lambda row: row.left or row.registered,
                  reverse=True)
    for row in [*current, *gone[:GONE_LISTED]]:
        lines.append("  " + _farmer(row, status.now))
    if len(gone) > GONE_LISTED:
        lines.append(f"  ... and {len(gone) - GONE_LISTED} farmers that left earlier")
    return lines


def _farmer(row: FarmerRow, now: float) -> str:
    job = f" job {row.job}" if row.job else ""
    if row.restart:
        job += f" (restart {row.restart})"
    shape = f"{row.ranks} rank{'s' if row.ranks != 1 else ''} x {row.slots if row.slots else '?'} slots"
    beat = f", heartbeat {duration(now - row.heartbeat)} ago" if row.heartbeat is not None else ""
    if row.state == STOPPED:
        when = f" at {_clock(row.left)}" if row.left is not None else ""
        return f"{row.fid}: {row.host}{job} pid {row.pid}, {shape}: left{when}, {_done(row)}"
    state = row.state if row.state != DEAD else f"dead ({row.why})"
    if row.state == LATE:
        state = f"late ({row.why})"
    held = f"running {row.running:,}"
    if row.ranks > 1 and row.by_rank:
        held += " (started by rank: " + ", ".join(f"{rank}: {n}" for rank, n in row.by_rank.items()) + ")"
    if row.state == DEAD and row.running:
        held = f"holds {row.running:,} tasks, pending again once a farmer sees it dead"
    return f"{row.fid}: {row.host}{job} pid {row.pid}, {shape}: {state}, {held}, {_done(row)}{beat}"


def _done(row: FarmerRow) -> str:
    return f"{row.done:,} done" if row.done is not None else "done unknown"


def _failures(status: FarmStatus) -> list[str]:
    if not status.failed:
        return []
    kinds = ", ".join(f"{_how(rc, sig, why)} x{count:,}" for rc, sig, why, count in status.failure_counts)
    lines = [f"failed   {status.failed:,}: {kinds}", "  latest:"]
    for failure in status.failures:
        attempts = f", {failure.attempts} attempts" if failure.attempts and failure.attempts > 1 else ""
        ended = f" at {_clock(failure.ended)}" if failure.ended else ""
        lines.append(f"  task {failure.task}: {_how(failure.exit_code, failure.signal, failure.reason)}{ended}"
                     f"{attempts}: {_cut(failure.command)}")
        lines.append(f"    log: {failure.log or 'none found'} (or: mpifarmer log {failure.task})")
    return lines


def _longest(status: FarmStatus) -> list[str]:
    if not status.longest:
        return []
    lines = ["longest running now:"]
    ranked = any(run.rank for run in status.longest)  # MPI: name every rank, rank 0 too
    for run in status.longest:
        where = f"{run.host} rank {run.rank} slot {run.slot}" if ranked else f"{run.host} slot {run.slot}"
        lines.append(f"  task {run.task}: {duration(status.now - run.started)} on {where} ({run.farmer}): "
                     f"{_cut(run.command)}")
    return lines


def _how(rc: int | None, sig: int | None, why: str | None) -> str:
    if why == "timed-out":
        return "timed out"
    if why == "unavailable":
        return "asked for more than its pool has"
    if sig is not None:
        return f"signal {sig}"
    if rc is not None:
        return f"exit code {rc}"
    return "unknown reason"


def _cut(text: str) -> str:
    return text if len(text) <= _WIDTH else text[: _WIDTH - 3] + "..."


def _clock(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))
