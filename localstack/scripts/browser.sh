#!/usr/bin/env bash
# browser.sh installs and finds the headless browser that the console's
# browser tests drive (Debian's chromium package; no downloaded browser builds).
#
# Usage:
#   browser.sh install   install chromium with apt-get when it is missing
#                        (needs root; idempotent, offline once installed)
#   browser.sh path      print the browser's path, or fail when there is none
#
# Knobs (environment):
#   LULL_BROWSER                   a browser binary to use instead of chromium
#   LULL_BROWSER_INSTALL_TIMEOUT   seconds for the apt-get steps (default 900)
set -euo pipefail

install_timeout=${LULL_BROWSER_INSTALL_TIMEOUT:-900}

die() { echo "browser: error: $*" >&2; exit 1; }
note() { echo "browser: $*" >&2; }

find_browser() {
  if [[ -n ${LULL_BROWSER:-} ]]; then
    [[ -x $LULL_BROWSER ]] || die "LULL_BROWSER=$LULL_BROWSER is not an executable"
    echo "$LULL_BROWSER"
    return
  fi
  local c
  for c in chromium chromium-browser google-chrome-stable google-chrome headless-shell; do
    if command -v "$c" >/dev/null 2>&1; then
      command -v "$c"
      return
    fi
  done
  return 1
}

cmd_install() {
  if p=$(find_browser); then
    note "found $p"
    return
  fi
  command -v apt-get >/dev/null 2>&1 || die "no browser and no apt-get: install Chromium and set LULL_BROWSER"
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "installing chromium needs root (or sudo)"
    sudo=(sudo)
  fi
  note "installing Debian's chromium package (once)"
  export DEBIAN_FRONTEND=noninteractive
  timeout "$install_timeout" "${sudo[@]}" apt-get update -qq
  timeout "$install_timeout" "${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
  p=$(find_browser) || die "chromium installed but not found on PATH"
  note "installed $p ($("$p" --version 2>/dev/null || echo unknown version))"
}

case ${1:-} in
  install) cmd_install ;;
  path) find_browser || die "no browser: run $0 install (or set LULL_BROWSER)" ;;
  *) echo "usage: $0 install|path" >&2; exit 2 ;;
esac
