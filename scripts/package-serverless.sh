#!/usr/bin/env bash
# Package serverless.yml offline: no AWS credentials, no network to AWS.
#   scripts/package-serverless.sh [OUT_DIR] [extra osls options...]
# Installs the pinned osls (infra/serverless/package-lock.json) with `npm ci` when missing, then
# runs `osls package --stage test` into OUT_DIR (default: .serverless-package), which then holds
# cloudformation-template-update-stack.json and the function's zip.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/infra/serverless"
out="${1:-$root/.serverless-package}"
shift || true
if [ ! -x "$tools/node_modules/.bin/osls" ]; then
  npm ci --prefix "$tools" --no-audit --no-fund --loglevel=error >/dev/null
fi
cd "$root"
# Dummy credentials: `package` needs none, and these make any accidental AWS call fail fast.
export AWS_ACCESS_KEY_ID=none AWS_SECRET_ACCESS_KEY=none AWS_SESSION_TOKEN=none
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_SDK_LOAD_CONFIG=0
unset AWS_PROFILE AWS_ENDPOINT_URL
export SLS_TELEMETRY_DISABLED=1 SLS_NOTIFICATIONS_MODE=off SLS_DEPRECATION_DISABLE='*'
"$tools/node_modules/.bin/osls" package --stage test --package "$out" "$@"
