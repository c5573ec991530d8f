"""Running a command on a real pseudo-terminal (Python's pty), as a person at a terminal would."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import termios
import time


class PtyRun:
    """``argv`` on a new pseudo-terminal of ``rows`` x ``columns``; :attr:`output` is every byte
    it wrote to the terminal (stdout and stderr both)."""

    def __init__(self, argv: list[str], env: dict[str, str], rows: int = 40, columns: int = 160) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the pty is its controlling terminal, stdin, stdout and stderr
            try:
                os.execvpe(argv[0], argv, env)
            finally:
                os._exit(127)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self.output = b""
        self.code: int | None = None

    def read_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and self._read(min(0.1, deadline - time.monotonic())):
            pass

    def read_until(self, text: bytes, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while text not in self.output and time.monotonic() < deadline:
            if not self._read(0.1):
                break
        return text in self.output

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def finish(self, timeout: float) -> int:
        """Read until the command exits (SIGKILL after ``timeout`` s); its exit code."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._read(0.1):
                break
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        if pid == 0:
            os.kill(self.pid, signal.SIGKILL)
            _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        self.code = os.waitstatus_to_exitcode(status)
        return self.code

    def _read(self, timeout: float) -> bool:
        """Read what is there within ``timeout``; False once the terminal is closed (the command ended)."""
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if not ready:
            return True
        try:
            data = os.read(self.fd, 1 << 16)
        except OSError:  # EIO: every process on the terminal's other end has gone
            return False
        if not data:
            return False
        self.output += data
        return True
