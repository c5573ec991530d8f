"""Signal handling: handlers only record what arrived; the main loop acts on it.

SIGUSR1, SIGTERM and SIGINT ask the farmer to stop (drain). SIGCHLD only wakes the main loop,
which sleeps in ``select`` on a pipe that Python's wakeup fd writes to on every signal.
"""

from __future__ import annotations

import os
import signal

TYPE_CHECKING = False  # not typing's: importing typing would slow start-up
if TYPE_CHECKING:
    import selectors
    from types import FrameType

__all__ = ["HELPER_IGNORES", "STOP_SIGNALS", "SignalFlags", "held_back", "ignore_stop_signals", "process_flags"]

STOP_SIGNALS = (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT)

#: What the pool's helper processes (spawner, sentinel) ignore: Slurm signals every process of a
#: step, and a helper killed by the farmer's own stop signal would take its tasks' results along.
#: The helpers cannot import this module, so each spells the same list out.
HELPER_IGNORES = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP)


class SignalFlags:
    """Installs the handlers; ``stop_requests`` counts stop signals, ``last`` names the latest."""

    def __init__(self) -> None:
        self.stop_requests = 0
        self.last: int | None = None
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._selector: selectors.BaseSelector | None = None  # made on first use: start-up stays short

    def install(self) -> None:
        signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_stop)
        signal.signal(signal.SIGCHLD, self._on_child)

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop_requests += 1
        self.last = signum

    def _on_child(self, signum: int, frame: FrameType | None) -> None:
        pass  # the wakeup fd has done the work

    def _selected(self) -> selectors.BaseSelector:
        if self._selector is None:
            import selectors

            # poll(2), not epoll: it watches descriptor numbers, so a pool that replaces its
            # spawner's pipe behind the same number (dup2) stays watched.
            self._selector = selectors.PollSelector()
            self._selector.register(self._read, selectors.EVENT_READ)
        return self._selector

    def watch(self, fd: int) -> None:
        """Also wake :meth:`wait` when ``fd`` becomes readable (e.g. the spawner's replies)."""
        import selectors

        self._selected().register(fd, selectors.EVENT_READ)

    def wait(self, timeout: float | None, *, watched: bool = True) -> None:
        """Sleep until a signal arrives, a watched descriptor is readable (unless ``watched`` is
        false), or ``timeout`` seconds pass; then empty the signal pipe."""
        if timeout is None or timeout > 0:
            if watched:
                self._selected().select(timeout)
            else:
                import select

                select.select([self._read], [], [], timeout)
        try:
            while os.read(self._read, 512):
                pass
        except BlockingIOError:
            pass



_PROCESS_FLAGS: SignalFlags | None = None


def process_flags() -> SignalFlags:
    """This process's flags, installed on first use and kept until the process exits: a stop
    signal at any moment, from start-up to the last log line, is recorded, never fatal."""
    global _PROCESS_FLAGS
    if _PROCESS_FLAGS is None:
        _PROCESS_FLAGS = SignalFlags()
        _PROCESS_FLAGS.install()
    return _PROCESS_FLAGS


def ignore_stop_signals() -> None:
    """Ignore stop signals from now on (the work is done and recorded)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


class held_back:
    """Block :data:`HELPER_IGNORES` in this thread while starting a helper process.

    The child inherits the mask through exec and lets the signals in only once it ignores them,
    so a stop signal in the helper's first milliseconds (Python's start-up) cannot kill it; this
    process gets its own copy of such a signal when the block ends.
    """

    def __enter__(self) -> None:
        self._before = signal.pthread_sigmask(signal.SIG_BLOCK, HELPER_IGNORES)

    def __exit__(self, *exc: object) -> None:
        signal.pthread_sigmask(signal.SIG_SETMASK, self._before)
