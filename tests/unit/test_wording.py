"""Counted nouns agree with their numbers."""

from mpifarmer.wording import counted


def test_counted_nouns() -> None:
    assert counted(1, "worker") == "1 worker"
    assert counted(0, "worker") == "0 workers"
    assert counted(2, "process", "processes") == "2 processes"
    assert counted(1, "process", "processes") == "1 process"
