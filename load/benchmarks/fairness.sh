#!/usr/bin/env bash
# One command: install the project, then overload two simulator replicas with a heavy and a light
# tenant and compare fifo, fair_share and priority for the light tenant. Arguments go to
# fairness.py.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../../scripts/bootstrap.sh" ""
cd "$root"
python load/benchmarks/fairness.py "$@"
