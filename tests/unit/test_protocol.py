"""The per-task message tuples pickle as their class and fields, and come back equal."""

from __future__ import annotations

import pickle

import pytest

from mpifarmer.task import EndReason
from mpifarmer.transport import protocol as msg

TUPLES = [
    msg.TaskWork(5, "echo hi", "echo hi", {"name": "a"}, (2, 3)),
    msg.TaskWork(6, "true", "true"),
    msg.TaskStart(1, 4242, 987654321, 3, 1764815400.25, "0-3", "1"),
    msg.TaskEnd(1, -9, 1764815400.25, 1764815401.5, 3, EndReason.SIGNALLED, {"retries": 1}, "0-3", "1"),
    msg.TaskEnd(2, 0, 1.0, 2.0, 0),
]


@pytest.mark.parametrize("item", TUPLES, ids=[type(t).__name__ for t in TUPLES])
def test_a_task_tuple_is_rebuilt_by_tuple_new_and_round_trips(item: tuple) -> None:
    rebuild, args = item.__reduce_ex__(pickle.HIGHEST_PROTOCOL)
    assert rebuild is tuple.__new__ and args == (type(item), tuple(item))
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        back = pickle.loads(pickle.dumps(item, protocol=protocol))
        assert type(back) is type(item) and back == item and back._asdict() == item._asdict()


def test_batches_round_trip() -> None:
    ended = msg.Ended([t for t in TUPLES if isinstance(t, msg.TaskEnd)])
    back = pickle.loads(pickle.dumps(ended, protocol=5))
    assert type(back) is msg.Ended and back == ended and [type(t) for t in back.ends] == [msg.TaskEnd] * 2


def test_work_carries_plain_tuples_and_reads_back_as_task_work() -> None:
    works = [t for t in TUPLES if isinstance(t, msg.TaskWork)]
    work = msg.Work([tuple(t) for t in works])
    back = pickle.loads(pickle.dumps(work, protocol=5))
    assert all(type(t) is tuple for t in back.tasks)
    read = list(back.works())
    assert read == works and all(type(t) is msg.TaskWork for t in read)
    assert [t.attempt for t in read] == [(2, 3), None]
