#!/bin/bash
# One mpifarmer per GPU node: each task gets GPUs of its own and the CPUs beside them.
#
#   sbatch slurm/gpu-node.sh TASKLIST [mpifarmer options ...]
#   sbatch -N 4 slurm/gpu-node.sh tasks.jsonl -t jsonl
#
# For the typical node of 4 GPUs and 64 cores: 4 tasks run at once on each
# node, each with 1 GPU (CUDA_VISIBLE_DEVICES and the like name it) and 16
# cores it is bound to (OMP_NUM_THREADS=16), taken near its GPU. A task of the
# jsonl handler may ask for other counts ("gpus": 2, "cores": 32); tasks of
# different sizes share the node without oversubscribing it.
#
# srun starts one rank per node; rank 0 owns the work directory and hands out
# tasks, and every rank finds its own node's GPUs (from what Slurm gave the
# step, SLURM_STEP_GPUS) and CPUs (its affinity mask). The farmer's first log
# line says what it found.
#
# Lines starting with "#SBATCH" are read by sbatch as options; options given on
# the sbatch command line take precedence over them.
#
#SBATCH --job-name=mpifarmer-gpu
#SBATCH --nodes=1
# One rank per node, with all of the node's CPUs and GPUs.
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=64
#SBATCH --gpus-per-node=4
#SBATCH --time=01:00:00
#SBATCH --output=mpifarmer-gpu-%j.out

# Stop on the use of an unset variable (a typo in this script).
set -u

# The task list is the first argument; everything after it goes to mpifarmer.
tasklist=${1:?usage: sbatch gpu-node.sh TASKLIST [mpifarmer options ...]}
shift

# Which Python runs mpifarmer: python3 from PATH (activate your virtual
# environment before sbatch, since sbatch passes on your environment), or set
# MPIFARMER_PYTHON=/path/to/venv/bin/python.
python=${MPIFARMER_PYTHON:-python3}

# GPUs per task (MPIFARMER_GPUS_PER_TASK, default 1) and cores per task
# (MPIFARMER_CORES_PER_TASK, default: the node's CPUs shared evenly among the
# tasks that fit). SLURM_GPUS_PER_NODE may carry a type ("a100:4").
gpus_per_node=${SLURM_GPUS_PER_NODE:-4}
gpus_per_node=${gpus_per_node##*:}
gpus_per_task=${MPIFARMER_GPUS_PER_TASK:-1}
cores_per_task=${MPIFARMER_CORES_PER_TASK:-$(( ${SLURM_CPUS_PER_TASK:-64} / (gpus_per_node / gpus_per_task) ))}
if [ "$cores_per_task" -lt 1 ]; then
    cores_per_task=1
fi

# The defaults go first: an option given after the task list wins over them.
set -- --gpus-per-task "$gpus_per_task" --cores-per-task "$cores_per_task" "$@"

# srun options: as in multinode.sh (--kill-on-bad-exit=1, --mpi=pmi2, and
# --cpus-per-task, which srun does not inherit from sbatch since Slurm 22.05),
# and the node's GPUs for the step (--gpus-per-node).
srun_options=(--kill-on-bad-exit=1 --mpi=pmi2)
if [ -n "${SLURM_CPUS_PER_TASK:-}" ]; then
    srun_options+=(--cpus-per-task="$SLURM_CPUS_PER_TASK")
fi
if [ -n "${SLURM_GPUS_PER_NODE:-}" ]; then
    srun_options+=(--gpus-per-node="$SLURM_GPUS_PER_NODE")
fi

echo "job ${SLURM_JOB_ID:-?}: ${SLURM_NTASKS:-?} ranks on ${SLURM_JOB_NODELIST:-?}, $(date)"

# exec: srun replaces this shell, so the job's exit code is the farmer's
# (0 done, 1 done with failures, 2 bad input, 3 stopped with tasks left).
exec srun "${srun_options[@]}" "$python" -m mpifarmer "$tasklist" "$@"
