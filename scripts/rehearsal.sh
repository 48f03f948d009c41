#!/usr/bin/env bash
# One command: the whole fleet on this machine (Redis, gateway replicas behind nginx, simulators,
# the control-plane jobs) until Ctrl-C. Installs redis-server and nginx when missing.
# Arguments go to `gateway rehearse` (e.g. --replicas 3 --profile instant --port 8081).
set -euo pipefail
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v nginx >/dev/null || missing+=(nginx-light)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh" ""
cd "$root"
exec python -m gateway_rehearsal "$@"
