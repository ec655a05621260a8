#!/usr/bin/env bash
# Installs what the browser test needs: Debian's Chromium and playwright-python (driver only;
# it never downloads a browser build). Idempotent; safe as root with no stdin.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium >/dev/null
fi
.venv/bin/python -m pip install --quiet -e '.[browser]'
