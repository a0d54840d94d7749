#!/usr/bin/env bash
# Installs the system packages pagecast needs on Debian 12: Chromium, ffmpeg (with ffprobe),
# fontconfig tools, Redis and PulseAudio. Idempotent: packages already present are skipped, so a
# warm machine pays only for the `dpkg -s` checks.
set -euo pipefail

# libssl-dev and pkg-config are build dependencies (TLS for callbacks).
packages=(chromium ffmpeg fontconfig redis-server pulseaudio pulseaudio-utils procps ca-certificates libssl-dev pkg-config)

missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -q
  "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

for bin in chromium ffmpeg ffprobe redis-server pulseaudio fc-match; do
  command -v "$bin" >/dev/null 2>&1 || { echo "install-deps: $bin is still missing after install" >&2; exit 1; }
done
