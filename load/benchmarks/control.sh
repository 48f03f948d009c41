#!/usr/bin/env bash
# One command: install redis-server and the project (dev extras: moto, powertools), then measure
# the control plane: usage roll-up throughput against moto, and config upload to a replica
# serving it. Arguments go to control.py.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if ! command -v redis-server >/dev/null; then
  apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
fi
source "$here/../../scripts/bootstrap.sh" "dev"
cd "$root"
python load/benchmarks/control.py "$@"
