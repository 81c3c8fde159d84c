#!/usr/bin/env bash
# Start a real single-node SLURM cluster (munged + slurmctld + slurmd) on this
# machine, for the end-to-end tests and CI. Must run as root; safe to re-run.
#
#   sudo bash tests/slurm/setup_slurm.sh      # prints one summary line
#   sudo bash tests/slurm/teardown_slurm.sh   # stops what this script started
#
# Exit codes: 0 ready; 3 cannot be set up here (not root, no apt, install
# failed, a foreign SLURM already running): the reason is the one line on
# stderr and the tests skip with it, or fail with it under CI (CI=true), where
# each of these is a fault; anything else is a real failure.
#
# No systemd and no cgroups are needed: the daemons daemonize themselves,
# process tracking is proctrack/linuxproc and task binding task/none.
# The config must live at /etc/slurm/slurm.conf: the job step of the
# snakemake SLURM plugin drops SLURM_CONF from the environment of `srun`.
#
# Environment knobs (all optional):
#   NEUROATTACK_SLURM_STATE      state dir with the PID file (/run/neuroattack-slurm)
#   NEUROATTACK_SLURM_PARTITION  partition name (debug)
#   NEUROATTACK_SLURM_TIMEOUT    seconds to wait for the node to be idle (60)
set -euo pipefail
unset SLURM_CONF

STATE_DIR=${NEUROATTACK_SLURM_STATE:-/run/neuroattack-slurm}
PIDS_FILE=$STATE_DIR/pids
PARTITION=${NEUROATTACK_SLURM_PARTITION:-debug}
TIMEOUT=${NEUROATTACK_SLURM_TIMEOUT:-60}
CLUSTER=neuroattack
CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
MARKER="# Written by tests/slurm/setup_slurm.sh (neuroattack test cluster)."
SPOOL_CTLD=/var/spool/slurmctld
SPOOL_D=/var/spool/slurmd
LOG_DIR=/var/log/slurm
START=$(date +%s.%N)
trap 'echo "setup_slurm: failed at line $LINENO: $BASH_COMMAND" >&2' ERR

