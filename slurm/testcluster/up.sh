#!/usr/bin/env bash
# Start (or health-check) a single-host Slurm test cluster.
#
#   bash slurm/testcluster/up.sh                      # one node named $(hostname -s)
#   SLURM_CI_NODES=3 bash slurm/testcluster/up.sh     # node[1-3], three slurmd on this host
#
# Environment:
#   SLURM_CI_DIR      state/spool/log/pid directory       (default /tmp/slurm-ci)
#   SLURM_CI_NODES    number of slurmd node daemons        (default 1)
#   SLURM_CI_CPUS     CPUs declared per node               (default 8)
#   SLURM_CI_TIMEOUT  seconds to wait for the nodes to be ready (default 60)
#
# Idempotent: when the cluster is already up with the same configuration this
# is only a health check. When the generated configuration differs from the one
# in /etc/slurm, the daemons this script started are restarted.
set -euo pipefail

CI_DIR=${SLURM_CI_DIR:-/tmp/slurm-ci}
NODES=${SLURM_CI_NODES:-1}
CPUS=${SLURM_CI_CPUS:-8}
TIMEOUT=${SLURM_CI_TIMEOUT:-60}
CONF_DIR=/etc/slurm
PACKAGES=(slurmctld slurmd slurm-client munge libpmix-dev)

log() { printf 'up.sh: %s\n' "$*" >&2; }
die() { printf 'up.sh: ERROR: %s\n' "$*" >&2; exit 1; }

[[ $NODES =~ ^[1-9][0-9]*$ ]] || die "SLURM_CI_NODES must be a positive integer, got '$NODES'"
[[ $CPUS =~ ^[1-9][0-9]*$ ]] || die "SLURM_CI_CPUS must be a positive integer, got '$CPUS'"
[[ $TIMEOUT =~ ^[0-9]+$ ]] || die "SLURM_CI_TIMEOUT must be a number of seconds, got '$TIMEOUT'"
(( NODES <= 50 )) || die "SLURM_CI_NODES=$NODES is more than this script supports (50)"
[[ $(id -u) -eq 0 ]] || die "must run as root (installs packages, runs the daemons as root)"

HOST=$(hostname -s)
[[ -n $HOST ]] || die "hostname -s returned nothing"

mkdir -p "$CI_DIR"/{state,spool,log,run}
chmod 755 "$CI_DIR"

# Serialise concurrent up.sh/down.sh runs (several test sessions may call us).
# The daemons started below must not inherit fd 9 (they are started with 9>&-).
exec 9>"$CI_DIR/.lock"
flock -w 300 9 || die "could not lock $CI_DIR/.lock within 300 s"

# ---------------------------------------------------------------- helpers ---

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

node_names() {
    if (( NODES == 1 )); then
        echo "$HOST"
    else
        local k
        for ((k = 1; k <= NODES; k++)); do echo "node$k"; done
    fi
}

