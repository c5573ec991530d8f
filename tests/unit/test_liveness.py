"""Liveness verdicts on other farmers, from facts gathered by the store."""

from __future__ import annotations

import pytest

from mpifarmer.scheduling.ledger import FarmerInfo
from mpifarmer.scheduling.liveness import Facts, Liveness, judge

LEASE, BEAT = 300.0, 30.0


def farmer(host: str = "n1", boot: str = "boot1", *, pid: int = 100, job: str | None = None,
           restart: int = 0) -> FarmerInfo:
    return FarmerInfo(fid=f"f-{host}-{pid}", host=host, boot=boot, pid=pid, job=job, restart=restart)


def verdict(other: FarmerInfo, me: FarmerInfo, *, beat_age: float | None = 0.0, alive: bool | None = None,
            registered_age: float = 0.0) -> tuple[Liveness, str]:
    return judge(other, me, Facts(beat_age, alive, registered_age), lease=LEASE, beat_interval=BEAT)


def test_same_host_process_gone_is_dead_at_once_even_with_a_fresh_heartbeat() -> None:
    live, why = verdict(farmer(pid=4242), farmer(pid=1), beat_age=0.0, alive=False)
    assert live is Liveness.DEAD
    assert "4242" in why and "n1" in why


def test_same_host_process_running_is_live_even_with_an_old_heartbeat() -> None:
    live, _ = verdict(farmer(), farmer(pid=1), beat_age=LEASE * 10, alive=True)
    assert live is Liveness.LIVE


def test_rebooted_host_is_dead_at_once() -> None:
    live, why = verdict(farmer(boot="old"), farmer(boot="new", pid=1), beat_age=0.0)
    assert live is Liveness.DEAD
    assert "rebooted" in why


def test_unknown_boot_id_is_not_taken_for_a_reboot() -> None:
    live, _ = verdict(farmer(boot=""), farmer(boot="new", pid=1), beat_age=0.0)
    assert live is Liveness.LIVE


def test_other_host_is_judged_by_heartbeat_not_by_boot_id() -> None:
    live, _ = verdict(farmer(host="n2", boot="x"), farmer(host="n1", boot="y"), beat_age=1.0)
    assert live is Liveness.LIVE


def test_requeued_slurm_job_is_dead_at_once() -> None:
    other = farmer(host="n2", job="77_3", restart=0)
    me = farmer(host="n5", job="77_3", restart=1)
    live, why = verdict(other, me, beat_age=0.0)
    assert live is Liveness.DEAD
    assert "77_3" in why and "requeued" in why


@pytest.mark.parametrize(("other_job", "other_restart", "my_job", "my_restart"), [
    ("77_3", 1, "77_3", 1),   # same run of the job
    ("77_3", 2, "77_3", 1),   # the other is the newer one
    ("77_4", 0, "77_3", 1),   # another array element
    (None, 0, None, 3),       # no Slurm job at all
])
def test_no_requeue_verdict_without_a_newer_run_of_the_same_job(other_job: str | None, other_restart: int,
                                                                 my_job: str | None, my_restart: int) -> None:
    live, _ = verdict(farmer(host="n2", job=other_job, restart=other_restart),
                      farmer(host="n5", job=my_job, restart=my_restart), beat_age=0.0)
    assert live is Liveness.LIVE


@pytest.mark.parametrize(("age", "expected"), [
    (0.0, Liveness.LIVE),
    (3 * BEAT, Liveness.LIVE),
    (3 * BEAT + 1, Liveness.SUSPECT),
    (LEASE, Liveness.SUSPECT),
    (LEASE + 1, Liveness.DEAD),
])
def test_heartbeat_age_against_the_lease(age: float, expected: Liveness) -> None:
    live, why = verdict(farmer(host="n2"), farmer(host="n1"), beat_age=age)
    assert live is expected
    if expected is Liveness.DEAD:
        assert "lease 300 s" in why


def test_registered_age_stands_in_for_a_missing_heartbeat() -> None:
    other, me = farmer(host="n2"), farmer(host="n1")
    assert verdict(other, me, beat_age=None, registered_age=LEASE + 5)[0] is Liveness.DEAD
    assert verdict(other, me, beat_age=None, registered_age=5.0)[0] is Liveness.LIVE


def test_same_host_with_unknown_process_state_falls_back_to_the_heartbeat() -> None:
    other, me = farmer(), farmer(pid=1)
    assert verdict(other, me, beat_age=LEASE + 1, alive=None)[0] is Liveness.DEAD
    assert verdict(other, me, beat_age=1.0, alive=None)[0] is Liveness.LIVE


def test_process_state_is_ignored_for_another_host() -> None:
    live, _ = verdict(farmer(host="n2"), farmer(host="n1"), beat_age=1.0, alive=False)
    assert live is Liveness.LIVE
