"""Where the work-directory lock lives, and that each mode excludes other processes."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mpifarmer import environment
from mpifarmer.errors import LockError
from mpifarmer.store.locking import LOCK_MODES, WorkLock, locate_lock

HOLDER = """
import sys, time
from pathlib import Path
from mpifarmer.store.locking import WorkLock
lock = WorkLock(Path(sys.argv[1]), sys.argv[2])
assert lock.acquire(timeout=10)
print("held", flush=True)
time.sleep(60)
"""


class Holder:
    """Another process that takes the lock and keeps it until it is killed."""

    def __init__(self, path: Path, mode: str) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), mode], stdout=subprocess.PIPE,
                                        text=True)
        assert self.process.stdout is not None
        assert self.process.stdout.readline() == "held\n"

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL, and reap it, so its pid is really gone."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def holders() -> Iterator[list[Holder]]:
    started: list[Holder] = []
    yield started
    for holder in started:
        holder.kill()


def hold(holders: list[Holder], path: Path, mode: str) -> Holder:
    holder = Holder(path, mode)
    holders.append(holder)
    return holder


def expected_outside_name(directory: Path, workdir: Path, mode: str = "flock") -> Path:
    digest = hashlib.sha1(os.fsencode(workdir.resolve())).hexdigest()[:16]
    return directory / f"mpifarmer-{digest}{'' if mode == 'flock' else '.' + mode}.lock"


# -- locate_lock -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", LOCK_MODES)
def test_lock_lives_in_the_work_dir_by_default_with_a_name_per_mode(tmp_path: Path, mode: str) -> None:
    # A name per mode: what one mode leaves behind (flock's empty file) must not block another.
    expected = {"flock": "lock", "soft": "lock.soft", "strict": "lock.strict"}[mode]
    assert locate_lock(tmp_path, mode, None, None) == tmp_path / expected


def test_a_stop_request_ends_the_wait_for_a_held_lock(tmp_path: Path, holders: list[Holder]) -> None:
    for mode in LOCK_MODES:
        hold(holders, tmp_path / f"l-{mode}", mode)
        asked: list[int] = []

        def stop(asked: list[int] = asked) -> bool:
            asked.append(1)
            return True

        lock = WorkLock(tmp_path / f"l-{mode}", mode, stop_requested=stop)
        started = time.monotonic()
        assert not lock.acquire()
        assert time.monotonic() - started < 5 and asked
        assert not lock.acquire(timeout=0.5, stoppable=False)  # not stoppable: waits its timeout


def test_an_empty_soft_marker_is_taken_over_once_older_than_stale_after(tmp_path: Path) -> None:
    marker = tmp_path / "lock.soft"
    marker.touch()
    assert not WorkLock(marker, "soft", stale_after=60).acquire(timeout=1.5)  # fresh: its farmer may write it
    old = time.time() - 61
    os.utime(marker, (old, old))
    lock = WorkLock(marker, "soft", stale_after=60)
    assert lock.acquire(timeout=5)
    assert marker.read_text()  # now a real marker, ours
    lock.release()


def test_missing_lock_dir_is_an_error_naming_the_option(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    with pytest.raises(LockError) as caught:
        locate_lock(tmp_path / "wd", "flock", missing, None)
    assert caught.value.path == str(missing)
    assert "--lock-dir" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("mode", LOCK_MODES)
def test_lock_in_a_lock_dir_is_named_by_a_hash_of_the_work_dir(tmp_path: Path, mode: str) -> None:
    locks, first, second = tmp_path / "locks", tmp_path / "wd1", tmp_path / "wd2"
    for directory in (locks, first, second):
        directory.mkdir()
    one, two = locate_lock(first, mode, locks, None), locate_lock(second, mode, locks, None)
    assert one == expected_outside_name(locks, first, mode)
    assert one.parent == locks and one != two
    assert one.name.startswith("mpifarmer-") and one.name.endswith(".lock")


def test_one_work_dir_under_two_spellings_shares_one_lock(tmp_path: Path) -> None:
    locks, workdir = tmp_path / "locks", tmp_path / "wd"
    locks.mkdir()
    workdir.mkdir()
    (tmp_path / "alias").symlink_to(workdir)
    assert locate_lock(workdir, "flock", locks, None) == locate_lock(tmp_path / "alias", "flock", locks, None)
    assert locate_lock(workdir, "flock", locks, None) == \
        locate_lock(tmp_path / "locks" / ".." / "wd", "flock", locks, None)


def test_work_dir_that_cannot_hold_the_lock_falls_back_to_scratch(tmp_path: Path) -> None:
    workdir, scratch = tmp_path / "wd", tmp_path / "scratch"
    scratch.mkdir()
    (workdir / "lock").mkdir(parents=True)  # the lock path is taken by a directory
    assert locate_lock(workdir, "flock", None, str(scratch)) == expected_outside_name(scratch, workdir)


def test_work_dir_that_cannot_hold_the_lock_without_scratch_is_an_error(tmp_path: Path) -> None:
    workdir = tmp_path / "wd"
    (workdir / "lock").mkdir(parents=True)
    with pytest.raises(LockError) as caught:
        locate_lock(workdir, "flock", None, None)
    assert caught.value.path == str(workdir / "lock")
    assert "--lock-dir" in str(caught.value)


def test_unknown_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown lock mode"):
        WorkLock(tmp_path / "lock", "posix")


# -- exclusion ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", LOCK_MODES)
def test_lock_is_exclusive_between_objects_in_one_process(tmp_path: Path, mode: str) -> None:
    first, second = WorkLock(tmp_path / "lock", mode), WorkLock(tmp_path / "lock", mode)
    assert first.acquire(timeout=1.0)
    assert not second.acquire(timeout=0.1)
    first.release()
    assert second.acquire(timeout=1.0)
    second.release()


@pytest.mark.parametrize("mode", LOCK_MODES)
def test_lock_held_by_another_process_times_out(tmp_path: Path, holders: list[Holder], mode: str) -> None:
    hold(holders, tmp_path / "lock", mode)
    lock = WorkLock(tmp_path / "lock", mode)
    start = time.monotonic()
    assert lock.acquire(timeout=0.2) is False
    assert time.monotonic() - start < 2.0


@pytest.mark.parametrize("mode", ["flock", "soft"])
def test_lock_of_a_killed_holder_is_free_again(tmp_path: Path, holders: list[Holder], mode: str) -> None:
    holder = hold(holders, tmp_path / "lock", mode)
    lock = WorkLock(tmp_path / "lock", mode)
    assert not lock.acquire(timeout=0.1)
    holder.kill()
    assert lock.acquire(timeout=0.5)
    lock.release()


def test_strict_lock_of_a_killed_holder_stays_taken_without_proof_of_death(tmp_path: Path,
                                                                            holders: list[Holder]) -> None:
    hold(holders, tmp_path / "lock", "strict").kill()
    assert not WorkLock(tmp_path / "lock", "strict").acquire(timeout=0.2)
    assert not WorkLock(tmp_path / "lock", "strict", is_dead=lambda host, pid: False).acquire(timeout=0.2)


def test_strict_lock_claim_is_broken_when_its_owner_is_proven_dead(tmp_path: Path, holders: list[Holder]) -> None:
    holder = hold(holders, tmp_path / "lock", "strict")
    asked: list[tuple[str, int]] = []

    def is_dead(host: str, pid: int) -> bool:
        asked.append((host, pid))
        return True

    holder.kill()
    lock = WorkLock(tmp_path / "lock", "strict", is_dead=is_dead)
    assert lock.acquire(timeout=0.2)
    assert (environment.hostname(), holder.pid) in asked
    other = WorkLock(tmp_path / "lock", "strict")
    assert not other.acquire(timeout=0.1)  # now held here, exclusively
    lock.release()
    assert other.acquire(timeout=0.5)
    other.release()


def test_strict_lock_of_a_live_holder_is_not_broken_when_the_check_says_alive(tmp_path: Path,
                                                                             holders: list[Holder]) -> None:
    holder = hold(holders, tmp_path / "lock", "strict")
    asked: list[int] = []

    def is_dead(host: str, pid: int) -> bool:
        asked.append(pid)
        return False

    assert not WorkLock(tmp_path / "lock", "strict", is_dead=is_dead).acquire(timeout=0.2)
    assert set(asked) == {holder.pid}


def test_strict_acquire_with_a_short_timeout_takes_a_lock_whose_owner_is_dead(tmp_path: Path,
                                                                             holders: list[Holder]) -> None:
    hold(holders, tmp_path / "lock", "strict").kill()
    lock = WorkLock(tmp_path / "lock", "strict", is_dead=lambda host, pid: True)
    assert lock.acquire(timeout=0.2)
    lock.release()


def test_context_manager_takes_and_releases(tmp_path: Path) -> None:
    lock, other = WorkLock(tmp_path / "lock"), WorkLock(tmp_path / "lock")
    with lock:
        assert not other.acquire(timeout=0.05)
    assert other.acquire(timeout=0.5)
    other.release()
