"""The coordinator over an in-process transport: fake worker ranks, real store, no MPI."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from mpifarmer.coordinator import Coordinator
from mpifarmer.options import FarmerOptions
from mpifarmer.scheduling.ledger import Status
from mpifarmer.scheduling.policy import EXIT_DONE, EXIT_FAILED, EXIT_STOPPED
from mpifarmer.signals import SignalFlags
from mpifarmer.store.locking import WorkLock
from mpifarmer.store.store import Identity, Store
from mpifarmer.store.workdir import WorkDir
from mpifarmer.tasklists import ListTaskList
from mpifarmer.tasklists.reader import read_task_lines
from mpifarmer.transport import protocol as msg
from mpifarmer.transport.inprocess import InProcessHub, Router


class FakeRank:
    """A worker rank played by the test: it 'runs' whatever it is sent when told to."""

    def __init__(self, job: FakeJob, rank: int, slots: int = 2) -> None:
        self.transport = job.router.worker() if rank == 0 else job.hub.transport(rank)
        self.rank = rank
        self.slots = slots
        self.queue: list[msg.TaskWork] = []
        self.received: list[msg.Message] = []
        self.max_held = 0

    def hello(self, version: int = msg.VERSION) -> None:
        self.transport.send(0, msg.Hello(f"node{self.rank}", self.slots, 1000 + self.rank, version))

    def poll(self) -> None:
        for _, message in self.transport.poll():
            self.received.append(message)
            if isinstance(message, msg.Work):
                self.queue.extend(message.works())
        self.max_held = max(self.max_held, len(self.queue))

    def finish_all(self, code: int = 0, reason: str = "exited") -> list[int]:
        done, self.queue = self.queue, []
        now = time.time()
        self.transport.send(0, msg.Ended([msg.TaskEnd(w.id, code, now - 0.01, now, 0, reason) for w in done]))
        return [w.id for w in done]

    def got(self, kind: type) -> list[msg.Message]:
        return [m for m in self.received if isinstance(m, kind)]


class FakeJob:
    """Rank 0's coordinator reaches its own worker in process, the others over the hub."""

    def __init__(self, ranks: int) -> None:
        self.hub = InProcessHub(ranks)
        self.router = Router(self.hub.transport(0) if ranks > 1 else None)
        self.down = self.hub.down


def make(tmp_path: Path, count: int, ranks: int, *, rank_timeout: float = 30.0, timeout: float | None = None):
    task_list = tmp_path / "tasks.txt"
    task_list.write_text("".join(f"echo {i}\n" for i in range(count)))
    tasks = read_task_lines(task_list)
    workdir = WorkDir(tmp_path / "wd")
    workdir.prepare()
    store = Store(workdir, WorkLock(workdir.root / "lock"))
    store.open(tasks, Identity.of_this_process(ranks), task_list=str(task_list))
    job = FakeJob(ranks)
    flags = SignalFlags()
    options = FarmerOptions(task_list=task_list, proc=2, rank_timeout=rank_timeout, timeout=timeout)
    coordinator = Coordinator(options, store, tasks, ListTaskList(), job.router.coordinator(), flags)
    return coordinator, job, flags, store


def greet(fakes: list[FakeRank]) -> list[FakeRank]:
    """Every fake rank says hello; return them."""
    for fake in fakes:
        fake.hello()
    return fakes


def exchange(coordinator: Coordinator, fakes: list[FakeRank]) -> None:
    """One coordinator step, then every fake rank reads what it was sent."""
    coordinator.step()
    for fake in fakes:
        fake.poll()


def drive(coordinator: Coordinator, fakes: list[FakeRank], rounds: int = 200, code: int = 0) -> None:
    for _ in range(rounds):
        coordinator.step()
        if coordinator.done:
            return
        for fake in fakes:
            fake.poll()
            fake.finish_all(code)
    raise AssertionError("the coordinator did not finish")


def test_every_task_is_sent_once_spread_over_ranks_and_recorded(tmp_path: Path) -> None:
    coordinator, hub, _, store = make(tmp_path, 60, ranks=3)
    fakes = greet([FakeRank(hub, rank) for rank in range(3)])
    drive(coordinator, fakes)
    assert coordinator.finish() == EXIT_DONE
    sent = [w.id for fake in fakes for run in fake.got(msg.Work) for w in run.works()]
    assert sorted(sent) == list(range(60))
    assert all(fake.got(msg.Work) for fake in fakes), "every rank got work"
    assert store.ledger.count(Status.FINISHED) == 60
    for fake in fakes:
        fake.poll()
        assert fake.got(msg.Finish) == [msg.Finish(EXIT_DONE)]


def test_no_rank_holds_more_than_its_slots_plus_prefetch(tmp_path: Path) -> None:
    coordinator, hub, _, _ = make(tmp_path, 50, ranks=2)
    fakes = greet([FakeRank(hub, 0, slots=2), FakeRank(hub, 1, slots=3)])
    for _ in range(5):  # nobody finishes anything: holdings must stay bounded
        exchange(coordinator, fakes)
    assert fakes[0].max_held == 2  # rank 0: its slots, no prefetch
    assert fakes[1].max_held == 3 + 1  # a remote rank: its slots and one ahead


