#!/usr/bin/env bash
# Installs what recording needs on Debian 12, and nothing else: Chromium, ffmpeg (with ffprobe),
# fontconfig (the bundled CJK font in fonts/ is added by fontconfig/fonts.conf, no download),
# Xvfb (the x11 capture backend), PulseAudio (the sound) and the CA certificates pages are
# verified with. scripts/pagecast runs it before every command. Test-only tools (Redis, the S3
# test server, the API fuzzer, the Dockerfile and manifest checkers) are installed by
# scripts/install-test-deps.sh, which scripts/test runs.
# Idempotent: packages already present are skipped, so a warm machine pays only for the
# `dpkg -s` checks.
set -euo pipefail

# No TLS library: pagecast's TLS is rustls (Rust), with aws-lc built by the crate itself.
packages=(chromium ffmpeg fontconfig xvfb pulseaudio pulseaudio-utils ca-certificates)

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

for bin in chromium ffmpeg ffprobe Xvfb pulseaudio pactl parec fc-match; do
  command -v "$bin" >/dev/null 2>&1 || { echo "install-deps: $bin is still missing after install" >&2; exit 1; }
done
