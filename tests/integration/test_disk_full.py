"""A work directory whose filesystem fills up during the run: stop cleanly, finish after freeing space."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from farmhelpers import journal, run_farmer, view, write_list


@pytest.fixture
def small_fs(tmp_path: Path):
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_disk_full_stops_with_3_and_a_run_after_freeing_space_completes(
        tmp_path: Path, small_fs: Path, clean_home: dict[str, str]) -> None:
    tasks = write_list(tmp_path / "tasks.txt", [f"echo {i}; head -c 300 /dev/zero" for i in range(200)])
    workdir = small_fs / "wd"
    first = run_farmer(tasks, "-w", workdir, "-n", "2", env=clean_home)
    assert first.returncode == 3, first.stderr
    assert "Traceback" not in first.stderr
    assert "full" in first.stderr or "cannot write" in first.stderr
    assert view(workdir, "failed") == {}  # tasks that could not write their output are not failures
    subprocess.run(["mount", "-o", "remount,size=8m", str(small_fs)], check=True)
    second = run_farmer(tasks, "-w", workdir, "-n", "2", env=clean_home)
    assert second.returncode == 0, second.stderr
    assert sorted(view(workdir, "finished")) == list(range(200))
    finished = [r["id"] for r in journal(workdir) if r["e"] == "end" and r["st"] == "finished"]
    assert sorted(finished) == list(range(200)), "every task finished exactly once"
