#!/usr/bin/env bash
# Stop the single-host Slurm test cluster started by up.sh.
#
# Cancels all jobs, then stops only the daemons up.sh started: those named by
# pid files under $SLURM_CI_DIR/run whose /proc/PID/comm matches the expected
# daemon. SIGTERM first, SIGKILL after 10 s. Safe to run when nothing is up.
set -uo pipefail

CI_DIR=${SLURM_CI_DIR:-/tmp/slurm-ci}

log() { printf 'down.sh: %s\n' "$*" >&2; }

if [[ ! -d $CI_DIR/run ]]; then
    log "nothing to do ($CI_DIR/run does not exist)"
    exit 0
fi

exec 9>"$CI_DIR/.lock"
flock -w 120 9 || log "could not lock $CI_DIR/.lock within 120 s; going on anyway"

# running, pid_alive, stop_all
# shellcheck source=daemons.sh
. "$(dirname "${BASH_SOURCE[0]}")/daemons.sh"

ctld_up=0
pid_alive "$CI_DIR/run/slurmctld.pid" slurmctld >/dev/null && ctld_up=1

if ((ctld_up)) && command -v scancel >/dev/null; then
    jobs=$(timeout 10 squeue -h -o %A 2>/dev/null | sort -u | paste -sd' ' -)
    if [[ -n $jobs ]]; then
        log "cancelling jobs: $jobs"
        # shellcheck disable=SC2086
        timeout 10 scancel $jobs 2>/dev/null || true
        # Give the job steps (KillWait=5) a chance to finish before slurmd goes.
        for ((i = 0; i < 80; i++)); do
            active=$(timeout 5 squeue -h -t running,completing,suspended -o %A 2>/dev/null) || break
            [[ -z $active ]] && break
            sleep 0.25
        done
    fi
fi

# Node daemons and the controller together (munged last: they talk to it).
stop_slurm_daemons "$CI_DIR"

# munged only if up.sh recorded that it started it.
if pid=$(pid_alive "$CI_DIR/run/munged.pid" munged); then
    stop_all "$CI_DIR/run/munged.pid" munged
    rm -f /run/munge/munged.pid
else
    rm -f "$CI_DIR/run/munged.pid"
fi

log "stopped"
exit 0
