"""Progress while the farm runs: the line in a batch log, the bar on a real pseudo-terminal (its
redraw, the log lines above it, its clean end when the farm ends and when it is stopped), and
rank 0 alone printing in MPI mode."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import pytest
from farmhelpers import HANG, MPIEXEC, farmer_cmd, run_farmer, write_list
from ptyhelpers import PtyRun

from mpifarmer import environment

LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (\S+) INFO progress: (\d+) of (\d+) done \([\d.]+%\), "
                  r"(\d+) failed, (\d+) running, (rate not known yet|[\d.,]+/min \(last 5 min\)), ETA .+$")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def progress_lines(stderr: str) -> list[re.Match[str]]:
    return [found for line in stderr.splitlines() if (found := LINE.match(line))]


def test_a_batch_log_gets_a_timestamped_progress_line_every_interval(tmp_path: Path,
                                                                     clean_home: dict[str, str]) -> None:
    tasks = write_list(tmp_path / "tasks.txt", ["sleep 0.5; exit 1" if i == 0 else "sleep 0.5" for i in range(16)])
    result = run_farmer(tasks, "-n", "2", "--progress", "1", env=clean_home)
    assert result.returncode == 1, result.stderr
    found = progress_lines(result.stderr)
    assert len(found) >= 2, result.stderr
    done = [int(line[3]) for line in found]
    assert done == sorted(done) and done[-1] > done[0], "the figures move"
    assert all(int(line[4]) == 16 for line in found)
    assert int(found[-1][5]) == 1, "the failed task is counted"
    assert any(line[7].endswith("/min (last 5 min)") for line in found), "a rate once a second has passed"
    first_line = result.stderr.splitlines()[0]
    assert first_line[:19].count(":") == 2 and first_line.split()[2] == found[0][2], "same stamp and host"
    assert "\x1b" not in result.stderr and "━" not in result.stderr, "no bar in a batch log"


@pytest.mark.parametrize("progress", [None, "0"])
def test_no_line_before_the_default_minute_nor_ever_with_0(tmp_path: Path, clean_home: dict[str, str],
                                                           progress: str | None) -> None:
    tasks = write_list(tmp_path / "tasks.txt", ["sleep 0.3"] * 12)
    result = run_farmer(tasks, "-n", "2", *(["--progress", progress] if progress else []), env=clean_home)
    assert result.returncode == 0, result.stderr
    assert progress_lines(result.stderr) == [] and "progress:" not in result.stderr


def test_a_bad_progress_interval_is_one_line_and_exit_2(tmp_path: Path, clean_home: dict[str, str]) -> None:
    tasks = write_list(tmp_path / "tasks.txt", ["true"])
    result = run_farmer(tasks, "--progress", "soon", env=clean_home)
    assert result.returncode == 2 and "--progress" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "tasks.txt_workdir").exists()


def bar_texts(screen: str) -> list[str]:
    """The bar's figures each time it was drawn (a draw starts with a carriage return and an erase)."""
    return re.findall(r"\r\x1b\[2Kmpifarmer .*? (\d+/\d+ done, [^\r\n\x1b]*)", screen)


def test_a_terminal_gets_a_bar_that_redraws_in_place_and_leaves_nothing(tmp_path: Path,
                                                                       clean_home: dict[str, str]) -> None:
    tasks = write_list(tmp_path / "tasks.txt", ["sleep 0.3"] * 24)
    run = PtyRun(farmer_cmd(tasks, "-n", "2", "-v"), env=clean_home)
    code = run.finish(timeout=HANG)
    screen = run.output.decode(errors="replace")
    assert code == 0, screen
    texts = bar_texts(screen)
    assert len(set(texts)) >= 2, screen
    assert texts[-1].startswith(("22/24", "23/24", "24/24", "20/24", "21/24")) or len(texts) > 2
    # every log line printed while the bar was up is whole, on a line of its own
    plain = ANSI.sub("", screen).replace("\r\n", "\n")
    finished = re.findall(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+ INFO task (\d+) finished \(exit code 0",
                          plain.replace("\r", "\n"), re.M)
    assert sorted(map(int, finished)) == list(range(24))
    # at the end the bar is erased (cursor up, erase line) and the stop line follows: nothing after it
    tail = screen[screen.rindex("━") :]
    assert re.search(r"\x1b\[1A\x1b\[2K\d{4}-\d\d-\d\d [^\n]*mpifarmer: no work left", tail), repr(tail)
    after = tail[tail.index("mpifarmer: no work left"):]
    assert "━" not in after and after.rstrip("\r\n").count("\n") == 0


def test_a_stopped_farm_erases_its_bar_too(tmp_path: Path, clean_home: dict[str, str]) -> None:
    tasks = write_list(tmp_path / "tasks.txt", ["sleep 30"] * 4)
    run = PtyRun(farmer_cmd(tasks, "-n", "2"), env=clean_home)
    assert run.read_until(b" done, ", timeout=60), run.output
    run.send(b"\x03")  # Ctrl-C on the terminal: SIGINT to the farmer, which drains
    code = run.finish(timeout=HANG)
    screen = run.output.decode(errors="replace")
    assert code == 3, screen
    tail = screen[screen.rindex("━") :]
    assert re.search(r"\x1b\[1A\x1b\[2K\d{4}-\d\d-\d\d [^\n]*mpifarmer: received SIGINT", tail), repr(tail)
    assert "stopping: received SIGINT" in ANSI.sub("", screen)
    last = tail[tail.index("mpifarmer: received SIGINT"):]
    assert "━" not in last and "exit code 3" in last


@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec: pip install mpich")
def test_in_mpi_mode_only_rank_0_prints_progress(tmp_path: Path, clean_home: dict[str, str]) -> None:
    tasks = write_list(tmp_path / "tasks.txt", ["sleep 0.5"] * 16)
    result = subprocess.run([MPIEXEC, "-n", "2", *farmer_cmd(tasks, "-n", "2", "--progress", "1")],
                            env=clean_home, capture_output=True, text=True, timeout=HANG)
    assert result.returncode == 0, result.stderr
    found = progress_lines(result.stderr)
    assert len(found) >= 1, result.stderr
    assert {line[2] for line in found} == {f"{environment.hostname()}:0"}


def test_the_bar_stays_out_of_a_batch_runs_imports(tmp_path: Path, clean_home: dict[str, str]) -> None:
    tasks = write_list(tmp_path / "tasks.txt", ["true"])
    probe = ("import runpy, sys; sys.argv = ['mpifarmer', sys.argv[1], '--progress', '1']\n"
             "try:\n    runpy.run_module('mpifarmer', run_name='__main__')\n"
             "except SystemExit:\n    pass\n"
             "print(sorted(m for m in sys.modules if m.startswith('rich')))")
    result = subprocess.run([*farmer_cmd()[:1], "-c", probe, str(tasks)], env=clean_home, capture_output=True,
                            text=True, timeout=HANG)
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout + result.stderr
    signal.getsignal(signal.SIGINT)  # (nothing of this process changed)
