#!/usr/bin/env bash
# Runs bench/puppeteer_baseline.js, installing puppeteer-screen-recorder and puppeteer from npm
# into the tools directory first if needed (puppeteer's own browser download is skipped: the
# reference uses Debian's Chromium, like pagecast).
# Usage: puppeteer_baseline.sh URL WIDTH HEIGHT FPS SECONDS OUT.mp4
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tools="${PAGECAST_TOOLS_DIR:-$HOME/.cache/pagecast-tools}/npm"
if [ ! -d "$tools/node_modules/puppeteer-screen-recorder" ]; then
  if ! command -v npm >/dev/null; then
    # npm (with Node.js) from Debian, as scripts/install-deps.sh installs the rest.
    echo "puppeteer_baseline: installing the Debian package npm" >&2
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${sudo_cmd[@]}" apt-get update -q >&2
    "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends npm >&2
    command -v npm >/dev/null || { echo "puppeteer_baseline: npm is still missing after install" >&2; exit 1; }
  fi
  mkdir -p "$tools"
  (cd "$tools" && PUPPETEER_SKIP_DOWNLOAD=1 npm install --no-audit --no-fund puppeteer-screen-recorder puppeteer >&2)
fi
NODE_PATH="$tools/node_modules" exec node "$here/puppeteer_baseline.js" "$@"
