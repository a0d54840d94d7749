#!/usr/bin/env bash
# The "Xvfb + ffmpeg x11grab" reference recorder (how Jibri and LiveKit Egress capture), for
# bench/frame_timing.py --recorder x11grab: a headful Chromium in kiosk mode on its own Xvfb
# display, recorded by ffmpeg's x11grab with the same encoder settings as pagecast (libx264
# veryfast, CRF 23, yuv420p, keyframes every 2 s, no B-frames). No sound.
# Usage: x11grab_baseline.sh URL WIDTH HEIGHT FPS SECONDS OUT.mp4
set -euo pipefail
url=$1; w=$2; h=$3; fps=$4; seconds=$5; out=$6
dir=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
# One pixel larger than the picture: Chromium's kiosk window is one pixel short of the screen.
Xvfb -displayfd 5 -screen 0 "$((w + 1))x$((h + 1))x24" -nolisten tcp -ac -s 0 -dpms -noreset \
  5>"$dir/display" 2>"$dir/xvfb.log" &
for _ in $(seq 100); do [ -s "$dir/display" ] && break; sleep 0.1; done
display=$(cat "$dir/display")
export DISPLAY=":$display"
chromium --kiosk --window-position=0,0 --window-size="$w,$h" --test-type --noerrdialogs \
  --disable-infobars --no-sandbox --disable-gpu --disable-background-networking \
  --disable-component-update --disable-sync --no-first-run --disable-quic --hide-scrollbars \
  --autoplay-policy=no-user-gesture-required --user-data-dir="$dir/profile" "$url" \
  >"$dir/chromium.log" 2>&1 &
sleep 3 # let the page load and paint
gop=$((fps * 2))
ffmpeg -hide_banner -nostats -loglevel error -y -f x11grab -draw_mouse 0 -framerate "$fps" \
  -video_size "${w}x${h}" -i "$DISPLAY+0,0" -t "$seconds" -c:v libx264 -preset veryfast -crf 23 \
  -pix_fmt yuv420p -g "$gop" -keyint_min "$gop" -bf 0 -movflags +faststart "$out"
