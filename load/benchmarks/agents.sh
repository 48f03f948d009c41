#!/usr/bin/env bash
# One command: install the project, then measure agent loops: the gateway's time per step against
# direct model calls, and loops per second on one worker. Arguments go to agents.py.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../../scripts/bootstrap.sh" ""
cd "$root"
python load/benchmarks/agents.py "$@"
