#!/usr/bin/env python3
"""A/V sync benchmark for pagecast.

Serves tests/fixtures from a local HTTP server, records each test page with `pagecast record`
(sound on), runs `pagecast analyze --av-sync --json` on every recording and prints per-run
figures plus the figures over all flashes of all runs:

- av_sync_video.html: a <video> whose picture flashes and whose sound beeps at every second
  (Chromium keeps a media element's picture in step with its sound);
- av_sync.html: the page itself flashes (canvas, requestAnimationFrame) and beeps (WebAudio,
  scheduled with getOutputTimestamp()) once a second, at instants that walk through one 30 fps
  frame every ten seconds; `recorder error` is each offset corrected by how late the page painted
  that flash (from the frame's clock strip): the page's own lead taken out. Each canvas run is
  recorded with the timing trace, and its error split into the sound's lag behind the page's
  intent and the picture's (bench/av_path.py);
- `--sound-placement N`: N recordings in which a native PulseAudio client clicks into the sink,
  which check pagecast's placement of sound against PulseAudio's clock with no browser involved.

Example:
    python3 bench/av_sync.py --pagecast target/release/pagecast --seconds 30 --runs 3

Only the Python standard library is used.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import av_path  # bench/ is the script directory
import frame_timing as ft
from fixtures import fixture_server

PAGES = ["av_sync_video.html", "av_sync.html"]


def load() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def one_run(pagecast: str, url: str, out: Path, seconds: float) -> dict:
    """Records `url` to `out` with sound and measures it: `pagecast analyze --av-sync`'s report,
    plus the mean of the page's lateness over the flashes whose lateness the page's clock strip
    tells (None for a page without one), and for such a page the split of its error into the
    sound's and the picture's lag (`path`: medians of bench/av_path.py's `decompose`)."""
    before = load()
    log = out.with_suffix(".log")
    env = dict(os.environ, PAGECAST_LOG=ft.TRACE_LOG)
    with open(log, "w") as err:
        rec = subprocess.run([pagecast, "record", url, "-o", str(out), "--duration", str(seconds)],
                             stdout=subprocess.DEVNULL, stderr=err, env=env)
    if rec.returncode != 0:
        raise RuntimeError(f"{url}: record failed (exit {rec.returncode}); see {log}")
    ana = subprocess.run([pagecast, "analyze", "--av-sync", "--json", str(out)],
                         capture_output=True, text=True, check=True)
    r = json.loads(ana.stdout)
    late = [p for p in r["pairs"] if p["lateness_ms"] is not None]
    r["load_before"] = before
    r["mean_lateness_ms"] = statistics.mean(p["lateness_ms"] for p in late) if late else None
    r["path"] = None
    if late:
        rows = av_path.decompose(r, av_path.read_trace(log), av_path.stream_start(out), 30.0)
        r["path"] = av_path.summarize(rows)
    return r


def summary_line(r: dict) -> str:
    line = (f"(load {r['load_before']}): {len(r['pairs'])} pairs, mean {r['mean_offset_ms']:+.1f} ms, "
            f"mean |offset| {r['mean_abs_offset_ms']:.1f} ms, median |offset| {r['median_abs_offset_ms']:.1f} ms, "
            f"max |offset| {r['max_abs_offset_ms']:.1f} ms")
    if r["mean_lateness_ms"] is not None:
        line += (f"; the page's own lead {r['mean_lateness_ms']:+.1f} ms, "
                 f"recorder error mean {r['mean_recorder_error_ms']:+.1f} ms")
    if r.get("path"):
        line += f"\n    = {describe_path(r['path'])}"
    return line


def describe_path(path: dict) -> str:
    """One canvas run's error, split (medians over its flashes)."""
    def ms(key):
        return "-" if path.get(key) is None else f"{path[key]:+.1f}"
    return (f"sound lag {ms('sound_lag_ms')} ms - picture lag {ms('picture_lag_ms')} ms "
            f"(paint {ms('paint_lag_ms')}, grid {ms('grid_ms')})")


def placement_line(r: dict) -> str:
    return (f"{r['placed']} of {r['clicks']} clicks, pagecast less PulseAudio median {r['median_ms']:+.2f} ms, "
            f"max |error| {r['max_abs_ms']:.2f} ms (stream latency {r['latency_ms']:.1f} ms)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pagecast", default="target/release/pagecast")
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--pages", nargs="*", default=PAGES)
    ap.add_argument("--sound-placement", type=int, default=0, metavar="N",
                    help="also N recordings checking the sound's placement against PulseAudio's clock")
    args = ap.parse_args()
    base = fixture_server()
    with tempfile.TemporaryDirectory(prefix="pagecast-avbench-") as tmp:
        for run in range(args.sound_placement):
            try:
                r = av_path.sound_placement(args.pagecast, base, Path(tmp) / f"clicks{run}.mp4")
            except RuntimeError as e:
                print(f"sound placement run {run}: {e}", file=sys.stderr)
                return 1
            print(f"sound placement run {run}: {placement_line(r)}")
        for page in args.pages:
            offsets: list[float] = []
            errors: list[float] = []
            for run in range(args.runs):
                try:
                    r = one_run(args.pagecast, f"{base}/{page}", Path(tmp) / f"{run}.mp4", args.seconds)
                except RuntimeError as e:
                    print(f"{page} run {run}: {e}", file=sys.stderr)
                    return 1
                offsets += [p["offset_ms"] for p in r["pairs"]]
                errors += [p["recorder_error_ms"] for p in r["pairs"] if p["lateness_ms"] is not None]
                print(f"{page} run {run} {summary_line(r)}")
            if not offsets:
                continue
            ab = [abs(o) for o in offsets]
            print(f"== {page}: {len(offsets)} flashes in {args.runs} runs: mean {statistics.mean(offsets):+.1f} ms, "
                  f"mean |offset| {statistics.mean(ab):.1f} ms, median |offset| {statistics.median(ab):.1f} ms, "
                  f"p95 |offset| {sorted(ab)[int(0.95 * (len(ab) - 1))]:.1f} ms, max |offset| {max(ab):.1f} ms")
            if errors:
                ae = [abs(e) for e in errors]
                print(f"   recorder error (offset + page lateness): mean {statistics.mean(errors):+.1f} ms, "
                      f"mean |error| {statistics.mean(ae):.1f} ms, max |error| {max(ae):.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
