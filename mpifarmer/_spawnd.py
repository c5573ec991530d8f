"""The spawner: a small process that starts, reaps and signals a pool's task processes.

Why a separate process: glibc's posix_spawn suspends the calling process until the child has
started its program, and on Linux that pause grows with the caller's memory (measured here:
about 0.2 ms from a 12 MB Python process, 0.8 ms from a 25 MB one, more as a farmer's ledger
grows). A farmer that spawned its tasks itself would stall for that long per task. This
program stays small, so spawning stays cheap, and the farmer only writes a request to a pipe.

It is run as ``python -I -S _spawnd.py CAPACITY LIFE_FD`` (CAPACITY a JSON object such as
``{"slots": 4}``) and imports nothing of mpifarmer but :mod:`mpifarmer.scheduling.capacity`,
which it loads by path (that module uses only the standard library), to stay small. It queues
what it is sent and starts a queued task as soon as capacity's decision says so, so that a
freed slot takes the next task at once, with no round trip to the farmer. It reads requests on
stdin and writes replies on stdout, each a 4-byte big-endian length and a ``marshal`` payload
(both ends run the same Python):

  requests   ("run", id, argv, log, env, request, cwd, append)  queue argv, to run with the extra
                                           env, in directory cwd (None: this one), output to log
                                           (appended to if append, else truncated), when the
                                           resources of request are free
             ("signal", signum)            signal the process group of every running task
             ("signal", signum, [id, ...]) signal the process groups of those tasks
             ("drop",)                     forget the queued tasks that have not started
  replies    ("started", id, pid, t0, units)  units: {resource: [unit, ...]} given to the run
             ("ended", id, returncode, t1)  returncode < 0: killed by that signal
             ("error", id, message, t)      the program could not be started
             ("dropped", [id, ...])

When stdin closes (the farmer ended, or was killed) it SIGKILLs every task it still runs and
exits, so no task outlives its farmer. LIFE_FD is the write end of the pool's sentinel pipe
(see :mod:`mpifarmer._sentinel`): holding it open, and keeping it from the tasks, is all the
spawner does with it. It ignores the stop signals Slurm sends to every process of a step:
stopping is the farmer's decision.
"""

import collections
import json
import marshal
import os
import select
import signal
import struct
import sys
import time
import types

_HEADER = struct.Struct(">I")
_IGNORED = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP)  # signals.HELPER_IGNORES
#: The directory the spawner started in, where tasks without a ``cwd`` of their own run.
_HOME = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
_TASK_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP, signal.SIGCHLD,
                 signal.SIGPIPE)


def main() -> int:
    requests, replies = sys.stdin.fileno(), sys.stdout.fileno()
    os.set_inheritable(int(sys.argv[2]), False)  # the tasks must not hold the sentinel's pipe open
    capacity = _load_capacity()
    units = capacity.Units(json.loads(sys.argv[1]))
    queue: collections.deque[tuple] = collections.deque()
    for signum in _IGNORED:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _IGNORED)  # the pool started us with them blocked
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    base_env = dict(os.environ)
    running: dict[int, tuple[int, dict]] = {}  # pid -> (task id, units it was given)
    buffer = b""
    out: list[bytes] = []
    open_input = True
    while open_input or running:
        readable, _, _ = select.select([requests, wake_read] if open_input else [wake_read], [], [], 1.0)
        if wake_read in readable:
            os.read(wake_read, 4096)
        if requests in readable:
            data = os.read(requests, 1 << 16)
            if not data:
                open_input = False
                queue.clear()
                for pid in running:
                    _kill(pid, signal.SIGKILL)
            buffer += data
            while len(buffer) >= 4:
                (size,) = _HEADER.unpack_from(buffer)
                if len(buffer) < 4 + size:
                    break
                request = marshal.loads(buffer[4 : 4 + size])
                buffer = buffer[4 + size :]
                if request[0] == "run":
                    queue.append(request)
                elif request[0] == "signal":
                    chosen = set(request[2]) if len(request) > 2 else None
                    for pid, entry in running.items():
                        if chosen is None or entry[0] in chosen:
                            _kill(pid, request[1])
                elif request[0] == "drop":
                    out.append(marshal.dumps(("dropped", [queued[1] for queued in queue])))
                    queue.clear()
        while running:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            entry = running.pop(pid, None)
            if entry is not None:
                out.append(marshal.dumps(("ended", entry[0], os.waitstatus_to_exitcode(status), time.time())))
                units.give_back(entry[1])
        while capacity.next_to_start((queued[5] for queued in queue), units) == 0:
            _run(queue.popleft(), units, base_env, running, out)
        if out:
            _write(replies, b"".join(_HEADER.pack(len(item)) + item for item in out))
            out.clear()
    return 0


def _load_capacity() -> types.SimpleNamespace:
    """mpifarmer.scheduling.capacity, without importing the mpifarmer package."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scheduling", "capacity.py")
    namespace: dict = {"__name__": "mpifarmer.scheduling.capacity", "__file__": path}
    with open(path, "rb") as source:
        exec(compile(source.read(), path, "exec"), namespace)
    return types.SimpleNamespace(**namespace)


def _run(request: tuple, units, base_env: dict, running: dict, out: list) -> None:
    _, task, argv, log, extra, asked, cwd, append = request
    given = units.take(asked)  # before the start: a run's environment may name its units (later)
    env = dict(base_env)
    env.update(extra)
    mode = os.O_APPEND if append else os.O_TRUNC
    actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
               (os.POSIX_SPAWN_OPEN, 1, log, os.O_WRONLY | os.O_CREAT | mode, 0o644),
               (os.POSIX_SPAWN_DUP2, 1, 2)]
    t0 = time.time()
    if cwd:
        try:  # posix_spawn has no directory of its own, and this process has a single thread
            os.chdir(cwd)
        except OSError as error:
            units.give_back(given)
            out.append(marshal.dumps(("error", task, f"cannot run in directory {cwd!r}: {error.strerror}",
                                      time.time())))
            return
    try:
        pid = os.posix_spawnp(argv[0], argv, env, file_actions=actions, setpgroup=0, setsigdef=_TASK_SIGNALS,
                              setsigmask=())
    except OSError as error:
        units.give_back(given)
        out.append(marshal.dumps(("error", task, f"cannot start {argv[0]!r}: {error.strerror}", time.time())))
        return
    finally:
        if cwd:
            os.fchdir(_HOME)
    running[pid] = (task, given)
    out.append(marshal.dumps(("started", task, pid, t0, given)))


def _kill(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BrokenPipeError:
            return  # the farmer is gone: stdin will close too


if __name__ == "__main__":
    sys.exit(main())
