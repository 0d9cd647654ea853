#!/usr/bin/env bash
# N processes of one job on this machine, as a multi-host run would have them (the tests use it).
#
#   launch/local.sh NUM_PROCESSES DEVICES_PER_PROCESS COMMAND [ARGS...]
#   launch/local.sh 2 2 .venv/bin/hsvae train --config quickstart --workdir runs/local2x2
#
# Each process gets --coordinator_address (a free localhost port), --num_processes, --process_id and
# --num_cpu_devices appended. If one process fails, the others are stopped; none outlives the script.
set -euo pipefail
if [[ $# -lt 3 ]]; then
  sed -n '2,8p' "$0" >&2
  exit 2
fi
num_processes=$1 devices=$2
shift 2
port=${PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT
trap 'cleanup; exit 143' TERM INT

for ((i = 0; i < num_processes; i++)); do
  "$@" --coordinator_address="127.0.0.1:$port" --num_processes="$num_processes" --process_id="$i" \
      --num_cpu_devices="$devices" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
  if ! wait "$pid"; then
    status=1
    cleanup  # a dead peer would make the others fail anyway; do not wait for their timeouts
  fi
done
exit $status
