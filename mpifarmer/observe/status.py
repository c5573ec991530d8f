"""``mpifarmer status``: what a work directory says of its farm, as figures.

:func:`gather` turns what a :class:`~mpifarmer.observe.state.FarmReader` read (and the
heartbeat files, and the history's recent past) into a :class:`FarmStatus`; :func:`as_json` is the
stable form for scripts (see the README), :mod:`mpifarmer.observe.statustext` the form for
people. Nothing here writes into the work directory or takes its lock.

Words used: a task is *running* when a farmer that is not dead has claimed it (it runs, or is
about to: the ``running`` view lists the same tasks); *pending* tasks wait for a farmer, and so
do the tasks a dead farmer held (they run again once a farmer notices the death); *done* is
finished or failed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from mpifarmer import environment
from mpifarmer.observe import tail
from mpifarmer.observe.rates import WINDOWS, Rates, eta
from mpifarmer.observe.state import FarmReader, start_of
from mpifarmer.scheduling.ledger import FarmerInfo, Ledger, Status
from mpifarmer.scheduling.liveness import Facts, Liveness, judge
from mpifarmer.store.packs import INDEX_SUFFIX, read_index
from mpifarmer.store.workdir import WorkDir

__all__ = ["JSON_VERSION", "FailedTask", "FarmStatus", "FarmerRow", "RunningTask", "as_json", "exit_code", "gather"]

#: The version of :func:`as_json`'s form: keys may be added, none removed or changed in meaning.
JSON_VERSION = 1
#: How many failed tasks and running tasks are listed.
LISTED = 5
ALIVE, LATE, STOPPED, DEAD = "alive", "late", "stopped", "dead"
_VERDICTS = {Liveness.LIVE: ALIVE, Liveness.SUSPECT: LATE, Liveness.DEAD: DEAD}


@dataclass
class FarmerRow:
    fid: str
    host: str
    pid: int
    job: str | None
    restart: int
    ranks: int
    slots: int | None
    state: str  # ALIVE, LATE, STOPPED or DEAD
    why: str  # the reason for the state, in words
    running: int  # tasks it holds (started, or about to start)
    started: int  # runs it started that have not ended
    by_rank: dict[int, int]  # of those, by rank
    done: int | None  # None: not known (recorded before mpifarmer counted it)
    heartbeat: float | None  # the heartbeat file's modification time
    registered: float
    left: float | None

    @property
    def array_element(self) -> str | None:
        """The array index of a Slurm array element (its job is ``ARRAYJOB_INDEX``)."""
        if self.job and "_" in self.job:
            return self.job.rpartition("_")[2]
        return None


@dataclass
class FailedTask:
    task: int
    command: str
    exit_code: int | None
    signal: int | None
    reason: str | None
    attempts: int | None
    ended: float | None
    log: str | None  # where its output is (None: nowhere found)


@dataclass
class RunningTask:
    task: int
    command: str
    started: float
    farmer: str
    host: str
    rank: int
    slot: int
    pid: int | None


@dataclass
class FarmStatus:
    workdir: str
    now: float
    total: int
    finished: int
    failed: int
    running: int
    pending: int
    held_by_dead: int
    rates: Rates
    eta_s: float | None
    farmers: list[FarmerRow]
    failure_counts: list[tuple[int | None, int | None, str | None, int]]  # exit code, signal, reason, tasks
    failures: list[FailedTask]
    longest: list[RunningTask]
    notes: list[str] = field(default_factory=list)

    @property
    def left(self) -> int:
        return self.pending + self.running

    @property
    def rate_per_min(self) -> float | None:
        return self.rates.over(300.0)


def exit_code(status: FarmStatus) -> int:
    """The farmer's codes where they fit: 3 work left, else 1 some failed, else 0."""
    if status.left > 0:
        return 3
    return 1 if status.failed else 0


