#!/usr/bin/env bash
# Example deploy command for deploybot's "command" provider: it changes nothing.
# It prints the DEPLOY_* environment deploybot passed, waits a second and succeeds.
set -euo pipefail

echo "ship.sh: deploying"
for var in DEPLOY_ID DEPLOY_INSTANCE DEPLOY_PHASE DEPLOY_SLOT DEPLOY_TRAFFIC_PERCENT \
    DEPLOY_IMAGE DEPLOY_RELEASE_VERSION; do
    printf '  %s=%s\n' "$var" "${!var-}"
done
sleep 1
echo "ship.sh: done"
exit 0
