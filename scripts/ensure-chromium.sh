#!/bin/sh
# The headless browser of the dashboard's tests (tests/test_web_browser.py): Debian's chromium
# and chromium-driver packages, driven by Selenium.
#
#   sh scripts/ensure-chromium.sh       # `make check` runs it (make chromium)
#
# Present: one quick look and nothing else (no network). Missing, as root where apt-get is
# (CI on a clean Debian): install the two packages. Missing, not root: say what to install,
# and fail.
set -eu

found() { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }

if found; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-chromium: chromium and chromedriver not found; install Debian's chromium and" \
        "chromium-driver packages (it takes root and apt-get)" >&2
    exit 1
fi
echo "ensure-chromium: installing Debian's chromium and chromium-driver for the tests" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
found
echo "ensure-chromium: $(chromium --version 2>/dev/null || echo chromium) at $(command -v chromium)" >&2
