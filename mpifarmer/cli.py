"""The command line: options, logging, exit codes. The only module that configures logging."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from mpifarmer import __version__, environment
from mpifarmer.errors import EXIT_STOPPED, FarmerError, UsageError, WorkDirError
from mpifarmer.options import LOG_LAYOUTS, FarmerOptions
from mpifarmer.signals import process_flags
from mpifarmer.store.workdir import WorkDir

# The farmer's own modules are imported where a farm is run, so that 'status', 'events' and
# 'log', which need none of them, start quickly.
if TYPE_CHECKING:
    from mpifarmer.resources import PoolResources
    from mpifarmer.runners import Runner
    from mpifarmer.store.store import Store
    from mpifarmer.tasklists import TaskList
    from mpifarmer.tasklists.reader import TaskLines

__all__ = ["main"]

logger = logging.getLogger("mpifarmer")

EXIT_CODES = """\
exit codes:
  0  nothing is left to claim and no task has failed
  1  nothing is left to claim and some task has failed (see WORKDIR/failed)
  2  usage or input error (nothing was run)
  3  stopped early (signal, --timeout, or the spawner process kept dying) with tasks left: run the
     same command again to resume
  4  stopped after --max-failures tasks had failed, with tasks left: fix the tasks, then run again
     with --retry-failed (or a higher --max-failures); not 3, so that a script that runs the farm
     again on 3 does not rerun a failing one
