#!/usr/bin/env bash
# Builds the top-level Dockerfile without a Docker daemon and proves that the image works.
#
#   bash scripts/verify-image.sh            # as root, on Debian 12 (or a derivative)
#
# Steps:
#   1. installs buildah, podman, debootstrap and fuse-overlayfs with apt;
#   2. makes sure the two base images named by the Dockerfile's FROM lines are in local
#      container storage. When they can be pulled, the official images are used. When they
#      cannot (a network that reaches only the package registries, not the image registry),
#      LOCAL STAND-INS are built under the same names:
#        debian:bookworm-slim      debootstrap --variant=minbase bookworm, from the Debian mirror
#                                  this host's apt already uses (read from its apt sources at run
#                                  time, never written down here);
#        rust:1.95-slim-bookworm   that Debian plus gcc/libc6-dev/ca-certificates and this host's
#                                  rustup toolchain 1.95.0, laid out as the official image does
#                                  (RUSTUP_HOME=/usr/local/rustup, CARGO_HOME=/usr/local/cargo).
#      They are stand-ins only. On a machine that reaches the image registry, `docker build .`
#      (or this script) uses the official images;
#   3. builds the Dockerfile, unchanged, with `buildah bud` as pagecast:verify (Docker format, so
#      that the HEALTHCHECK is kept). Crates are fetched from the crates registry during the build;
#   4. runs checks in the image, as the image's own non-root user:
#        - `pagecast --version`, `pagecast doctor` (Redis and storage are absent here: expected),
#        - the entry point is tini (PID 1 of a running container) and the binary links no OpenSSL,
#        - the image's HEALTHCHECK: its command fails while nothing listens, and passes while
#          `pagecast serve` runs against a Redis this script starts on a loopback port,
#        - `pagecast record` of tests/fixtures/av_sync.html (served from the host on 127.0.0.1;
#          it flashes and beeps every second) and of the bundled `demo` page, to MP4, with the
#          default x11 capture (pagecast starts its own Xvfb and PulseAudio) and sound,
#        - ffprobe of each MP4 (duration, H.264 video of the asked size, an audio stream) and a
#          loudness check that the recorded sound is not silence;
#   5. prints a PASS/FAIL line per check and exits non-zero when any check failed.
#
# Environment knobs:
#   VERIFY_WORK_DIR   scratch files (default /var/tmp/pagecast-verify); removed except the outputs
#   VERIFY_TAG        the image's tag (default pagecast:verify)
#   VERIFY_REBUILD_BASES=1   rebuild the stand-in base images even if they are already stored
#   VERIFY_DURATION   seconds recorded per page (default 8)
#   VERIFY_SKIP_BUILD=1      only run the checks, on the image already tagged VERIFY_TAG
#
# Container storage is the default one for root (/var/lib/containers/storage); the base images
# and the build's cached layers stay there, so a second run only rebuilds what changed.
# Remove everything with `podman system reset` (or `buildah rm --all && buildah rmi --all`).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TAG=${VERIFY_TAG:-pagecast:verify}
WORK=${VERIFY_WORK_DIR:-/var/tmp/pagecast-verify}
DURATION=${VERIFY_DURATION:-8}
DEBIAN_IMAGE=debian:bookworm-slim
RUST_IMAGE=rust:1.95-slim-bookworm
RUST_TOOLCHAIN=1.95.0
# The uid the Dockerfile's USER line names; output directories are handed to it.
IMAGE_UID=10001

log() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'verify-image: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (buildah and debootstrap need it)"
mkdir -p "$WORK"

# ---------------------------------------------------------------------------------------------
# 1. Tools
# ---------------------------------------------------------------------------------------------
need=()
for pair in buildah:buildah podman:podman debootstrap:debootstrap fuse-overlayfs:fuse-overlayfs \
    catatonit:catatonit runc:runc python3:python3 redis-server:redis-server; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if [ "${#need[@]}" -gt 0 ]; then
    log "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${need[@]}" uidmap >/dev/null
fi
buildah --version
podman --version

have_image() { buildah inspect --type image "$1" >/dev/null 2>&1; }

