"""Crash-consistency harness: SIGKILL farmers at random moments and check that nothing is lost or run twice.

Usable as a library (:func:`run_mode`, used by ``test_crash.py``) and from the command line::

    python tests/reliability/crash.py --mode local|lock|mpi|all --kills N --seed S
    python -m tests.reliability.crash --mode all --kills 200 --seed 1

What one *round* does: write a fresh task list, run farmers on it and kill them until the round's kills
are used up, let the last farmers finish the list, then verify. Rounds repeat until a mode has had the
kills asked for. Modes: ``local`` (one farmer), ``lock`` (three farmers at once on one work directory, the
lock mode rotating through flock, soft and strict), ``mpi`` (``mpiexec -n 4``; a kill hits the job's whole
process group).

Kill points, drawn from the seeded generator (the draws are reproducible; the interleaving of processes on
a busy machine is not):

* ``delay``: SIGKILL after a random delay from the start, which lands in interpreter start-up, registration,
  claiming, task starts and ends, view writes, or the final close;
* ``fault-before|torn|unended|after``: ``MPIFARMER_FAULT=N:WHERE`` makes the farmer SIGKILL itself at its
  N-th journal append, before writing, after writing half of it, after writing all but its last newline
  (bug 15: a whole record with no newline), or after writing all of it;
* ``tail``: SIGKILL shortly after the last tasks started, while the farmer finishes them and shuts down;
* ``spawner``: SIGKILL of the farmer's spawner (in MPI mode, of one rank's spawner, chosen at random) after a
  random delay, as an OOM killer or a user's ``kill`` might: the farmer is not killed and must go on, kill the
  spawner's tasks, record them interrupted (never failed) and finish the list with exit code 0;
* ``fault-compact1|2|3`` (in the rounds that compact, two of every four: their journal is compacted every 1 to
  6 kB): ``MPIFARMER_FAULT=N:compactK`` kills the farmer in its N-th compaction, after step K (snapshot
  written; old journal linked into the history; journal replaced);
  in rounds 0 and 1 of every 4 the farmer rewrites ``timeline.json`` from a child process every 0.2 s
  (``MPIFARMER_TIMELINE_EVERY``), so that every kind of kill also lands while a child writes it;
  one round in three gives each task a GPU of a fake inventory (``--gpus 0,1,2,3 --gpus-per-task 1``),
  and every check also proves that no two overlapping runs of one farmer's rank shared a GPU;
* ``drain``: SIGTERM, then SIGKILL 0 to 0.25 s later, as Slurm does at a time limit: the kill lands while
  the farmer interrupts its tasks, records them and leaves, or, if it was quicker, after it exited with 3
  (a stop, not a kill; the runs it recorded interrupted may run again);
* ``pack-torn|data|index|after`` (rounds with ``--logs packed``, odd-numbered ones): the first spawner of
  each pool SIGKILLs itself at its N-th packed record (N from 1 to 15), after writing half the record, the
  record, half its index write, or all of it (``MPIFARMER_PACK_FAULT``); the farmer must go on as after a
  ``spawner`` kill.

Every task appends to a shared output file ``ID NONCE start T FARMER`` before its work and ``ID NONCE end T
FARMER`` after it (NONCE is new for every run, T is ``$EPOCHREALTIME``). It also takes an exclusive
``flock`` on a per-task lock file for its whole life, and writes ``ID NONCE overlap T FARMER`` if another
run of the same task still holds it: so a run that was killed (and so never wrote its end) is still
caught overlapping a later run.

What is checked after every kill (the state the next farmer starts from):

* the journal (its history of compacted generations, then the journal itself) parses: every complete line
  is a JSON object of a known kind, except at most one damaged line
  per ``torn`` fault injected so far (a writer killed mid-write leaves a partial line that the next writer
  terminates and readers skip); the last line may be unterminated only after a kill;
* ``toprocess``, ``running``, ``finished`` and ``failed`` are ``ID LINE`` lines naming real tasks with
  their own lines, and ``timeline.json`` is valid JSON; ``finished`` never names a task the journal does
  not record as finished;
* a task recorded finished never runs again: the nonces seen for it when its finished record was first
  seen are all it ever gets, and no run of it starts after the recorded run ended;
* no two runs of one task overlap (the flock detector; end before next start for runs that ended).

And at the end of every round: each task has exactly one finished record and that record's run is its last
run, which completed (wrote its end); every extra run belonged to a farmer that was killed (a duplicate is
allowed only for a task running when a kill landed, recorded interrupted by a farmer that drained on
SIGTERM or whose spawner was killed, or a run cut short by the pool of a farmer whose spawner was killed);
no task is ever recorded failed; every farmer that was not killed exited 0 without a traceback; the only
snapshot left is the one of the journal's generation, and it holds what replaying the history gives; the
views are exact (every task finished, nothing pending, running or failed) and the timeline has one event
per recorded end; no task process is left behind.

Task output (each task prints ``ID NONCE out-start`` and ``ID NONCE out-end``): in rounds with
``--logs packed``, after every kill and at the end, every complete index line is well-formed, its bytes lie
in its pack with the right header and CRC, and the output it names is that of one run of its own task (no
mixing); an unterminated last index line is allowed only once a farmer or spawner was killed. At the end of
every round, in both layouts, the output of each task's finished run is readable through the log reader
(:func:`mpifarmer.store.packs.attempts`), and ``mpifarmer log`` (a real process) prints it for the last task.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mpifarmer.store.packs import attempts, read_index, verify

__all__ = ["MODES", "Figures", "mpiexec", "run_mode", "main"]

MODES = ("local", "lock", "mpi")
KINDS = {"add", "hello", "claim", "start", "end", "release", "retry", "bye", "dead", "journal"}
LOCK_MODES = ("flock", "soft", "strict")
#: Generous ceiling for one round: a guard against hangs, never a performance assertion.
ROUND_HANG = 300.0
#: Tasks in a round's first list, and twice what is appended when a farmer ran out of work before its kill.
BATCH = {"local": 60, "lock": 90, "mpi": 160}
#: Slack when matching a task's own timestamps with the farmer's (both read CLOCK_REALTIME).
EPS = 0.002


#: What a farmer logs when its critical section was not exclusive (Journal._unread).
RACED = "while this farmer held the work-directory lock"


def mpiexec() -> str | None:
    """The mpiexec beside this interpreter (the mpich wheel's), else the one on PATH."""
    return shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")


# -- what tasks leave behind ----------------------------------------------------------------------


@dataclass
class Run:
    """One run of one task, as the task itself recorded it."""

    task: int
    nonce: str
    farmer: str = ""
    start: float | None = None
    end: float | None = None
    overlap: bool = False


@dataclass(frozen=True)
class Flaw:
    """How a task of the mix misbehaves: its first ``fails`` runs that get going fail, by exiting 1
    (``hang`` False) or by outlasting the time limit the task has (``hang`` True); it has as many
    retries as it fails, so that it finishes within them."""

    fails: int
    hang: bool


def task_line(task: int, seconds: float, out: Path, locks: Path, marker: str, flaw: Flaw | None = None) -> str:
    """A task that records its run, holds its per-task flock while it works, and carries ``marker``;
    with a ``flaw``, its first runs count themselves (under the flock) and fail."""
    q_out, q_lock = shlex.quote(str(out)), shlex.quote(str(locks / str(task)))
    stamp = '"$EPOCHREALTIME $MPIFARMER_FARMER"'
    fail = ""
    if flaw is not None:
        q_count = shlex.quote(str(locks / f"{task}.runs"))
        how = "sleep 60" if flaw.hang else f"echo {task} $N fail {stamp} >> {q_out}; exit 1"
        fail = f"echo x >> {q_count}; if [ $(wc -l < {q_count}) -le {flaw.fails} ]; then {how}; fi; "
    return (f"N=$$.$SRANDOM; exec 9>>{q_lock}; flock -n 9 || echo {task} $N overlap {stamp} >> {q_out}; "
            f"echo {task} $N start {stamp} >> {q_out}; {fail}echo {task} $N out-start; sleep {seconds:.3f}; "
            f"echo {task} $N out-end; echo {task} $N end {stamp} >> {q_out} # {marker}")


def jsonl_line(command: str, seconds: float, flaw: Flaw | None) -> str:
    """The task's line in the round's ``-t jsonl`` list: its retries and time limit, if it is flawed."""
    item: dict = {"cmd": command}
    if flaw is not None:
        item["retries"] = flaw.fails
        if flaw.hang:
            item["timeout"] = round(seconds + 3.0, 3)  # well above its good run, on a loaded machine too
    return json.dumps(item)


def without_attempt_line(task: int, output: bytes) -> bytes:
    """A run's output without the line that begins each attempt of a task that may be retried."""
    prefix = f"mpifarmer: task {task}, attempt ".encode()
    if output.startswith(prefix):
        return output.split(b"\n", 1)[1] if b"\n" in output else b""
    return output


def read_runs(out: Path) -> dict[int, list[Run]]:
    """Runs per task ID, ordered by start time (runs killed before writing their start come first)."""
    runs: dict[tuple[int, str], Run] = {}
    if out.exists():
        for line in out.read_text().splitlines():
            parts = line.split()
            if len(parts) < 4:
                continue  # a task killed mid-echo (cannot happen for writes this small, but be lenient)
            task, nonce, kind, stamp = int(parts[0]), parts[1], parts[2], float(parts[3])
            run = runs.setdefault((task, nonce), Run(task, nonce))
            run.farmer = parts[4] if len(parts) > 4 else run.farmer
            if kind == "start":
                run.start = stamp
            elif kind == "end":
                run.end = stamp
            elif kind == "overlap":
                run.overlap = True
    by_task: dict[int, list[Run]] = {}
    for run in runs.values():
        by_task.setdefault(run.task, []).append(run)
    for task_runs in by_task.values():
        task_runs.sort(key=lambda r: r.start if r.start is not None else 0.0)
    return by_task


# -- what the farmers leave behind ----------------------------------------------------------------


@dataclass
class JournalText:
    records: list[dict]
    damaged: int  # complete lines that are not JSON records of a known kind
    tail: bytes  # an unterminated last line


def read_journal_lines(data: bytes) -> list[dict]:
    """The records of journal bytes (complete lines that parse)."""
    records = []
    for line in data.split(b"\n")[:-1]:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("e") in KINDS:
            records.append(record)
    return records


def read_journal(workdir: Path) -> JournalText:
    """Every record ever appended in ``workdir``: the generations compaction moved to ``history/``,
    then the journal. The journal is opened first, so that a compaction meanwhile hides nothing."""
    try:
        with (workdir / "journal.jsonl").open("rb") as stream:
            data = stream.read()
    except FileNotFoundError:
        return JournalText([], 0, b"")
    generation = json.loads(data.split(b"\n", 1)[0])["gen"] if data.startswith(b'{"e":"journal"') else 0
    older = b"".join((workdir / "history" / f"journal.{old}.jsonl").read_bytes() for old in range(generation))
    *lines, tail = (older + data).split(b"\n")
    records, damaged = [], 0
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            damaged += 1
            continue
        if not isinstance(record, dict) or record.get("e") not in KINDS:
            damaged += 1
            continue
        records.append(record)
    return JournalText(records, damaged, tail)


def finished_records(records: list[dict]) -> dict[int, list[dict]]:
    found: dict[int, list[dict]] = {}
    for record in records:
        if record["e"] == "end" and record.get("st") == "finished":
            found.setdefault(int(record["id"]), []).append(record)
    return found


def read_view(path: Path) -> list[tuple[str, str]]:
    if not path.exists():
        return []
    return [tuple(line.partition(" ")[::2]) for line in path.read_text().splitlines()]  # type: ignore[misc]


# -- figures --------------------------------------------------------------------------------------


@dataclass
class Figures:
    """What one mode went through, and every problem found (there must be none)."""

    mode: str
    rounds: int = 0
    kills: int = 0
    stops: int = 0  # SIGTERMed farmers that drained and exited 3 before their SIGKILL
    spawner_kills: int = 0  # spawners killed under a farmer that went on
    compactions: int = 0  # journal generations at the end of the rounds, summed
    pack_faults: int = 0  # spawners that killed themselves while packing output (of those)
    packed_rounds: int = 0
    gpu_rounds: int = 0  # rounds whose tasks were each given a GPU
    gpu_runs: int = 0  # end records that name a GPU
    timeline_rounds: int = 0  # rounds whose timeline a child rewrote every 0.2 s
    outputs: int = 0  # finished runs whose output was read back through the log reader
    index_lines: int = 0  # packed index lines checked (after kills and at the end)
    retries: int = 0  # failed attempts recorded retrying (of flawed tasks, each within its retries)
    timeouts: int = 0  # of those, runs stopped for their time limit
    kinds: Counter = field(default_factory=Counter)
    last_record: Counter = field(default_factory=Counter)  # the killed farmer's last journal record kind
    tasks: int = 0
    runs: int = 0
    duplicates: int = 0  # runs beyond the first of a task (each explained by a kill)
    unexplained: int = 0  # duplicates not explained by a kill
    losses: int = 0  # tasks without exactly one finished record, or whose recorded run did not complete
    overlaps: int = 0
    finished_reruns: int = 0
    checks: int = 0
    farmers: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        self.problems.append(text)

    def summary(self) -> str:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.kinds.items()))
        last = ", ".join(f"{k} {v}" for k, v in sorted(self.last_record.items()))
        return (f"{self.mode}: {self.kills} kills survived in {self.rounds} rounds ({kinds}); last record before "
                f"the kill: {last}; {self.spawner_kills} spawners killed under a running farmer ({self.pack_faults} "
                f"while packing output); {self.packed_rounds} rounds with --logs packed, {self.index_lines} index "
                f"lines checked, {self.outputs} finished runs' output read back; {self.gpu_rounds} rounds with GPUs "
                f"({self.gpu_runs} runs given one); {self.timeline_rounds} rounds with a timeline child every "
                f"0.2 s; {self.stops} farmers "
                f"drained on SIGTERM before their SIGKILL; {self.compactions} journal compactions; "
                f"{self.farmers} farmers started; {self.tasks} tasks, {self.runs} runs, {self.duplicates} "
                f"duplicates, {self.unexplained} unexplained duplicates, {self.losses} losses, {self.overlaps} "
                f"overlaps, {self.finished_reruns} reruns of finished tasks; {self.retries} failed attempts retried "
                f"({self.timeouts} timed out), none beyond a task's retries; {self.checks} state checks; "
                f"{self.seconds:.0f} s; {len(self.problems)} problems")


