#!/usr/bin/env bash
# Usage: scripts/ensure-chromium.sh
#
# Makes sure Debian's Chromium is at /usr/bin/chromium for the add-on preview's end-to-end test
# (tests/test_addon_preview_e2e.py drives it with Playwright; no browser is downloaded by a test
# tool). Installs the `chromium` package with apt-get when we are root and it is missing.
#
# Never fails: without Chromium (not root, no apt-get, no network) it prints a warning and exits
# 0, and the end-to-end test skips, saying why. Everything else in `make test` still runs.
set -uo pipefail

CHROMIUM=/usr/bin/chromium

log() { echo "ensure-chromium: $*" >&2; }
warn() {
    log "warning: $*"
    log "warning: the preview's end-to-end test (tests/test_addon_preview_e2e.py) will be skipped"
    exit 0
}

if [[ -x $CHROMIUM ]]; then
    log "$("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM") is installed"
    exit 0
fi

[[ $(id -u) -eq 0 ]] || warn "$CHROMIUM is missing and only root can install it" \
    "(as root: apt-get install --no-install-recommends chromium)"
command -v apt-get >/dev/null || warn "$CHROMIUM is missing and there is no apt-get to install it"

export DEBIAN_FRONTEND=noninteractive
install_chromium() {
    apt-get install -y -q --no-install-recommends chromium >/tmp/ensure-chromium.log 2>&1
}

log "installing Debian's chromium package (once; a few minutes)…"
# A fresh machine may have no package lists (or stale ones naming files the mirror no longer
# has): update them once and try again.
if ! install_chromium; then
    log "apt-get install failed; updating the package lists and trying again"
    apt-get update -q >>/tmp/ensure-chromium.log 2>&1 || true
    install_chromium || {
        tail -n 5 /tmp/ensure-chromium.log >&2
        warn "apt-get install chromium failed (full log: /tmp/ensure-chromium.log)"
    }
fi

[[ -x $CHROMIUM ]] || warn "the chromium package installed, but $CHROMIUM is not there"
log "installed $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
