"""Noticing lines appended to the task list while the farm runs."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from mpifarmer.errors import TaskListError
from mpifarmer.tasklists.reader import TaskLines, check_lines, read_task_lines
from mpifarmer.wording import counted

__all__ = ["TaskListWatcher"]

logger = logging.getLogger(__name__)


class TaskListWatcher:
    """Polls the task list's size and reads lines appended since the last look.

    Only whole lines count: a last line without its newline may still be being written. The
    bytes already read must stay as they were (a digest of them is checked at every growth): if
    the list shrank, or anything before the appended part changed, comments included (that
    shifts every byte after it), the watcher stops and says so; the next start checks the list.
    """

    def __init__(self, path: Path, tasks: TaskLines, interval: float,
                 check: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.check = check  # a task-list handler's check of each line (see TaskList.check)
        self.tasks = tasks
        self.interval = interval
        self._next = time.monotonic() + interval
        self._offset = tasks.tail_start if tasks.tail_start is not None else tasks.end
        self._lineno = tasks.tail_lineno if tasks.tail_lineno is not None else tasks.next_lineno
        self._recheck_tail = tasks.tail_start is not None and bool(tasks.linenos) and \
            tasks.linenos[-1] == tasks.tail_lineno
        self._size = tasks.end
        self._stopped = False
        self._digest = _prefix_digest(path, self._offset)

    def next_poll(self, now: float) -> float:
        return self._next if not self._stopped else now + 3600.0

    def poll(self, now: float, *, force: bool = False) -> int:
        """Look for appended lines if a look is due (or ``force``); return how many were added.
        A farmer forces a look before it concludes that nothing is left, and before it stops."""
        if self._stopped or (now < self._next and not force):
            return 0
        self._next = now + self.interval
        try:
            size = os.stat(self.path).st_size
        except OSError:
            return 0
        if size == self._size:
            return 0
        if size < self._size:
            self._give_up("the task list shrank while the farm ran")
            return 0
        if _prefix_digest(self.path, self._offset) != self._digest:
            self._give_up("lines before the appended ones changed while the farm ran")
            return 0
        try:
            more = read_task_lines(self.path, start=self._offset, first_lineno=self._lineno,
                                   include_unterminated=False)
        except Exception as error:  # noqa: BLE001 - a bad append must not stop a running farm
            self._give_up(str(error))
            return 0
        if more.end == self._offset:
            return 0  # only an unfinished line so far
        texts = more.texts
        if self._recheck_tail:
            self._recheck_tail = False
            if not texts or texts[0] != self.tasks.texts[-1]:
                self._give_up(f"line {self._lineno} changed while the farm ran")
                return 0
            texts, linenos = texts[1:], more.linenos[1:]
        else:
            linenos = more.linenos
        self._size = size
        self._offset, self._lineno = more.end, more.next_lineno
        self._digest = _prefix_digest(self.path, self._offset)
        if texts and self.check is not None:
            try:
                check_lines(self.path, texts, linenos, self.check)
            except TaskListError as error:  # the lines before it are taken, and none after it
                good = linenos.index(error.line) if error.line is not None else 0
                texts, linenos = texts[:good], linenos[:good]
                self._give_up(str(error))
        if texts:
            self.tasks.texts.extend(texts)
            self.tasks.linenos.extend(linenos)
            logger.info("%s appended to %s", counted(len(texts), "task"), self.path)
        return len(texts)

    def _give_up(self, why: str) -> None:
        self._stopped = True
        logger.warning("no longer watching %s for appended tasks: %s; restart the farmer to check the list",
                       self.path, why)


def _prefix_digest(path: Path, length: int) -> bytes | None:
    """A digest of the first ``length`` bytes of ``path`` (None if it cannot be read)."""
    import hashlib  # here: it loads OpenSSL, which start-up can do without

    digest = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as stream:
            while length > 0:
                chunk = stream.read(min(length, 1 << 20))
                if not chunk:
                    break
                digest.update(chunk)
                length -= len(chunk)
    except OSError:
        return None
    return digest.digest()