# -- one farmer process ---------------------------------------------------------------------------


@dataclass
class Plan:
    kind: str  # none, delay, spawner, fault-before, fault-torn, fault-after, tail, drain, pack-*
    delay: float = 0.0
    fault: str | None = None
    pack_fault: str | None = None  # MPIFARMER_PACK_FAULT
    grace: float = 0.0  # drain: from the SIGTERM to the SIGKILL


@dataclass
class Farmer:
    proc: subprocess.Popen
    plan: Plan
    spawned: float
    group: bool  # kill the whole process group (MPI jobs)
    err: Path
    killed_at: float | None = None
    tail_since: float | None = None
    signalled_at: float | None = None
    spawner_killed_at: float | None = None

    def kill_spawner(self, rng: random.Random) -> bool:
        """SIGKILL the spawner (of one rank, chosen at random, in an MPI job); False if none runs yet.
        MPI ranks run in sessions of their own under Hydra's proxies: spawners are found by ancestry."""
        parents: dict[int, int] = {}
        candidates = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(stat[stat.rindex(")") + 2 :].split()[1])
                if b"_spawnd" in Path(f"/proc/{entry}/cmdline").read_bytes():
                    candidates.append(int(entry))
            except (OSError, ValueError):
                continue

        def descends(pid: int) -> bool:  # from the farmer (an MPI rank: mpiexec, proxy, rank, spawner)
            for _ in range(4):
                pid = parents.get(pid, 0)
                if pid == self.proc.pid:
                    return True
            return False

        spawners = [pid for pid in candidates if descends(pid)]
        if not spawners:
            return False
        try:
            os.kill(rng.choice(sorted(spawners)), signal.SIGKILL)
        except ProcessLookupError:
            return False
        self.spawner_killed_at = time.time()
        return True

    def terminate(self) -> None:
        """SIGTERM, as Slurm sends before SIGKILL (mpiexec forwards it to every rank)."""
        self.signalled_at = time.time()
        try:
            self.proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        self.killed_at = time.time()
        try:
            if self.group:
                os.killpg(self.proc.pid, signal.SIGKILL)
            else:
                self.proc.kill()
        except ProcessLookupError:
            pass


