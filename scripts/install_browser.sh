#!/usr/bin/env bash
# Install Debian's chromium for the viewer's browser tests (driven by Playwright with
# executable_path=/usr/bin/chromium; we never run `playwright install`, which downloads a
# browser build from the network). Does nothing when /usr/bin/chromium already exists.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    echo "chromium: $(/usr/bin/chromium --version 2>/dev/null || echo present)"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "install_browser.sh: need root or sudo to apt-get install chromium" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y chromium
echo "chromium: $(/usr/bin/chromium --version 2>/dev/null || echo installed)"
