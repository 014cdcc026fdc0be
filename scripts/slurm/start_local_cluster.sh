#!/usr/bin/env bash
# A two-node SLURM cluster on this one machine, for CI and for trying the stage scripts under sbatch.
#
# Run as: eval "$(bash scripts/slurm/start_local_cluster.sh)"     # prints `export SLURM_CONF=...`
#         bash scripts/slurm/stop_local_cluster.sh
#
# One slurmctld and two slurmd daemons (-N n1, -N n2) on 127.0.0.1 with distinct ports and 1 CPU each, plus a
# private munged; every file lives under SLURM_LOCAL_DIR (default /tmp/llava_medgpt_slurm), nothing under /etc is
# touched. Needs root and Debian's packages, which this script never installs by itself:
#     apt-get install -y slurm-wlm munge
set -euo pipefail

DIR="${SLURM_LOCAL_DIR:-/tmp/llava_medgpt_slurm}"
PORT_BASE="${SLURM_LOCAL_PORT_BASE:-17000}"  # slurmctld on PORT_BASE, slurmd n1/n2 on PORT_BASE+1/+2
CTLD_PORT="$PORT_BASE"
NODE_PORTS=($((PORT_BASE + 1)) $((PORT_BASE + 2)))
NODES=(n1 n2)

for binary in munged slurmctld slurmd sbatch scontrol; do
  if ! command -v "$binary" >/dev/null 2>&1; then
    echo "start_local_cluster: '$binary' not found; install Debian's packages first: apt-get install -y slurm-wlm munge" >&2
    exit 2
  fi
done
if [[ "$(id -u)" != 0 ]]; then
  echo "start_local_cluster: slurmd must run as root to launch jobs; run this script as root" >&2
  exit 2
fi
if [[ -f "$DIR/slurm.conf" ]] && pgrep -F "$DIR/slurmctld.pid" >/dev/null 2>&1; then
  echo "start_local_cluster: a cluster is already running from $DIR; stop it first (scripts/slurm/stop_local_cluster.sh)" >&2
  exit 2
fi

rm -rf "$DIR"
mkdir -p "$DIR"/{munge,state,spool/n1,spool/n2,log}
chmod 0755 "$DIR"
chmod 0700 "$DIR/munge"

# Private munge key and daemon: the socket path goes into slurm.conf (AuthInfo), so a system munged is not needed.
dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1 count=1024 status=none
chmod 0400 "$DIR/munge/munge.key"
MUNGE_SOCKET="$DIR/munge/munge.socket.2"
munged --force --key-file="$DIR/munge/munge.key" --socket="$MUNGE_SOCKET" \
  --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed"

HOST="$(hostname -s)"
{
  echo "ClusterName=llavamedgpt"
  echo "SlurmctldHost=$HOST(127.0.0.1)"
  echo "SlurmctldPort=$CTLD_PORT"
  echo "SlurmUser=root"
  echo "SlurmdUser=root"
  echo "AuthType=auth/munge"
  echo "CredType=cred/munge"
  echo "AuthInfo=socket=$MUNGE_SOCKET"
  echo "StateSaveLocation=$DIR/state"
  echo "SlurmdSpoolDir=$DIR/spool/%n"
  echo "SlurmctldPidFile=$DIR/slurmctld.pid"
  echo "SlurmdPidFile=$DIR/slurmd.%n.pid"
  echo "SlurmctldLogFile=$DIR/log/slurmctld.log"
  echo "SlurmdLogFile=$DIR/log/slurmd.%n.log"
  # No cgroups inside containers: track processes by parent pid, bind no CPUs.
  echo "ProctrackType=proctrack/linuxproc"
  echo "TaskPlugin=task/none"
  echo "SelectType=select/cons_tres"
  echo "SelectTypeParameters=CR_CPU"
  echo "SchedulerType=sched/backfill"
  echo "MpiDefault=none"
  echo "AccountingStorageType=accounting_storage/none"
  echo "JobAcctGatherType=jobacct_gather/none"
  echo "JobRequeue=1"
  echo "ReturnToService=2"
  echo "KillWait=60"
  echo "SlurmdTimeout=120"
  echo "InactiveLimit=0"
  for i in 0 1; do
    echo "NodeName=${NODES[$i]} NodeHostname=$HOST NodeAddr=127.0.0.1 Port=${NODE_PORTS[$i]} CPUs=1 State=UNKNOWN"
  done
  echo "PartitionName=debug Nodes=$(IFS=,; echo "${NODES[*]}") Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO"
} > "$DIR/slurm.conf"
export SLURM_CONF="$DIR/slurm.conf"

slurmctld -f "$SLURM_CONF"
for node in "${NODES[@]}"; do
  slurmd -f "$SLURM_CONF" -N "$node"
done

# Wait until both nodes are idle (slurmd registered with slurmctld).
for _ in $(seq 1 60); do
  idle="$(sinfo -h -N -t idle -o '%N' 2>/dev/null | sort -u | wc -l)"
  if [[ "$idle" == "${#NODES[@]}" ]]; then
    echo "export SLURM_CONF=$SLURM_CONF"
    exit 0
  fi
  sleep 1
done
echo "start_local_cluster: nodes did not come up within 60 s; logs in $DIR/log" >&2
sinfo -N >&2 || true
exit 1
