"""The spawner: a small process that starts, reaps and signals a pool's task processes.

Why a separate process: glibc's posix_spawn suspends the calling process until the child has
started its program, and on Linux that pause grows with the caller's memory (measured here:
about 0.2 ms from a 12 MB Python process, 0.8 ms from a 25 MB one, more as a farmer's ledger
grows). A farmer that spawned its tasks itself would stall for that long per task. This
program stays small, so spawning stays cheap, and the farmer only writes a request to a pipe.

It is run as ``python -I -S _spawnd.py POOL LIFE_FD [PACKED]`` (POOL a JSON object: the pool's
capacity such as ``{"slots": 4}``, or ``{"capacity": {...}, "near": {...}, "binding": {...}}``
for a pool that binds its runs to CPUs and GPUs) and imports nothing of mpifarmer but
:mod:`mpifarmer.scheduling.capacity` and :mod:`mpifarmer.scheduling.binding` and, for packed
logs, :mod:`mpifarmer.store.packs`, which it loads by path (those modules use only the standard
library), to stay small. It queues
what it is sent and starts a queued task as soon as capacity's decision says so, so that a
freed slot takes the next task at once, with no round trip to the farmer. It reads requests on
stdin and writes replies on stdout, each a 4-byte big-endian length and a ``marshal`` payload
(both ends run the same Python):

  requests   ("run", id, argv, log, env, request, cwd, header)  queue argv, to run with the extra
                                           env, in directory cwd (None: this one), output to log
                                           (begun by the text header if it is not None), when
                                           the resources of request are free
                                           (with its env, its CPU affinity and GPU variables
                                           set from the units it is given)
             ("note", id, text, rc)        packed logs: store text as the output of a run that
                                           could not start
             ("signal", signum)            signal the process group of every running task
             ("signal", signum, [id, ...]) signal the process groups of those tasks
             ("drop",)                     forget the queued tasks that have not started
  replies    ("started", id, pid, t0, units)  units: {resource: [unit, ...]} given to the run
             ("ended", id, returncode, t1)  returncode < 0: killed by that signal
                                           (the run's process, its leader; a run that was
                                           signalled ends when its whole process group is gone)
             ("error", id, message, t)      the program could not be started
             ("dropped", [id, ...])

A run is its process group. A signal stops the leader and its children alike, but they do not
exit at once (one may ignore a SIGTERM, or just not have been scheduled yet), so a run this process
signalled is not reported ended until no process of its group is left, however early its leader
went: its retry, or another farmer's run of it, must not start beside its remains. The farmer's
SIGKILL after the grace reaches those remains too. This process is the child subreaper of its
tasks' processes (Linux), so the remains, orphaned by their leader, are its children and it reaps
them at once (an init that reaps late, as some container inits do, would leave their zombies in
the group; where it cannot be a subreaper, a group that still answers one second after its
SIGKILL is taken for zombies, and the run is ended). A run that was never signalled ends with its
leader, and what it left running in the background is its own business.

When stdin closes (the farmer ended, or was killed) it SIGKILLs every task it still runs and
exits, so no task outlives its farmer. LIFE_FD is the write end of the pool's sentinel pipe
(see :mod:`mpifarmer._sentinel`): holding it open, and keeping it from the tasks, is all the
spawner does with it. It ignores the stop signals Slurm sends to every process of a step:
stopping is the farmer's decision.

PACKED (``--logs packed``), a JSON object {stem, identity, limit, spool, fallback, fault}: log is
None, and each task writes into an unnamed file in the spool directory (``O_TMPFILE``, else a
file unlinked at once, in ``fallback`` if the spool cannot hold one), so nothing is left behind
however this process dies. When the task ends, its output is appended to the pack ``stem.N``
and its index line to ``stem.index`` (:class:`mpifarmer.store.packs.PackWriter`), before the
farmer is told of the end: a run recorded finished has its output indexed.
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
#: Seconds after a SIGKILL of a lingering group at which it is taken for gone (zombies nobody reaps).
_ZOMBIE_PATIENCE = 1.0
_TASK_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP, signal.SIGCHLD,
                 signal.SIGPIPE)


def main() -> int:
    requests, replies = sys.stdin.fileno(), sys.stdout.fileno()
    os.set_blocking(requests, False)
    os.set_inheritable(int(sys.argv[2]), False)  # the tasks must not hold the sentinel's pipe open
    capacity = _load("scheduling", "capacity.py")
    pool = json.loads(sys.argv[1])
    if "capacity" not in pool:
        pool = {"capacity": pool}
    binding = _Binding(pool.get("binding") or {}, _load("scheduling", "binding.py") if pool.get("binding") else None)
    packed = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None
    writer = _pack_writer(packed)
    units = capacity.Units(pool["capacity"], pool.get("near"))
    queue: collections.deque[tuple] = collections.deque()
    shapes: dict[tuple, dict] = {}  # the distinct resource requests seen (a list has few)
    for signum in _IGNORED:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _IGNORED)  # the pool started us with them blocked
    _become_subreaper()
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    base_env = dict(os.environ)
    running: dict[int, tuple] = {}  # pid -> (task id, units it was given, spool fd or -1, t0)
    signalled: set[int] = set()  # the runs in running that were sent a signal
    lingering: dict[int, list] = {}  # signalled runs whose leader is gone: pgid -> [entry, returncode, killed at]
    buffer = b""
    out: list[bytes] = []
    open_input = True
    while open_input or running or lingering:
        readable, _, _ = select.select([requests, wake_read] if open_input else [wake_read], [], [],
                                       0.1 if lingering else 1.0)  # their SIGCHLDs wake it on Linux
        if wake_read in readable:
            os.read(wake_read, 4096)
        if requests in readable:
            # Read to the end of what is there, so that a farmer that died after its last requests
            # is known dead before any of them is started: a spawner still starting up when its
            # farmer was killed would otherwise start them after another farmer took the tasks
            # over, and truncate their logs (the crash harness saw it).
            farmer_gone = False
            while True:
                try:
                    data = os.read(requests, 1 << 16)
                except BlockingIOError:
                    break
                if not data:
                    farmer_gone = True
                    break
                buffer += data
            while len(buffer) >= 4:
                (size,) = _HEADER.unpack_from(buffer)
                if len(buffer) < 4 + size:
                    break
                request = marshal.loads(buffer[4 : 4 + size])
                buffer = buffer[4 + size :]
                if request[0] == "run":
                    # One object per distinct resource request, so that the decision, which
                    # remembers the requests it refused by identity, judges each shape once.
                    asked = request[5]
                    shared = shapes.setdefault(tuple(asked.items()), asked)
                    queue.append(request if shared is asked else (*request[:5], shared, *request[6:]))
                elif request[0] == "signal":
                    chosen = set(request[2]) if len(request) > 2 else None
                    for pid, entry in running.items():
                        if chosen is None or entry[0] in chosen:
                            _kill(pid, request[1])
                            signalled.add(pid)
                    for pgid, left in lingering.items():
                        if chosen is None or left[0][0] in chosen:
                            _kill(pgid, request[1])
                            if request[1] == signal.SIGKILL and left[2] is None:
                                left[2] = time.monotonic()
                elif request[0] == "note" and writer is not None:
                    try:
                        writer.note(request[1], request[2], request[3], time.time())
                    except OSError as error:
                        _complain(f"task {request[1]}: cannot append to {writer.stem} ({error.strerror})")
                elif request[0] == "drop":
                    out.append(marshal.dumps(("dropped", [queued[1] for queued in queue])))
                    queue.clear()
            if farmer_gone:
                open_input = False
                queue.clear()
                for pid in running:
                    _kill(pid, signal.SIGKILL)
                signalled.update(running)
                for pgid, left in lingering.items():
                    _kill(pgid, signal.SIGKILL)
                    if left[2] is None:
                        left[2] = time.monotonic()
        while True:  # the runs' leaders, and the orphans of their groups (see _become_subreaper)
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            entry = running.pop(pid, None)
            if entry is not None:
                returncode = os.waitstatus_to_exitcode(status)
                if pid in signalled:
                    signalled.discard(pid)
                    lingering[pid] = [entry, returncode, None]  # ended below once its group is gone
                else:
                    _end(entry, returncode, units, writer, out)
        for pgid, (entry, returncode, killed) in list(lingering.items()):
            if not _group_alive(pgid) or (killed is not None and time.monotonic() - killed > _ZOMBIE_PATIENCE):
                del lingering[pgid]
                _end(entry, returncode, units, writer, out)
        while (index := capacity.next_to_start((queued[5] for queued in queue), units)) is not None:
            request = queue[index]
            del queue[index]
            _run(request, units, base_env, running, out, packed, binding)
        if writer is not None and writer.pending():
            try:
                writer.flush()  # the index lines first: the farmer records what it is told
            except OSError as error:
                _complain(f"cannot append to the log index {writer.stem}.index ({error.strerror})")
        if out:
            _write(replies, b"".join(_HEADER.pack(len(item)) + item for item in out))
            out.clear()
    if writer is not None:
        writer.close()
    return 0


def _become_subreaper() -> None:
    """Have the orphaned processes of the tasks reparented to this process, which reaps them, so
    that a group whose leader is gone holds no zombie once its processes have exited."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # 36: PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):  # not Linux: see _ZOMBIE_PATIENCE
        pass


