"""Mutual exclusion between farmers that share a work directory.

The lock guards decisions, never work: it is held to read the journal's new records, decide
claims and append records, which takes about a millisecond. Three modes, all from ``filelock``:

``flock``  (default) ``fcntl.flock`` on a file. A holder's death frees it at once. Exclusive
           across nodes only where the filesystem makes flock cluster-wide: NFS (emulated with
           POSIX locks), Lustre mounted with ``-o flock``. Node-local on GPFS and on Lustre
           mounted ``localflock``; missing on Cray DVS, where it fails with ENOLCK/ENOSYS.
``soft``   filelock's ``SoftFileLease``: a marker file made with ``O_CREAT|O_EXCL`` that its holder
           refreshes from a heartbeat thread. Works wherever exclusive create is coherent (NFSv3+,
           Lustre, GPFS, DVS). A marker nobody has refreshed for 60 s, as timed on the waiting
           farmer's own clock, is taken over: so a holder that died anywhere is replaced within a
           minute, and two holders could only overlap if a live one stalled for a whole minute
           inside a millisecond-long critical section.
``strict`` filelock's fail-closed ``StrictSoftFileLock`` (claim files and hard links). Never
           broken by age: a claim is broken only when its owner is proven dead (same host and
           its pid is gone, or its farmer's lease has expired).

Each mode has a file name of its own (``lock``, ``lock.soft``, ``lock.strict``), so that what
one mode leaves behind (flock's permanent empty file, say) never blocks another mode used
later on the same work directory. Two modes at the same time would not exclude each other:
the store refuses a farmer whose mode differs from a live farmer's (see ``Store.open``).

A farmer waiting for the lock gives up as soon as a stop is requested (``stop_requested``),
so that a stop signal ends it within a second whoever holds the lock.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import filelock

from mpifarmer.errors import LockError, Stopped

__all__ = ["LOCK_MODES", "LOCK_NAMES", "WorkLock", "locate_lock"]

logger = logging.getLogger(__name__)

LOCK_MODES = ("flock", "soft", "strict")
#: The lock file's name in the work directory, by mode; outside it, the same suffix after the digest.
LOCK_NAMES = {"flock": "lock", "soft": "lock.soft", "strict": "lock.strict"}

#: ``is_dead(host, pid)`` answers whether the owner of a strict claim is certainly gone.
DeadCheck = Callable[[str, int], bool]


class WorkLock:
    """The work-directory lock in one of :data:`LOCK_MODES`."""

    def __init__(self, path: Path, mode: str = "flock", *, stale_after: float = 60.0,
                 is_dead: DeadCheck | None = None, stop_requested: Callable[[], bool] | None = None) -> None:
        self.path = path
        self.mode = mode
        self.stale_after = stale_after
        self._is_dead = is_dead
        self._stop_requested = stop_requested
        self._fd: int | None = None
        if mode == "flock":
            # The descriptor API is filelock's flock without per-call bookkeeping: a critical section
            # happens once per task, so its cost matters (75 us for UnixFileLock, 5 us for this).
            self._lock: filelock.BaseFileLock | None = None
        elif mode == "soft":
            self._lock = filelock.SoftFileLease(path, lease_duration=stale_after)
        elif mode == "strict":
            self._lock = filelock.StrictSoftFileLock(path)
        else:
            raise ValueError(f"unknown lock mode {mode!r}")

    def acquire(self, timeout: float | None = None, *, warn_after: float = 30.0, stoppable: bool = True) -> bool:
        """Take the lock; wait at most ``timeout`` seconds (None: for ever). False on timeout, or
        when a stop is requested while waiting (unless not ``stoppable``)."""
        stop = self._stop_requested if stoppable else None
        if self._lock is None:
            return self._acquire_descriptor(timeout, warn_after, stop)
        start = time.monotonic()
        warned = start
        while True:
            waited = time.monotonic() - start
            chunk = 1.0 if timeout is None else min(1.0, max(0.0, timeout - waited))
            try:
                self._lock.acquire(timeout=chunk)
                return True
            except filelock.Timeout:
                pass
            if self._break_dead_claims() or self._break_empty_marker():
                continue  # try again at once, whatever the timeout
            now = time.monotonic()
            if (timeout is not None and now - start >= timeout) or _stopped(stop, now - start):
                return False
            if now - warned >= warn_after:
                warned = now
                logger.warning("still waiting for the work-directory lock %s (%s mode) after %.0f s",
                               self.path, self.mode, now - start)

    def _acquire_descriptor(self, timeout: float | None, warn_after: float, stop: Callable[[], bool] | None) -> bool:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        start = warned = time.monotonic()
        pause = 0.0002
        while not filelock.lock_descriptor(self._fd, blocking=False):
            now = time.monotonic()
            if (timeout is not None and now - start >= timeout) or _stopped(stop, now - start):
                return False
            if now - warned >= warn_after:
                warned = now
                logger.warning("still waiting for the work-directory lock %s after %.0f s", self.path, now - start)
            time.sleep(pause)
            pause = min(pause * 2, 0.02)
        return True

    def release(self) -> None:
        if self._lock is None:
            assert self._fd is not None
            filelock.unlock_descriptor(self._fd)
        else:
            self._lock.release()

    def __enter__(self) -> WorkLock:
        if not self.acquire():
            raise Stopped(f"stopped while waiting for the work-directory lock {self.path}; nothing was changed: "
                          "run the same command again")
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _break_dead_claims(self) -> bool:
        """Break strict claims whose owners are dead; True if any was broken."""
        if self.mode != "strict" or self._is_dead is None:
            return False
        assert isinstance(self._lock, filelock.StrictSoftFileLock)  # mode == "strict"
        try:
            claims = self._lock.claims
        except (OSError, filelock.SoftFileLockProtocolError):
            return False
        broken = False
        for claim in claims:
            if self._is_dead(claim.hostname, claim.pid):
                logger.warning("breaking the strict lock claim of dead process %d on %s",
                               claim.pid, claim.hostname)
                try:
                    self._lock.force_break(claim.name)
                    broken = True
                except OSError:
                    pass
        return broken


    def _break_empty_marker(self) -> bool:
        """Remove an empty soft marker older than ``stale_after``: a farmer killed between creating
        its marker and writing its record into it left it, and filelock never breaks an empty one
        (older filelock holders kept theirs empty). Its age is read on the filesystem's clock, by
        comparing with a file touched now beside it, so that clocks of other nodes do not matter."""
        if self.mode != "soft":
            return False
        try:
            marker = os.stat(self.path)
            if marker.st_size:
                return False
            probe = self.path.with_name(f".{self.path.name}.clock.{os.getpid()}")
            probe.touch()
            now = os.stat(probe).st_mtime
            probe.unlink()
            if now - marker.st_mtime < self.stale_after:
                return False
            again = os.stat(self.path)
            if (again.st_ino, again.st_mtime, again.st_size) != (marker.st_ino, marker.st_mtime, 0):
                return False
            logger.warning("taking over the empty lock marker %s, unchanged for %.0f s (its farmer died while "
                           "creating it)", self.path, now - marker.st_mtime)
            self.path.unlink()
        except OSError:
            return False
        return True


#: A stop request ends a wait for the lock once it has lasted this long: a lock held for the
#: usual millisecond is still taken after a stop, one held by a stuck farmer is not waited for.
STOP_PATIENCE = 1.0


def _stopped(stop: Callable[[], bool] | None, waited: float) -> bool:
    return stop is not None and waited >= STOP_PATIENCE and stop()


def _probe(path: Path, mode: str) -> None:
    """Take and release a lock of ``mode`` at ``path``; raise OSError if the filesystem cannot.
    A lock that another farmer holds is proof enough: the probe does not wait long for it."""
    lock = WorkLock(path, mode)
    try:
        if lock.acquire(timeout=1.0):
            lock.release()
    except filelock.SoftFileLockProtocolError as error:
        raise OSError(errno.EOPNOTSUPP, str(error)) from None


def locate_lock(workdir: Path, mode: str, lock_dir: Path | None, scratch: str | None) -> Path:
    """Decide where the lock lives and check that a lock of ``mode`` works there.

    ``lock_dir`` (``--lock-dir`` or ``MPIFARMER_LOCK_DIR``) wins when given; otherwise the work
    directory, falling back to ``$SCRATCH`` when the work directory's filesystem cannot hold
    the lock. A lock outside the work directory is named after the work directory's absolute
    path, so that several work directories can share one lock directory.
    """
    if lock_dir is not None:
        if not lock_dir.is_dir():
            raise LockError(lock_dir, "lock directory does not exist; create it or fix --lock-dir/"
                            "MPIFARMER_LOCK_DIR")
        path = _outside_name(lock_dir, workdir, mode)
        _check(path, mode, "in the lock directory; try another --lock-dir or --lock-mode")
        return path
    path = workdir / LOCK_NAMES[mode]
    try:
        _probe(path, mode)
        return path
    except OSError as error:
        reason = error.strerror or str(error)
    if not scratch:
        raise LockError(path, f"the work directory's filesystem cannot hold a {mode} lock ({reason}); "
                        "set --lock-dir to a directory that can, or try --lock-mode soft")
    logger.warning("the work directory cannot hold a %s lock (%s); using $SCRATCH=%s", mode, reason, scratch)
    path = _outside_name(Path(scratch), workdir, mode)
    _check(path, mode, "in $SCRATCH either; set --lock-dir or try --lock-mode soft")
    return path


def _outside_name(directory: Path, workdir: Path, mode: str) -> Path:
    import hashlib  # here: it loads OpenSSL, which start-up can do without

    digest = hashlib.sha1(os.fsencode(workdir.resolve())).hexdigest()[:16]
    return directory / f"mpifarmer-{digest}{LOCK_NAMES[mode].removeprefix('lock')}.lock"


def _check(path: Path, mode: str, advice: str) -> None:
    try:
        _probe(path, mode)
    except OSError as error:
        raise LockError(path, f"cannot hold a {mode} lock ({error.strerror or error}) {advice}") from None
