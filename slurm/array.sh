#!/bin/bash
# mpifarmer as a Slurm job array.
#
#   sbatch --array=0-3 slurm/array.sh TASKLIST [mpifarmer options ...]
#   sbatch --array=0-9 --cpus-per-task=16 slurm/array.sh tasks.txt --lock-mode soft
#
# Every element of the array is an independent farmer (one process with its own
# pool of workers, no MPI) on the same task list and the same work directory.
# The farmers share the list through the work directory's lock: each task is
# run by exactly one of them, whichever element gets to it first. Elements may
# start at different times and on different nodes; an element that starts after
# the last task was taken exits at once with code 0. If an element dies, the
# others (or the next run on the same list) put its unfinished tasks back.
#
# Use this when the scheduler gives you small pieces sooner than one big
# allocation. For one allocation over several nodes, use multinode.sh.
#
# Lines starting with "#SBATCH" are read by sbatch as options; options given on
# the sbatch command line take precedence over them.
#
#SBATCH --job-name=mpifarmer-array
# Four elements unless the command line says otherwise.
#SBATCH --array=0-3
# Each element is one farmer process ...
#SBATCH --ntasks=1
# ... that runs this many tasks at once (mpifarmer reads SLURM_CPUS_PER_TASK).
#SBATCH --cpus-per-task=2
# Wall-time limit of each element. When it expires, Slurm sends SIGTERM: the
# farmer stops, records its running tasks as interrupted and exits; running the
# same array again continues with them.
#SBATCH --time=01:00:00
# One log per element: %A is the array's job ID, %a the element's index.
#SBATCH --output=mpifarmer-array-%A_%a.out

# Stop on the use of an unset variable (a typo in this script).
set -u

# The task list is the first argument; everything after it goes to mpifarmer.
tasklist=${1:?usage: sbatch --array=0-3 array.sh TASKLIST [mpifarmer options ...]}
shift

# Which Python runs mpifarmer: python3 from PATH (activate your virtual
# environment before sbatch, since sbatch passes on your environment), or set
# MPIFARMER_PYTHON=/path/to/venv/bin/python.
python=${MPIFARMER_PYTHON:-python3}

echo "array element ${SLURM_ARRAY_TASK_ID:-?} of job ${SLURM_ARRAY_JOB_ID:-?} on $(hostname), $(date)"

# --mode local: this element is one farmer, never part of an MPI world, even if
# a launcher's variables are around. The work directory defaults to
# TASKLIST_workdir beside the task list, the same for every element; if you
# give -w, give the same one to every element. Across nodes, the work directory
# must be on a shared filesystem; choose --lock-mode for that filesystem (see
# the README: flock where the centre documents cluster-wide flock, else soft or
# strict). exec: the farmer replaces this shell, so its exit code (0 done,
# 1 done with failures, 2 bad input, 3 stopped with tasks left) is the
# element's exit code and Slurm's signals reach it directly.
exec "$python" -m mpifarmer "$tasklist" --mode local "$@"