def choose_plan(rng: random.Random, mode: str, packed: bool = False, compacts: bool = False) -> Plan:
    draw = rng.random()
    startup = 1.5 if mode == "mpi" else 0.6  # interpreter (and MPI) start-up comes first
    if draw < 0.30:
        return Plan("delay", delay=rng.uniform(0.0, startup + 1.5))
    if draw < 0.40:
        return Plan("spawner", delay=rng.uniform(startup, startup + 1.5))
    if packed and draw < 0.50:
        where = rng.choice(("torn", "data", "index", "after"))
        return Plan(f"pack-{where}", pack_fault=f"{rng.randint(1, 15)}:{where}")
    if draw < 0.75:
        if compacts and rng.random() < 0.4:
            where = rng.choice(("compact1", "compact2", "compact3"))
            return Plan(f"fault-{where}", fault=f"{rng.randint(1, 2)}:{where}")
        where = rng.choice(("before", "torn", "unended", "after"))
        return Plan(f"fault-{where}", fault=f"{rng.randint(1, 25)}:{where}")
    if draw < 0.88:
        return Plan("tail", delay=rng.uniform(0.0, 0.6))
    # SIGTERM, then SIGKILL before or after the drain is over, as Slurm does at a time limit
    return Plan("drain", delay=rng.uniform(0.3, startup + 1.5), grace=rng.uniform(0.0, 0.25))


