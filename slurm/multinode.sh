#!/bin/bash
# One mpifarmer across a whole Slurm allocation, launched with srun.
#
#   sbatch -N 2 slurm/multinode.sh TASKLIST [mpifarmer options ...]
#   sbatch -N 8 --cpus-per-task=64 slurm/multinode.sh tasks.txt -v
#
# srun starts one MPI process (rank) per Slurm task. Rank 0 owns the work
# directory and hands out tasks; every rank, rank 0 included, runs a pool of
# workers that execute them. Only rank 0 touches the work directory, so it
# needs no cluster-wide file locking; the task list and the work directory
# must still be on a filesystem rank 0 can reach (the directory you submit
# from, usually).
#
# Use this for one allocation of several nodes. For many independent
# single-node jobs on one list, use array.sh.
#
# Lines starting with "#SBATCH" are read by sbatch as options; options given on
# the sbatch command line take precedence over them.
#
#SBATCH --job-name=mpifarmer-mpi
#SBATCH --nodes=2
# One rank per node ...
#SBATCH --ntasks-per-node=1
# ... running this many tasks at once (set it to the node's core count, or to
# cores / threads-per-task if your tasks are multi-threaded).
#SBATCH --cpus-per-task=2
# When the limit expires Slurm sends SIGTERM to every rank: the farmer stops,
# records its running tasks as interrupted and exits; submitting the same
# script again continues. requeue.sh shows how to do that automatically.
#SBATCH --time=01:00:00
#SBATCH --output=mpifarmer-mpi-%j.out

# Stop on the use of an unset variable (a typo in this script).
set -u

# The task list is the first argument; everything after it goes to mpifarmer.
tasklist=${1:?usage: sbatch -N 2 multinode.sh TASKLIST [mpifarmer options ...]}
shift

# Which Python runs mpifarmer: python3 from PATH (activate your virtual
# environment before sbatch, since sbatch passes on your environment), or set
# MPIFARMER_PYTHON=/path/to/venv/bin/python.
python=${MPIFARMER_PYTHON:-python3}

# srun options:
#   --kill-on-bad-exit=1 (-K): if one rank dies, Slurm ends the whole step at
#       once. Without it, MPICH's surviving ranks can hang until the time limit
#       instead of exiting; the farmer's journal keeps the work either way.
#   --mpi=pmi2: how srun tells the ranks about each other. pmi2 is right for
#       MPICH, which is what installing mpifarmer with pip brings (the mpich
#       wheel). With Open MPI use --mpi=pmix; with Cray MPICH, the site's
#       default (see slurm/README.md). A wrong choice makes every rank a
#       separate world of size 1: mpifarmer notices and exits with code 2 and
#       a message naming --mpi.
#   --cpus-per-task: from Slurm 22.05 on, srun does not inherit sbatch's
#       --cpus-per-task, so it is passed again here; the farmer's default
#       number of workers per rank comes from it.
srun_options=(--kill-on-bad-exit=1 --mpi=pmi2)
if [ -n "${SLURM_CPUS_PER_TASK:-}" ]; then
    srun_options+=(--cpus-per-task="$SLURM_CPUS_PER_TASK")
fi

echo "job ${SLURM_JOB_ID:-?}: ${SLURM_NTASKS:-?} ranks on ${SLURM_JOB_NODELIST:-?}, $(date)"

# exec: srun replaces this shell, so the job's exit code is the farmer's
# (0 done, 1 done with failures, 2 bad input, 3 stopped with tasks left).
exec srun "${srun_options[@]}" "$python" -m mpifarmer "$tasklist" "$@"
