#!/usr/bin/env bash
# Describe latency under load (BENCHMARKS.md, "Describe latency"): a private Redis, `pagecast
# serve` whose worker takes no recordings (its free-disk floor is set above any disk, so the
# tasks stay live in `normal`), 100 tasks, then Describe at a fixed rate from
# examples/describe_load.rs. Usage: bench/describe_latency.sh [rate] [seconds] [tasks]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
rate=${1:-1000}; seconds=${2:-10}; tasks=${3:-100}
cargo build --release --quiet --bin pagecast --example describe_load
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"' EXIT
redis-server --port 6391 --save '' --appendonly no --dir "$dir" >"$dir/redis.log" 2>&1 &
for _ in $(seq 50); do redis-cli -p 6391 ping >/dev/null 2>&1 && break; sleep 0.1; done
PAGECAST_REDIS_URL=redis://127.0.0.1:6391 PAGECAST_LISTEN=127.0.0.1:8391 \
  PAGECAST_ALLOW_PRIVATE_URLS=true PAGECAST_ALLOWED_PRIVATE_NETWORKS=127.0.0.0/8,::1 PAGECAST_MIN_FREE_MB=1000000000 PAGECAST_LOG=warn \
  PAGECAST_WORK_DIR="$dir" target/release/pagecast serve >"$dir/serve.log" 2>&1 &
for _ in $(seq 100); do curl -fs http://127.0.0.1:8391/healthz >/dev/null 2>&1 && break; sleep 0.1; done
target/release/examples/describe_load --url http://127.0.0.1:8391/ --rate "$rate" \
  --seconds "$seconds" --tasks "$tasks"