# -- one round ------------------------------------------------------------------------------------


class Round:
    """One task list, farmers killed and restarted until it is done, then verified."""

    def __init__(self, root: Path, mode: str, number: int, rng: random.Random, kills: int, figures: Figures,
                 env: dict[str, str], log: Callable[[str], None]) -> None:
        self.root = root / f"{mode}-{number}"
        self.root.mkdir(parents=True)
        self.mode = mode
        self.number = number
        self.rng = rng
        self.kills_left = kills
        self.figures = figures
        self.env = {k: v for k, v in env.items() if k not in ("MPIFARMER_FAULT", "MPIFARMER_LOCK_DIR", "SCRATCH")}
        self.log = log
        self.lock_mode = LOCK_MODES[number % len(LOCK_MODES)] if mode == "lock" else "flock"
        self.packed = number % 2 == 1  # --logs packed
        self.writers_killed = False  # a farmer or spawner was killed: an index may end in a partial line
        # Rounds 1 and 2 of every 4 compact its journal every few kilobytes: snapshots, generations and
        # compaction faults get killed too (a real farmer compacts every 32 MiB).
        self.compact_bytes = rng.randint(1000, 6000) if number % 4 in (1, 2) else None
        if self.compact_bytes:
            self.env["MPIFARMER_COMPACT_BYTES"] = str(self.compact_bytes)
        # Half the rounds rewrite the timeline from a child process every 0.2 s (a real farm: every
        # 10 s at least), so that kills land while a child writes it and the end still finds it exact.
        if number % 4 in (0, 1):
            self.env["MPIFARMER_TIMELINE_EVERY"] = "0.2"
        self.out = self.root / "out"
        self.locks = self.root / "locks"
        self.locks.mkdir()
        self.marker = f"crashmark-{os.getpid()}-{mode}-{number}-{rng.randrange(1 << 30)}"
        self.lines: list[str] = []
        self.flaws: dict[int, Flaw] = {}
        self.retry_delay = 0.2 if number % 3 == 2 else 0.0
        # One round in three hands each task a GPU of a fake inventory of 4 (no GPU on this machine):
        # the spawner's unit hand-out and the records' gpus field are under the kills too.
        self.gpus = number % 3 == 1
        self.tasks = self.root / "tasks.jsonl"
        self.tasks.touch()
        self._append_tasks(BATCH[mode])
        self.workdir = self.root / "wd"
        self.torn = 0
        self.killed_fids: set[str] = set()
        self.signalled_fids: set[str] = set()  # farmers that drained on SIGTERM and exited 3
        self.clean_fids: set[str] = set()
        self.spawner_fids: set[str] = set()  # farmers that went on after their spawner (or a rank's) was killed
        self.frozen: dict[int, set[str]] = {}  # task -> nonces when it was first seen recorded finished
        self.started = 0
        self.where = f"{mode} round {number}"
        self._overlaps_seen: set[tuple[int, str]] = set()
        self._late_seen: set[str] = set()

    @property
    def count(self) -> int:
        return len(self.lines)

    def _append_tasks(self, count: int) -> None:
        """Append ``count`` tasks to the list (a restart picks them up; a running farm notices them)."""
        new = []
        for task in range(self.count, self.count + count):
            seconds, flaw = self._duration(), self._flaw()
            if flaw is not None and flaw.hang:
                seconds = min(seconds, 0.3)
            if flaw is not None:
                self.flaws[task] = flaw
            new.append(jsonl_line(task_line(task, seconds, self.out, self.locks, self.marker, flaw), seconds, flaw))
        with self.tasks.open("a") as stream:
            stream.write("".join(line + "\n" for line in new))
        self.lines.extend(new)

    def _flaw(self) -> Flaw | None:
        """About one task in eight fails once or twice (one in forty by outlasting its time limit)."""
        draw = self.rng.random()
        if draw < 0.025:
            return Flaw(1, hang=True)
        if draw < 0.125:
            return Flaw(self.rng.choice((1, 1, 2)), hang=False)
        return None

    def _duration(self) -> float:
        draw = self.rng.random()
        if draw < 0.4:
            return self.rng.uniform(0.0, 0.05)
        if draw < 0.85:
            return self.rng.uniform(0.05, 0.3)
        if draw < 0.95:
            return self.rng.uniform(0.3, 0.8)
        return self.rng.uniform(1.1, 1.5)  # longer than a second: the farmer records its start

    # -- farmers --

    def _argv(self) -> list[str]:
        farmer = [sys.executable, "-m", "mpifarmer", str(self.tasks), "-w", str(self.workdir), "-t", "jsonl"]
        if self.retry_delay:
            farmer += ["--retry-delay", str(self.retry_delay)]
        if self.packed:
            farmer += ["--logs", "packed"]
        if self.gpus:
            farmer += ["--gpus", "0,1,2,3", "--gpus-per-task", "1"]
        if self.mode == "mpi":
            launcher = mpiexec()
            assert launcher is not None
            return [launcher, "-n", "4", *farmer, "-n", "2"]
        if self.mode == "lock":
            return [*farmer, "-n", "2", "--lock-mode", self.lock_mode]
        return [*farmer, "-n", "4"]

    def _spawn(self) -> Farmer:
        plan = (choose_plan(self.rng, self.mode, self.packed, bool(self.compact_bytes)) if self.kills_left > 0
                else Plan("none"))
        env = dict(self.env)
        env.pop("MPIFARMER_PACK_FAULT", None)
        if plan.fault:
            env["MPIFARMER_FAULT"] = plan.fault
        if plan.pack_fault:
            env["MPIFARMER_PACK_FAULT"] = plan.pack_fault
        env["MPIFARMER_JOURNAL_TRACE"] = str(self.root)  # what each farmer's reads and appends saw (bug 15)
        self.started += 1
        err = self.root / f"farmer-{self.started}.err"
        with err.open("w") as stream:
            # cwd: not the source tree, so that ``-m mpifarmer`` imports what PYTHONPATH or the install says
            proc = subprocess.Popen(self._argv(), cwd=self.root, env=env, stdin=subprocess.DEVNULL, stdout=stream,
                                    stderr=stream, start_new_session=self.mode == "mpi")
        self.figures.farmers += 1
        return Farmer(proc, plan, time.time(), self.mode == "mpi", err)

    def _finished_count(self) -> int:
        return sum(1 for record in read_journal(self.workdir).records if record.get("st") == "finished")

    def _fids_of(self, farmer: Farmer, ended: float) -> set[str]:
        """The farmer IDs this process (or MPI job) registered under."""
        fids = set()
        for record in read_journal(self.workdir).records:
            if record["e"] != "hello":
                continue
            if self.mode == "mpi":
                if farmer.spawned - 0.5 <= record.get("t", 0.0) <= ended + 0.5:
                    fids.add(record["f"])
            elif record.get("pid") == farmer.proc.pid and farmer.spawned - 0.5 <= record.get("t", 0.0):
                fids.add(record["f"])
        return fids

    def _was_killed(self, farmer: Farmer, rc: int) -> bool:
        if rc == -signal.SIGKILL:
            return True
        # mpiexec reports a rank that died of SIGKILL with exit code 9
        return self.mode == "mpi" and farmer.plan.fault is not None and rc == signal.SIGKILL

    def _on_exit(self, farmer: Farmer, rc: int) -> bool:
        """Account for a farmer that ended; return whether it must be started again (killed or stopped)."""
        ended = time.time()
        if farmer.group:
            try:  # whatever is left of an MPI job (ranks, proxies)
                os.killpg(farmer.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        fids = self._fids_of(farmer, ended)
        if RACED in farmer.err.read_text(errors="replace"):
            self.figures.problem(f"{self.where}: farmer {sorted(fids)} appended to a journal that others had appended "
                                 f"to while it held the lock:\n{farmer.err.read_text(errors='replace')[-3000:]}")
        if farmer.plan.pack_fault and "the spawner process died" in farmer.err.read_text(errors="replace"):
            farmer.spawner_killed_at = ended  # (approximately: it killed itself while packing)
            self.kills_left -= 1
            self.figures.spawner_kills += 1
            self.figures.pack_faults += 1
        if farmer.spawner_killed_at is not None or self._was_killed(farmer, rc):
            self.writers_killed = True
        if self._was_killed(farmer, rc):
            self.killed_fids |= fids
            self.kills_left -= 1
            self.figures.kills += 1
            kind = farmer.plan.kind if farmer.killed_at is not None or farmer.plan.fault else "other"
            self.figures.kinds[kind] += 1
            if kind in ("fault-torn", "fault-unended"):
                self.torn += 1
            last = "none (not registered)"
            for record in read_journal(self.workdir).records:
                if record.get("f") in fids:
                    last = record["e"]
            self.figures.last_record[last] += 1
            self.check(after_kill=True)
            return True
        text = farmer.err.read_text(errors="replace")
        if farmer.signalled_at is not None and "Traceback" not in text and (
                rc == 3 or (rc == -signal.SIGTERM and not fids)):  # (before mpifarmer's code ran: default action)
            self.signalled_fids |= fids
            self.figures.stops += 1
            self.check(after_kill=False)
            return True
        self.clean_fids |= fids
        if farmer.spawner_killed_at is not None:
            self.spawner_fids |= fids
        if rc != 0 or "Traceback" in text:
            self.figures.problem(f"{self.where}: farmer {sorted(fids)} (plan {farmer.plan}) exited {rc}; "
                                 f"stderr:\n{text[-3000:]}")
        return False

    def run(self) -> None:
        slots = 3 if self.mode == "lock" else 1
        farmers: list[Farmer | None] = [self._spawn() for _ in range(slots)]
        deadline = time.monotonic() + ROUND_HANG
        try:
            while any(farmers):
                for i, farmer in enumerate(farmers):
                    if farmer is None:
                        continue
                    rc = farmer.proc.poll()
                    if rc is None:
                        self._maybe_kill(farmer)
                        continue
                    if self._on_exit(farmer, rc):
                        farmers[i] = self._spawn()
                    elif self.kills_left > 0 and rc == 0:
                        # the list is done (for this farmer) but kills are left: more work, and restarts
                        self._append_tasks(BATCH[self.mode] // 2)
                        farmers = [f if f is not None and j != i else self._spawn() for j, f in enumerate(farmers)]
                    else:
                        farmers[i] = None
                if time.monotonic() > deadline:
                    self.figures.problem(f"{self.where}: not done after {ROUND_HANG:.0f} s (hang?)")
                    break
                time.sleep(0.02)
        finally:
            for farmer in farmers:
                if farmer is not None and farmer.proc.poll() is None:
                    farmer.kill()
                    farmer.proc.wait()
        self.verify()

    def _maybe_kill(self, farmer: Farmer) -> None:
        plan, now = farmer.plan, time.time()
        if farmer.killed_at is not None:
            return
        if plan.kind == "delay" and now - farmer.spawned >= plan.delay:
            farmer.kill()
        elif plan.kind == "spawner" and farmer.spawner_killed_at is None and now - farmer.spawned >= plan.delay:
            if farmer.kill_spawner(self.rng):
                self.kills_left -= 1
                self.figures.spawner_kills += 1
        elif plan.kind == "drain":
            if farmer.signalled_at is None and now - farmer.spawned >= plan.delay:
                farmer.terminate()
            elif farmer.signalled_at is not None and now - farmer.signalled_at >= plan.grace:
                farmer.kill()
        elif plan.kind == "tail":
            if farmer.tail_since is None and self._finished_count() >= self.count - 6:
                farmer.tail_since = now
            if farmer.tail_since is not None and now - farmer.tail_since >= plan.delay:
                farmer.kill()

    # -- checks --

    def check(self, *, after_kill: bool) -> None:
        """The invariants that hold at every moment (see the module docstring)."""
        figures, where = self.figures, self.where
        figures.checks += 1
        # views first, then the journal: a view must never be ahead of the journal read after it
        views = {name: read_view(self.workdir / name) for name in ("toprocess", "running", "finished", "failed")}
        timeline = self.workdir / "timeline.json"
        journal = read_journal(self.workdir)
        runs = read_runs(self.out)
        for name, rows in views.items():
            for task, line in rows:
                if not task.isdigit() or int(task) >= self.count or self.lines[int(task)] != line:
                    figures.problem(f"{where}: {name} has a line that is not 'ID LINE' of a real task: "
                                    f"{task} {line[:80]!r}")
                    break
        if timeline.exists():
            try:
                events = json.loads(timeline.read_text())["traceEvents"]
                assert isinstance(events, list)
            except (ValueError, KeyError, AssertionError) as error:
                figures.problem(f"{where}: timeline.json is not valid trace JSON ({error})")
        if journal.damaged > self.torn:
            figures.problem(f"{where}: {journal.damaged} damaged journal lines after {self.torn} torn writes")
        if journal.tail and not after_kill:
            figures.problem(f"{where}: the journal ends with a partial line after a clean exit: {journal.tail[:80]!r}")
        recorded = finished_records(journal.records)
        ahead = {int(task) for task, _ in views["finished"]} - set(recorded)
        if ahead:
            figures.problem(f"{where}: finished lists tasks the journal does not record finished: {sorted(ahead)[:10]}")
        for task, records in recorded.items():
            nonces = {run.nonce for run in runs.get(task, [])}
            if task not in self.frozen:
                self.frozen[task] = nonces
            elif nonces - self.frozen[task]:
                figures.finished_reruns += 1
                figures.problem(f"{where}: task {task} ran again after it was recorded finished "
                                f"(new runs {sorted(nonces - self.frozen[task])})")
                self.frozen[task] = nonces
            first_end = min(r.get("t1", 0.0) for r in records)
            late = {r.nonce for r in runs.get(task, []) if r.start is not None and r.start > first_end + EPS}
            if late - self._late_seen:
                figures.problem(f"{where}: task {task} started again ({sorted(late - self._late_seen)}) after its "
                                f"recorded finished run ended at {first_end}")
                self._late_seen |= late
        self._check_overlaps(runs)
        self._check_gpus(journal.records)
        if self.packed:
            self._check_packs(runs)

    def _check_gpus(self, records: list[dict]) -> None:
        """No two recorded runs of one farmer's rank that overlap in time were given the same GPU."""
        held: dict[tuple[str, int], list[tuple[float, float, set[str], int]]] = {}
        for record in records:
            if record.get("e") == "end" and record.get("gpus") and record.get("t0") is not None:
                held.setdefault((record["f"], record.get("rank", 0)), []).append(
                    (record["t0"], record["t1"], set(str(record["gpus"]).split(",")), record["id"]))
        for (fid, rank), spans in held.items():
            spans.sort()
            for i, (_, t1, gpus, task) in enumerate(spans):
                for u0, _, others, other in spans[i + 1:]:
                    if u0 >= t1 - EPS:
                        break
                    if gpus & others:
                        self._overlap(task, f"tasks {task} and {other} of farmer {fid} rank {rank} ran at once on "
                                      f"GPU {sorted(gpus & others)}")

    def _check_packs(self, runs: dict[int, list[Run]]) -> None:
        """Every complete index line names intact bytes holding the output of one run of its task."""
        figures, where = self.figures, self.where
        for path in sorted((self.workdir / "logs").glob("pack.*.index")):
            try:
                index = read_index(os.fspath(path))
            except OSError as error:
                figures.problem(f"{where}: cannot read {path.name} ({error})")
                continue
            unwritten = not index.identity and not index.entries and not index.damaged
            if index.damaged or (not index.identity.get("f") and not (unwritten and self.writers_killed)):
                figures.problem(f"{where}: {path.name} has {index.damaged} damaged lines (identity {index.identity})")
            if index.tail and not self.writers_killed:
                figures.problem(f"{where}: {path.name} ends in a partial line though no writer was killed")
            for entry in index.entries:
                figures.index_lines += 1
                output = verify(index.stem, entry)
                if output is None:
                    figures.problem(f"{where}: {path.name}: entry {entry} names bytes its pack does not hold")
                    continue
                output = without_attempt_line(entry["id"], output)
                nonces = {line.split()[1] for line in output.decode(errors="replace").splitlines()
                          if len(line.split()) == 3 and line.split()[0] == str(entry["id"])}
                known = {run.nonce for run in runs.get(entry["id"], [])}
                if output and len(nonces) != 1 or not nonces <= known or len(output.splitlines()) != sum(
                        line.startswith(f"{entry['id']} ".encode()) for line in output.splitlines()):
                    figures.problem(f"{where}: {path.name}: the output of task {entry['id']}'s run {entry['run']} "
                                    f"is not that of one of its runs: {output[:200]!r}")

    def verify_outputs(self) -> None:
        """The output of each task's finished run can be read back through the log reader."""
        figures, where = self.figures, self.where
        runs = read_runs(self.out)
        for task in range(self.count):
            last = runs.get(task, [None])[-1]
            if last is None or last.end is None:
                continue  # reported by verify_runs
            wanted = f"{task} {last.nonce} out-start\n{task} {last.nonce} out-end\n".encode()
            found = [without_attempt_line(task, a.output) if a.output is not None else None
                     for a in attempts(os.fspath(self.workdir / "logs"), task)]
            if wanted not in found:
                figures.problem(f"{where}: task {task}'s finished run {last.nonce} has no readable output "
                                f"({'packed' if self.packed else 'files'} layout; found {found[-3:]!r})")
            else:
                figures.outputs += 1
        shown = subprocess.run([sys.executable, "-m", "mpifarmer", "log", str(self.count - 1), "-w",
                                str(self.workdir)], capture_output=True, cwd=self.root, env=self.env, timeout=60)
        last = runs.get(self.count - 1, [None])[-1]
        if shown.returncode != 0 or last is None or not shown.stdout.endswith(
                f"{self.count - 1} {last.nonce} out-end\n".encode()):
            figures.problem(f"{where}: mpifarmer log {self.count - 1} exited {shown.returncode}: "
                            f"{shown.stdout[-200:]!r} {shown.stderr[-500:]!r}")

    def _check_overlaps(self, runs: dict[int, list[Run]]) -> None:
        for task, task_runs in runs.items():
            for run in task_runs:
                if run.overlap:
                    self._overlap(task, f"run {run.nonce} found another run of task {task} holding its lock")
            for before, after in zip(task_runs, task_runs[1:], strict=False):
                if before.end is not None and after.start is not None and before.end > after.start + EPS:
                    self._overlap(task, f"runs {before.nonce} ({before.start}-{before.end}) and {after.nonce} "
                                  f"(from {after.start}) of task {task} overlap")

    def _overlap(self, task: int, text: str) -> None:
        if (task, text) in self._overlaps_seen:
            return
        self._overlaps_seen.add((task, text))
        self.figures.overlaps += 1
        self.figures.problem(f"{self.where}: {text}")

    def verify(self) -> None:
        """The end-of-round checks (see the module docstring)."""
        self.check(after_kill=False)
        self.verify_runs()
        self.verify_views()
        self.verify_snapshot()
        self.verify_outputs()
        self.figures.packed_rounds += self.packed
        self.figures.gpu_rounds += self.gpus
        self.figures.timeline_rounds += "MPIFARMER_TIMELINE_EVERY" in self.env
        self.figures.gpu_runs += sum(1 for record in read_journal(self.workdir).records
                                     if record.get("e") == "end" and record.get("gpus"))
        self._check_no_orphans()

    def verify_runs(self) -> None:
        """Each task finished once, by its last run; every extra run was cut short by a kill."""
        figures, where = self.figures, self.where
        journal = read_journal(self.workdir)
        recorded = finished_records(journal.records)
        interrupted = {(int(r["id"]), r.get("f")) for r in journal.records if r["e"] == "end" and r.get("st") ==
                       "interrupted" and r.get("f") in self.signalled_fids | self.spawner_fids}
        failed = sorted({int(r["id"]) for r in journal.records if r["e"] == "end" and r.get("st") == "failed"})
        if failed:
            figures.problem(f"{where}: tasks recorded failed (every task finishes within its retries): {failed[:10]}")
        retried = self._check_attempts(journal.records)
        runs = read_runs(self.out)
        figures.tasks += self.count
        for task in range(self.count):
            task_runs = runs.get(task, [])
            figures.runs += len(task_runs)
            figures.duplicates += max(0, len(task_runs) - 1)
            records = recorded.get(task, [])
            if len(records) != 1:
                figures.losses += 1
                figures.problem(f"{where}: task {task} has {len(records)} finished records")
                continue
            record = records[0]
            last = task_runs[-1] if task_runs else None
            if last is None or last.end is None or last.farmer != record.get("f") or last.start is None or not (
                    record["t0"] - EPS <= last.start <= record["t1"] + EPS):
                figures.losses += 1
                figures.problem(f"{where}: task {task}: its finished record {record} is not its last, completed "
                                f"run ({last})")
            for extra in task_runs[:-1]:
                if extra.farmer in self.killed_fids or (task, extra.farmer) in interrupted:
                    continue
                if extra.end is None and retried.get((task, extra.farmer), 0) > 0:
                    retried[task, extra.farmer] -= 1  # a failed attempt, recorded as such by its farmer
                    continue
                if extra.farmer in self.spawner_fids and extra.end is None:
                    continue  # killed with the spawner before its start was known to the pool
                figures.unexplained += 1
                figures.problem(f"{where}: task {task} ran more than once, and run {extra.nonce} belonged "
                                f"to farmer {extra.farmer or '?'}, which was neither killed nor recorded it "
                                "interrupted")

    def _check_attempts(self, records: list[dict]) -> Counter:
        """Only flawed tasks fail; each attempt is numbered one more than the last, whatever was killed
        between them (attempts count across restarts); no task uses more than its retries + 1; a
        task that hangs fails by its time limit. Return the retrying records by (task, farmer)."""
        figures, where = self.figures, self.where
        attempts: dict[int, list[dict]] = {}
        for record in records:
            if record["e"] == "end" and record.get("st") == "retrying":
                attempts.setdefault(int(record["id"]), []).append(record)
        retried: Counter = Counter()
        for task, found in attempts.items():
            figures.retries += len(found)
            flaw = self.flaws.get(task)
            numbers = [record.get("att") for record in found]
            if flaw is None:
                figures.problem(f"{where}: task {task}, which cannot fail, was recorded retrying: {found[:2]}")
            elif numbers != list(range(1, len(found) + 1)) or len(found) > flaw.fails:
                figures.problem(f"{where}: task {task} (retries {flaw.fails}) has attempts {numbers}")
            elif {record.get("why") for record in found} != {"timed-out" if flaw.hang else "exited"}:
                figures.problem(f"{where}: task {task} ({flaw}) failed for {[r.get('why') for r in found]}")
            figures.timeouts += sum(record.get("why") == "timed-out" for record in found)
            for record in found:
                retried[task, record.get("f")] += 1
        return retried

    def verify_snapshot(self) -> None:
        """The one snapshot left is the journal generation's, and it holds what the history replays to."""
        from mpifarmer.scheduling.ledger import Ledger
        from mpifarmer.store.snapshot import SnapshotError, read_snapshot

        figures, where = self.figures, self.where
        data = (self.workdir / "journal.jsonl").read_bytes()
        generation = json.loads(data.split(b"\n", 1)[0])["gen"] if data.startswith(b'{"e":"journal"') else 0
        if generation:
            figures.compactions += generation
        found = sorted(path.name for path in self.workdir.glob("snapshot.*"))
        if found != ([f"snapshot.{generation}"] if generation else []):
            figures.problem(f"{where}: snapshots {found} for journal generation {generation}")
            return
        if not generation:
            return
        replayed = Ledger()  # the snapshot of generation G stands for generations 0 .. G-1
        for old in range(generation):
            replayed.apply_all(read_journal_lines((self.workdir / "history" / f"journal.{old}.jsonl").read_bytes()))
        try:
            snapshot = read_snapshot(self.workdir / f"snapshot.{generation}", generation)
        except SnapshotError as error:
            figures.problem(f"{where}: {error}")
            return
        if (list(snapshot.lines), snapshot.status, snapshot.changes, snapshot.owner, snapshot.attempts,
                snapshot.delayed) != \
                (list(replayed.lines), replayed.status, replayed.changes, replayed.owner, replayed.attempts,
                 replayed.delayed):
            figures.problem(f"{where}: snapshot.{generation} differs from a replay of the journal history")

    def verify_views(self) -> None:
        """With no farmer running the views are exact, and the timeline has one event per recorded run."""
        figures, where = self.figures, self.where
        journal = read_journal(self.workdir)
        names = {"toprocess": 0, "running": 0, "failed": 0, "finished": self.count}
        for name, expected in names.items():
            rows = read_view(self.workdir / name)
            if len(rows) != expected or (name == "finished" and sorted(int(t) for t, _ in rows) != list(
                    range(self.count))):
                figures.problem(f"{where}: {name} has {len(rows)} tasks at the end, expected {expected}")
        ends = sum(1 for r in journal.records if r["e"] == "end" and r.get("t0") is not None)
        try:
            timeline = json.loads((self.workdir / "timeline.json").read_text())["traceEvents"]
        except (OSError, ValueError, KeyError) as error:
            figures.problem(f"{where}: no readable timeline.json at the end ({error})")
            return
        complete = sum(1 for event in timeline if event.get("ph") == "X")
        if complete != ends:
            figures.problem(f"{where}: timeline has {complete} task events for {ends} end records")

    def _check_no_orphans(self) -> None:
        deadline = time.monotonic() + 5.0
        while True:
            left = processes_with(self.marker)
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if left:
            self.figures.problem(f"{self.where}: {len(left)} task processes left running after the round")
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def processes_with(marker: str) -> list[int]:
    """PIDs of live processes whose command line contains ``marker``."""
    pids = []
    needle = marker.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as stream:
                if needle in stream.read():
                    pids.append(int(entry))
        except OSError:
            pass
    return pids


# -- driving --------------------------------------------------------------------------------------


def run_mode(mode: str, kills: int, seed: int, root: Path, env: dict[str, str] | None = None,
             per_round: int = 10, log: Callable[[str], None] = lambda text: None) -> Figures:
    """Kill farmers of ``mode`` at least ``kills`` times (in rounds of ``per_round``) and verify each round."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}: expected one of {MODES}")
    if mode == "mpi" and mpiexec() is None:
        raise RuntimeError("mode mpi needs mpiexec (pip install mpich)")
    figures = Figures(mode)
    env = dict(os.environ if env is None else env)
    started = time.monotonic()
    number = 0
    while figures.kills < kills:
        rng = random.Random(f"{seed}-{mode}-{number}")
        round_ = Round(root, mode, number, rng, min(per_round, kills - figures.kills), figures, env, log)
        round_.run()
        figures.rounds += 1
        log(f"{round_.where}: {figures.kills}/{kills} kills, {len(figures.problems)} problems so far")
        number += 1
        if number > 10 * max(1, kills // per_round) + 10:
            figures.problem(f"{mode}: only {figures.kills} kills landed in {number} rounds")
            break
    figures.seconds = time.monotonic() - started
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=(*MODES, "all"), default="all")
    parser.add_argument("--kills", type=int, default=int(os.environ.get("MPIFARMER_CRASH_KILLS", "200")),
                        help="kills per mode (default: $MPIFARMER_CRASH_KILLS or 200)")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("MPIFARMER_CRASH_SEED", "1")))
    parser.add_argument("--per-round", type=int, default=10, help="kills per task list (default 10)")
    parser.add_argument("--keep", metavar="DIR", help="keep every round's files under DIR (without it, they are "
                        "kept in a temporary directory only when a problem was found)")
    args = parser.parse_args(argv)
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="mpifarmer-crash-"))
    root.mkdir(parents=True, exist_ok=True)
    home = root / "home"
    home.mkdir(exist_ok=True)
    env = dict(os.environ, HOME=str(home))  # no runner or handler definitions of the user's
    modes = MODES if args.mode == "all" else (args.mode,)
    results = []
    try:
        for mode in modes:
            figures = run_mode(mode, args.kills, args.seed, root, env, args.per_round,
                               log=lambda text: print(text, file=sys.stderr, flush=True))
            results.append(figures)
            print(figures.summary(), flush=True)
            for problem in figures.problems:
                print(f"  PROBLEM {problem}", flush=True)
    finally:
        if args.keep:
            pass
        elif any(f.problems for f in results):
            print(f"kept every round's files, for the problems above: {root}", flush=True)
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(f"seed {args.seed}, {args.kills} kills asked per mode; total: "
          f"{sum(f.kills for f in results)} kills, {sum(f.runs for f in results)} runs of "
          f"{sum(f.tasks for f in results)} tasks, {sum(f.unexplained for f in results)} unexplained duplicates, "
          f"{sum(f.losses for f in results)} losses, {sum(f.overlaps for f in results)} overlaps, "
          f"{sum(len(f.problems) for f in results)} problems")
    return 1 if any(f.problems for f in results) else 0


if __name__ == "__main__":
    sys.exit(main())
