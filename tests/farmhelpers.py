"""Test helpers: run real farmers as subprocesses and read their work directories."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

#: Generous ceiling for one farmer run: a guard against hangs, not a performance assertion.
HANG = 120
#: The mpiexec beside this interpreter (the mpich wheel's), else the one on PATH.
MPIEXEC = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")


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
    """Every record ever appended: the generations compaction moved to ``history/``, then the journal
    (opened first, so that a compaction meanwhile hides nothing). Torn lines (a writer killed mid-write,
    a full disk) and the header of each generation are skipped, as the farmer does."""
    with (workdir / "journal.jsonl").open("rb") as stream:
        data = stream.read()
    generation = json.loads(data.split(b"\n", 1)[0])["gen"] if data.startswith(b'{"e":"journal"') else 0
    chunks = [(workdir / "history" / f"journal.{old}.jsonl").read_bytes() for old in range(generation)]
    records = []
    for line in b"".join([*chunks, data]).splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("e") != "journal":
            records.append(record)
    return records


def runs_per_task(out: Path) -> dict[int, int]:
    """Count the IDs that tasks appended to ``out`` (one line per completed run)."""
    counts: dict[int, int] = {}
    if out.exists():
        for line in out.read_text().split():
            counts[int(line)] = counts.get(int(line), 0) + 1
    return counts


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    """Poll ``predicate`` until it holds; fail (not hang) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def task_processes(marker: str) -> list[int]:
    """PIDs of live processes whose command line contains ``marker``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as stream:
                if marker.encode() in stream.read():
                    pids.append(int(entry))
        except OSError:
            pass
    return pids


def rank_pids(task_list: Path) -> dict[int, int]:
    """PID of each MPI rank's farmer process: its command line names the task list, and the
    launcher's PMI_RANK says which rank it is (mpiexec itself is left out)."""
    pids = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            if b"mpifarmer" not in cmdline or os.fsencode(task_list) not in cmdline:
                continue
            if os.path.basename(cmdline[0]).startswith((b"mpiexec", b"hydra")):
                continue
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for item in environ:
            if item.startswith(b"PMI_RANK="):
                pids[int(item[9:])] = int(entry)
    return pids


def assert_one_line_error(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    """Bad input: exit code 2, no traceback, exactly one line on stderr containing ``expected``."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def install_handler(tmp_path: Path, env: dict[str, str], name: str, module: str, source: str,
                    cls: str) -> dict[str, str]:
    """Put a task-list handler class in ``tmp_path/module.py``, register it as ``name`` in the
    user's ``~/.mpifarmer/tasklists.d``; return ``env`` with ``tmp_path`` on PYTHONPATH."""
    (tmp_path / f"{module}.py").write_text(source)
    handlers = Path(env["HOME"]) / ".mpifarmer" / "tasklists.d"
    handlers.mkdir(parents=True, exist_ok=True)
    (handlers / f"{name}.yaml").write_text(f"{name}:\n  TaskList: {module}.{cls}\n")
    return dict(env, PYTHONPATH=os.pathsep.join(filter(None, [str(tmp_path), env.get("PYTHONPATH")])))