"""

_BOOL_WORDS = {"1", "0", "true", "false", "yes", "no", "on", "off"}


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see mpifarmer --help)")


def _whole_number(minimum: int, what: str = "a whole number") -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum:
            limit = "0 or more" if minimum == 0 else f"at least {minimum}"
            raise argparse.ArgumentTypeError(f"must be {limit}, got {value}")
        return value

    return parse


_count = _whole_number(0)
_positive_count = _whole_number(1)
_positive_int = _whole_number(1, "a whole number of workers")


def _delay(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 seconds or more, got {text}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from mpifarmer.store.locking import LOCK_MODES

    parser = _Parser(
        prog="mpifarmer",
        usage="mpifarmer [run] TASKLIST [options]",
        description="Run every line of TASKLIST as a shell command on a pool of workers. All progress is "
        "kept in a work directory, so the same command run again continues where the last run stopped. "
        "Also: 'mpifarmer status TASKLIST' (how the farm stands), 'mpifarmer events TASKLIST' (its history as "
        "JSON lines), 'mpifarmer log ID TASKLIST' (a task's output); each has --help.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("tasklist", metavar="TASKLIST", help="file with one task per line; blank lines and "
                        "lines starting with # are skipped")
    parser.add_argument("-n", "--proc", type=_positive_int, default=None, metavar="N",
                        help="number of tasks run at once (default: the CPUs this process may use, here "
                        f"{environment.available_cpus()})")
    parser.add_argument("--cores-per-task", type=_positive_count, default=None, metavar="C",
                        help="bind each task to C CPUs of its own (neighbouring ones, near its GPUs) and set "
                        "OMP_NUM_THREADS=C unless it is set; -n then defaults to as many tasks as fit (a task's "
                        "own cores, from the jsonl handler, win)")
    parser.add_argument("--gpus-per-task", type=_positive_count, default=None, metavar="G",
                        help="give each task G GPUs that no other running task has (CUDA_VISIBLE_DEVICES and the "
                        "like); -n then defaults to as many tasks as fit; tasks given none see none")
    parser.add_argument("--gpus", default=None, metavar="LIST",
                        help="the GPUs this farmer may hand out, such as 0,1,2,3 (default: what Slurm gave the step "
                        "or job, else CUDA_VISIBLE_DEVICES or ROCR_VISIBLE_DEVICES, else the node's NVIDIA and "
                        "AMD GPUs)")
    parser.add_argument("--timeout", type=_seconds, default=None, metavar="SECONDS",
                        help="stop after this many seconds: running tasks are interrupted and left to process")
    parser.add_argument("-w", "--workdir", default=None, metavar="DIR",
                        help="work directory for progress and logs (default: TASKLIST_workdir beside TASKLIST)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log every task start and end (PyTaskFarmer's '-v VALUE' is accepted too)")
    parser.add_argument("-r", "--runner", default="default", metavar="NAME",
                        help="runner definition from ~/.mpifarmer/runners.d or ~/.pytaskfarmer/runners.d "
                        "(default: plain bash)")
    parser.add_argument("-t", "--tasklist", dest="handler", default="default", metavar="HANDLER",
                        help="task-list handler from ~/.mpifarmer/tasklists.d or the current directory "
                        "(default: one command per line)")
    parser.add_argument("--retry-failed", action="store_true",
                        help="run the tasks that failed in earlier runs again (with a fresh set of --retries)")
    parser.add_argument("--task-timeout", type=_seconds, default=None, metavar="SECONDS",
                        help="stop a run that lasts longer than this (SIGTERM to its process group, SIGKILL "
                        f"{FarmerOptions.kill_grace:g} s later): it fails with the reason timed-out (a task's own "
                        "timeout, from the task list, wins)")
    parser.add_argument("--retries", type=_count, default=FarmerOptions.retries, metavar="N",
                        help="run a task whose run failed (non-zero exit, a signal the farmer did not send, "
                        "--task-timeout) again, up to N more times, before it is recorded failed (default: "
                        f"{FarmerOptions.retries})")
    parser.add_argument("--retry-delay", type=_delay, default=FarmerOptions.retry_delay, metavar="SECONDS",
                        help="with --retries: hand a failed task out again only this long after its run ended, "
                        f"without holding a slot meanwhile (default: {FarmerOptions.retry_delay:g})")
    parser.add_argument("--max-failures", type=_positive_count, default=None, metavar="K",
                        help="once K tasks of the work directory are recorded failed (after their retries), "
                        "stop as on a stop signal and exit with 4 (every farmer of the work directory does)")
    parser.add_argument("--lock-mode", choices=LOCK_MODES, default="flock",
                        help="how farmers sharing the work directory exclude each other: flock (default), "
                        "soft (marker file, for filesystems without working flock) or strict (fail-closed "
                        "marker claims); see the README")
    parser.add_argument("--lock-dir", default=os.environ.get("MPIFARMER_LOCK_DIR"), metavar="DIR",
                        help="directory for the lock file (default: $MPIFARMER_LOCK_DIR, else the work "
                        "directory, else $SCRATCH if the work directory cannot hold the lock)")
    parser.add_argument("--lease-timeout", type=_seconds, default=300.0, metavar="SECONDS",
                        help="after how long without a heartbeat a farmer on another node is taken for dead "
                        "and its tasks are run again (default: 300)")
    parser.add_argument("--mode", choices=("auto", "local", "mpi"), default="auto",
                        help="local: one process and its pool; mpi: rank 0 coordinates and every rank runs a "
                        "pool; auto (default): mpi when started by srun or mpiexec with more than one process")
    parser.add_argument("--rank-timeout", type=_seconds, default=FarmerOptions.rank_timeout, metavar="SECONDS",
                        help="in MPI mode, after how long without a word a rank is taken for lost and the job "
                        f"is ended (default: {FarmerOptions.rank_timeout:g})")
    parser.add_argument("--requeue", action="store_true",
                        help="in a Slurm batch job: when stopped (signal or --timeout) with tasks left, requeue the "
                        "job with scontrol so that it continues later")
    parser.add_argument("--max-requeues", type=_positive_int, default=10, metavar="N",
                        help="with --requeue: do not requeue a job that has been requeued N times (default: 10)")
    parser.add_argument("--logs", choices=LOG_LAYOUTS, default="files",
                        help="files (default): each task's output in WORKDIR/logs/log_ID; packed: every run's "
                        "output appended to a few pack files per pool, for lists of many tasks (read them with "
                        "'mpifarmer log ID'); see the README")
    parser.add_argument("--progress", type=_delay, default=FarmerOptions.progress, metavar="SECONDS",
                        help="log a progress line (done, failed, running, rate, ETA) every SECONDS; on a terminal "
                        f"a progress bar instead; 0: neither (default: {FarmerOptions.progress:g})")
    parser.add_argument("--version", action="version", version=f"mpifarmer {__version__}")
    return parser


def build_log_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mpifarmer log",
        usage="mpifarmer log ID [TASKLIST] [-w DIR]",
        description="Print the output of task ID, every run of it that was kept (newest last, with a header "
        "line before each when there are several), from either log layout.",
        epilog="exit codes: 0 printed; 1 the task has no output yet; 2 usage or input error")
    parser.add_argument("task", metavar="ID", help="the task's ID: its 0-based index among the task lines")
    parser.add_argument("tasklist", metavar="TASKLIST", nargs="?", default=None,
                        help="the task list (its work directory is TASKLIST_workdir unless -w says otherwise)")
    parser.add_argument("-w", "--workdir", default=None, metavar="DIR", help="the work directory")
    return parser


def log_command(argv: list[str]) -> int:
    """``mpifarmer log ID [TASKLIST] [-w DIR]``."""
    from mpifarmer.tasklog import show_log

    args = build_log_parser().parse_args(argv)
    workdir = _workdir_of(args, "log")
    try:
        return show_log(workdir, args.task, sys.stdout.buffer)
    except BrokenPipeError:  # | head
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def build_report_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mpifarmer report",
        usage="mpifarmer report [TASKLIST] [-w DIR] [-o FILE]",
        description="Summarize what the farm did, to size the next run: wall time, tasks by outcome, run "
        "durations, failures by exit code and reason, retries, and utilization (busy slot-seconds over the "
        "slot-seconds the pools offered) per host/rank and overall, with the tail. Read-only: safe while farmers "
        "run. Also reads a work directory PyTaskFarmer made (from its timeline.json).",
        epilog="exit codes: 0 printed; 2 usage or input error (no such work directory, -o without matplotlib)")
    parser.add_argument("tasklist", metavar="TASKLIST", nargs="?", default=None,
                        help="the task list (its work directory is TASKLIST_workdir unless -w says otherwise)")
    parser.add_argument("-w", "--workdir", default=None, metavar="DIR", help="the work directory")
    parser.add_argument("-o", "--output", default=None, metavar="FILE",
                        help="also draw busy slots over time per host/rank and the histogram of run durations into "
                        "FILE: .png, .svg, or .html (one self-contained page with the text); needs matplotlib "
                        "(pip install 'mpifarmer[report]')")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object instead of text")
    return parser


def report_command(argv: list[str]) -> int:
    """``mpifarmer report [TASKLIST] [-w DIR] [-o FILE]``."""
    from mpifarmer.observe.report import write_report

    args = build_report_parser().parse_args(argv)
    workdir = _workdir_of(args, "report")
    try:
        return write_report(workdir, args.output, sys.stdout, as_json=args.json)
    except BrokenPipeError:  # | head
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _workdir_of(args: argparse.Namespace, command: str) -> WorkDir:
    if args.workdir is None and args.tasklist is None:
        raise UsageError(f"give the task list or -w/--workdir DIR of the farm (see mpifarmer {command} --help)")
    return WorkDir(args.workdir or f"{args.tasklist}_workdir")


def build_status_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mpifarmer status",
        usage="mpifarmer status [TASKLIST] [-w DIR] [--json] [--watch [SECONDS]] [--lease-timeout SECONDS]",
        description="Show a farm's state: tasks finished, failed, running and pending, every farmer that worked "
        "on it, the rate over the last 1, 5 and 15 minutes, an ETA, the failures and the longest-running tasks. "
        "Read-only: safe at any time, on any node that shares the work directory.",
        epilog="exit codes: 0 every task finished; 1 nothing left, some failed; 3 tasks left (pending or running); "
        "2 usage error or no such work directory; with --watch, 0 when interrupted")
    parser.add_argument("tasklist", metavar="TASKLIST", nargs="?", default=None,
                        help="the task list (its work directory is TASKLIST_workdir unless -w says otherwise)")
    parser.add_argument("-w", "--workdir", default=None, metavar="DIR", help="the work directory")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object (with --watch, one per line); see the README for its keys")
    parser.add_argument("--watch", type=_seconds, nargs="?", const=2.0, default=None, metavar="SECONDS",
                        help="show it again every SECONDS (default 2), in place on a terminal, until Ctrl-C")
    parser.add_argument("--lease-timeout", type=_seconds, default=300.0, metavar="SECONDS",
                        help="the farmers' --lease-timeout: a farmer on another node whose heartbeat is older is "
                        "shown dead (default: 300)")
    return parser


def status_command(argv: list[str]) -> int:
    """``mpifarmer status [TASKLIST] [-w DIR] [--json] [--watch [SECONDS]]``."""
    from mpifarmer.observe.show import show_status

    args = build_status_parser().parse_args(argv)
    workdir = _workdir_of(args, "status")
    logging.getLogger("mpifarmer.scheduling").setLevel(logging.ERROR)  # replay warnings are the farmers' to give
    try:
        return show_status(workdir, as_object=args.json, watch=args.watch, lease=args.lease_timeout)
    except BrokenPipeError:  # | head
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def build_events_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mpifarmer events",
        usage="mpifarmer events [TASKLIST] [-w DIR] [--follow] [--new]",
        description="Print the work directory's history as JSON lines, one event each (tasks added, claimed, "
        "started and ended, farmers joined, left and found dead), in the versioned schema the README documents.",
        epilog="exit codes: 0 printed (with --follow: interrupted); 2 usage error or no such work directory")
    parser.add_argument("tasklist", metavar="TASKLIST", nargs="?", default=None,
                        help="the task list (its work directory is TASKLIST_workdir unless -w says otherwise)")
    parser.add_argument("-w", "--workdir", default=None, metavar="DIR", help="the work directory")
    parser.add_argument("--follow", "-f", action="store_true",
                        help="after the events so far, print each new one as it is recorded, like tail -f, until "
                        "Ctrl-C")
    parser.add_argument("--new", action="store_true",
                        help="leave out the events recorded so far (with --follow: only what happens from now on)")
    return parser


def events_command(argv: list[str]) -> int:
    """``mpifarmer events [TASKLIST] [-w DIR] [--follow] [--new]``."""
    from mpifarmer.observe.show import show_events

    args = build_events_parser().parse_args(argv)
    workdir = _workdir_of(args, "events")
    try:
        return show_events(workdir, follow=args.follow, new_only=args.new)
    except BrokenPipeError:  # | head
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _normalise(argv: list[str]) -> list[str]:
    """Accept ``mpifarmer run ...`` and PyTaskFarmer's ``-v VALUE`` / ``--verbose VALUE``."""
    if len(argv) > 1 and argv[0] == "run":
        argv = argv[1:]
    out: list[str] = []
    skip = False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg in ("-v", "--verbose") and i + 1 < len(argv) and argv[i + 1].lower() in _BOOL_WORDS:
            skip = True
            if argv[i + 1].lower() in ("0", "false", "no", "off"):
                continue
        out.append(arg)
    return out


