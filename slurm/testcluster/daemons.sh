# Shell functions shared by up.sh and down.sh (sourced, not run): find and stop the daemons
# that up.sh started, by their pid files. The caller defines log().

# running PID COMM: true if PID is a live (not zombie) process named COMM.
running() {
    local pid=$1 comm=$2 stat
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$comm" ]] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

# pid_alive PIDFILE COMM: print the pid in PIDFILE if that process is running
# and its /proc/PID/comm is COMM.
pid_alive() {
    local pidfile=$1 comm=$2 pid
    [[ -r $pidfile ]] || return 1
    pid=$(tr -dc '0-9' <"$pidfile")
    [[ -n $pid ]] && running "$pid" "$comm" || return 1
    echo "$pid"
}

# stop_all PIDFILE COMM [PIDFILE COMM ...]: SIGTERM each matching process, wait
# up to 10 s for all of them together, SIGKILL survivors, remove the pid files.
stop_all() {
    local -a pids=() comms=() files=()
    local pid i j alive
    while (($# >= 2)); do
        if pid=$(pid_alive "$1" "$2"); then
            log "stopping $2 (pid $pid)"
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid") comms+=("$2")
        fi
        files+=("$1")
        shift 2
    done
    for ((i = 0; i < 100; i++)); do
        alive=0
        for j in "${!pids[@]}"; do
            running "${pids[j]}" "${comms[j]}" && alive=1
        done
        ((alive)) || break
        sleep 0.1
    done
    for j in "${!pids[@]}"; do
        if running "${pids[j]}" "${comms[j]}"; then
            log "${comms[j]} (pid ${pids[j]}) ignored SIGTERM for 10 s, sending SIGKILL"
            kill -KILL "${pids[j]}" 2>/dev/null || true
        fi
    done
    ((${#files[@]})) && rm -f "${files[@]}"
    return 0
}

# stop_slurm_daemons DIR: stop the node daemons and the controller whose pid
# files up.sh keeps under DIR/run (not munged: see down.sh).
stop_slurm_daemons() {
    local dir=$1 f
    local -a args=()
    for f in "$dir"/run/slurmd-*.pid; do
        [[ -e $f ]] && args+=("$f" slurmd)
    done
    args+=("$dir/run/slurmctld.pid" slurmctld)
    stop_all "${args[@]}"
}
