#!/usr/bin/env bash
# One command: install nginx and wrk if missing and the project, then measure what admission
# control costs on an unsaturated group against a plain one. Arguments go to scheduling.py.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
  apt-get update -qq && apt-get install -y -qq nginx-light wrk >/dev/null
fi
source "$here/../../scripts/bootstrap.sh" ""
cd "$root"
python load/benchmarks/scheduling.py "$@"
