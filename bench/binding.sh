#!/usr/bin/env bash
# What binding tasks to CPUs and handing out GPUs costs per task, against the same farmer without:
#
#   bash bench/binding.sh [RUNS]
#
# One revision (this repo's mpifarmer/, first on PYTHONPATH), 2,000 `true` tasks, two at a time,
# each pair timed with farm-bench --vs (A B A B ..., ratio A/B pair by pair):
#   cores: A = --cores-per-task 1 (each task bound to a CPU: two sched_setaffinity calls per start,
#          MPIFARMER_CPUS and OMP_NUM_THREADS), B = -n 2 (nothing bound);
#   gpus:  A = --cores-per-task 1 --gpus 0,1,2,3 --gpus-per-task 1 (also the GPU variables and the
#          packing of two resources), B = -n 2.
# Both A and B run 2 tasks at once on this 2-CPU machine. Every run gets a fresh work directory on
# /dev/shm and must finish all 2,000 tasks with exit code 0, or the run counts as failed.
set -euo pipefail
runs=${1:-9}
repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$repo/.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf 'true\n%.0s' $(seq 2000) > "$work/tasks.txt"
cat > "$work/run.sh" <<SCRIPT
#!/bin/sh
d=\$(mktemp -d /dev/shm/mpifarmer-bench.XXXXXX)
PYTHONPATH=$repo $python -m mpifarmer $work/tasks.txt -w \$d/wd "\$@" 2>/dev/null
rc=\$?; n=\$(wc -l < \$d/wd/finished); rm -rf \$d
[ "\$rc" = 0 ] && [ "\$n" = 2000 ]
SCRIPT
chmod +x "$work/run.sh"
echo "mpifarmer at $(git -C "$repo" rev-parse --short HEAD)$(git -C "$repo" diff --quiet -- mpifarmer || echo ' (with changes)'); load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== cores: A = --cores-per-task 1, B = -n 2"
farm-bench -n "$runs" --timeout 900 --vs "$work/run.sh -n 2" -- "$work/run.sh" --cores-per-task 1
echo "== gpus: A = --cores-per-task 1 --gpus 0,1,2,3 --gpus-per-task 1, B = -n 2"
farm-bench -n "$runs" --timeout 900 --vs "$work/run.sh -n 2" -- "$work/run.sh" --cores-per-task 1 --gpus 0,1,2,3 \
    --gpus-per-task 1
