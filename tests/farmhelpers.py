"""Test helpers: run real farmers as subprocesses and read their work directories."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

#: Generous ceiling for one farmer run: a guard against hangs, not a performance assertion.
HANG = 120


def farmer_cmd(*args: str | os.PathLike[str]) -> list[str]:
    return [sys.executable, "-m", "mpifarmer", *map(str, args)]


def run_farmer(*args: str | os.PathLike[str], cwd: Path | None = None, env: dict[str, str] | None = None,
               timeout: float = HANG) -> subprocess.CompletedProcess[str]:
    return subprocess.run(farmer_cmd(*args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def start_farmer(*args: str | os.PathLike[str], cwd: Path | None = None,
                 env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(farmer_cmd(*args), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def write_list(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def view(workdir: Path, name: str) -> dict[int, str]:
    """A PyTaskFarmer view file as {task ID: line}."""
    result = {}
    for line in (workdir / name).read_text().splitlines():
        task, _, text = line.partition(" ")
        result[int(task)] = text
    return result


def journal(workdir: Path) -> list[dict]:
    """The journal's records; a torn line (a writer killed mid-write, a full disk) is skipped, as the farmer does."""
    records = []
    for line in (workdir / "journal.jsonl").read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def runs_per_task(out: Path) -> dict[int, int]:
    """Count the IDs that tasks appended to ``out`` (one line per completed run)."""
    counts: dict[int, int] = {}
    if out.exists():
        for line in out.read_text().split():
            counts[int(line)] = counts.get(int(line), 0) + 1
    return counts
