"""Capacity: what a pool offers, what a task asks for, which queued task starts next."""

from __future__ import annotations

import pytest

from mpifarmer.scheduling.capacity import DEFAULT_REQUEST, Units, never_fits, next_to_start, request_of


def test_a_task_asks_for_one_slot_unless_it_says_otherwise() -> None:
    assert request_of({}) == DEFAULT_REQUEST == {"slots": 1}
    assert request_of({"env": {"A": "1"}}) == {"slots": 1}
    assert request_of({"resources": {"slots": 3}}) == {"slots": 3}
    assert request_of({"resources": {"gpus": 1}}) == {"slots": 1, "gpus": 1}  # still takes a slot


@pytest.mark.parametrize(("request_", "why"), [
    ({"slots": 4}, None),
    ({"slots": 5}, "asks for 5 slots, and this pool has 4"),
    ({"slots": 1, "gpus": 1}, "asks for 1 gpus, and this pool has 0"),
    ({"slots": -1}, "a count must be a whole number"),
    ({"slots": 1.5}, "a count must be a whole number"),
    ({"slots": True}, "a count must be a whole number"),
])
def test_requests_that_can_never_fit_say_why(request_: dict, why: str | None) -> None:
    found = never_fits(request_, {"slots": 4})
    assert (found is None) if why is None else (found is not None and why in found), found


def test_units_are_handed_out_lowest_first_and_come_back() -> None:
    units = Units({"slots": 4})
    first = units.take({"slots": 1})
    second = units.take({"slots": 2})
    assert first == {"slots": [0]} and second == {"slots": [1, 2]}
    assert units.fits({"slots": 1}) and not units.fits({"slots": 2})
    units.give_back(first)
    assert units.take({"slots": 2}) == {"slots": [0, 3]}
    units.give_back(second)
    assert units.free["slots"] == [1, 2]


def test_the_oldest_waiting_task_starts_first_and_nothing_overtakes_it() -> None:
    units = Units({"slots": 4})
    units.take({"slots": 3})  # one slot free
    waiting = [{"slots": 2}, {"slots": 1}, {"slots": 1}]
    assert next_to_start(waiting, units) is None  # the 1-slot tasks behind it wait too
    assert next_to_start(iter(waiting[1:]), units) == 0
    assert next_to_start([], units) is None
    units.give_back({"slots": [0]})
    assert next_to_start(waiting, units) == 0
