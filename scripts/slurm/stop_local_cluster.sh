#!/usr/bin/env bash
# Stop the daemons scripts/slurm/start_local_cluster.sh started (by their pid files) and remove its folder.
#
# Run as: bash scripts/slurm/stop_local_cluster.sh
set -uo pipefail

DIR="${SLURM_LOCAL_DIR:-/tmp/llava_medgpt_slurm}"
[[ -d "$DIR" ]] || exit 0
if [[ -f "$DIR/slurm.conf" ]]; then
  SLURM_CONF="$DIR/slurm.conf" scancel --full --signal=KILL --user=root >/dev/null 2>&1 || true
fi
pids=()
for pidfile in "$DIR"/slurmd.*.pid "$DIR/slurmctld.pid" "$DIR/munge/munged.pid"; do
  [[ -f "$pidfile" ]] || continue
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" && pids+=("$pid")
  fi
done
for _ in $(seq 1 20); do
  alive=0
  for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
  [[ "$alive" == 0 ]] && break
  sleep 0.5
done
for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"; done
rm -rf "$DIR"
