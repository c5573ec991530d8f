"""The farm's decisions outside the dispatcher: how a run's end counts (and whether a failed task
runs again, and when), when a signal death is held back, when failures stop the farm, how much
each rank prefetches and when that is retuned, when a rank is lost, when the farm is done, and
its exit code.

Pure functions and small state machines: observations and the current time come in as arguments,
decisions go out; no clock, file, process or MPI call inside. The coordinator reads the world,
asks here, and carries the answer out.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Mapping
from typing import NamedTuple

from mpifarmer.errors import EXIT_FAILURES, EXIT_STOPPED
from mpifarmer.scheduling import records as rec
from mpifarmer.signals import STOP_SIGNALS
from mpifarmer.task import EndReason
from mpifarmer.wording import counted

__all__ = ["EXIT_DONE", "EXIT_FAILED", "EXIT_FAILURES", "EXIT_STOPPED", "FAILURE_LOOK", "PREFETCH_LEAD",
           "PREFETCH_MAX", "RETUNE_EARLY_ENDS", "RETUNE_FIRST", "RETUNE_INTERVAL", "SIGNAL_DEATH_HOLD", "EndVerdict",
           "END_REPORT_WAIT", "RetuneSchedule", "classify_end",
           "ends_report_due", "exit_code", "failures_stop", "farm_done", "hold_until", "prefetch_for",
           "attempt_of", "failure_look_due", "retries_of", "retry_at", "silent_ranks", "stop_signalled"]

EXIT_DONE, EXIT_FAILED = 0, 1

#: A task killed by a stop signal just before its farmer is asked to stop was most likely
#: signalled by the same hand (Slurm signals a step's processes together): wait this long
#: before calling it failed.
SIGNAL_DEATH_HOLD = 1.0
_STOP_SIGNAL_NUMBERS = frozenset(int(signum) for signum in (*STOP_SIGNALS, signal.SIGHUP, signal.SIGKILL))

#: A remote rank that still has work queued holds the ends of its runs up to this long before
#: it reports them, so that one message carries several: rank 0 pays per message (receiving,
#: unpickling), and at 64 ranks of short tasks a report per step carried one or two ends.
#: Rank 0's answer is not needed yet (the rank has its prefetch), nothing is lost that a
#: restart would not run again anyway, and the journal is a few milliseconds later.
END_REPORT_WAIT = 0.005


def ends_report_due(*, held_since: float | None, now: float, queued: int, stopping: bool, wait: float) -> bool:
    """Whether a rank sends the ends it holds (since ``held_since``; None: it holds none) now:
    when it has no work queued (rank 0's answer is what it waits for), when it is stopping,
    or when the oldest has waited ``wait`` seconds (0: at once, as rank 0's own worker does)."""
    if held_since is None:
        return False
    return wait <= 0 or not queued or stopping or now - held_since >= wait


#: How much work a rank may hold beyond its slots, in seconds of its recent throughput.
PREFETCH_LEAD = 0.1
PREFETCH_MAX = 4096
#: Prefetch is retuned every RETUNE_INTERVAL seconds; before the first retune that saw tasks
#: end, every RETUNE_FIRST seconds, or as soon as RETUNE_EARLY_ENDS tasks have ended, so that
#: a run of short tasks gets its prefetch within milliseconds.
RETUNE_INTERVAL, RETUNE_FIRST, RETUNE_EARLY_ENDS = 1.0, 0.2, 16

# -- a run's end ------------------------------------------------------------------------------


def stop_signalled(returncode: int) -> bool:
    """Whether a task's end looks like a stop signal's doing: death by one, or bash's exit status
    128+N when the signal killed the program bash ran before bash itself."""
    return -returncode in _STOP_SIGNAL_NUMBERS or returncode - 128 in _STOP_SIGNAL_NUMBERS


#: Ends that the farmer's side caused: the run was cut short, not failed, and runs again.
_INTERRUPTIONS = frozenset({EndReason.STOPPED, EndReason.LOST})
#: Ends of the run's own making, where a death by a stop signal may be a stop's doing.
_OWN_ENDS = frozenset({EndReason.EXITED, EndReason.SIGNALLED})

#: With --max-failures, how often a farmer that has nothing else to record looks at the work
#: directory's failure count (other farmers' failures count too).
FAILURE_LOOK = 2.0


def hold_until(returncode: int, *, reason: str, stopping: bool, now: float) -> float | None:
    """Until when to hold back an end before classifying it (None: classify it now). A death by a
    stop signal the farmer did not send waits SIGNAL_DEATH_HOLD for the stop that likely follows.
    (A run stopped for its time limit died of the farmer's own SIGTERM: it is not held.)"""
    if returncode and stop_signalled(returncode) and reason in _OWN_ENDS and not stopping:
        return now + SIGNAL_DEATH_HOLD
    return None


class EndVerdict(NamedTuple):
    state: str  # rec.FINISHED, rec.FAILED, rec.RETRYING or rec.INTERRUPTED
    drain: str | None = None  # a reason to stop the farm, if this end gives one
    #: Which attempt the run was (1 for the first): for a failed or retrying run, and for a finished
    #: one that was not the first (None for a first that finished, and for an interruption).
    attempt: int | None = None


#: The verdict on most ends (built once: this runs for every task at up to 50,000 a second).
_FINISHED = EndVerdict(rec.FINISHED)


def classify_end(returncode: int, *, reason: str, stopping: bool, disk_full: Callable[[], bool],
                 attempts: int = 0, retries: int = 0) -> EndVerdict:
    """How a run's end counts. ``reason`` an EndReason: a run the farmer's side ended (a drain,
    a dead spawner) is interrupted and is no attempt; ``disk_full`` is asked only for a run that
    would otherwise be failed. A failed run (non-zero exit, a signal the farmer did not send, its
    time limit) is attempt ``attempts + 1``; while that leaves some of the task's ``retries``
    unused, the task is retrying (it runs again), else failed. A run that finished after failed
    attempts is attempt ``attempts + 1`` too."""
    if returncode == 0:
        return EndVerdict(rec.FINISHED, attempt=attempts + 1) if attempts else _FINISHED
    if reason == EndReason.UNAVAILABLE:
        # It asked for more than the pool has: running it again would not help.
        return EndVerdict(rec.FAILED, attempt=attempts + 1)
    if reason in _INTERRUPTIONS or stopping:
        return EndVerdict(rec.INTERRUPTED)
    if disk_full():
        # Most likely the task failed because its output could not be written: not the task's
        # fault, so it runs again once there is space.
        return EndVerdict(rec.INTERRUPTED, "the work directory's filesystem is full; free space and run the "
                                           "same command again")
    attempt = attempts + 1
    return EndVerdict(rec.RETRYING if attempt <= retries else rec.FAILED, attempt=attempt)


def retries_of(attrs: dict, default: int) -> int:
    """How many times a failed task runs again: its own ``retries`` attribute, else ``default``."""
    own = attrs.get("retries")
    if isinstance(own, int) and not isinstance(own, bool) and own >= 0:
        return own
    return default


def attempt_of(attempts: int, retries: int) -> tuple[int, int] | None:
    """(the attempt a task's next run is, attempts allowed), for a task that may be retried."""
    return (attempts + 1, retries + 1) if retries > 0 else None


def retry_at(t1: float, delay: float) -> float | None:
    """The wall time before which a retrying task is not handed out again (None: at once)."""
    return t1 + delay if delay > 0 else None


def failures_stop(failed: int, limit: int | None) -> str | None:
    """Why the farm stops for its failures (``failed`` tasks of the work directory recorded failed
    for good, ``limit`` the --max-failures), or None to go on."""
    if limit is None or failed < limit:
        return None
    return f"{counted(failed, 'task', 'tasks')} of the work directory {'has' if failed == 1 else 'have'} failed " \
           f"(--max-failures {limit})"


def failure_look_due(*, limit: int | None, last_look: float, now: float) -> bool:
    """Whether a farmer with --max-failures should read the work directory for other farmers'
    failures now, though it has nothing to record or claim."""
    return limit is not None and now - last_look >= FAILURE_LOOK


# -- prefetch -----------------------------------------------------------------------------------


def prefetch_for(ends_per_second: float, *, remote: bool) -> int:
    """A rank's prefetch: a tenth of a second of its recent throughput, at most PREFETCH_MAX.
    Remote ranks keep at least one ahead, so that none waits a message round trip; rank 0's
    worker is in process."""
    return max(1 if remote else 0, min(PREFETCH_MAX, int(ends_per_second * PREFETCH_LEAD)))


class RetuneSchedule:
    """When prefetch is retuned: every RETUNE_INTERVAL once tasks have been seen ending; until
    then every RETUNE_FIRST, or as soon as RETUNE_EARLY_ENDS have ended."""

    def __init__(self, now: float) -> None:
        self.last = now
        self.next_at = now + RETUNE_FIRST
        self.tuned = False  # no retune has seen a task end yet

    def due(self, now: float, ended_since: int) -> bool:
        return now >= self.next_at or (not self.tuned and ended_since >= RETUNE_EARLY_ENDS)

    def retuned(self, now: float, ended: int) -> float:
        """Record a retune that saw ``ended`` ends; return the seconds it covered."""
        elapsed = now - self.last
        self.last = now
        self.tuned = self.tuned or ended > 0
        self.next_at = now + (RETUNE_INTERVAL if ended else RETUNE_FIRST)
        return elapsed


# -- ranks, the end of the farm, the exit code ------------------------------------------------


def silent_ranks(heard: Mapping[int, float], *, size: int, lost: set[int], started: float, now: float,
                 timeout: float) -> list[tuple[int, float]]:
    """Remote ranks silent for longer than ``timeout`` (a rank never heard from counts from
    ``started``), with how long: they are lost (killed, node gone, hung)."""
    silent = []
    for rank in range(1, size):
        if rank not in lost:
            quiet = now - heard.get(rank, started)
            if quiet > timeout:
                silent.append((rank, quiet))
    return silent


def farm_done(*, held: int, stopping: bool, in_flight: int, idle: bool, ran_dry: bool, pending: int,
              unrecorded_lines: int, ranks_known: int, size: int, holders_live: bool) -> bool:
    """Whether this farmer can stop now, before its last look at the task list. Draining: once
    nothing is in flight. Otherwise: nothing held back, running, claimable or unrecorded, every
    rank said hello, and every task left is held by a live farmer."""
    if held:
        return False
    if stopping:
        return in_flight == 0
    return (idle and ran_dry and pending == 0 and unrecorded_lines == 0 and ranks_known >= size
            and holders_live)


def exit_code(*, store_failed: bool, rank_lost: bool, closed: bool, stopping: bool, work_left: bool,
              failed: int, failures_stopped: bool = False) -> int:
    """0 done, 1 done with failures, 3 stopped with work left (or not recorded for sure), 4
    stopped with work left once --max-failures tasks had failed (whatever stopped it first: the
    same command run again would stop at once, so a script that runs it again on 3 must not)."""
    if store_failed or rank_lost or not closed:
        return EXIT_STOPPED
    if stopping and work_left:
        return EXIT_FAILURES if failures_stopped else EXIT_STOPPED
    return EXIT_FAILED if failed else EXIT_DONE
