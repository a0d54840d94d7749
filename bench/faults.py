#!/usr/bin/env python3
"""Fault-recovery figures for pagecast's recording engine.

Records tests/fixtures/clock.html (a page that paints its wall clock into every frame) with
`pagecast record`, injects one fault a few seconds in, and reports for each fault:
  - detection: seconds from the fault to pagecast's log line reacting to it;
  - longest freeze: the longest stretch of the video that repeats one frame (the page time the
    viewer does not see while the page is being brought back), from `pagecast analyze`;
  - duration error: output duration minus the requested duration (the length stays true);
  - whether the recording ended successfully.

Faults: the page's renderer killed, the whole browser killed, ffmpeg killed, the page's main
thread hung (busy loop; `--hang-timeout` given below).

With --takeover it measures instead what a worker killed mid-recording costs (issue 23, target 1:
at most 5 s with a standby worker running): a throwaway redis-server, `pagecast serve
--no-worker` and worker processes of one node (one work directory); the worker recording
clock.html gets SIGKILL on its process group --fault-after seconds in, and another worker
continues the task, either a standby already running ("standby") or one started right after the
kill ("started after"). Per run:
  - lost: page time missing from the video at the takeover (the jump in the page's clock that
    `pagecast analyze` finds, less one frame), the figure the target is about;
  - reported: the gap the task reports in Stats.Gaps (should equal lost);
  - resumed after: seconds from the kill to the takeover worker's "recording continues" log line;
  - before the kill: lost minus resumed after (what the killed encoder had not written).

Examples:
    python3 bench/faults.py --pagecast target/release/pagecast --runs 3
    python3 bench/faults.py --pagecast target/debug/pagecast --takeover --runs 3

Only the Python standard library is used. Linux only (reads /proc).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fixtures import fixture_server  # bench/ is the script directory
import takeover_bench  # bench/ is the script directory


def children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        tree.setdefault(ppid, []).append(int(d))
    return tree


def descendants(pid: int) -> list[int]:
    tree, out, todo = children(), [], [pid]
    while todo:
        p = todo.pop()
        for c in tree.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def is_renderer(c: str) -> bool:
    return "--type=renderer" in c and "--top-chrome-webui" not in c


def is_browser(c: str) -> bool:
    return "chromium" in c and "--type=" not in c


def is_encoder(c: str) -> bool:
    return c.startswith("ffmpeg") or "/ffmpeg " in c and "segment" in c


# name -> (URL query, extra args, process to kill or None, log text that shows the reaction)
FAULTS = {
    "renderer killed": ("", [], is_renderer, "the page crashed"),
    "browser killed": ("", [], is_browser, "the browser died"),
    "ffmpeg killed": ("", [], is_encoder, "the encoder died"),
    "page hung (3 s watchdog)": ("?hang=5000", ["--hang-timeout", "3"], None, "stopped responding"),
}


def log_time(line: str) -> float | None:
    stamp = line.split(" ", 1)[0]
    try:
        return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def one_run(args, base: str, name: str, tmp: Path) -> dict:
    query, extra, target, reaction = FAULTS[name]
    out = tmp / "out.mp4"
    log = tmp / "record.log"
    env = dict(os.environ, PAGECAST_LOG="info", NO_COLOR="1")
    with open(log, "w") as logf:
        proc = subprocess.Popen(
            [args.pagecast, "record", f"{base}/clock.html{query}", "-o", str(out), "-q",
             "--duration", str(args.seconds), *extra],
            stdout=subprocess.DEVNULL, stderr=logf, env=env)
        fault_at = None
        try:
            if target is None:
                # The page hangs itself 5 s after it loads.
                time.sleep(1)
            else:
                time.sleep(args.fault_after)
                pids = [p for p in descendants(proc.pid) if target(cmdline(p))]
                if not pids:
                    raise SystemExit(f"{name}: no process to kill under {proc.pid}")
                fault_at = time.time()
                for p in pids:
                    os.kill(p, signal.SIGKILL)
            status = proc.wait(timeout=args.seconds + 120)
        finally:
            if proc.poll() is None:
                proc.kill()
    text = log.read_text(errors="replace")
    detected = None
    for line in text.splitlines():
        if reaction in line:
            t = log_time(line)
            if t is not None:
                if fault_at is None:
                    # The hang began when the page's clock stopped: 5 s after the first load.
                    started = next((log_time(l) for l in text.splitlines() if "recording started" in l), None)
                    fault_at = (started or t) + 5.0
                detected = t - fault_at
            break
    analysis = subprocess.run([args.pagecast, "analyze", str(out), "--json"],
                              capture_output=True, text=True)
    a = json.loads(analysis.stdout) if analysis.returncode == 0 else {}
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration",
                            "-of", "csv=p=0", str(out)], capture_output=True, text=True)
    duration = float(probe.stdout.strip() or "nan")
    return {
        "ok": status == 0,
        "detected_s": detected,
        "freeze_ms": a.get("longest_freeze_ms"),
        "duration_error_s": duration - args.seconds,
    }


def fmt(v, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pagecast", default="target/release/pagecast")
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--fault-after", type=float, default=5.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--takeover", action="store_true",
                    help="measure a killed worker's takeover instead (see above)")
    ap.add_argument("--lease-ms", type=int, help="PAGECAST_LEASE_MS for --takeover (default: pagecast's)")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                    help="more environment for the --takeover processes (repeatable)")
    ap.add_argument("--keep-logs", metavar="DIR", help="--takeover: keep each run's logs in DIR")
    args = ap.parse_args()
    base = fixture_server()
    if args.takeover:
        takeover_bench.main(args, base)
        return
    print(f"{'fault':<28} {'ok':>5} {'detected':>10} {'longest freeze':>15} {'duration error':>15}")
    for name in FAULTS:
        runs = []
        for i in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="pagecast-faults-") as tmp:
                r = one_run(args, base, name, Path(tmp))
                runs.append(r)
                print(f"  {name} run {i + 1}: {r}", file=sys.stderr)
        med = lambda k: statistics.median([r[k] for r in runs if r[k] is not None]) if any(r[k] is not None for r in runs) else None  # noqa: E731
        ok = sum(r["ok"] for r in runs)
        print(f"{name:<28} {ok:>3}/{len(runs)} {fmt(med('detected_s'), '>8.2f')} s "
              f"{fmt(med('freeze_ms'), '>12.0f')} ms {fmt(med('duration_error_s'), '>+13.3f')} s")


if __name__ == "__main__":
    main()
