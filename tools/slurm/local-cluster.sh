#!/usr/bin/env bash
# A one-node Slurm cluster on localhost, for tests and for trying `--executor slurm` on a laptop.
#
#   tools/slurm/local-cluster.sh start DIR   # writes DIR/slurm.conf, starts munged, slurmctld, slurmd
#   export SLURM_CONF=DIR/slurm.conf         # what `sbatch`, `squeue`, `scancel` need to find it
#   tools/slurm/local-cluster.sh stop DIR    # stops exactly the daemons `start` started (DIR/*.pid)
#
# Needs Debian's `slurm-wlm` and `munge` (`apt-get install slurm-wlm munge`). Everything the
# cluster writes — configuration, munge key and socket, state, logs, pid files — lives under DIR,
# so it touches no system configuration and several can run side by side (ports from $SLURM_PORT,
# default 17817/17818). Runs as root (CI) or as an ordinary user (then jobs run as that user).
set -euo pipefail

cmd=${1:-}
dir=${2:-}
if [[ -z "$cmd" || -z "$dir" ]]; then
    echo "usage: $0 start|stop DIR" >&2
    exit 2
fi

stop() {
    local d=$1
    for name in slurmd slurmctld munged; do
        local f="$d/$name.pid"
        [[ -f "$f" ]] || continue
        local pid
        pid=$(cat "$f")
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$f"
    done
}

case "$cmd" in
stop)
    stop "$dir"
    exit 0
    ;;
start) ;;
*)
    echo "usage: $0 start|stop DIR" >&2
    exit 2
    ;;
esac

for b in munged slurmctld slurmd sbatch; do
    command -v "$b" >/dev/null || { echo "$0: $b not found: apt-get install slurm-wlm munge" >&2; exit 1; }
done
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
mkdir -p "$dir/munge" "$dir/state" "$dir/spool" "$dir/log"
chmod 700 "$dir/munge"
user=$(id -un)
host=$(hostname -s)
port=${SLURM_PORT:-17817}

# munge: a private key and socket.
if [[ ! -f "$dir/munge/munge.key" ]]; then
    dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$dir/munge/munge.key"
fi
socket="$dir/munge/munge.socket"
munged --force --key-file="$dir/munge/munge.key" --socket="$socket" \
    --pid-file="$dir/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munge.seed"

# The node line from the hardware (CPUs, memory) as slurmd sees it.
node=$(slurmd -C | head -1)
node=${node/NodeName=* CPUs/NodeName=$host CPUs}
cat > "$dir/slurm.conf" <<CONF
ClusterName=agentmerge-local
SlurmctldHost=$host
SlurmUser=$user
SlurmdUser=root
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
AuthInfo=socket=$socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=1
JobAcctGatherParams=OverMemoryKill
AccountingStorageType=accounting_storage/none
SchedulerParameters=batch_sched_delay=0
MinJobAge=30
DefMemPerCPU=1024
KillWait=2
InactiveLimit=0
ReturnToService=2
MpiDefault=none
$node State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$dir/slurm.conf"
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
# Ready when the node accepts jobs.
for _ in $(seq 100); do
    if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
        echo "slurm up: export SLURM_CONF=$SLURM_CONF"
        exit 0
    fi
    sleep 0.2
done
echo "$0: slurm did not come up; logs in $dir/log" >&2
tail -20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
stop "$dir"
exit 1
