#!/usr/bin/env bash
# A single-node SLURM cluster on this machine (slurmctld + slurmd + munged, all on this host), for
# `hydra/launcher=slurm` and the integration tests. Installs Debian's slurm-wlm and munge when they
# are missing (needs root and apt). No accounting; JobRequeue=1, so `scontrol requeue` works.
#
#   bash scripts/local-slurm.sh start     # the node is idle in `sinfo` when this returns
#   bash scripts/local-slurm.sh status | stop
#
# Settings (environment): TRPO_SLURM_STATE (/var/spool/trpo_exp-slurm: state, logs, pid files).
# The config goes to /etc/slurm/slurm.conf (where sbatch, squeue, ... look); a slurm.conf that this
# script did not write is never overwritten.
set -euo pipefail
STATE="${TRPO_SLURM_STATE:-/var/spool/trpo_exp-slurm}"
CONF=/etc/slurm/slurm.conf
MARK="# written by trpo_exp scripts/local-slurm.sh"
MUNGE_PID=/run/munge/munged.pid
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

die() { echo "local-slurm: error: $*" >&2; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "$1 needs root"; }

install_packages() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
        && command -v sbatch >/dev/null && return 0
    need_root "installing Debian's slurm-wlm and munge (apt-get install slurm-wlm munge)"
    echo "local-slurm: installing Debian's slurm-wlm and munge ..." >&2
    local log=/var/tmp/trpo_exp-slurm-apt.log
    (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y slurm-wlm munge) >"$log" 2>&1 \
        || die "apt-get install slurm-wlm munge failed (see $log)"
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_munge() {
    if [ ! -s /etc/munge/munge.key ]; then
        mkdir -p /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    alive "$MUNGE_PID" && return 0
    runuser -u munge -- munged --pid-file="$MUNGE_PID" >/dev/null 2>&1 \
        || die "munged did not start (see /var/log/munge/munged.log)"
    munge -n </dev/null | unmunge >/dev/null 2>&1 || die "munge does not work (munge -n | unmunge failed)"
}

write_conf() {
    local host cpus mem
    host=$(hostname -s)
    cpus=$(nproc)
    # 95% of MemTotal (MiB): slurmd drains a node that has less memory than configured.
    mem=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.95}' /proc/meminfo)
    if [ -f "$CONF" ] && ! head -n 1 "$CONF" | grep -qxF "$MARK"; then
        die "$CONF exists and was not written by this script (move it away to use the local cluster)"
    fi
    mkdir -p /etc/slurm "$STATE/ctld" "$STATE/d" "$STATE/log"
    cat >"$CONF.tmp" <<EOF
$MARK
ClusterName=trpo-local
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobRequeue=1
ReturnToService=2
MinJobAge=300
KillWait=30
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem} State=UNKNOWN
PartitionName=local Nodes=${host} Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$CONF.tmp" "$CONF"
}

wait_idle() {
    local host; host=$(hostname -s)
    for _ in $(seq 1 120); do
        case "$(sinfo -h -n "$host" -o %T 2>/dev/null || true)" in
            idle|mixed|allocated|completing) return 0 ;;
            *drain*|down*) scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true ;;
        esac
        sleep 0.5
    done
    die "the node did not become idle within 60 s (sinfo: $(sinfo -h -o '%T %E' 2>/dev/null | head -n 1); logs in $STATE/log)"
}

start() {
    need_root "starting slurmctld, slurmd and munged"
    install_packages
    write_conf
    start_munge
    if ! alive "$STATE/slurmctld.pid"; then
        slurmctld >/dev/null 2>&1 || die "slurmctld did not start (see $STATE/log/slurmctld.log)"
    fi
    if ! alive "$STATE/slurmd.pid"; then
        slurmd >/dev/null 2>&1 || die "slurmd did not start (see $STATE/log/slurmd.log)"
    fi
    wait_idle
    echo "local-slurm: running: partition local, node $(hostname -s), $(nproc) CPUs"
}

stop_daemon() {  # pid file, name
    local pid
    alive "$1" || return 0
    pid=$(cat "$1")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    echo "local-slurm: $2 did not stop within 10 s: killed" >&2
}

stop() {
    stop_daemon "$STATE/slurmd.pid" slurmd
    stop_daemon "$STATE/slurmctld.pid" slurmctld
    stop_daemon "$MUNGE_PID" munged
    echo "local-slurm: stopped"
}

status() {
    if alive "$STATE/slurmctld.pid" && alive "$STATE/slurmd.pid" && alive "$MUNGE_PID"; then
        echo "running: $(sinfo -h -o '%P %D %T' 2>/dev/null | head -n 1)"
    else
        echo "stopped"; exit 3
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: bash scripts/local-slurm.sh start|stop|status" >&2; exit 2 ;;
esac
