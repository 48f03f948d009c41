#!/usr/bin/env bash
# One command: install the project, then measure the GPU node agent: its CPU reading and
# exporting 8 fake GPUs once a second, and the time from a scale order to the new engine serving
# through the gateway (simulator engines). Arguments go to node.py.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../../scripts/bootstrap.sh" ""
cd "$root"
python load/benchmarks/node.py "$@"
