#!/usr/bin/env bash
# Set up (first run) and serve the gateway. Arguments go to `gateway serve`, e.g.
#   scripts/serve.sh --config gateway.yaml --port 8080
# With no config file, serves the embedded default (see README).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh" ""
exec gateway serve "$@"