cannot() { echo "setup_slurm: $*" >&2; exit 3; }
fail() { echo "setup_slurm: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || cannot "must run as root (uid $(id -u)); SLURM daemons need it"

# --- 1. packages --------------------------------------------------------------
export PATH=$PATH:/usr/sbin:/sbin
# Installed already (a re-run, or a machine that has the packages):
# no apt-get at all.
have_all() {
    local b
    for b in slurmctld slurmd sbatch squeue sinfo scontrol munged munge unmunge; do
        command -v "$b" >/dev/null 2>&1 || return 1
    done
}
if ! have_all; then
    command -v apt-get >/dev/null 2>&1 || cannot "apt-get not available: cannot install slurmctld/slurmd/munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null 2>&1 || cannot "apt-get update failed (no Debian package registry reachable?)"
    apt-get install -y -qq --no-install-recommends \
        slurmctld slurmd slurm-client munge >/dev/null 2>&1 \
        || cannot "apt-get install slurmctld slurmd slurm-client munge failed"
    have_all || cannot "SLURM/munge binaries missing after apt-get install"
fi

# --- 2. node facts and config -------------------------------------------------
HOST=$(hostname -s)
[ -n "$HOST" ] || fail "hostname -s is empty"
CPUS=$(nproc --all 2>/dev/null || nproc)
# Topology as slurmd sees it (falls back to a plain CPU count).
TOPO=$(slurmd -C 2>/dev/null | sed -n 's/^NodeName=[^ ]* \(CPUs=.*ThreadsPerCore=[0-9]*\).*/\1/p' | head -n1)
[ -n "$TOPO" ] || TOPO="CPUs=$CPUS"
MEM_MB=$(awk '/^MemTotal:/ {print int($2/1024)}' /proc/meminfo)
REAL_MEM=$(( MEM_MB * 95 / 100 ))   # a bit below the real memory, or slurmd drains the node

mkdir -p "$STATE_DIR" "$SPOOL_CTLD" "$SPOOL_D" "$LOG_DIR" "$CONF_DIR"
chmod 0755 "$STATE_DIR" "$SPOOL_CTLD" "$SPOOL_D"

# One GPU for the gres plugin. A real /dev/nvidia0 is used as is. Otherwise a
# stand-in: slurmd insists on a character or block device, and takes the
# trailing 0 of the name as the index it exports as CUDA_VISIBLE_DEVICES, so
# a symlink named nvidia0 to /dev/null does (no mknod, no fake /dev entry).
if [ -c /dev/nvidia0 ]; then
    GPU_FILE=/dev/nvidia0
else
    GPU_FILE=$STATE_DIR/nvidia0
    ln -sfn /dev/null "$GPU_FILE"
fi

# Keep a copy of a slurm.conf that this script did not write.
if [ -f "$CONF" ] && ! grep -qF "$MARKER" "$CONF" && [ ! -e "$CONF.before-neuroattack" ]; then
    cp -p "$CONF" "$CONF.before-neuroattack"
fi

NEW_CONF=$(cat <<EOF
$MARKER
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
# No cgroups on the test machines: plain /proc process tracking, no binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# No slurmdbd: no accounting (sacct does not work; use squeue for status).
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=512
GresTypes=gpu
# Finished jobs stay visible to squeue this long (the plugin polls squeue).
MinJobAge=300
ReturnToService=2
# Reject jobs that can never run here (e.g. more CPUs than the node has) at
# submission, so a test fails at once instead of waiting on a pending job.
EnforcePartLimits=ALL
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
StateSaveLocation=$SPOOL_CTLD
SlurmdSpoolDir=$SPOOL_D
SlurmctldPidFile=$STATE_DIR/slurmctld.pid
SlurmdPidFile=$STATE_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
NodeName=$HOST NodeAddr=127.0.0.1 $TOPO RealMemory=$REAL_MEM Gres=gpu:1 State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
)
NEW_GRES=$(printf '%s\nAutoDetect=off\nName=gpu File=%s\n' "$MARKER" "$GPU_FILE")

changed=0
write_if_changed() {  # path content
    if [ ! -f "$1" ] || [ "$(cat "$1")" != "$2" ]; then
        printf '%s\n' "$2" > "$1.tmp.$$" && mv -f "$1.tmp.$$" "$1"
        changed=1
    fi
}
write_if_changed "$CONF" "$NEW_CONF"
write_if_changed "$CONF_DIR/gres.conf" "$NEW_GRES"
chmod 0644 "$CONF" "$CONF_DIR/gres.conf"
# slurmd 22.05 always loads a cgroup plugin (it autodetects v1/v2 and, with
# proctrack/linuxproc + task/none, never creates a cgroup): no cgroup.conf.
if [ -f "$CONF_DIR/cgroup.conf" ] && grep -qF "$MARKER" "$CONF_DIR/cgroup.conf"; then
    rm -f "$CONF_DIR/cgroup.conf"
fi

# --- 3. daemons ---------------------------------------------------------------
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
recorded() { if [ -f "$PIDS_FILE" ]; then awk -v n="$1" '$1 == n {print $2}' "$PIDS_FILE"; fi; }
node_state() { sinfo -h -n "$HOST" -o '%T' 2>/dev/null | head -n1 || true; }
summary() {
    local cpus mem
    cpus=$(sinfo -h -n "$HOST" -o '%c' 2>/dev/null | head -n1 || true)
    mem=$(sinfo -h -n "$HOST" -o '%m' 2>/dev/null | head -n1 || true)
    echo "slurm ready: cluster=$CLUSTER node=$HOST state=$(node_state) cpus=$cpus mem_mb=$mem gres=gpu:1 ($GPU_FILE) partition=$PARTITION conf=$CONF pids=$PIDS_FILE $1 in $(awk -v s="$START" -v e="$(date +%s.%N)" 'BEGIN {printf "%.1f", e - s}')s"
}

# Fast path: our daemons are up, the config did not change and the node is usable.
if [ "$changed" -eq 0 ] && alive "$(recorded slurmctld)" && alive "$(recorded slurmd)" \
        && { [ -z "$(recorded munged)" ] || alive "$(recorded munged)"; }; then
    case "$(node_state)" in
        idle*|mix*|alloc*) summary "(already running)"; exit 0 ;;
    esac
