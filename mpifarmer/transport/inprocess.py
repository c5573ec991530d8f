"""In-process transports: rank 0's own worker, and whole fake jobs for tests (no MPI)."""

from __future__ import annotations

from collections import deque

from mpifarmer.transport import Transport
from mpifarmer.transport.protocol import Message

__all__ = ["InProcessHub", "InProcessTransport", "Router"]

Box = deque[tuple[int, Message]]


class InProcessHub:
    """Mailboxes for ``size`` ranks in one process; ``transport(rank)`` is that rank's end."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.boxes: list[Box] = [deque() for _ in range(size)]
        self.aborted: int | None = None
        self.down: set[int] = set()  # ranks whose messages are dropped, as if their node were lost

    def transport(self, rank: int) -> InProcessTransport:
        return InProcessTransport(self.boxes, rank, self.size, self)


class InProcessTransport:
    def __init__(self, boxes: list[Box], rank: int, size: int, hub: InProcessHub | None = None) -> None:
        self._boxes = boxes
        self._hub = hub
        self.rank = rank
        self.size = size

    def send(self, dest: int, message: Message) -> None:
        if self._hub is None or not ({self.rank, dest} & self._hub.down):
            self._boxes[dest].append((self.rank, message))

    def poll(self) -> list[tuple[int, Message]]:
        box = self._boxes[self.rank]
        messages = list(box)
        box.clear()
        return messages

    def flush(self, timeout: float) -> bool:
        return True

    def abort(self, code: int) -> None:
        if self._hub is not None:
            self._hub.aborted = code


class Router:
    """Rank 0 runs both the coordinator and a worker: their messages to each other stay in
    process, everything else goes over ``remote`` (MPI), or nowhere in local mode."""

    def __init__(self, remote: Transport | None) -> None:
        self.remote = remote
        self._to_worker: Box = deque()
        self._to_coordinator: Box = deque()
        self.size = remote.size if remote is not None else 1

    def coordinator(self) -> Transport:
        return _RouterEnd(self, self._to_worker, self._to_coordinator)

    def worker(self) -> Transport:
        return _RouterEnd(self, self._to_coordinator, self._to_worker, remote_ok=False)


class _RouterEnd:
    def __init__(self, router: Router, outbox: Box, inbox: Box, *, remote_ok: bool = True) -> None:
        self._router = router
        self._outbox = outbox
        self._inbox = inbox
        self._remote = router.remote if remote_ok else None
        self.rank = 0
        self.size = router.size

    def send(self, dest: int, message: Message) -> None:
        if dest == 0:
            self._outbox.append((0, message))
        elif self._remote is not None:
            self._remote.send(dest, message)

    def poll(self) -> list[tuple[int, Message]]:
        messages = list(self._inbox)
        self._inbox.clear()
        if self._remote is not None:
            messages.extend(self._remote.poll())
        return messages

    def flush(self, timeout: float) -> bool:
        return self._remote.flush(timeout) if self._remote is not None else True

    def abort(self, code: int) -> None:
        if self._router.remote is not None:
            self._router.remote.abort(code)
