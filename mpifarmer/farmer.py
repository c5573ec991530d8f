"""The main loops: rank 0 (coordinator and its own worker) and the other ranks (a worker).

In local mode there is one rank and no MPI; in MPI mode every rank runs this module's loop
over an MPI transport. Waiting is the same in both: sleep until a signal, news from the
pool's spawner or the next deadline; in MPI mode also poll for messages with a backoff that
doubles while idle, so that an idle rank costs almost no CPU and a busy one answers at once.
While the spawner has queued work to start on its own (short tasks), the loop ignores its news
for a few milliseconds, so that task ends are handled in batches (see LULL_MIN).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from mpifarmer.coordinator import Coordinator
from mpifarmer.environment import hostname
from mpifarmer.observe.progress import BAR_EVERY, ProgressFigures, ProgressReporter, progress_line
from mpifarmer.options import FarmerOptions
from mpifarmer.pool import PackedLogs, Pool
from mpifarmer.resources import PoolResources
from mpifarmer.runners import Runner
from mpifarmer.scheduling import policy
from mpifarmer.signals import SignalFlags, process_flags
from mpifarmer.store.store import Store
from mpifarmer.store.workdir import WorkDir
from mpifarmer.tasklists import TaskList
from mpifarmer.tasklists.reader import TaskLines
from mpifarmer.transport import Transport
from mpifarmer.transport.backoff import Backoff
from mpifarmer.transport.inprocess import Router
from mpifarmer.transport.protocol import Bye
from mpifarmer.worker import Worker

__all__ = ["run_coordinator", "run_worker"]

logger = logging.getLogger(__name__)

#: Longest pause between polls of MPI messages when idle.
POLL_MAX = 0.01

#: While the pool's spawner holds queued work for at least LULL_MIN seconds, the loop does not
#: wake for each task's end: it lets ends pile up for half the lull, at most POLL_MAX, and then
#: records them together. Short tasks then cost one wake-up, journal write and claim per batch,
#: not per task; stop signals still wake the loop at once. A farmer killed hard runs again at
#: most POLL_MAX's worth of ended, unrecorded tasks per slot (a longer wait saved no more time).
LULL_MIN = 0.002


LogPath = Callable[[int], Path]


def make_pool(options: FarmerOptions, runner: Runner, workdir_root: str, fid: str, log_path: LogPath,
              rank: int = 0, resources: PoolResources | None = None) -> Pool:
    packed = None
    if options.logs == "packed":
        workdir = WorkDir(workdir_root)
        packed = PackedLogs(os.fspath(workdir.pack_stem(fid, rank)), {"f": fid, "rank": rank, "host": hostname()},
                            spool=tempfile.gettempdir(), fallback=os.fspath(workdir.logs), limit=options.pack_limit)
    return Pool(options.proc, runner, log_path=log_path, packed=packed, resources=resources, extra_env={
        "MPIFARMER_WORKDIR": workdir_root, "MPIFARMER_FARMER": fid})


def run_coordinator(options: FarmerOptions, store: Store, tasks: TaskLines, handler: TaskList, runner: Runner,
                    remote: Transport | None = None, resources: PoolResources | None = None) -> int:
    """Rank 0 (or the only rank): coordinate, and run tasks on this node too. ``resources``:
    what its pool hands out (None: ``options.proc`` slots, nothing bound)."""
    flags = process_flags()
    router = Router(remote)
    pool = make_pool(options, runner, str(store.workdir.root), store.fid, store.workdir.log, resources=resources)
    worker = Worker(router.worker(), pool, flags, verbose=options.verbose, silence_limit=None,
                    kill_grace=options.kill_grace, start_flush=options.start_flush, task_timeout=options.task_timeout)
    coordinator = Coordinator(options, store, tasks, handler, router.coordinator(), flags, resources=resources)
    backoff = Backoff(POLL_MAX)
    flags.watch(pool.fileno())
    reporter, end_progress = _progress(options.progress, time.monotonic())
    try:
        coordinator.log_start()
        worker.hello()
        try:
            while True:
                busy = worker.step()
                busy |= coordinator.step()
                busy |= worker.step()
                if coordinator.done:
                    break
                deadline = min(coordinator.next_deadline(), worker.next_deadline())
                if reporter is not None:
                    now = time.monotonic()
                    if now >= reporter.due_at:
                        reporter.observe(now, *coordinator.progress_counts())
                    deadline = min(deadline, reporter.next_at)
                _wait(flags, backoff, busy, deadline, remote, pool.lull(), pool.due_in(time.time()))
        finally:
            end_progress()  # before the last log lines: a bar leaves nothing behind
        code = coordinator.finish()
        while not worker.done:  # rank 0's worker receives Finish in process: nothing runs by now
            worker.step()
        if remote is not None and not coordinator.lost:
            coordinator.await_goodbyes(timeout=10.0)
    except BaseException:
        pool.signal_all(signal.SIGKILL)  # never leave tasks running behind a crash
        raise
    finally:
        pool.close()
    if remote is not None and not remote.flush(5.0):
        logger.warning("some ranks did not take their last message")
    if coordinator.lost and remote is not None:
        coordinator.log_stop(code)
        logger.error("ending the MPI job: a lost rank would leave the others hanging in MPI_Finalize")
        remote.abort(code)
    coordinator.log_stop(code)
    return code


def _progress(interval: float, start: float) -> tuple[ProgressReporter | None, Callable[[], None]]:
    """What shows progress: on a terminal a bar redrawn every BAR_EVERY seconds, in a batch log a
    line every ``interval`` seconds (``--progress``; 0: nothing); and how to end the showing."""
    if interval <= 0:
        return None, lambda: None
    if sys.stderr.isatty():
        from mpifarmer.observe.bar import TerminalBar  # rich: only on a terminal, it is slow to import

        bar = TerminalBar(sys.stderr)
        return ProgressReporter(BAR_EVERY, bar.show, start), bar.close

    def log(figures: ProgressFigures) -> None:
        logger.info("%s", progress_line(figures))

    return ProgressReporter(interval, log, start), lambda: None


def run_worker(options: FarmerOptions, runner: Runner, transport: Transport, workdir_root: str, fid: str,
               log_path: LogPath, rank_timeout: float, resources: PoolResources | None = None) -> int:
    """A rank other than 0: run what rank 0 sends until it says finish."""
    flags = process_flags()
    pool = make_pool(options, runner, workdir_root, fid, log_path, transport.rank, resources)
    worker = Worker(transport, pool, flags, verbose=options.verbose, silence_limit=rank_timeout,
                    kill_grace=options.kill_grace, start_flush=options.start_flush, task_timeout=options.task_timeout,
                    end_wait=policy.END_REPORT_WAIT)
    backoff = Backoff(POLL_MAX)
    flags.watch(pool.fileno())
    try:
        worker.hello()
        while not worker.done:
            busy = worker.step()
            _wait(flags, backoff, busy, worker.next_deadline(), transport, pool.lull(), pool.due_in(time.time()))
    except BaseException:
        pool.signal_all(signal.SIGKILL)
        raise
    finally:
        pool.close()
    transport.send(0, Bye())
    transport.flush(5.0)
    # Rank 0 carries the farm's exit code (srun and mpiexec report the highest of all ranks). A
    # worker that ended normally exits 0, after saying goodbye: a launcher such as Hydra kills
    # the ranks still running when one exits non-zero, which would turn a clean stop into 137.
    return 0 if worker.code is not None else 3


def _wait(flags: SignalFlags, backoff: Backoff, busy: bool, deadline: float, remote: Transport | None,
          lull: float, due: float | None = None) -> None:
    """Sleep until the next thing to do. ``due``: seconds until the pool has news of its own
    (a held run's end), treated like its descriptor: ignored during a lull, awaited otherwise."""
    timeout = max(0.0, deadline - time.monotonic())
    if lull >= LULL_MIN:
        # The pool is provided for: sleep through its task ends. MPI messages are still polled
        # every POLL_MAX, which is soon enough for ranks that hold a prefetch of work, and
        # costs far less CPU than polling at the backoff's busy pace would.
        flags.wait(0.0 if busy and remote is None else min(timeout, lull / 2, POLL_MAX), watched=False)
        return
    if due is not None:
        timeout = min(timeout, due)
    if remote is not None:
        if busy:
            backoff.reset()
        timeout = min(timeout, backoff.next())
    elif busy:
        timeout = 0.0
    flags.wait(timeout)
