"""When a dead spawner is started again and when the farmer gives up (explicit times, no processes)."""

from __future__ import annotations

from mpifarmer.scheduling.restarts import RestartBudget


def test_deaths_below_the_limit_within_the_window_are_restarted() -> None:
    budget = RestartBudget(limit=3, window=60.0)
    assert budget.allow(100.0)
    assert budget.allow(110.0)
    assert not budget.allow(120.0)  # the third within a minute


def test_deaths_spread_out_are_always_restarted() -> None:
    budget = RestartBudget(limit=3, window=60.0)
    assert all(budget.allow(float(t)) for t in range(0, 3600, 31))


def test_old_deaths_leave_the_window() -> None:
    budget = RestartBudget(limit=2, window=10.0)
    assert budget.allow(0.0)
    assert not budget.allow(5.0)
    assert budget.allow(16.0)  # 0.0 and 5.0 are more than 10 s ago
