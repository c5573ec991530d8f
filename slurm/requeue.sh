#!/bin/bash
# mpifarmer in a job that requeues itself until the task list is done.
#
#   sbatch slurm/requeue.sh TASKLIST [mpifarmer options ...]
#   sbatch -N 4 --time=02:00:00 slurm/requeue.sh tasks.txt
#   sbatch slurm/requeue.sh TASKLIST --requeue     # let the farmer requeue (see the end)
#
# Shortly before the time limit Slurm sends this script SIGUSR1 (the
# --signal line below). The script passes the signal on to the farmer, which
# stops handing out work, interrupts its running tasks, records them as "to be
# run again" and exits with code 3 when tasks are left. The script then puts
# the job back in the queue with `scontrol requeue`. The requeued job keeps its
# job ID, runs this script again from the top with SLURM_RESTART_COUNT one
# higher, and the farmer continues in the same work directory: nothing that
# finished runs again. When the farmer exits with any other code (0: all done,
# 1: done with failures, 2: bad input) the job simply ends.
#
# Use this when the list needs more time than one job may have, or in a queue
# whose jobs can be cut short (preemptible or flex queues: see nersc-flex.sh).
#
# Lines starting with "#SBATCH" are read by sbatch as options; options given on
# the sbatch command line take precedence over them.
#
#SBATCH --job-name=mpifarmer-requeue
#SBATCH --nodes=1
# One MPI rank per node, each running this many tasks at once.
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=2
#SBATCH --time=01:00:00
# Allow this job to be requeued (some sites forbid it by default).
#SBATCH --requeue
# Send SIGUSR1 to the batch shell only ("B:"), about 120 s before the time
# limit. Slurm checks this on a periodic sweep, so the signal may come up to a
# minute earlier or later than asked: keep the margin well above the farmer's
# stopping time (at most 10 s) plus the length of one Slurm sweep. Without
# "B:" the signal would go to the srun tasks and this script would never see it.
#SBATCH --signal=B:USR1@120
# After a requeue, append to the same output file instead of truncating it.
#SBATCH --open-mode=append
#SBATCH --output=mpifarmer-requeue-%j.out

# Stop on the use of an unset variable (a typo in this script).
set -u

# The task list is the first argument; everything after it goes to mpifarmer.
tasklist=${1:?usage: sbatch requeue.sh TASKLIST [mpifarmer options ...]}
shift

# Which Python runs mpifarmer: python3 from PATH (activate your virtual
# environment before sbatch, since sbatch passes on your environment), or set
# MPIFARMER_PYTHON=/path/to/venv/bin/python.
python=${MPIFARMER_PYTHON:-python3}

# How often the job may requeue itself: a guard against a list that can never
# finish (e.g. one task longer than the time limit).
max_requeues=${MPIFARMER_MAX_REQUEUES:-10}

# With --requeue among the farmer's options the farmer requeues the job itself
# (it also honours --max-requeues); then this script must not do it a second time.
farmer_requeues=no
for arg in "$@"; do
    if [ "$arg" = --requeue ]; then farmer_requeues=yes; fi
done

echo "job ${SLURM_JOB_ID:-?} restart ${SLURM_RESTART_COUNT:-0} on ${SLURM_JOB_NODELIST:-$(hostname)}, $(date)"

# On SIGUSR1: pass it on to srun, which forwards it to every rank of the
# farmer. `signalled` tells the waiting loop below that wait was interrupted.
signalled=0
farmer_pid=
on_usr1() {
    signalled=1
    echo "SIGUSR1 received, $(date): asking the farmer to stop"
    if [ -n "$farmer_pid" ]; then kill -USR1 "$farmer_pid" 2>/dev/null; fi
}
trap on_usr1 USR1

# Run the farmer in the background and wait for it: bash runs a trap only when
# the foreground command has finished, so with the farmer in the foreground
# the signal would be handled too late. srun options are explained in
# multinode.sh: -K ends the whole step if a rank dies, --mpi=pmi2 suits MPICH
# (use --mpi=pmix with Open MPI), --cpus-per-task is not inherited by srun.
srun_options=(--kill-on-bad-exit=1 --mpi=pmi2)
if [ -n "${SLURM_CPUS_PER_TASK:-}" ]; then
    srun_options+=(--cpus-per-task="$SLURM_CPUS_PER_TASK")
fi
srun "${srun_options[@]}" "$python" -m mpifarmer "$tasklist" "$@" &
farmer_pid=$!

# A trapped signal makes `wait` return at once (with 128 + the signal number)
# while the farmer is still stopping, so wait again until the farmer's own exit
# code comes back. Once wait has returned it, another wait says 127 (no such
# child): the code seen last is the farmer's.
status=
while :; do
    signalled=0
    wait "$farmer_pid" 2>/dev/null
    code=$?
    if [ "$code" -eq 127 ] && [ -n "$status" ]; then break; fi
    status=$code
    if [ "$signalled" = 0 ]; then break; fi
done
echo "farmer exited with code $status, $(date)"

# Exit code 3: stopped with tasks left. Requeue, unless the farmer does it or
# the job has been requeued often enough already.
if [ "$status" -eq 3 ] && [ "$farmer_requeues" = no ]; then
    if [ "${SLURM_RESTART_COUNT:-0}" -lt "$max_requeues" ]; then
        echo "tasks are left: requeueing job $SLURM_JOB_ID"
        # Slurm now ends this run (SIGTERM to this script) and starts the job
        # again once it is eligible; nothing else needs doing here.
        scontrol requeue "$SLURM_JOB_ID"
    else
        echo "tasks are left, but job $SLURM_JOB_ID was requeued $max_requeues times already: not again"
    fi
fi
exit "$status"

# The alternative: let the farmer requeue the job. Pass --requeue (and
# optionally --max-requeues N) after the task list:
#
#   sbatch slurm/requeue.sh tasks.txt --requeue --max-requeues 5
#
# The signal is still forwarded by the trap above; after stopping with tasks
# left, the farmer (rank 0) runs `scontrol requeue $SLURM_JOB_ID` itself and
# this script skips its own requeue. Without this script's trap, the same works
# with the farmer as the job's only step, signalled by Slurm directly:
#
#   #SBATCH --requeue
#   #SBATCH --signal=USR1@120     # no "B:": to the srun tasks, i.e. every rank
#   srun -K --mpi=pmi2 python3 -m mpifarmer tasks.txt --requeue