# ---------------------------------------------------------------------------------------------
# 2. Base images: the official ones when they can be pulled, else local stand-ins
# ---------------------------------------------------------------------------------------------

# The Debian mirror this host's apt uses for the bookworm release itself (not -security or
# -updates), from deb822 files (sources.list.d/*.sources) or one-line files (*.list).
debian_mirror() {
    python3 - /etc/apt/sources.list /etc/apt/sources.list.d/* <<'EOF'
import re, sys
for path in sys.argv[1:]:
    try:
        text = open(path, encoding="utf-8").read()
    except OSError:
        continue
    if path.endswith(".sources"):
        for stanza in re.split(r"\n\s*\n", text):
            fields = {}
            for line in stanza.splitlines():
                m = re.match(r"^([A-Za-z-]+):\s*(.*)$", line)
                if m:
                    fields[m.group(1).lower()] = m.group(2).split()
            if "deb" in fields.get("types", []) and "bookworm" in fields.get("suites", []) \
                    and fields.get("uris"):
                print(fields["uris"][0]); sys.exit(0)
    elif path.endswith(".list"):
        for line in text.splitlines():
            words = re.sub(r"\[[^]]*\]", " ", line.split("#")[0]).split()
            if len(words) >= 3 and words[0] == "deb" and words[2] == "bookworm":
                print(words[1]); sys.exit(0)
sys.exit("no apt source for bookworm found in /etc/apt")
EOF
}

# debian:bookworm-slim stand-in: a minbase debootstrap, with the host's apt sources (release,
# updates and security) and the slim image's habit of not installing documentation.
make_debian_standin() {
    local mirror rootfs ctr
    mirror=$(debian_mirror)
    rootfs="$WORK/debian-rootfs"
    rm -rf "$rootfs" "$WORK/debian-rootfs.tar"
    log "stand-in $DEBIAN_IMAGE: debootstrap --variant=minbase bookworm (mirror from the host's apt sources)"
    debootstrap --variant=minbase --components=main bookworm "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 \
        || { tail -20 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
    if compgen -G '/etc/apt/sources.list.d/*.sources' >/dev/null; then
        rm -f "$rootfs/etc/apt/sources.list"
        cp /etc/apt/sources.list.d/*.sources "$rootfs/etc/apt/sources.list.d/"
    fi
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/slim-image" <<'EOF'
# Like the slim Debian images: no manuals, info pages or translated messages in packages
# installed later; copyright files stay.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
    # As in the Debian images: apt keeps no downloaded .deb files and no binary package caches,
    # so an `apt-get install` in a Dockerfile leaves none in its layer.
    cat >"$rootfs/etc/apt/apt.conf.d/slim-image" <<'EOF'
APT::Keep-Downloaded-Packages "false";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    chroot "$rootfs" apt-get clean
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*.log \
        "$rootfs"/usr/share/doc/*/changelog* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
    find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
    tar --numeric-owner -C "$rootfs" --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
        -cf "$WORK/debian-rootfs.tar" .
    buildah rm pagecast-verify-debian >/dev/null 2>&1 || true   # left over by a failed run
    ctr=$(buildah from --name pagecast-verify-debian scratch)
    buildah add --quiet "$ctr" "$WORK/debian-rootfs.tar" / >/dev/null
    buildah config --os linux --arch amd64 \
        --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --cmd bash "$ctr"
    buildah commit --quiet --rm "$ctr" "$DEBIAN_IMAGE" >/dev/null
    rm -rf "$rootfs" "$WORK/debian-rootfs.tar"
}

