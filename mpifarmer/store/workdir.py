"""The work directory's layout: every path mpifarmer writes comes from :class:`WorkDir`.

PyTaskFarmer's files keep their names and formats (``toprocess``, ``finished``, ``failed``,
``logs/log_ID``, ``timeline.json``); they are views, regenerated from ``journal.jsonl``.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from mpifarmer.errors import WorkDirError

__all__ = ["WorkDir", "atomic_write"]

#: The process's umask, read once at import (reading it means setting it, which is not
#: thread-safe; views are written from a thread).
_UMASK = os.umask(0o022)
os.umask(_UMASK)


class WorkDir:
    """Paths inside one work directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(os.path.abspath(root))
        self.journal = self.root / "journal.jsonl"
        self.toprocess = self.root / "toprocess"
        self.running = self.root / "running"
        self.finished = self.root / "finished"
        self.failed = self.root / "failed"
        self.timeline = self.root / "timeline.json"
        #: The ledger's change count when every view was last rewritten whole (see Store).
        self.views_stamp = self.root / "views.stamp"
        self.logs = self.root / "logs"
        self.farmers = self.root / "farmers"
        #: Journals of earlier generations, as they were when compacted (see Store.compact).
        self.history = self.root / "history"

    def log(self, task: int) -> Path:
        return self.logs / f"log_{task}"

    def snapshot(self, generation: int) -> Path:
        """The ledger as of the start of journal generation ``generation``."""
        return self.root / f"snapshot.{generation}"

    def old_journal(self, generation: int) -> Path:
        return self.history / f"journal.{generation}.jsonl"

    def pack_stem(self, fid: str, rank: int) -> Path:
        """Packed logs of one farmer's pool on one rank: ``STEM.gN.index`` and ``STEM.gN.K``."""
        return self.logs / f"pack.{fid}.r{rank}"

    def heartbeat(self, fid: str) -> Path:
        return self.farmers / fid

    def prepare(self) -> None:
        """Create the directory tree, or explain in one line why it cannot be used."""
        if self.root.exists() and not self.root.is_dir():
            raise WorkDirError(self.root, "exists and is not a directory; remove it or choose another -w/--workdir")
        try:
            for directory in (self.root, self.logs, self.farmers):
                directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise WorkDirError(self.root, f"cannot create it ({error.strerror}); choose another -w/--workdir") \
                from None
        self.check_writable()

    def check_writable(self) -> None:
        """Check that files can be created and atomically renamed in the work directory."""
        probe = self.root / f".probe-{os.getpid()}"  # farmers may start together: one probe each
        try:
            with atomic_write(probe) as stream:
                stream.write("probe\n")
            os.unlink(probe)
        except OSError as error:
            raise WorkDirError(self.root, f"cannot write and rename files there ({error.strerror}); "
                               "fix its permissions or choose another -w/--workdir") from None

    def remove_temporaries(self, older_than: float = 600.0) -> None:
        """Remove temporary files left by writers that were killed.

        Only old ones: another farmer may be writing a view right now (views are written
        outside the lock), and a write takes seconds at most."""
        limit = time.time() - older_than
        for stray in [*self.root.glob(".*.tmp"), *self.logs.glob(".spool.*.tmp")]:
            try:
                if stray.stat().st_mtime < limit:
                    stray.unlink()
            except OSError:
                pass

    def exists(self) -> bool:
        return self.journal.exists()


@contextmanager
def atomic_write(path: Path, *, fsync: bool = False, binary: bool = False) -> Iterator[IO[Any]]:
    """Write ``path`` as a whole: a temporary file beside it, then ``os.replace``.

    Readers see the old content or the new one, never a mixture, even if the writer is
    killed midway; a killed writer leaves only a hidden ``.tmp`` file, which
    :meth:`WorkDir.remove_temporaries` clears at the next start.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; views are as readable as the journal
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8")) as stream:
            yield stream
            if fsync:
                stream.flush()
                os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