def gather(reader: FarmReader, now: float, *, lease: float = 300.0) -> FarmStatus:
    """The status from what ``reader`` holds (refreshed by the caller) at wall time ``now``."""
    ledger, workdir = reader.ledger, reader.workdir
    rows = [_farmer_row(workdir, ledger, farmer, now, lease) for farmer in ledger.farmers.values()]
    dead = {row.fid for row in rows if row.state == DEAD}
    held_by_dead = sum(row.running for row in rows if row.fid in dead and not ledger.farmers[row.fid].gone)
    counts = ledger.counts
    running = counts[Status.CLAIMED] - held_by_dead
    pending = counts[Status.PENDING] + held_by_dead
    rates = _rates(reader, rows, now)
    progressing = any(row.state in (ALIVE, LATE) for row in rows)
    failure_counts, failures, notes = _failures(reader)
    return FarmStatus(
        workdir=str(workdir.root), now=now, total=len(ledger), finished=counts[Status.FINISHED],
        failed=counts[Status.FAILED], running=running, pending=pending, held_by_dead=held_by_dead, rates=rates,
        eta_s=eta(pending + running, rates.over(300.0), progressing), farmers=rows,
        failure_counts=failure_counts, failures=failures, longest=_longest(ledger, dead, now), notes=notes)


def _farmer_row(workdir: WorkDir, ledger: Ledger, farmer: FarmerInfo, now: float, lease: float) -> FarmerRow:
    beat = _mtime(workdir.heartbeat(farmer.fid))
    if farmer.gone:
        state = STOPPED if farmer.gone_by != "dead" else DEAD
        why = "left" if state == STOPPED else "found dead by another farmer"
    else:
        me = FarmerInfo("status", environment.hostname(), environment.boot_id())
        same_host = farmer.host == me.host and farmer.boot == me.boot
        alive = environment.pid_alive(farmer.pid, farmer.pid_start) if same_host else None
        facts = Facts(None if beat is None else now - beat, alive, now - farmer.registered)
        verdict, why = judge(farmer, me, facts, lease=lease, beat_interval=min(30.0, lease / 10))
        state = _VERDICTS[verdict]
    by_rank: dict[int, int] = {}
    for record in ledger.started.values():
        if record.get("f") == farmer.fid:
            rank = int(start_of(record).get("rank", 0))
            by_rank[rank] = by_rank.get(rank, 0) + 1
    return FarmerRow(farmer.fid, farmer.host, farmer.pid, farmer.job, farmer.restart, farmer.ranks, farmer.slots,
                     state, why, len(farmer.held), sum(by_rank.values()), dict(sorted(by_rank.items())), farmer.done,
                     beat, farmer.registered, farmer.gone_at)


def _rates(reader: FarmReader, rows: list[FarmerRow], now: float) -> Rates:
    """Runs done in each window: those of the live generation exactly, those of compacted ones
    from the tail of the history; observed since the earliest farmer active in the longest window."""
    longest = max(WINDOWS)
    active = [row.registered for row in rows
              if row.state != STOPPED or row.left is None or row.left >= now - longest]
    origin = min(active) if active else None
    earlier = dict.fromkeys(WINDOWS, 0)
    for generation in range(reader.generation - 1, -1, -1):
        counts = tail.count_ends_after(reader.workdir.old_journal(generation), [now - w for w in WINDOWS])
        for window in WINDOWS:
            earlier[window] += counts[now - window]
        if counts[now - longest] == 0:
            break  # nothing of this generation is recent, so nothing older is
    reader.forget_ends_before(now - longest - 60.0)  # a minute to spare for clocks that disagree
    return Rates.of_end_times(sorted(reader.done_ends), now, origin, WINDOWS, earlier)


def _failures(reader: FarmReader) -> tuple[list[tuple[int | None, int | None, str | None, int]],
                                           list[FailedTask], list[str]]:
    """Counts of failed tasks by exit code, signal and reason, and the latest few, from their last
    failed run: found in the live generation, else in the history, newest first, as far back as
    needed (a byte search: only the failed runs' lines are parsed)."""
    ledger = reader.ledger
    wanted = set(_ids_with(ledger, Status.FAILED))
    found: dict[int, dict[str, Any]] = {}
    for task in wanted & reader.failures.keys():
        parsed = _parsed(reader.failures[task])
        if parsed is not None:
            found[task] = parsed
    missing = wanted - found.keys()
    for generation in range(reader.generation - 1, -1, -1):
        if not missing:
            break
        older = reader.history_failures(generation, missing)
        found |= older
        missing -= older.keys()
    counts: dict[tuple[int | None, int | None, str | None], int] = {}
    for task in wanted:
        record = found.get(task, {})
        key = (record.get("rc"), record.get("sig"), record.get("why"))
        counts[key] = counts.get(key, 0) + 1
    ordered = sorted(counts.items(), key=lambda item: (-item[1], str(item[0])))
    latest = sorted(found.items(), key=lambda item: item[1].get("t1") or 0.0, reverse=True)[:LISTED]
    failures = [FailedTask(task, ledger.lines[task], record.get("rc"), record.get("sig"), record.get("why"),
                           record.get("att"), record.get("t1"), _log_of(reader.workdir, task, record))
                for task, record in latest]
    notes = [f"{len(missing)} failed tasks have no failed run left in the journal (its history was pruned?)"] \
        if missing else []
    return [(*key, count) for key, count in ordered], failures, notes


