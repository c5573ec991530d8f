"""The journal's record kinds, defined once.

A record is a small JSON object with its kind under ``"e"``. Records are appended whole, one
per line, and replayed in order by :class:`mpifarmer.scheduling.ledger.Ledger`. New kinds and
new keys may be added later: readers skip kinds they do not know and keys they do not use.

====================  =================================================================
``add``               tasks ``first`` .. ``first+len(lines)-1`` exist, with these lines (and
                      ``attrs``: the handler's attributes, by offset from ``first``, if any)
``hello``             farmer ``f`` registered (host, boot id, pid, Slurm job, restart count,
                      ranks, ``slots`` of each rank's pool)
``claim``             farmer ``f`` claimed tasks ``ids``
``start``             a run of task ``id`` started (pid, host, rank, slot, time)
``end``               a run of task ``id`` ended: ``st`` finished / failed / interrupted /
                      retrying (failed, and it will run again), ``why`` (an EndReason), the
                      attributes it ran with (``attrs``); for a failed or retrying run ``att``,
                      which attempt it was (1 for the first), and for a retrying one ``at``,
                      the wall time before which it is not handed out again (if later than now)
``release``           farmer ``f`` gave back claimed tasks ``ids`` it never started
``retry``             failed tasks ``ids`` are pending again (``--retry-failed``)
``bye``               farmer ``f`` left; anything it still held is pending again
``dead``              farmer ``f`` was found dead by ``by``; what it held is pending again
====================  =================================================================
"""

from __future__ import annotations

from typing import Any

VERSION = 1

ADD, HELLO, CLAIM, START, END = "add", "hello", "claim", "start", "end"
RELEASE, RETRY, BYE, DEAD = "release", "retry", "bye", "dead"

FINISHED, FAILED, INTERRUPTED = "finished", "failed", "interrupted"
#: A failed run of a task that has attempts left: pending again (an older reader, which does not
#: know this state, takes it for an interruption, which also makes the task pending again).
RETRYING = "retrying"

Record = dict[str, Any]


def add(first: int, lines: list[str], attrs: dict[int, dict[str, Any]] | None = None) -> Record:
    """``attrs`` by offset from ``first``, only for tasks that have some (JSON keys are strings)."""
    record: Record = {"e": ADD, "first": first, "lines": lines}
    if attrs:
        record["attrs"] = {str(offset): value for offset, value in attrs.items()}
    return record


def claim(fid: str, ids: list[int]) -> Record:
    return {"e": CLAIM, "f": fid, "ids": ids}


def release(fid: str, ids: list[int]) -> Record:
    return {"e": RELEASE, "f": fid, "ids": ids}


def retry(fid: str, ids: list[int]) -> Record:
    return {"e": RETRY, "f": fid, "ids": ids}


def bye(fid: str, t: float) -> Record:
    return {"e": BYE, "f": fid, "t": round(t, 3)}


def dead(fid: str, by: str, why: str, t: float) -> Record:
    return {"e": DEAD, "f": fid, "by": by, "why": why, "t": round(t, 3)}


def hello(fid: str, identity: dict[str, Any], t: float) -> Record:
    """``identity`` holds host, boot, pid, pst (pid start token), job, restart, ranks, slots."""
    return {"e": HELLO, "v": VERSION, "f": fid, **identity, "t": round(t, 3)}


def start(fid: str, task: int, *, pid: int, pst: int | None, host: str, rank: int, slot: int,
          t: float) -> Record:
    return {"e": START, "f": fid, "id": task, "pid": pid, "pst": pst, "host": host, "rank": rank,
            "slot": slot, "t": round(t, 3)}


def end(fid: str, task: int, *, st: str, rc: int | None, sig: int | None, t0: float, t1: float,
        host: str, rank: int, slot: int, why: str | None = None, attrs: dict[str, Any] | None = None,
        att: int | None = None, at: float | None = None) -> Record:
    record: Record = {"e": END, "f": fid, "id": task, "st": st, "rc": rc, "t0": t0, "t1": t1, "host": host,
                      "rank": rank, "slot": slot}
    if att is not None:
        record["att"] = att
    if at is not None:
        record["at"] = round(at, 3)
    if sig is not None:
        record["sig"] = sig
    if why is not None:
        record["why"] = why
    if attrs:
        record["attrs"] = attrs
    return record