class _Context(logging.Filter):
    """Adds the host, and the rank in MPI mode, to every log record."""

    rank: int | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        host = environment.hostname()
        record.where = host if self.rank is None else f"{host}:{self.rank}"
        return True


class _Stderr:
    """Whatever ``sys.stderr`` is at the time of each write: a progress bar on a terminal puts a
    proxy there that prints log lines above the bar (see mpifarmer.observe.bar)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(_Stderr())  # type: ignore[arg-type]
    handler.setFormatter(logging.Formatter("%(asctime)s %(where)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    handler.addFilter(_Context())
    root = logging.getLogger("mpifarmer")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False


def main(argv: list[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    args_list = _normalise(given)
    _setup_logging(False)
    try:
        # a task list named log, status, events or report runs with 'mpifarmer run NAME'
        commands = {"log": log_command, "status": status_command, "events": events_command,
                    "report": report_command}
        if given[:1] and given[0] in commands:
            return commands[given[0]](given[1:])
        args = build_parser().parse_args(args_list)
        return run(args)
    except FarmerError as error:
        print(f"mpifarmer: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 3


def run(args: argparse.Namespace) -> int:
    from mpifarmer import config
    from mpifarmer.farmer import run_coordinator

    runner = config.make_runner(args.runner, config.load_runner_definitions())
    handler = config.make_tasklist(args.handler, config.load_tasklist_definitions())
    mode = args.mode
    if mode == "auto":
        mode = "mpi" if environment.launched_processes() > 1 else "local"
    if mode == "local":
        resources = _resources(args)
        store, tasks, options = _open(args, handler, resources)
        return _finished(args, run_coordinator(options, store, tasks, handler, runner, resources=resources))
    return _run_mpi(args, runner, handler)


def _resources(args: argparse.Namespace) -> PoolResources:
    """What this process's pool hands out: its node's CPUs and GPUs, as the options ask."""
    from mpifarmer.resources import plan

    try:
        inventory = environment.hardware(args.gpus)
    except ValueError as error:
        raise UsageError(f"--gpus {args.gpus}: {error}") from None
    return plan(inventory, proc=args.proc, cpus_default=environment.available_cpus(),
                cores_per_task=args.cores_per_task, gpus_per_task=args.gpus_per_task,
                gpus_given=args.gpus is not None)


def _finished(args: argparse.Namespace, code: int) -> int:
    """What the coordinator does after the farm: requeue the Slurm job if asked and needed."""
    if args.requeue and code == EXIT_STOPPED:
        from mpifarmer.requeue import requeue

        requeue(environment.slurm(), args.max_requeues)
    return code


def _open(args: argparse.Namespace, handler: TaskList, resources: PoolResources,
          ranks: int = 1) -> tuple[Store, TaskLines, FarmerOptions]:
    """Read the task list and open the work directory: everything that can fail on bad input."""
    from mpifarmer.resources import line_check
    from mpifarmer.store.locking import WorkLock, locate_lock
    from mpifarmer.store.store import Identity, Store
    from mpifarmer.tasklists.reader import check_lines, read_task_lines

    task_list = Path(args.tasklist)
    tasks = read_task_lines(task_list)
    if not tasks.texts:
        raise FarmerError(f"{task_list}: has no tasks (only blank or comment lines); give a list with "
                          "one command per line")
    check = line_check(handler, resources)
    if check is not None:  # before the work directory is touched: a bad line writes nothing
        check_lines(task_list, tasks.texts, tasks.linenos, check)
    workdir = WorkDir(args.workdir or f"{task_list}_workdir")
    created = not workdir.root.exists()
    try:
        workdir.prepare()
        lock_dir = Path(args.lock_dir) if args.lock_dir else None
        lock_path = locate_lock(workdir.root, args.lock_mode, lock_dir, os.environ.get("SCRATCH"))
        store = Store(workdir, WorkLock(lock_path, args.lock_mode, stop_requested=_stop_requested),
                      lease=args.lease_timeout)
        if args.lock_mode == "strict":
            store.lock = WorkLock(lock_path, "strict", is_dead=store.is_dead_lock_owner,
                                  stop_requested=_stop_requested)
        if handler.may_give_attributes():
            store.attributes = lambda line: handler.describe(line).attrs
        try:
            store.open(tasks, Identity.of_this_process(ranks, args.lock_mode, resources.slots),
                       task_list=str(task_list), retry_failed=args.retry_failed)
        except OSError as error:  # disk full, quota, I/O error: nothing was run
            raise WorkDirError(workdir.root, f"cannot write the journal ({error.strerror or error}); free space "
                               "or choose another -w/--workdir, then run the same command again") from None
    except FarmerError:
        if created and not workdir.journal.exists():
            shutil.rmtree(workdir.root, ignore_errors=True)
        raise
    return store, tasks, _options(args, resources)


def _stop_requested() -> bool:
    return process_flags().stop_requests > 0


def _options(args: argparse.Namespace, resources: PoolResources) -> FarmerOptions:
    return FarmerOptions(task_list=Path(args.tasklist), proc=resources.slots, cores_per_task=args.cores_per_task,
                         gpus_per_task=args.gpus_per_task or 0, gpus=args.gpus,
                         timeout=args.timeout, verbose=args.verbose, retry_failed=args.retry_failed,
                         rank_timeout=args.rank_timeout, logs=args.logs, task_timeout=args.task_timeout,
                         retries=args.retries, retry_delay=args.retry_delay, max_failures=args.max_failures,
                         progress=args.progress)


def _run_mpi(args: argparse.Namespace, runner: Runner, handler: TaskList) -> int:
    """Every rank: rank 0 opens the work directory and coordinates, the others work."""
    from mpifarmer.farmer import run_coordinator, run_worker

    try:
        from mpifarmer.transport.mpi import MpiTransport
    except ImportError as error:
        raise FarmerError(f"MPI mode needs mpi4py ({error}); install it (pip install mpi4py mpich), or run "
                          "with --mode local") from None
    transport = MpiTransport()
    launched = environment.launched_processes()
    if transport.size != launched:
        raise FarmerError(
            f"this process was started as one of {launched} but MPI sees a world of {transport.size}: the MPI "
            "library and the launcher do not match (under srun try --mpi=pmi2 for MPICH, the default, or "
            "--mpi=pmix for Open MPI; see srun --mpi=list), or run independent farmers with --mode local")
    _Context.rank = transport.rank
    if transport.rank == 0:
        try:
            resources = _resources(args)
            store, tasks, options = _open(args, handler, resources, transport.size)
        except FarmerError as error:
            transport.broadcast({"error": str(error)})
            raise
        transport.broadcast({"fid": store.fid, "workdir": str(store.workdir.root)})
        remote = transport if transport.size > 1 else None
        return _finished(args, run_coordinator(options, store, tasks, handler, runner, remote=remote,
                                               resources=resources))
    setup = transport.broadcast()
    if "error" in setup:
        return 2  # rank 0 reports it
    workdir = WorkDir(setup["workdir"])
    resources = _resources(args)  # every rank its own node's (an error here ends the job: the launcher sees 2)
    return run_worker(_options(args, resources), runner, transport, str(workdir.root), setup["fid"], workdir.log,
                      args.rank_timeout, resources=resources)
