# pagecast: records web pages as video. Two stages: a release build, then a slim Debian 12
# runtime with Chromium, ffmpeg, PulseAudio and the project's fonts.
#
#   docker build -t pagecast .
#   docker network create pagecast
#   docker run -d --name redis --network pagecast redis:7-bookworm
#   docker run --rm --network pagecast --shm-size 1g -p 8080:8080 \
#       -e PAGECAST_REDIS_URL=redis://redis:6379 -e PAGECAST_PUBLIC_URL=http://localhost:8080 \
#       -v pagecast-output:/var/lib/pagecast/output pagecast serve
#   docker run --rm --network pagecast --shm-size 1g -e PAGECAST_REDIS_URL=redis://redis:6379 \
#       -v pagecast-output:/var/lib/pagecast/output pagecast worker
#
# The network lets the containers reach Redis by name. serve listens on every address, so with
# results kept locally (the volume) it needs PAGECAST_PUBLIC_URL, the address clients reach it
# at; the worker takes that URL from Redis. docs/deployment.md explains each line.
# docs/deploy/compose.yaml runs the whole service (API, workers, Redis, S3-compatible storage).

FROM rust:1.95-slim-bookworm AS build
# No system libraries to build against: TLS is rustls, whose aws-lc crypto the crate compiles
# with the image's C compiler. The binary links no OpenSSL.
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The workspace's other crate (benchmark analysis, used by `pagecast analyze`).
COPY crates ./crates
# Line tables stay in the binary (see Cargo.toml): panics then name file and line.
RUN cargo build --release --locked --bin pagecast

FROM debian:bookworm-slim
# What a worker runs: Debian's Chromium, ffmpeg (with ffprobe), fontconfig, PulseAudio for
# sound, CA certificates for https pages, callbacks and storage, a base set of fonts, and tini
# as PID 1.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates chromium ffmpeg fontconfig fonts-liberation2 \
        pulseaudio pulseaudio-utils tini xvfb xserver-xorg-core xserver-xorg-video-dummy \
    && rm -rf /var/lib/apt/lists/*

# A user without privileges; its home holds the font cache and Chromium's per-recording profiles.
RUN groupadd --system --gid 10001 pagecast \
    && useradd --system --uid 10001 --gid pagecast --home-dir /var/lib/pagecast --create-home pagecast \
    && mkdir -p /var/lib/pagecast/work /var/lib/pagecast/output \
    && chown -R pagecast:pagecast /var/lib/pagecast

COPY --from=build /src/target/release/pagecast /usr/local/bin/pagecast
# Found beside the binary: <prefix>/share/pagecast/fontconfig/fonts.conf adds <prefix>/share/pagecast/fonts.
COPY fonts /usr/local/share/pagecast/fonts
COPY fontconfig /usr/local/share/pagecast/fontconfig

ENV PAGECAST_LISTEN=0.0.0.0:8080 \
    PAGECAST_METRICS_LISTEN=0.0.0.0:9090 \
    PAGECAST_CHROMIUM=/usr/bin/chromium \
    PAGECAST_FONTCONFIG=/usr/local/share/pagecast/fontconfig/fonts.conf \
    PAGECAST_WORK_DIR=/var/lib/pagecast/work \
    PAGECAST_OUTPUT_DIR=/var/lib/pagecast/output \
    PAGECAST_LOG_FORMAT=json \
    PAGECAST_SHUTDOWN=handover \
    XDG_CACHE_HOME=/var/lib/pagecast/.cache

USER 10001:10001
WORKDIR /var/lib/pagecast
EXPOSE 8080 9090
# serve answers on PAGECAST_LISTEN (8080) and PAGECAST_METRICS_LISTEN (9090), a worker on
# PAGECAST_METRICS_LISTEN; the check is healthy when either answers.
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s --retries=3 \
    CMD ["pagecast", "healthcheck"]
# tini is PID 1: it passes SIGTERM on to pagecast (which shuts down gracefully, and kills and
# reaps its own children) and reaps the orphans Chromium's helpers leave behind, which would
# otherwise pile up as zombies (Kubernetes runs no init of its own).
ENTRYPOINT ["/usr/bin/tini", "--", "pagecast"]
CMD ["serve"]
