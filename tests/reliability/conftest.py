"""Fixtures and reporting for the reliability suites (crash, concurrency, signals, hostile environment)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

#: Figures the suites measured, printed at the end of the run (see tests/reliability/README.md).
FIGURES: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs_root: needs root, to mount a tmpfs or make a read-only bind mount")


@pytest.fixture
def report() -> Callable[[str], None]:
    """Record a line of figures for the end-of-run summary."""
    return FIGURES.append


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if FIGURES:
        terminalreporter.section("mpifarmer reliability figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
