#!/usr/bin/env bash
# Install Debian's Chromium for the report test (tests/test_report.py); safe to re-run.
# Prints the browser's path on stdout.
#
# Exit codes: 0 ready; 3 cannot be installed here (not root, no apt-get, the install
# failed): the reason is the one line on stderr and the test skips with it, or fails
# with it under CI (CI=true), where a failed install is a fault; anything else is a real
# failure.
set -euo pipefail

cannot() { echo "setup_chromium: $*" >&2; exit 3; }

find_chromium() { command -v chromium || command -v chromium-browser || true; }

browser=$(find_chromium)
if [ -z "$browser" ]; then
    [ "$(id -u)" -eq 0 ] || cannot "Chromium is not installed and installing it needs root (uid $(id -u))"
    command -v apt-get >/dev/null 2>&1 || cannot "Chromium is not installed and apt-get is not available"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null 2>&1 || cannot "apt-get update failed (no Debian package registry reachable?)"
    apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null 2>&1 \
        || cannot "apt-get install chromium failed"
    browser=$(find_chromium)
    [ -n "$browser" ] || cannot "no chromium binary after apt-get install chromium"
fi
"$browser" --version >&2 || cannot "$browser does not start"
echo "$browser"