def _end(entry: tuple, returncode: int, units, writer, out: list) -> None:
    """Report the end of a run (entry as in ``running``) and free what it was given."""
    t1 = time.time()
    if entry[2] >= 0:
        _pack(writer, entry[0], entry[2], returncode, entry[3], t1)
    out.append(marshal.dumps(("ended", entry[0], returncode, t1)))
    units.give_back(entry[1])


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group is left (zombies included)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process that changed its user (setuid): there all the same
        pass
    return True


def _load(package: str, module: str) -> types.SimpleNamespace:
    """A module of mpifarmer that uses only the standard library, without importing the package."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), package, module)
    namespace: dict = {"__name__": f"mpifarmer.{package}.{module[:-3]}", "__file__": path}
    with open(path, "rb") as source:
        exec(compile(source.read(), path, "exec"), namespace)
    return types.SimpleNamespace(**namespace)


def _pack_writer(packed: dict | None):
    if packed is None:
        return None
    packs = _load("store", "packs.py")
    fault = packs.PackFault(packed["fault"]) if packed.get("fault") else None
    return packs.PackWriter(packed["stem"], packed["identity"], packed["limit"], fault)


def _pack(writer, task: int, spool: int, returncode: int, t0: float, t1: float) -> None:
    """Append a run's output, the content of its spool file (closed here), to the pack."""
    try:
        writer.add(task, spool, returncode, t0, t1)
    except OSError as error:
        _complain(f"task {task}: cannot append its output to {writer.stem} ({error.strerror}); it is lost")
    finally:
        os.close(spool)


