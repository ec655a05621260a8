#!/usr/bin/env bash
# What tests/test_browser.py needs: Debian's Chromium at /usr/bin/chromium, and playwright-python
# (the project's `browser` extra) in the virtualenv to drive it.
#
#   bash .ci/install-browser.sh
#
# Safe to run again: each half is skipped when already in place. It never downloads a browser
# build (no `playwright install`): the test launches Debian's binary through executable_path.
# Installing Chromium needs root or passwordless sudo. Settings: VENV (default .venv).
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${VENV:-.venv}"
log() { echo "install-browser: $*" >&2; }
. .ci/lib.sh

if [ -x /usr/bin/chromium ]; then
  log "chromium is already installed"
else
  log "installing Debian's chromium package"
  # Recommends would add a desktop's worth of services (upower, a notification daemon); a headless
  # browser needs the binary, and a font for legible screenshots.
  apt_install Chromium chromium fonts-liberation
fi
log "$(/usr/bin/chromium --version 2>/dev/null)"  # the wrapper script warns about /dev/shm

if [ ! -x "$venv/bin/python" ]; then
  log "$venv does not exist: run 'make venv' first"
  exit 1
fi
if "$venv/bin/python" -c 'import playwright.sync_api' 2>/dev/null; then
  log "playwright-python is already installed in $venv"
else
  log "installing the browser extra (playwright-python) into $venv"
  # The wheel carries Playwright's driver, not a browser; PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD makes sure.
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 "$venv/bin/python" -m pip install --quiet -e '.[browser]'
fi