def test_failures_give_exit_code_1(tmp_path: Path) -> None:
    coordinator, hub, _, store = make(tmp_path, 5, ranks=1)
    fake = FakeRank(hub, 0)
    fake.hello()
    drive(coordinator, [fake], code=2)
    assert coordinator.finish() == EXIT_FAILED
    assert store.ledger.count(Status.FAILED) == 5


def test_a_stop_from_any_rank_drains_every_rank(tmp_path: Path) -> None:
    coordinator, hub, _, store = make(tmp_path, 40, ranks=3)
    fakes = greet([FakeRank(hub, rank) for rank in range(3)])
    exchange(coordinator, fakes)
    fakes[2].transport.send(0, msg.Stop("received SIGUSR1"))
    coordinator.step()
    assert coordinator.stop_reason == "rank 2 received SIGUSR1"
    for fake in fakes:
        fake.poll()
        assert fake.got(msg.Drain)
        # each rank kills what it runs and gives back what it had not started
        running, waiting = fake.queue[:2], fake.queue[2:]
        fake.queue = running
        fake.finish_all(-signal.SIGTERM, reason="stopped")
        if waiting:
            fake.transport.send(0, msg.Released([w.id for w in waiting]))
    coordinator.step()
    assert coordinator.done
    assert coordinator.finish() == EXIT_STOPPED
    assert store.ledger.count(Status.PENDING) == 40 and store.ledger.count(Status.FAILED) == 0



def test_a_stop_before_a_rank_says_hello_still_tells_it_to_finish(tmp_path: Path) -> None:
    # rank 0 must not leave before a late rank: the launcher would kill it and report that
    coordinator, hub, flags, store = make(tmp_path, 10, ranks=3)
    early, late = greet([FakeRank(hub, 0), FakeRank(hub, 1)]), FakeRank(hub, 2)
    flags.stop_requests, flags.last = 1, signal.SIGTERM
    exchange(coordinator, early)
    assert coordinator.done
    assert coordinator.finish() == EXIT_STOPPED
    late.hello()  # its hello crosses the Finish
    late.poll()
    assert late.got(msg.Finish) == [msg.Finish(EXIT_STOPPED)]
    for fake in [*early, late]:
        fake.transport.send(0, msg.Bye())
    started = time.monotonic()
    coordinator.await_goodbyes(timeout=30.0)
    assert time.monotonic() - started < 10.0, "waited for a goodbye that had arrived"
    assert store.ledger.count(Status.PENDING) == 10

def test_a_silent_rank_is_lost_and_the_farm_stops(tmp_path: Path) -> None:
    coordinator, hub, _, store = make(tmp_path, 20, ranks=3, rank_timeout=0.2)
    fakes = greet([FakeRank(hub, rank) for rank in range(3)])
    exchange(coordinator, fakes)
    hub.down.add(2)  # rank 2's node vanishes with its tasks
    deadline = time.monotonic() + 5
    while not coordinator.done:
        assert time.monotonic() < deadline, "the lost rank was never noticed"
        time.sleep(0.05)
        coordinator.step()
        for fake in fakes[:2]:  # the live ranks keep beating
            fake.transport.send(0, msg.Beat())
            fake.poll()
            if coordinator.stop_reason:
                fake.finish_all(-signal.SIGTERM, reason="stopped")
    assert coordinator.lost == {2}
    assert coordinator.finish() == EXIT_STOPPED
    assert store.ledger.count(Status.PENDING) == 20  # the bye gives back what rank 2 held, too


@pytest.mark.parametrize(("stop_after", "expected"), [(0.1, "interrupted"), (None, "failed")])
def test_a_signal_death_waits_to_see_whether_a_stop_follows(tmp_path: Path, stop_after: float | None,
                                                            expected: str) -> None:
    coordinator, hub, flags, store = make(tmp_path, 1, ranks=1)
    fake = FakeRank(hub, 0)
    fake.hello()
    coordinator.step()
    fake.poll()
    fake.finish_all(-signal.SIGTERM)
    coordinator.step()
    assert coordinator._held, "held back, not yet recorded"
    if stop_after is not None:
        time.sleep(stop_after)
        flags.stop_requests, flags.last = 1, signal.SIGTERM
    deadline = time.monotonic() + 5
    while not coordinator.done:
        assert time.monotonic() < deadline
        time.sleep(0.05)
        coordinator.step()
    coordinator.finish()
    journal = [json.loads(line) for line in store.workdir.journal.read_text().splitlines()]
    assert [record["st"] for record in journal if record["e"] == "end"] == [expected]


def test_a_rank_of_another_version_stops_the_farm(tmp_path: Path) -> None:
    coordinator, hub, _, _ = make(tmp_path, 3, ranks=2)
    FakeRank(hub, 0).hello()
    FakeRank(hub, 1).hello(version=msg.VERSION + 1)
    coordinator.step()
    assert coordinator.stop_reason == "mixed mpifarmer versions"


def test_timeout_drains(tmp_path: Path) -> None:
    coordinator, hub, _, _ = make(tmp_path, 3, ranks=1, timeout=0.05)
    fake = FakeRank(hub, 0)
    fake.hello()
    coordinator.step()
    time.sleep(0.1)
    coordinator.step()
    assert coordinator.stop_reason is not None and "--timeout" in coordinator.stop_reason
    fake.poll()
    assert fake.got(msg.Drain)
