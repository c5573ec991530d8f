"""Rates, ETAs and progress decisions from crafted figures, with exact expected values."""

from __future__ import annotations

import pytest

from mpifarmer.observe.progress import ProgressFigures, ProgressReporter, ProgressSchedule, progress_line
from mpifarmer.observe.rates import Rates, RateTracker, eta, per_minute, window_span
from mpifarmer.observe.words import duration, rate_text


def test_a_window_is_observed_whole_unless_the_farm_began_inside_it() -> None:
    assert window_span(1000.0, 300.0, None) == 300.0
    assert window_span(1000.0, 300.0, 100.0) == 300.0
    assert window_span(1000.0, 300.0, 880.0) == 120.0
    assert window_span(1000.0, 300.0, 1200.0) == 0.0  # a clock ahead of ours: nothing observed


def test_per_minute_needs_a_second_of_observation() -> None:
    assert per_minute(30, 60.0) == 30.0
    assert per_minute(10, 120.0) == 5.0
    assert per_minute(5, 0.5) is None
    assert per_minute(0, 300.0) == 0.0


def test_eta_is_left_over_rate_zero_when_done_unknown_when_nothing_moves() -> None:
    assert eta(1200, 60.0) == 1200.0
    assert eta(90, 45.0) == 120.0
    assert eta(0, None) == 0.0
    assert eta(0, 0.0, progressing=False) == 0.0
    assert eta(10, None) is None
    assert eta(10, 0.0) is None
    assert eta(10, 60.0, progressing=False) is None


def test_rates_of_end_times_over_each_window() -> None:
    now = 10_000.0
    # 6 ends in the last minute, 24 between 1 and 5 minutes ago, 30 between 5 and 15 minutes ago,
    # and 100 long before: none of those counts.
    ends = sorted([now - 3000.0 - i for i in range(100)] + [now - 301.0 - 10 * i for i in range(30)]
                  + [now - 61.0 - 10 * i for i in range(24)] + [now - 1.0 - 5 * i for i in range(6)])
    rates = Rates.of_end_times(ends, now, origin=None)
    assert rates.by_window == ((60.0, 6.0), (300.0, 30 / 5), (900.0, 60 / 15))
    assert rates.over(300.0) == 6.0


def test_a_farm_younger_than_a_window_has_the_rate_of_its_lifetime() -> None:
    now = 500.0
    ends = [now - 99.5 + i for i in range(100)]  # 100 ends in the 100 s since it started, 60 in the last 60
    rates = Rates.of_end_times(ends, now, origin=now - 100.0)
    assert rates.by_window == ((60.0, 60.0), (300.0, 60.0), (900.0, 60.0))


def test_ends_counted_in_older_generations_add_to_each_window() -> None:
    now = 1000.0
    rates = Rates.of_end_times([now - 10.0], now, origin=None, earlier={60.0: 2, 300.0: 14, 900.0: 44})
    assert rates.by_window == ((60.0, 3.0), (300.0, 3.0), (900.0, 3.0))


def test_an_end_just_after_now_counts_one_at_the_window_edge_does_not() -> None:
    now = 1000.0
    rates = Rates.of_end_times([now - 60.0, now - 59.0, now + 2.0], now, origin=None, windows=(60.0,))
    assert rates.by_window == ((60.0, 2.0),)


def test_the_tracker_rate_is_done_over_time_since_the_oldest_sample_in_the_window() -> None:
    tracker = RateTracker(every=1.0, keep=900.0)
    assert tracker.rate(0.0, 300.0) is None
    for second in range(0, 601):
        tracker.add(float(second), 2 * second)  # 2 tasks a second, 120 a minute
    assert tracker.rate(600.0, 300.0) == 120.0
    assert tracker.rate(600.0, 60.0) == 120.0
    tracker.add(600.5, 1300)  # between samples: the latest count counts, at its own time
    assert tracker.rate(600.5, 60.0) == (1300 - 2 * 541) * 60.0 / 59.5  # from the sample at 541 s
    assert len(tracker.samples) == 601