# rust:1.95-slim-bookworm stand-in: the Debian above, what the official slim Rust image adds
# (ca-certificates, gcc, libc6-dev), and this host's toolchain 1.95.0 under /usr/local/rustup
# with rustup and its proxies (cargo, rustc, ...) in /usr/local/cargo/bin.
make_rust_standin() {
    local host_rustup host_cargo toolchain ctr mnt dest p
    host_rustup=${RUSTUP_HOME:-/root/.rustup}
    host_cargo=${CARGO_HOME:-/root/.cargo}
    toolchain="$RUST_TOOLCHAIN-x86_64-unknown-linux-gnu"
    [ -d "$host_rustup/toolchains/$toolchain" ] \
        || die "no Rust $RUST_TOOLCHAIN on this host ($host_rustup/toolchains/$toolchain) to build the $RUST_IMAGE stand-in from"
    log "stand-in $RUST_IMAGE: $DEBIAN_IMAGE + gcc + this host's Rust $RUST_TOOLCHAIN"
    buildah rm pagecast-verify-rust >/dev/null 2>&1 || true   # left over by a failed run
    ctr=$(buildah from --name pagecast-verify-rust --pull=never "$DEBIAN_IMAGE")
    buildah run --isolation chroot --network host "$ctr" -- sh -c \
        'apt-get update -qq && apt-get install -y -qq --no-install-recommends ca-certificates gcc libc6-dev >/dev/null && rm -rf /var/lib/apt/lists/*'
    mnt=$(buildah mount "$ctr")
    dest="$mnt/usr/local/rustup/toolchains/$toolchain"
    mkdir -p "$dest" "$mnt/usr/local/cargo/bin"
    # The toolchain directory may be a symlink (to "stable"); copy what it points at, without
    # the HTML documentation (the official image installs the minimal profile too).
    tar -C "$(readlink -f "$host_rustup/toolchains/$toolchain")" --exclude=./share/doc -cf - . \
        | tar -C "$dest" -xf -
    cp "$host_cargo/bin/rustup" "$mnt/usr/local/cargo/bin/rustup"
    for p in cargo cargo-clippy cargo-fmt clippy-driver rustc rustdoc rustfmt rust-gdb rust-lldb; do
        ln -sf rustup "$mnt/usr/local/cargo/bin/$p"
    done
    # Where this host reaches the crates registry only through a TLS-inspecting proxy, its
    # extra CAs (/usr/local/share/ca-certificates) must be trusted by cargo in the build stage
    # too. The official image needs none of this; the runtime stage is not affected.
    if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
        mkdir -p "$mnt/usr/local/share/ca-certificates"
        cp /usr/local/share/ca-certificates/*.crt "$mnt/usr/local/share/ca-certificates/"
        buildah run --isolation chroot --network host "$ctr" -- update-ca-certificates >/dev/null
    fi
    buildah unmount "$ctr" >/dev/null
    buildah config --env RUSTUP_HOME=/usr/local/rustup --env CARGO_HOME=/usr/local/cargo \
        --env PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env RUST_VERSION="$RUST_TOOLCHAIN" "$ctr"
    # Installed toolchain, so rustup only records the default: nothing is downloaded.
    buildah run --isolation chroot --network host "$ctr" -- sh -c \
        "rustup default $RUST_TOOLCHAIN >/dev/null 2>&1 && chmod -R a+w /usr/local/rustup /usr/local/cargo && rustc --version && cargo --version"
    buildah commit --quiet --rm "$ctr" "$RUST_IMAGE" >/dev/null
}

ensure_base() {
    local image=$1 maker=$2
    if [ "${VERIFY_REBUILD_BASES:-0}" = 1 ] && have_image "$image"; then
        buildah rmi --force "$image" >/dev/null
    fi
    if have_image "$image"; then
        echo "base image $image: already in local storage"
        return
    fi
    if timeout 120 buildah pull --quiet "$image" >/dev/null 2>&1; then
        echo "base image $image: pulled (official)"
        return
    fi
    echo "base image $image: cannot be pulled here; building a local stand-in"
    "$maker"
}

log "base images"
ensure_base "$DEBIAN_IMAGE" make_debian_standin
ensure_base "$RUST_IMAGE" make_rust_standin

# ---------------------------------------------------------------------------------------------
# 3. The build
# ---------------------------------------------------------------------------------------------
build_start=$(date +%s)
if [ "${VERIFY_SKIP_BUILD:-0}" = 1 ]; then
    have_image "$TAG" || die "VERIFY_SKIP_BUILD=1 but there is no image $TAG"
    log "VERIFY_SKIP_BUILD=1: checking the existing $TAG"
else
    log "buildah bud -t $TAG $ROOT (release build; 15-30 min on 2 cores when nothing is cached)"
    nice -n 10 buildah bud --format docker --layers --force-rm --pull=never --isolation chroot --network host \
        -f "$ROOT/Dockerfile" -t "$TAG" "$ROOT" 2>&1 | tee "$WORK/build.log" >&2
fi
build_secs=$(( $(date +%s) - build_start ))
image_size=$(podman image inspect --format '{{.Size}}' "$TAG")

# ---------------------------------------------------------------------------------------------
# 4. Checks
# ---------------------------------------------------------------------------------------------
results=()
failed=0
pass() { results+=("PASS  $*"); printf 'PASS  %s\n' "$*" >&2; }
# A finding about pagecast itself (the same outside the image): reported, not failed.
warn() { results+=("WARN  $*"); printf 'WARN  %s\n' "$*" >&2; }
fail() { results+=("FAIL  $*"); printf 'FAIL  %s\n' "$*" >&2; failed=1; }

# How to run a container here. Podman's defaults first; where they fail (crun refuses hosts
# whose cgroup v2 hierarchy is mounted beside v1 ones; a host that may not raise rlimits fails
# podman's default ulimits), runc and the host's own limits.
nofile=$(ulimit -Hn); { [ "$nofile" = unlimited ] || [ "$nofile" -gt 1048576 ]; } && nofile=1048576
nproc=$(ulimit -Hu); { [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; } && nproc=32768
podman_opts=()   # options to podman itself
run_opts=()      # options to `podman run`
runs=0
for candidate in default runc runc-ulimits; do
    case $candidate in
        default) podman_opts=(); run_opts=() ;;
        runc) podman_opts=(--runtime runc); run_opts=() ;;
        runc-ulimits) podman_opts=(--runtime runc)
            run_opts=(--ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc") ;;
    esac
    if podman "${podman_opts[@]}" run --rm "${run_opts[@]}" --network host "$TAG" --version \
            >/dev/null 2>"$WORK/podman-probe.txt"; then
        runs=1
        break
    fi
done
[ "$runs" = 1 ] || die "podman cannot run a container here: $(cat "$WORK/podman-probe.txt")"
echo "podman: ${podman_opts[*]:-} run ${run_opts[*]:-} (the first of: defaults, runc, runc + the host's rlimits)" >&2

# Host networking: the container reaches the fixture server and Redis on the host's loopback.
# No --init: the image's entry point is tini (checked below). 1 GB of /dev/shm as compose's
# worker has. One-shot commands skip the image's HEALTHCHECK (podman would schedule it with
# systemd timers).
podman_() { podman "${podman_opts[@]}" "$@"; }
run() { podman_ run --rm "${run_opts[@]}" --no-healthcheck --network host --shm-size 1g "$@"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    podman rm --force --ignore pagecast-verify-serve >/dev/null 2>&1 || true
    rm -rf "$WORK/debian-rootfs" "$WORK/debian-rootfs.tar"
}
trap cleanup EXIT

# 4a. The binary and who runs it.
log "pagecast --version"
if out=$(run "$TAG" --version 2>&1); then pass "pagecast --version: $out"; else fail "pagecast --version: $out"; fi
user=$(run --entrypoint id "$TAG" -u)
if [ "$user" = "$IMAGE_UID" ]; then pass "runs as uid $user (non-root)"; else fail "runs as uid $user, expected $IMAGE_UID"; fi

# 4a'. PID 1 is tini (it reaps what Chromium's helpers orphan), and the binary links no OpenSSL.
entry=$(podman image inspect --format '{{json .Config.Entrypoint}}' "$TAG")
if [ "$entry" = '["/usr/bin/tini","--","pagecast"]' ]; then pass "entry point: $entry"; else fail "entry point $entry, expected tini -- pagecast"; fi
if libs=$(run --entrypoint ldd "$TAG" /usr/local/bin/pagecast 2>&1) && ! printf '%s' "$libs" | grep -Eq 'libssl|libcrypto'; then
    pass "pagecast links no libssl/libcrypto (rustls)"
else
    fail "pagecast links OpenSSL or ldd failed: $libs"
fi

# 4b. doctor: every check about recording must be ok; Redis and storage are not set up here.
log "pagecast doctor"
doctor_out=$(run "$TAG" doctor 2>&1) || true
printf '%s\n' "$doctor_out" >&2
bad_lines=$(printf '%s\n' "$doctor_out" | grep -E '^\[(FAIL|warn)\]' | grep -Ev '^\[(FAIL|warn)\] (redis|storage) ' || true)
if [ -z "$bad_lines" ] && printf '%s\n' "$doctor_out" | grep -q '^\[ok  \] chromium'; then
    pass "doctor: chromium, ffmpeg, ffprobe, pulseaudio, Xvfb, fonts, disk ok (redis/storage: not configured here)"
else
    fail "doctor: $(printf '%s' "$bad_lines" | tr '\n' ' ')"
fi

# 4c. HEALTHCHECK: present in the image, unhealthy with nothing listening, healthy under serve.
log "HEALTHCHECK"
hc=$(podman image inspect --format '{{json .HealthCheck}}' "$TAG" 2>/dev/null || true)
[ -n "$hc" ] && [ "$hc" != null ] || hc=$(buildah inspect --type image --format '{{json .Docker.Config.Healthcheck}}' "$TAG")
if printf '%s' "$hc" | grep -q 'healthcheck'; then pass "HEALTHCHECK in the image: $hc"; else fail "no HEALTHCHECK in the image: $hc"; fi
api_port=$(free_port); metrics_port=$(free_port); redis_port=$(free_port)
if run -e PAGECAST_LISTEN="127.0.0.1:$api_port" -e PAGECAST_METRICS_LISTEN="127.0.0.1:$metrics_port" \
        "$TAG" healthcheck --timeout 2 >"$WORK/hc-down.txt" 2>&1; then
    fail "healthcheck passed while nothing listens"
else
    pass "healthcheck fails while nothing listens: $(head -c 200 "$WORK/hc-down.txt")"
fi
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no >"$WORK/redis.log" 2>&1 &
pids+=($!)
podman_ run -d --rm "${run_opts[@]}" --network host --shm-size 1g --name pagecast-verify-serve \
    -e PAGECAST_LISTEN="127.0.0.1:$api_port" -e PAGECAST_METRICS_LISTEN="127.0.0.1:$metrics_port" \
    -e PAGECAST_REDIS_URL="redis://127.0.0.1:$redis_port" "$TAG" serve >/dev/null 2>"$WORK/serve-start.log"
healthy=0
for _ in $(seq 1 30); do
    if podman_ healthcheck run pagecast-verify-serve >"$WORK/hc-up.txt" 2>&1; then healthy=1; break; fi
    sleep 1
done
if [ "$healthy" = 1 ]; then
    pass "healthcheck (podman healthcheck run, the image's own HEALTHCHECK) healthy while serve runs"
else
    podman_ logs pagecast-verify-serve 2>&1 | tail -20 >&2 || true
    fail "healthcheck never became healthy while serve ran"
fi
pid1=$(podman_ exec pagecast-verify-serve cat /proc/1/comm 2>/dev/null || true)
if [ "$pid1" = tini ]; then pass "PID 1 in a running container is tini"; else fail "PID 1 is '${pid1:-?}', expected tini"; fi
podman_ stop --time 20 pagecast-verify-serve >/dev/null 2>&1 || true

# 4d. Recordings, to MP4, with sound, on the default x11 capture.
out="$WORK/out"
rm -rf "$out"; mkdir -p "$out"; chown "$IMAGE_UID:$IMAGE_UID" "$out"
web_port=$(free_port)
python3 -m http.server "$web_port" --bind 127.0.0.1 --directory "$ROOT/tests/fixtures" \
    >"$WORK/http.log" 2>&1 &
pids+=($!)
sleep 1

# $1 name, $2 URL. Records, then checks duration, streams and that the sound is not silence.
record_and_probe() {
    local name=$1 url=$2 file="/out/$1.mp4" probe streams dur vol
    log "pagecast record $url --duration $DURATION -o $file"
    if ! run -v "$out:/out" "$TAG" record "$url" --duration "$DURATION" -o "$file" \
            >"$WORK/record-$name.log" 2>&1; then
        tail -20 "$WORK/record-$name.log" >&2
        fail "record $name: exit non-zero (see $WORK/record-$name.log)"
        return
    fi
    tail -5 "$WORK/record-$name.log" >&2
    probe=$(run -v "$out:/out" --entrypoint ffprobe "$TAG" -v error -show_entries \
        format=duration:stream=codec_type,codec_name,width,height,sample_rate,channels \
        -of json "$file")
    printf '%s\n' "$probe" >"$WORK/probe-$name.json"
    read -r dur streams < <(python3 - "$WORK/probe-$name.json" <<'EOF'
import json, sys
p = json.load(open(sys.argv[1]))
s = ",".join(
    f"{x['codec_type']}:{x['codec_name']}" + (f":{x['width']}x{x['height']}" if x['codec_type'] == 'video' else f":{x.get('sample_rate')}Hz/{x.get('channels')}ch")
    for x in p["streams"])
print(p["format"]["duration"], s)
EOF
)
    vol=$(run -v "$out:/out" --entrypoint ffmpeg "$TAG" -hide_banner -nostats -i "$file" -vn \
        -af volumedetect -f null - 2>&1 | sed -n 's/.*max_volume: \(-\?[0-9.]*\) dB.*/\1/p')
    echo "$name.mp4: duration ${dur}s, streams $streams, audio max_volume ${vol:-?} dB" >&2
    if python3 -c "import sys; d=float('$dur'); sys.exit(0 if abs(d-$DURATION) <= 1.0 else 1)"; then
        pass "record $name: duration ${dur}s (asked ${DURATION}s)"
    else
        fail "record $name: duration ${dur}s, asked ${DURATION}s"
    fi
    if [[ "$streams" == *video:h264:1280x720* && "$streams" == *audio:* ]]; then
        pass "record $name: streams $streams"
    else
        fail "record $name: streams $streams (want H.264 1280x720 video and audio)"
    fi
    if [ "$name" = demo ]; then
        # The demo page is dark; Chromium's translate bar over its top right corner is white.
        corner=$(run -v "$out:/out" --entrypoint ffmpeg "$TAG" -hide_banner -nostats -ss 4 -i "$file" \
            -frames:v 1 -vf "crop=400:40:880:4,signalstats,metadata=print:key=lavfi.signalstats.YAVG" \
            -f null - 2>&1 | sed -n 's/.*YAVG=\([0-9.]*\).*/\1/p' | head -1)
        if [ -n "$corner" ] && python3 -c "import sys; sys.exit(0 if float('$corner') < 128 else 1)"; then
            pass "record demo: no browser interface over the page (top right luma $corner)"
        else
            warn "record demo: a bright bar over the page's top right corner (luma ${corner:-?}): Chromium's translate bubble, in pagecast's x11 capture (not specific to the image)"
        fi
    fi
    if [ -n "${3:-}" ]; then
        if [ -n "$vol" ] && python3 -c "import sys; sys.exit(0 if float('$vol') > -40 else 1)"; then
            pass "record $name: the page's sound was recorded (max_volume ${vol} dB)"
        else
            fail "record $name: audio is silent (max_volume ${vol:-?} dB)"
        fi
    fi
}
record_and_probe fixture "http://127.0.0.1:$web_port/av_sync.html" expect-sound
record_and_probe demo demo

# ---------------------------------------------------------------------------------------------
# 5. Summary
# ---------------------------------------------------------------------------------------------
log "summary"
if [ "${VERIFY_SKIP_BUILD:-0}" = 1 ]; then
    echo "image $TAG: $(( image_size / 1000000 )) MB (build skipped)"
else
    echo "image $TAG: $(( image_size / 1000000 )) MB, build took ${build_secs}s (less when layers were cached)"
fi
echo "bases: $(buildah images --format '{{.Name}}:{{.Tag}} {{.Size}}' | grep -E 'debian|rust' | tr '\n' ';')"
echo "recordings kept in $out; build log in $WORK/build.log"
printf '%s\n' "${results[@]}"
if [ "$failed" = 0 ]; then
    echo "verify-image: PASS"
else
    echo "verify-image: FAIL"
    exit 1
fi