fi

# Stop whatever an earlier run of this script left behind.
bash "$(dirname "$0")/teardown_slurm.sh" >/dev/null 2>&1 || true
: > "$PIDS_FILE"

pgrep -x slurmctld >/dev/null 2>&1 && cannot "a slurmctld not started by this script is running; stop it first"
pgrep -x slurmd >/dev/null 2>&1 && cannot "a slurmd not started by this script is running; stop it first"

# munge: reuse a working munged (e.g. a system service), else start our own.
if ! { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }; then
    id munge >/dev/null 2>&1 || fail "user munge does not exist (munge package broken?)"
    mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
    if [ ! -s /etc/munge/munge.key ]; then
        if command -v mungekey >/dev/null 2>&1; then
            mungekey --create --keyfile=/etc/munge/munge.key --force >/dev/null
        else
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        fi
    fi
    chown munge:munge /etc/munge /etc/munge/munge.key /run/munge /var/lib/munge /var/log/munge
    chmod 0700 /etc/munge /var/lib/munge /var/log/munge
    chmod 0755 /run/munge
    chmod 0400 /etc/munge/munge.key
    rm -f /run/munge/munged.pid
    runuser -u munge -- munged --pid-file=/run/munge/munged.pid \
        || fail "munged did not start (see /var/log/munge/munged.log)"
    for _ in $(seq 50); do [ -s /run/munge/munged.pid ] && break; sleep 0.1; done
    echo "munged $(cat /run/munge/munged.pid)" >> "$PIDS_FILE"
    for _ in $(seq 50); do
        munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.1
    done
    munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 || fail "munge does not answer"
fi

start_daemon() {  # name pidfile args...
    local name=$1 pidfile=$2; shift 2
    rm -f "$pidfile"
    "$@" || fail "$name did not start; last log lines: $(tail -n 5 "$LOG_DIR/$name.log" 2>/dev/null | tr '\n' ' ')"
    for _ in $(seq 100); do [ -s "$pidfile" ] && break; sleep 0.1; done
    [ -s "$pidfile" ] || fail "$name wrote no PID file; last log lines: $(tail -n 5 "$LOG_DIR/$name.log" 2>/dev/null | tr '\n' ' ')"
    echo "$name $(cat "$pidfile")" >> "$PIDS_FILE"
}
# -c: start with a clean job state (leftovers of earlier test runs are gone).
start_daemon slurmctld "$STATE_DIR/slurmctld.pid" slurmctld -c -f "$CONF"
start_daemon slurmd "$STATE_DIR/slurmd.pid" slurmd -f "$CONF"

# --- 4. wait for the node ------------------------------------------------------
resumed=0
deadline=$(( $(date +%s) + TIMEOUT ))
while :; do
    for d in slurmctld slurmd; do
        alive "$(recorded $d)" || fail "$d exited; last log lines: $(tail -n 5 "$LOG_DIR/$d.log" 2>/dev/null | tr '\n' ' ')"
    done
    state=$(node_state)
    case "$state" in
        idle*) break ;;
        down*|drain*|fail*)
            if [ "$resumed" -eq 0 ]; then
                scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true
                resumed=1
            fi ;;
    esac
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "setup_slurm: node $HOST not idle after ${TIMEOUT}s (state '${state:-none}')" >&2
        tail -n 20 "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" >&2 2>/dev/null || true
        exit 1
    fi
    sleep 0.5
done
summary "(started)"