def test_the_tracker_forgets_samples_older_than_it_keeps() -> None:
    tracker = RateTracker(every=10.0, keep=60.0)
    for second in range(0, 200, 5):
        tracker.add(float(second), second)
    assert [t for t, _ in tracker.samples] == [140.0, 150.0, 160.0, 170.0, 180.0, 190.0]
    assert tracker.latest == (195.0, 195)
    assert tracker.rate(195.0, 300.0) == 60.0


def test_the_tracker_has_no_rate_before_a_second_has_passed() -> None:
    tracker = RateTracker()
    tracker.add(10.0, 0)
    tracker.add(10.5, 50)
    assert tracker.rate(10.5, 300.0) is None
    tracker.add(11.0, 100)
    assert tracker.rate(11.0, 300.0) == 6000.0


def test_the_schedule_is_due_every_interval_and_once_after_a_late_wake() -> None:
    schedule = ProgressSchedule(60.0, start=100.0)
    assert [schedule.due(t) for t in (100.0, 159.9, 160.0, 160.1, 219.0, 220.0)] == \
        [False, False, True, False, False, True]
    assert schedule.next_at == 280.0
    assert schedule.due(1000.0)  # woke 12 intervals late: one showing, the next a full interval on
    assert schedule.next_at == 1060.0
    assert not schedule.due(1059.0)
    with pytest.raises(ValueError):
        ProgressSchedule(0.0, start=0.0)


def test_the_reporter_shows_figures_when_due_with_the_recent_rate() -> None:
    shown: list[ProgressFigures] = []
    reporter = ProgressReporter(60.0, shown.append, start=0.0)
    for second in range(0, 121):
        reporter.observe(float(second), done=second // 2, total=1000, failed=3, running=4)
    assert [figure.done for figure in shown] == [30, 60]
    last = shown[-1]
    assert last == ProgressFigures(done=60, total=1000, failed=3, running=4, rate_per_min=30.0,
                                   eta_s=940 * 60.0 / 30.0)
    assert reporter.next_at == 180.0
    assert reporter.due_at == 121.0, "the next sample, a second after the last"


def test_a_loop_that_feeds_only_when_due_gets_the_same_figures() -> None:
    every_turn: list[ProgressFigures] = []
    when_due: list[ProgressFigures] = []
    always, sparing = ProgressReporter(30.0, every_turn.append, 0.0), ProgressReporter(30.0, when_due.append, 0.0)
    for tick in range(0, 1201):
        now = tick / 10
        always.observe(now, tick // 3, 1000, 0, 2)
        if now >= sparing.due_at:
            sparing.observe(now, tick // 3, 1000, 0, 2)
    assert [f.done for f in when_due] == [f.done for f in every_turn] == [100, 200, 300, 400]
    assert [f.rate_per_min for f in when_due] == [f.rate_per_min for f in every_turn]


def test_the_progress_line_reads_as_the_readme_shows() -> None:
    figures = ProgressFigures(done=1234, total=200_000, failed=3, running=128, rate_per_min=512.0, eta_s=22_560.0)
    assert progress_line(figures) == ("progress: 1,234 of 200,000 done (0.6%), 3 failed, 128 running, "
                                      "512/min (last 5 min), ETA 6 h 16 min")
    unknown = ProgressFigures(done=0, total=10, failed=0, running=2, rate_per_min=None, eta_s=None)
    assert progress_line(unknown) == ("progress: 0 of 10 done (0.0%), 0 failed, 2 running, rate not known yet, "
                                      "ETA unknown")


def test_durations_and_rates_in_words() -> None:
    assert [duration(s) for s in (0, 45, 60, 725, 3600, 22_560, 86_400, 183_600)] == \
        ["0 s", "45 s", "1 min", "12 min 5 s", "1 h", "6 h 16 min", "1 d", "2 d 3 h"]
    assert duration(None) == "unknown"
    assert [rate_text(r) for r in (79_396.4, 102.0, 2.576, 0.25, 0.0)] == \
        ["79,396/min", "102/min", "2.6/min", "0.25/min", "0/min"]
    assert rate_text(None) == "unknown"
