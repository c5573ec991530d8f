#!/usr/bin/env bash
# Compare two revisions of mpifarmer on the same machine in one invocation, run by run:
#
#   bash bench/compare_revisions.sh OLD_REV NEW_REV [RUNS]
#
# Each revision is checked out into a temporary worktree and put first on PYTHONPATH, so both are
# measured with the same interpreter and dependencies. Two pairs, each timed with farm-bench --vs
# (A = NEW, B = OLD, alternating A B A B, ratio A/B taken pair by pair):
#   local: 2,000 `true`, -n 2;   MPI: the same list under `mpiexec -n 2 ... -n 1`.
# Every run gets a fresh work directory on /dev/shm (no ext4 inode-reuse effects, see RESULTS.md)
# and must finish all 2,000 tasks with exit code 0, or the run counts as failed.
set -euo pipefail
old=${1:?old revision}; new=${2:?new revision}; runs=${3:-15}
repo=$(git rev-parse --show-toplevel)
python=${PYTHON:-$repo/.venv/bin/python}
mpiexec=$(dirname "$python")/mpiexec
work=$(mktemp -d)
trap 'git -C "$repo" worktree remove --force "$work/old" >/dev/null 2>&1 || true;
      git -C "$repo" worktree remove --force "$work/new" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git -C "$repo" worktree add -q "$work/old" "$old"
git -C "$repo" worktree add -q "$work/new" "$new"
printf 'true\n%.0s' $(seq 2000) > "$work/tasks.txt"
cat > "$work/run.sh" <<SCRIPT
#!/bin/sh
d=\$(mktemp -d /dev/shm/mpifarmer-bench.XXXXXX)
if [ "\$2" = mpi ]; then
  PYTHONPATH=\$1 $mpiexec -n 2 $python -m mpifarmer $work/tasks.txt -n 1 -w \$d/wd 2>/dev/null
else
  PYTHONPATH=\$1 $python -m mpifarmer $work/tasks.txt -n 2 -w \$d/wd 2>/dev/null
fi
rc=\$?; n=\$(wc -l < \$d/wd/finished); rm -rf \$d
[ "\$rc" = 0 ] && [ "\$n" = 2000 ]
SCRIPT
chmod +x "$work/run.sh"
echo "old $old = $(git -C "$work/old" rev-parse --short HEAD), new $new = $(git -C "$work/new" rev-parse --short HEAD); load: $(cut -d' ' -f1-3 /proc/loadavg)"
for mode in local mpi; do
  echo "== $mode: A = new, B = old"
  farm-bench -n "$runs" --timeout 900 --vs "$work/run.sh $work/old $mode" -- "$work/run.sh" "$work/new" "$mode"
done
