"""The report's figures from crafted runs and sessions, with values worked out by hand."""

from __future__ import annotations

import math

import pytest

from mpifarmer.observe.usage import (
    Durations,
    Session,
    busy_curve,
    busy_seconds,
    capacity,
    durations,
    percentile,
    tail_below_half,
    utilization,
)


def columns(*runs: tuple[float, float, int]) -> tuple[list[float], list[float], list[int]]:
    return [r[0] for r in runs], [r[1] for r in runs], [r[2] for r in runs]


def test_percentiles_interpolate_between_the_nearest_ranks() -> None:
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 0.0) == 1.0
    assert percentile(values, 0.5) == 2.5  # halfway between ranks 1 and 2
    assert percentile(values, 0.9) == pytest.approx(3.7)  # position 2.7
    assert percentile(values, 0.99) == pytest.approx(3.97)
    assert percentile(values, 1.0) == 4.0
    assert percentile([7.0], 0.99) == 7.0
    with pytest.raises(ValueError):
        percentile([], 0.5)


def test_durations_sort_their_values_first() -> None:
    figures = durations([4.0, 1.0, 3.0, 2.0, 10.0])
    assert figures == Durations(5, 1.0, 3.0, pytest.approx(7.6), pytest.approx(9.76), 10.0)
    assert durations([]) is None


def test_busy_slot_seconds_weigh_each_run_by_the_slots_it_took() -> None:
    assert busy_seconds(*columns((0.0, 1.0, 1), (0.0, 2.0, 2), (5.0, 5.5, 4))) == 1 + 4 + 2


def test_capacity_counts_each_session_only_inside_the_span() -> None:
    sessions = [Session(-5.0, 5.0, 2), Session(2.0, math.inf, 4), Session(20.0, 30.0, 8)]
    assert capacity(sessions, (0.0, 10.0)) == 2 * 5 + 4 * 8 + 0


def test_utilization_is_busy_over_offered() -> None:
    t0, t1, units = columns((1.0, 5.0, 1), (1.0, 2.0, 1))  # 3 slots for 4 s: 5 of 12 slot-seconds busy
    assert utilization(busy_seconds(t0, t1, units), capacity([Session(0.0, 9.0, 3)], (1.0, 5.0))) == 5 / 12
    assert utilization(3.0, 0.0) is None


def test_the_tail_is_how_long_fewer_than_half_of_the_slots_present_were_busy() -> None:
    # span 0 .. 10, so the tail is 9 .. 10; 4 slots until 9.8, then 2 (a farmer left)
    t0, t1, units = columns((0.0, 9.0, 4), (8.0, 9.6, 2), (9.2, 10.0, 1))
    sessions = [Session(0.0, 9.8, 2), Session(0.0, math.inf, 2)]
    length, below = tail_below_half(t0, t1, units, sessions, (0.0, 10.0))
    assert length == 1.0
    # 9 .. 9.2: 2 busy of 4 (half: not fewer); 9.2 .. 9.6: 3 of 4; 9.6 .. 9.8: 1 of 4 (below);
    # 9.8 .. 10: 1 of 2 (half again)
    assert below == pytest.approx(0.2)


def test_a_farm_that_ends_on_one_long_task_has_its_whole_tail_below_half() -> None:
    t0, t1, units = columns((0.0, 1.0, 1), (0.0, 1.0, 1), (0.0, 3.0, 1))
    assert tail_below_half(t0, t1, units, [Session(-1.0, 4.0, 3)], (0.0, 3.0)) == (pytest.approx(0.3),
                                                                                    pytest.approx(0.3))
    assert tail_below_half(t0, t1, units, [Session(-1.0, 4.0, 2)], (0.0, 3.0))[1] == 0.0  # 1 of 2 is half


def test_the_busy_curve_is_the_mean_busy_slots_of_each_bin() -> None:
    t0, t1, units = columns((0.0, 1.0, 1), (0.5, 2.0, 2))
    assert busy_curve(t0, t1, units, [0.0, 1.0, 2.0]) == [2.0, 2.0]
    assert busy_curve(t0, t1, units, [0.0, 0.5, 1.5, 3.0]) == pytest.approx([1.0, 2.5, 1.0 / 1.5])
    assert busy_curve(t0, t1, units, [0.0]) == []


def test_the_busy_curve_keeps_its_precision_at_epoch_times_and_a_million_short_runs() -> None:
    base = 1.8e9  # seconds since 1970, as the journal has them
    t0 = [base + i * 1e-3 for i in range(1_000_000)]  # one slot, busy half of each millisecond
    t1 = [start + 0.5e-3 for start in t0]
    curve = busy_curve(t0, t1, [1] * len(t0), [base + 100 * i for i in range(11)])
    # what the runs' own times say (epoch floats hold them to about 0.2 microseconds)
    expected = [math.fsum(t1[j] - t0[j] for j in range(k * 100_000, (k + 1) * 100_000)) / 100 for k in range(10)]
    assert curve == pytest.approx(expected, abs=1e-9)
    assert curve == pytest.approx([0.5] * 10, abs=1e-4)


def test_the_busy_curve_is_the_same_whether_every_run_takes_as_many_slots_or_not() -> None:
    t0, t1, units = columns((0.0, 1.0, 2), (0.5, 2.0, 2), (1.0, 3.0, 2))
    uniform = busy_curve(t0, t1, units, [0.0, 0.5, 1.5, 3.0])
    assert uniform == pytest.approx([2.0, 2 * (0.5 + 1 + 0.5), 2 * (0.5 + 1.5) / 1.5])
    mixed = busy_curve(t0 + [9.0], t1 + [9.5], units + [1], [0.0, 0.5, 1.5, 3.0])  # a run after the bins
    assert mixed == pytest.approx(uniform)
