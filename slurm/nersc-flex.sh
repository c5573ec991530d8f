#!/bin/bash
# EXAMPLE FOR NERSC (Perlmutter CPU nodes): mpifarmer in the flex queue.
# Other sites: use requeue.sh, which does the same without NERSC's options.
#
#   sbatch slurm/nersc-flex.sh TASKLIST [mpifarmer options ...]
#   sbatch -N 4 slurm/nersc-flex.sh tasks.txt -n 128      # one task per physical core
#
# NERSC's flex QOS runs "variable-time" jobs at a discount: you give a minimum
# (--time-min) and a maximum (--time) run time, and Slurm may start the job in
# any gap of the schedule at least --time-min long, with a time limit anywhere
# between the two. Such a job is cut short routinely, so it must be able to
# stop and continue. This is PyTaskFarmer's flex recipe with mpifarmer: shortly
# before the limit Slurm sends SIGUSR1, the farmer stops and records what is
# left, and the job requeues itself; the next run continues in the same work
# directory, until the list is done. NERSC's own recipe sources a helper
# (`requeue_job func_trap USR1`) that requeues on the signal whatever the state
# of the work; here the farmer's exit code decides, so a finished list ends the
# job instead of requeueing it once more.
#
# The limits below were NERSC's when this was written; check
# https://docs.nersc.gov/jobs/policy/ and https://docs.nersc.gov/jobs/examples/
# (variable-time jobs) for the current ones. Not tested at NERSC itself: the
# repository's tests run it on a one-host Slurm with --constraint= overridden.
#
# Lines starting with "#SBATCH" are read by sbatch as options; options given on
# the sbatch command line take precedence over them. To charge a project other
# than your default one, add an "#SBATCH --account=mXXXX" line.
#
#SBATCH --job-name=mpifarmer-flex
#SBATCH --qos=flex
# Perlmutter CPU nodes.
#SBATCH --constraint=cpu
#SBATCH --nodes=1
# One farmer rank per node, owning the node's 256 hardware threads; it runs as
# many tasks at once unless you pass -n (e.g. -n 128: one per physical core).
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=256
# The most this job may run in one go, and the least time worth starting it
# for (flex allows at most 2 hours here). Make --time-min several times longer
# than your longest task: a task cut short is run again from its start.
#SBATCH --time=48:00:00
#SBATCH --time-min=02:00:00
# Allow requeueing, and warn the batch shell ("B:") with SIGUSR1 about 5 min
# before the limit. The warning comes from a periodic sweep, so it may be late
# by up to a minute: keep the margin well above the farmer's stopping time
# (at most 10 s).
#SBATCH --requeue
#SBATCH --signal=B:USR1@300
# All runs of the job write to one log, appended to after each requeue.
#SBATCH --open-mode=append
#SBATCH --output=mpifarmer-flex-%j.out

# Stop on the use of an unset variable (a typo in this script).
set -u

# The task list is the first argument; everything after it goes to mpifarmer.
tasklist=${1:?usage: sbatch nersc-flex.sh TASKLIST [mpifarmer options ...]}
shift

# Which Python runs mpifarmer: python3 from PATH (e.g. `module load python`
# and your environment with mpifarmer installed, before sbatch), or set
# MPIFARMER_PYTHON=/path/to/venv/bin/python.
python=${MPIFARMER_PYTHON:-python3}

# How often the job may requeue itself before giving up (a task longer than
# any run could ever get would otherwise requeue forever).
max_requeues=${MPIFARMER_MAX_REQUEUES:-20}

echo "job ${SLURM_JOB_ID:-?} restart ${SLURM_RESTART_COUNT:-0} on ${SLURM_JOB_NODELIST:-$(hostname)}, $(date)"

# SIGUSR1 (the warning): pass it on to srun, which forwards it to every rank.
signalled=0
farmer_pid=
on_usr1() {
    signalled=1
    echo "SIGUSR1 received, $(date): asking the farmer to stop"
    if [ -n "$farmer_pid" ]; then kill -USR1 "$farmer_pid" 2>/dev/null; fi
}
trap on_usr1 USR1

# The farmer runs in the background because bash handles a trap only after the
# foreground command ends. -K ends the whole step if one rank dies. At NERSC,
# srun's default MPI plugin (cray_shasta) is right for an mpi4py built against
# Cray MPICH (slurm/README.md says how); with the mpich wheel that comes
# with mpifarmer from pip, add --mpi=pmi2. With one rank per job, as
# above, the farmer does not use MPI at all.
srun_options=(--kill-on-bad-exit=1 --cpus-per-task="${SLURM_CPUS_PER_TASK:-1}")
srun "${srun_options[@]}" "$python" -m mpifarmer "$tasklist" "$@" &
farmer_pid=$!

# wait returns early (code > 128) when the trap runs; wait again until the
# farmer's own exit code comes back (a further wait then says 127).
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

# Exit code 3: stopped with tasks left, so come back for another slot.
if [ "$status" -eq 3 ]; then
    if [ "${SLURM_RESTART_COUNT:-0}" -lt "$max_requeues" ]; then
        echo "tasks are left: requeueing job $SLURM_JOB_ID"
        scontrol requeue "$SLURM_JOB_ID"
    else
        echo "tasks are left, but job $SLURM_JOB_ID was requeued $max_requeues times already: not again"
    fi
fi
exit "$status"