show_logs() {
    local f
    for f in "$CI_DIR"/log/*.log; do
        [[ -e $f ]] || continue
        printf '\n----- last lines of %s -----\n' "$f" >&2
        tail -n 15 "$f" >&2
    done
}

# --------------------------------------------------------------- packages ---

installed=0
missing=()
for p in "${PACKAGES[@]}"; do
    if [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) != "install ok installed" ]]; then
        missing+=("$p")
    fi
done
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed"
    # policy-rc.d (or the absence of an init system) keeps postinst from starting
    # the daemons; we start them ourselves below.
    apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >"$CI_DIR/log/apt-install.log" 2>&1 \
        || { tail -n 30 "$CI_DIR/log/apt-install.log" >&2; die "apt-get install failed (log: $CI_DIR/log/apt-install.log)"; }
    installed=1
fi
for b in slurmctld slurmd sinfo srun scontrol munged mungekey; do
    command -v "$b" >/dev/null || die "$b not found after installing ${PACKAGES[*]}"
done

# ----------------------------------------------------------------- config ---

gen_slurm_conf() {
    cat <<EOF
# Generated by mpifarmer slurm/testcluster/up.sh -- do not edit, rerun up.sh.
# Single-host test cluster: $NODES node(s), $CPUS declared CPUs each.
ClusterName=mpifarmer-ci
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=cred_expire=10
SlurmctldPort=6817
SlurmctldPidFile=$CI_DIR/run/slurmctld.pid
SlurmctldLogFile=$CI_DIR/log/slurmctld.log
SlurmdPidFile=$CI_DIR/run/slurmd-%n.pid
SlurmdLogFile=$CI_DIR/log/slurmd-%n.log
SlurmdSpoolDir=$CI_DIR/spool/slurmd-%n
StateSaveLocation=$CI_DIR/state
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SlurmdParameters=config_overrides
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
EnforcePartLimits=ALL
MpiDefault=pmi2
KillWait=5
JobRequeue=1
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
MinJobAge=300
ReturnToService=2
InactiveLimit=0
SlurmctldTimeout=60
SlurmdTimeout=60
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
EOF
    if (( NODES == 1 )); then
        echo "NodeName=$HOST NodeAddr=127.0.0.1 Port=6818 CPUs=$CPUS RealMemory=4000 State=UNKNOWN"
    else
        echo "NodeName=node[1-$NODES] NodeHostname=$HOST NodeAddr=127.0.0.1 Port=[6821-$((6820 + NODES))] CPUs=$CPUS RealMemory=4000 State=UNKNOWN"
    fi
    echo "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP"
}

gen_mpi_conf() {
    echo "# Generated by mpifarmer slurm/testcluster/up.sh"
    echo "PMIxEnv=PMIX_SECURITY_MODE=native"
}

mkdir -p "$CONF_DIR"
changed=0
new_conf=$(gen_slurm_conf)
new_mpi=$(gen_mpi_conf)
if [[ ! -f $CONF_DIR/slurm.conf || $(cat "$CONF_DIR/slurm.conf") != "$new_conf" ]]; then
    printf '%s\n' "$new_conf" >"$CONF_DIR/slurm.conf.new" && mv "$CONF_DIR/slurm.conf.new" "$CONF_DIR/slurm.conf"
    log "wrote $CONF_DIR/slurm.conf"
    changed=1
fi
if [[ ! -f $CONF_DIR/mpi.conf || $(cat "$CONF_DIR/mpi.conf") != "$new_mpi" ]]; then
    printf '%s\n' "$new_mpi" >"$CONF_DIR/mpi.conf.new" && mv "$CONF_DIR/mpi.conf.new" "$CONF_DIR/mpi.conf"
    log "wrote $CONF_DIR/mpi.conf"
    changed=1
fi
(( installed )) && changed=1   # e.g. libpmix-dev is only picked up by a fresh slurmd

# ------------------------------------------------------------------ munge ---

if [[ ! -s /etc/munge/munge.key ]]; then
    log "creating /etc/munge/munge.key"
    mkdir -p /etc/munge
    mungekey --create --keyfile=/etc/munge/munge.key
fi
chown munge:munge /etc/munge/munge.key 2>/dev/null || true
chmod 400 /etc/munge/munge.key

MUNGE_PID=/run/munge/munged.pid
if ! pid_alive "$MUNGE_PID" munged >/dev/null; then
    log "starting munged"
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge
    chmod 755 /run/munge
    runuser -u munge -- munged --force 9>&- || die "munged failed to start (see /var/log/munge/munged.log)"
    for ((i = 0; i < 50; i++)); do pid_alive "$MUNGE_PID" munged >/dev/null && break; sleep 0.1; done
    pid=$(pid_alive "$MUNGE_PID" munged) || die "munged did not write $MUNGE_PID"
    # Record that we started it, so down.sh may stop it.
    echo "$pid" >"$CI_DIR/run/munged.pid"
fi
munge -n | unmunge >/dev/null 2>&1 || die "munge round trip (munge -n | unmunge) failed"

# ---------------------------------------------------------------- daemons ---

if (( changed )); then
    # Restart only what we started: pid files under our state dir.
    args=()
    for f in "$CI_DIR"/run/slurmd-*.pid; do
        [[ -e $f ]] && args+=("$f" slurmd)
    done
    args+=("$CI_DIR/run/slurmctld.pid" slurmctld)
    stop_all "${args[@]}"
fi

if ! pid_alive "$CI_DIR/run/slurmctld.pid" slurmctld >/dev/null; then
    log "starting slurmctld"
    # -i: ignore unreadable/incompatible saved state (e.g. after a node-set change)
    slurmctld -i 9>&- || { show_logs; die "slurmctld failed to start"; }
fi

for node in $(node_names); do
    if ! pid_alive "$CI_DIR/run/slurmd-$node.pid" slurmd >/dev/null; then
        log "starting slurmd -N $node"
        mkdir -p "$CI_DIR/spool/slurmd-$node"
        slurmd -N "$node" 9>&- || { show_logs; die "slurmd -N $node failed to start"; }
    fi
done

# ------------------------------------------------------------ readiness -----

# A node is ready when slurmctld answers and reports it idle (or, when jobs are
# already running on a healthy cluster, mixed/allocated/completing), without the
# '*' (not responding) suffix and not down/drained.
want=$(node_names | sort | tr '\n' ' ')
deadline=$((SECONDS + TIMEOUT))
resumed=0
while :; do
    if states=$(timeout 10 sinfo -h -N -o '%N %t' 2>/dev/null); then
        ready=$(awk '$2 ~ /^(idle|mix|alloc|comp)$/ {print $1}' <<<"$states" | sort -u | tr '\n' ' ')
        [[ $ready == "$want" ]] && break
        # Nodes left down/drained by an earlier run: ask slurmctld to resume them once.
        if (( !resumed )); then
            bad=$(awk '$2 ~ /^(down|drain|drng|fail)$/ {print $1}' <<<"$states" | sort -u | paste -sd, -)
            if [[ -n $bad ]]; then
                log "resuming nodes $bad"
                scontrol update nodename="$bad" state=resume >/dev/null 2>&1 || true
                resumed=1
            fi
        fi
    else
        states="(sinfo failed: slurmctld not answering)"
    fi
    if (( SECONDS >= deadline )); then
        show_logs
        printf '\nsinfo -N:\n%s\n' "$states" >&2
        dead=""
        pid_alive "$CI_DIR/run/slurmctld.pid" slurmctld >/dev/null || dead+=" slurmctld"
        for node in $(node_names); do
            pid_alive "$CI_DIR/run/slurmd-$node.pid" slurmd >/dev/null || dead+=" slurmd-$node"
        done
        [[ -n $dead ]] && log "not running:$dead (see their logs above)"
        die "nodes '${want% }' not ready after ${TIMEOUT}s (logs in $CI_DIR/log)"
    fi
    sleep 0.2
done

log "cluster ready: $(sinfo -h -o '%P %a %D %t %N' | tr '\n' ' ')"