def _longest(ledger: Ledger, dead: set[str], now: float) -> list[RunningTask]:
    runs = []
    for task, record in ledger.started.items():
        farmer = ledger.farmers.get(record.get("f", ""))
        if farmer is None or farmer.gone or farmer.fid in dead:
            continue
        start = start_of(record)
        runs.append(RunningTask(task, ledger.lines[task], float(start.get("t", now)), farmer.fid,
                                str(start.get("host", farmer.host)), int(start.get("rank", 0)),
                                int(start.get("slot", 0)), start.get("pid")))
    runs.sort(key=lambda run: run.started)
    return runs[:LISTED]


def _log_of(workdir: WorkDir, task: int, record: dict[str, Any]) -> str | None:
    """Where a failed task's output is: ``logs/log_ID`` (--logs files), else the pack file of the
    farmer and rank that ran it (--logs packed; ``mpifarmer log ID`` prints it)."""
    plain = workdir.log(task)
    if plain.exists():
        return str(plain)
    farmer, rank = record.get("f"), record.get("rank", 0)
    if not farmer:
        return None
    prefix = f"pack.{farmer}.r{rank}."
    try:
        names = sorted(name for name in os.listdir(workdir.logs) if name.startswith(prefix)
                       and name.endswith(INDEX_SUFFIX))
    except OSError:
        return None
    for name in reversed(names):
        try:
            index = read_index(str(workdir.logs / name), task)
        except OSError:
            continue
        if index.entries:
            return f"{index.stem}.{index.entries[-1]['pack']}"
    return None


def _ids_with(ledger: Ledger, status: int) -> list[int]:
    marker, states, found = bytes([status]), ledger.status, []
    task = states.find(marker)
    while task >= 0:
        found.append(task)
        task = states.find(marker, task + 1)
    return found


def _parsed(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _mtime(path: os.PathLike[str] | str) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def as_json(status: FarmStatus) -> dict[str, Any]:
    """The stable form (``mpifarmer status --json``): see the README for every key."""
    return {
        "v": JSON_VERSION, "workdir": status.workdir, "time": round(status.now, 3),
        "total": status.total, "finished": status.finished, "failed": status.failed, "running": status.running,
        "pending": status.pending, "held_by_dead": status.held_by_dead,
        "rate_per_min": _round(status.rate_per_min),
        "rates_per_min": {f"{window / 60:g}": _round(rate) for window, rate in status.rates.by_window},
        "eta_s": _round(status.eta_s),
        "farmers": [{"id": row.fid, "host": row.host, "pid": row.pid, "job": row.job,
                     "array_element": row.array_element, "restart": row.restart, "ranks": row.ranks,
                     "slots": row.slots, "state": row.state, "why": row.why, "running": row.running,
                     "started": row.started, "by_rank": {str(rank): n for rank, n in row.by_rank.items()},
                     "done": row.done, "heartbeat": _round(row.heartbeat), "registered": row.registered,
                     "left": row.left} for row in status.farmers],
        "failures": {
            "count": status.failed,
            "by_reason": [{"exit_code": rc, "signal": sig, "reason": why, "tasks": count}
                          for rc, sig, why, count in status.failure_counts],
            "latest": [{"id": f.task, "command": f.command, "exit_code": f.exit_code, "signal": f.signal,
                        "reason": f.reason, "attempts": f.attempts, "ended": f.ended, "log": f.log}
                       for f in status.failures],
        },
        "longest_running": [{"id": r.task, "command": r.command, "started": r.started,
                             "elapsed_s": _round(status.now - r.started), "farmer": r.farmer, "host": r.host,
                             "rank": r.rank, "slot": r.slot, "pid": r.pid} for r in status.longest],
        "notes": status.notes,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
