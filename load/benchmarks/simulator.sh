#!/usr/bin/env bash
# One command: set up the project (with the report extra) and run the simulator and harness
# benchmark. Arguments go to simulator.py (e.g. --quick, --only ceiling).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if ! command -v nginx >/dev/null; then
  apt-get update -qq && apt-get install -y -qq nginx-light >/dev/null
fi
source "$here/../../scripts/bootstrap.sh" "report"
cd "$root"
python load/benchmarks/simulator.py "$@"