def _complain(text: str) -> None:
    try:
        os.write(2, f"mpifarmer spawner: {text}\n".encode())
    except OSError:
        pass


_SPOOLED = [0, hasattr(os, "O_TMPFILE")]  # files made (for unique names), whether O_TMPFILE may work


def _spool(packed: dict) -> int:
    """An unnamed file for a task's output: in the spool directory, else in the fallback."""
    for directory in (packed["spool"], packed["fallback"]):
        if _SPOOLED[1]:
            try:
                return os.open(directory, os.O_TMPFILE | os.O_RDWR, 0o600)
            except OSError:
                pass  # not supported by this filesystem (or not writable: the named way says)
        _SPOOLED[0] += 1
        name = os.path.join(directory, f".spool.{os.getpid()}.{_SPOOLED[0]}.tmp")
        try:
            fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError:
            continue
        _SPOOLED[1] = False  # it worked without: do not try O_TMPFILE for every task
        os.unlink(name)
        return fd
    raise OSError(28, f"cannot create a file in {packed['spool']} nor in {packed['fallback']}")


class _Binding:
    """A pool's binding (see :mod:`mpifarmer.scheduling.binding`), or none: units stand for nothing."""

    def __init__(self, spec: dict, module: types.SimpleNamespace | None) -> None:
        self.spec, self.module = spec, module
        try:
            self.home = os.sched_getaffinity(0)  # what the spawner goes back to after each bound start
        except (AttributeError, OSError):
            self.home = None

    def environment(self, given: dict, env: dict) -> list[int]:
        """Add the run's variables to ``env``; return the CPUs to bind it to (none: unbound)."""
        if self.module is None:
            return []
        cpus, extra = self.module.run_environment(self.spec, given, env)
        env.update(extra)
        return cpus


def _run(request: tuple, units, base_env: dict, running: dict, out: list, packed: dict | None,
         binding: _Binding) -> None:
    _, task, argv, log, extra, asked, cwd, header = request
    given = units.take(asked)  # before the start: a run's environment names its units
    env = dict(base_env)
    env.update(extra)
    cpus = binding.environment(given, env)
    spool = logged = -1
    try:
        if packed is not None:
            spool = _spool(packed)
            output = (os.POSIX_SPAWN_DUP2, spool, 1)
        elif header is not None:
            logged = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            output = (os.POSIX_SPAWN_DUP2, logged, 1)
        else:
            output = (os.POSIX_SPAWN_OPEN, 1, log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        if header is not None:
            os.write(spool if spool >= 0 else logged, header.encode("utf-8", "surrogateescape"))
    except OSError as error:
        units.give_back(given)
        for fd in (spool, logged):
            if fd >= 0:
                os.close(fd)
        out.append(marshal.dumps(("error", task, f"cannot create its output file: {error.strerror}", time.time())))
        return
    actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0), output, (os.POSIX_SPAWN_DUP2, 1, 2)]
    t0 = time.time()
    try:
        if cwd:
            try:  # posix_spawn has no directory of its own, and this process has a single thread
                os.chdir(cwd)
            except OSError as error:
                raise _NotStarted(f"cannot run in directory {cwd!r}: {error.strerror}") from None
        if cpus:
            try:  # nor an affinity: the child inherits this process's, set for its start only
                os.sched_setaffinity(0, cpus)
            except OSError as error:
                raise _NotStarted(f"cannot bind it to CPUs {env.get('MPIFARMER_CPUS')}: {error.strerror}") from None
        try:
            pid = os.posix_spawnp(argv[0], argv, env, file_actions=actions, setpgroup=0, setsigdef=_TASK_SIGNALS,
                                  setsigmask=())
        except OSError as error:
            raise _NotStarted(f"cannot start {argv[0]!r}: {error.strerror}") from None
    except _NotStarted as problem:
        units.give_back(given)
        if spool >= 0:
            os.close(spool)
        out.append(marshal.dumps(("error", task, str(problem), time.time())))
        return
    finally:
        if cwd:
            os.fchdir(_HOME)
        if cpus and binding.home is not None:
            os.sched_setaffinity(0, binding.home)
        if logged >= 0:
            os.close(logged)  # the task has it as its output now
    running[pid] = (task, given, spool, t0)
    out.append(marshal.dumps(("started", task, pid, t0, given)))


class _NotStarted(Exception):
    """A run that could not be started, and why."""


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
