#!/usr/bin/env bash
# Runs bench/puppeteer_baseline.js, installing puppeteer-screen-recorder and puppeteer from npm
# into the tools directory first if needed (puppeteer's own browser download is skipped: the
# reference uses Debian's Chromium, like pagecast).
# Usage: puppeteer_baseline.sh URL WIDTH HEIGHT FPS SECONDS OUT.mp4
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tools="${PAGECAST_TOOLS_DIR:-$HOME/.cache/pagecast-tools}/npm"
if [ ! -d "$tools/node_modules/puppeteer-screen-recorder" ]; then
  command -v npm >/dev/null || { echo "npm is needed for the puppeteer reference (apt-get install npm)" >&2; exit 1; }
  mkdir -p "$tools"
  (cd "$tools" && PUPPETEER_SKIP_DOWNLOAD=1 npm install --no-audit --no-fund puppeteer-screen-recorder puppeteer >&2)
fi
NODE_PATH="$tools/node_modules" exec node "$here/puppeteer_baseline.js" "$@"
