#!/usr/bin/env bash
# Stop the single-node SLURM that tests/slurm/setup_slurm.sh started: only the
# daemons whose PIDs it recorded (a system munged it reused is left alone).
# Safe to run when nothing is running.
set -uo pipefail
unset SLURM_CONF
export PATH=$PATH:/usr/sbin:/sbin

STATE_DIR=${NEUROATTACK_SLURM_STATE:-/run/neuroattack-slurm}
PIDS_FILE=$STATE_DIR/pids

[ -f "$PIDS_FILE" ] || { echo "teardown_slurm: nothing recorded in $PIDS_FILE"; exit 0; }

pid_of() { awk -v n="$1" '$1 == n {print $2}' "$PIDS_FILE"; }
# A PID is ours only while it still runs the program we recorded for it.
is_ours() { [ -n "$2" ] && [ "$(cat "/proc/$2/comm" 2>/dev/null)" = "$1" ]; }

# Cancel jobs on our private cluster so no job steps outlive the daemons.
if is_ours slurmctld "$(pid_of slurmctld)"; then
    scancel --quiet --full --user="$(id -un)" >/dev/null 2>&1 || true
fi

stopped=()
pids=()
for name in slurmd slurmctld munged; do
    pid=$(pid_of "$name")
    is_ours "$name" "$pid" || continue
    kill -TERM "$pid" 2>/dev/null || continue
    pids+=("$pid")
    stopped+=("$name=$pid")
done
# They stop in 1-2 s; give them 10 s, then KILL.
for _ in $(seq 100); do
    left=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && left=1; done
    [ "$left" -eq 0 ] && break
    sleep 0.1
done
for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
rm -f "$PIDS_FILE"
echo "teardown_slurm: stopped ${stopped[*]:-nothing}"
