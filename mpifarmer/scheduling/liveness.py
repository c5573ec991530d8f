"""Deciding whether another farmer is alive, from facts the store gathers.

A farmer that dies hard (SIGKILL, a lost node) leaves its claims in the journal. They become
claimable again as soon as its death is certain, otherwise when its lease runs out:

* same host (and boot) and its process is gone, or the host rebooted: dead at once;
* same Slurm job (or array element) seen with a higher restart count: dead at once (requeued);
* its heartbeat file is older than the lease: dead;
* its heartbeat is late but within the lease: suspect (others wait for it rather than leave);
* otherwise alive.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from mpifarmer.scheduling.ledger import FarmerInfo

__all__ = ["Facts", "Liveness", "judge"]


class Liveness(Enum):
    LIVE = "live"
    SUSPECT = "suspect"
    DEAD = "dead"


@dataclass(frozen=True)
class Facts:
    """What was observed of one farmer just now.

    ``beat_age`` is how much older its heartbeat file is than ours, both as the shared
    filesystem dates them (so node clocks need not agree); None if it has none.
    ``process_alive`` is only known on the same host; ``registered_age`` is our clock minus
    the time it registered, a fallback for a farmer killed before its first heartbeat.
    """

    beat_age: float | None
    process_alive: bool | None
    registered_age: float


def judge(other: FarmerInfo, me: FarmerInfo, facts: Facts, *, lease: float,
          beat_interval: float) -> tuple[Liveness, str]:
    """Return the verdict on ``other`` and the reason, in words for the log."""
    if other.host == me.host and other.boot and other.boot == me.boot:
        if facts.process_alive is False:
            return Liveness.DEAD, f"its process {other.pid} on {other.host} is gone"
        if facts.process_alive:
            return Liveness.LIVE, "its process runs on this host"
    elif other.host == me.host and other.boot and me.boot and other.boot != me.boot:
        return Liveness.DEAD, f"{other.host} rebooted since it registered"
    if other.job and other.job == me.job and other.restart < me.restart:
        return Liveness.DEAD, f"Slurm job {other.job} was requeued (restart {other.restart} -> {me.restart})"
    age = facts.beat_age if facts.beat_age is not None else facts.registered_age
    if age > lease:
        return Liveness.DEAD, f"no heartbeat for {age:.0f} s (lease {lease:g} s)"
    if age > 3 * beat_interval:
        return Liveness.SUSPECT, f"heartbeat {age:.0f} s late"
    return Liveness.LIVE, "heartbeat is fresh"
