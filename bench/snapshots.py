#!/usr/bin/env python3
"""Snapshots benchmark (BENCHMARKS.md, "Snapshots"): what `Output.Snapshots` costs, and how many
snapshot-only tasks one machine runs.

Three sections (`--sections`, default all):
  cost       CPU-s per picture of each kind a task can ask for: examples/snapshot_cost runs
             pagecast's in-process conversion on a 1280x720 screenshot of bench/snapshot_page.html
             (headless Chromium), as the x11 grab hands the frame over (I420) and as the
             screencast does (a JPEG).
  recording  The extra CPU of snapshots every second on a 720p30 recording: `--runs` pairs of
             recordings of tests/fixtures/clock.html through `pagecast serve` (a private Redis,
             local output), one without snapshots and one with `Interval` 1 (jpg at the
             recording's size, then png at width 640), alternating so that a noisy minute of a
             shared machine does not land on one kind only. CPU-s of serve's whole process tree
             (Chromium, Xvfb, ffmpeg) over `--seconds` of recording, per recorded minute.
  only       Snapshot-only tasks (`Muxer` "none", `Interval` 1, jpg 640 wide) of the clock page,
             `--only-counts` of them at once: per task, whether every second has its picture,
             whether the pictures are distinct, and how far each is from its time (the clock
             page paints its wall-clock ms into a strip of cells that is read back from each
             picture: picture k must show the page (T_k - T_0) ms after picture 0; the error is
             each picture's distance from the task's median offset).

Example:
    cargo build --release --bin pagecast --example snapshot_cost
    python3 bench/snapshots.py --seconds 60

Needs redis-server, chromium and ffmpeg on PATH. Only the Python standard library is used.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import frame_timing as ft  # bench/ is the script directory
from fixtures import fixture_server
from stop_to_finished import call, free_port, wait_port

ROOT = Path(__file__).resolve().parent.parent
BITS = 24


# --------------------------------------------------------------------------------------------
# Per picture
# --------------------------------------------------------------------------------------------


def cost(args, tmp: Path) -> list[dict]:
    shot = tmp / "page.png"
    subprocess.run(
        [args.chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--window-size=1280,720", f"--screenshot={shot}",
         (ROOT / "bench" / "snapshot_page.html").as_uri()],
        check=True, capture_output=True, timeout=120, cwd=tmp)
    out = subprocess.run([args.snapshot_cost, "--page", str(shot), "--runs", str(args.cost_runs)],
                         check=True, capture_output=True, text=True, timeout=600)
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    for r in rows:
        print(f"cost: {json.dumps(r)}", flush=True)
    return rows


# --------------------------------------------------------------------------------------------
# A pagecast service
# --------------------------------------------------------------------------------------------


class Service:
    """redis-server and `pagecast serve` (with its worker) in `tmp`, local output."""

    def __init__(self, args, tmp: Path, capacity: int):
        self.tmp = tmp
        self.procs: list[subprocess.Popen] = []
        redis_port, api_port = free_port(), free_port()
        self.procs.append(subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no",
             "--dir", str(tmp)], stdout=subprocess.DEVNULL))
        wait_port(redis_port, "redis-server")
        env = dict(os.environ,
                   PAGECAST_REDIS_URL=f"redis://127.0.0.1:{redis_port}/",
                   PAGECAST_LISTEN=f"127.0.0.1:{api_port}",
                   PAGECAST_WORK_DIR=str(tmp / "work"),
                   PAGECAST_OUTPUT_DIR=str(tmp / "out"),
                   PAGECAST_WORKER_CAPACITY=str(capacity),
                   PAGECAST_ALLOW_PRIVATE_URLS="true",
                   PAGECAST_ALLOWED_PRIVATE_NETWORKS="127.0.0.0/8,::1",
                   PAGECAST_LOG="warn")
        self.log = open(tmp / "serve.log", "w")
        self.serve = subprocess.Popen([args.pagecast, "serve"], env=env, stdout=self.log,
                                      stderr=self.log)
        self.procs.append(self.serve)
        wait_port(api_port, "pagecast serve")
        self.api = f"http://127.0.0.1:{api_port}/"
        self.out = tmp / "out"
        # Sampled at the window's ends only: the processes of a recording live through it
        # (snapshots start none).
        self.sampler = ft.TreeSampler(self.serve.pid, 0.5)

    def cpu(self) -> tuple[float, float]:
        """CPU-s so far of the whole tree, and of pagecast's own process (where snapshots are
        made: the rest of the tree, Chromium, Xvfb, ffmpeg, is the same with or without)."""
        self.sampler.sample()
        own = sum(t for (pid, _), t in self.sampler.cpu_ticks.items() if pid == self.serve.pid)
        return self.sampler.cpu_seconds(), own / ft.CLK_TCK

    def close(self) -> None:
        for p in reversed(self.procs):
            p.terminate()
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        self.log.close()


def wait_status(api: str, ids: list[str], want: str, limit: float) -> list[dict]:
    deadline = time.monotonic() + limit
    while True:
        ds = [call(api, "Describe", {"TaskID": i}) for i in ids]
        if all(d["Status"] == want for d in ds):
            return ds
        failed = [d for d in ds if d["Status"] == "finished" and want != "finished"]
        if failed or time.monotonic() > deadline:
            sys.exit(f"tasks did not reach {want}: {[d['Status'] for d in ds]} {failed[:1]}")
        time.sleep(0.2)


def record(svc: Service, datas: list[dict], seconds: float):
    """Starts the tasks, records `seconds` once all record, stops them; returns the CPU-s of the
    tree and of pagecast's process over that window, and the finished Describes."""
    ids = [call(svc.api, "Start", d)["TaskID"] for d in datas]
    wait_status(svc.api, ids, "recording", 120)
    time.sleep(2)  # past the start-up of every browser
    c0 = svc.cpu()
    time.sleep(seconds)
    c1 = svc.cpu()
    cpu, own = c1[0] - c0[0], c1[1] - c0[1]
    for i in ids:
        call(svc.api, "Stop", {"TaskID": i})
    ds = wait_status(svc.api, ids, "finished", 600)
    for d in ds:
        if d.get("Result", {}).get("ErrorCode"):
            sys.exit(f"task failed: {d['Result']}")
    return (cpu, own), ds


# --------------------------------------------------------------------------------------------
# Recording with and without snapshots
# --------------------------------------------------------------------------------------------


VARIANTS = {
    "none": None,
    "jpg": {"Interval": 1, "Format": "jpg"},
    "png640": {"Interval": 1, "Format": "png", "Width": 640},
}


def recording(args, fixtures: str) -> list[dict]:
    rows = []
    for run in range(args.runs):
        # Every other run in the reverse order: a load that grows or shrinks over the run
        # does not favour one variant.
        order = args.variants if run % 2 == 0 else args.variants[::-1]
        for variant in order:
            with tempfile.TemporaryDirectory(prefix="pagecast-snapbench-") as tmp:
                svc = Service(args, Path(tmp), 1)
                try:
                    data = {"RecordURL": f"{fixtures}/clock.html", "MaxDurationLimit": 36000,
                            "Width": 1280, "Height": 720}
                    if VARIANTS[variant]:
                        data["Output"] = {"Snapshots": VARIANTS[variant]}
                    (cpu, own), ds = record(svc, [data], args.seconds)
                finally:
                    svc.close()
            snaps = len(ds[0].get("Result", {}).get("Snapshots", []))
            row = {"run": run + 1, "variant": variant, "cpu_s": round(cpu, 2),
                   "cpu_s_per_min": round(cpu * 60 / args.seconds, 2),
                   "pagecast_cpu_s_per_min": round(own * 60 / args.seconds, 2),
                   "snapshots": snaps,
                   "load1": round(os.getloadavg()[0], 1)}
            print(f"recording: {json.dumps(row)}", flush=True)
            rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------
# Snapshot-only tasks
# --------------------------------------------------------------------------------------------


def pixels(path: Path, width: int, height: int) -> bytes:
    return subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo",
                           "-pix_fmt", "gray", "-s", f"{width}x{height}", "-"],
                          check=True, capture_output=True, timeout=60).stdout


def clock_ms(path: Path, width: int = 640, height: int = 360) -> int | None:
    """The clock page's painted ms (mod 2^24) in a picture, or None if the strip does not
    check out."""
    gray = pixels(path, width, height)
    cell = width / 32
    y = int(cell / 2)
    bits = [gray[y * width + int((k + 0.5) * cell)] > 128 for k in range(32)]
    v = 0
    for b in bits[:BITS]:
        v = (v << 1) | b
    check = 0
    for b in bits[BITS:]:
        check = (check << 1) | b
    b0, b1, b2 = (v >> 16) & 0xFF, (v >> 8) & 0xFF, v & 0xFF
    return v if check == (~(b0 ^ b1 ^ b2)) & 0xFF else None


def judge(d: dict, out: Path, seconds: float) -> dict:
    snaps = d.get("Result", {}).get("Snapshots", [])
    recorded = d.get("RecordedDuration") or 0
    expected = max(1, int(-(-(recorded - 1e-3) // 1)))
    times = [s["Time"] for s in snaps]
    clocks = [clock_ms(out / s["Key"]) for s in snaps]
    unreadable = sum(c is None for c in clocks)
    # Each picture's offset: the page time it shows less its recorded time (both from the
    # first readable picture). The recording starts at an arbitrary page time, so the error of
    # a picture is its offset's distance from the median offset.
    errors = []
    pairs = [(t, c) for t, c in zip(times, clocks) if c is not None]
    if pairs:
        t0, c0 = pairs[0]
        offsets = [((c - c0) % (1 << BITS)) - (t - t0) for t, c in pairs]
        mid = statistics.median(offsets)
        errors = [o - mid for o in offsets]
    shown_values = [c for c in clocks if c is not None]
    return {
        "recorded_s": recorded,
        "pictures": len(snaps),
        "expected": expected,
        "on_multiples": all(t % 1000 == 0 for t in times),
        "distinct": len(set(shown_values)) == len(shown_values),
        "unreadable": unreadable,
        "err_ms_p50": statistics.median([abs(e) for e in errors]) if errors else None,
        "err_ms_max": max((abs(e) for e in errors), default=None),
        "videos": len(d.get("Result", {}).get("Videos", [])),
    }


def only(args, fixtures: str) -> list[dict]:
    rows = []
    for count in args.only_counts:
        with tempfile.TemporaryDirectory(prefix="pagecast-snaponly-") as tmp:
            svc = Service(args, Path(tmp), count)
            try:
                data = {"RecordURL": f"{fixtures}/clock.html", "MaxDurationLimit": 36000,
                        "Width": 1280, "Height": 720,
                        "Output": {"Video": {"Muxer": "none"},
                                   "Snapshots": {"Interval": 1, "Format": "jpg", "Width": 640}}}
                if args.only_fps:
                    data["Fps"] = args.only_fps
                (cpu, _), ds = record(svc, [data] * count, args.seconds)
                tasks = [judge(d, svc.out, args.seconds) for d in ds]
            finally:
                svc.close()
        errs = [t["err_ms_max"] for t in tasks if t["err_ms_max"] is not None]
        row = {
            "tasks": count,
            "cpu_s_per_min": round(cpu * 60 / args.seconds, 1),
            "cores_used": round(cpu / args.seconds, 2),
            "all_pictures": all(t["pictures"] >= t["expected"] for t in tasks),
            "all_distinct": all(t["distinct"] for t in tasks),
            "worst_err_ms": max(errs) if errs else None,
            "p50_err_ms": statistics.median([t["err_ms_p50"] for t in tasks
                                             if t["err_ms_p50"] is not None] or [0]),
            "load1": round(os.getloadavg()[0], 1),
            "per_task": tasks,
        }
        print(f"only: {json.dumps(row)}", flush=True)
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------


def summary(res: dict, args) -> None:
    print("\n## Summary")
    if res.get("cost"):
        print("| kind | CPU-s per picture (median) | wall ms | bytes |")
        print("|---|---|---|---|")
        for r in res["cost"]:
            print(f"| {r['kind']} | {r['cpu_s_median']:.4f} | {r['wall_ms_median']:.1f} "
                  f"| {r['bytes']} |")
    if res.get("recording"):
        for key in ("cpu_s_per_min", "pagecast_cpu_s_per_min"):
            by = {}
            for r in res["recording"]:
                by.setdefault(r["variant"], []).append(r[key])
            base = statistics.median(by["none"]) if "none" in by else None
            for v, vals in by.items():
                med = statistics.median(vals)
                extra = (f", {med - base:+.2f} against none, {100 * (med - base) / base:+.1f} %"
                         if base else "")
                print(f"recording {v}, {key}: median {med:.2f} (runs {vals}){extra}")
    for r in res.get("only", []):
        print(f"snapshot-only x{r['tasks']}: {r['cores_used']} cores, all pictures "
              f"{r['all_pictures']}, distinct {r['all_distinct']}, worst error "
              f"{r['worst_err_ms']} ms, p50 {r['p50_err_ms']} ms, load {r['load1']}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pagecast", default=str(ROOT / "target/release/pagecast"))
    ap.add_argument("--snapshot-cost",
                    default=str(ROOT / "target/release/examples/snapshot_cost"))
    ap.add_argument("--chromium", default="chromium")
    ap.add_argument("--sections", default="cost,recording,only")
    ap.add_argument("--seconds", type=float, default=60, help="recorded seconds per run")
    ap.add_argument("--runs", type=int, default=2, help="recordings of each variant")
    ap.add_argument("--variants", default="none,jpg,png640")
    ap.add_argument("--cost-runs", type=int, default=30)
    ap.add_argument("--only-counts", default="1,2,4", help="snapshot-only tasks at once")
    ap.add_argument("--only-fps", type=int,
                    help="Fps of the snapshot-only tasks (default: the server's, 5)")
    ap.add_argument("--json", help="write the results here too")
    args = ap.parse_args(argv)
    args.variants = args.variants.split(",")
    args.only_counts = [int(n) for n in args.only_counts.split(",")]
    sections = args.sections.split(",")
    fixtures = fixture_server()
    res: dict = {"machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                             "load1_at_start": os.getloadavg()[0]},
                 "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    with tempfile.TemporaryDirectory(prefix="pagecast-snapcost-") as tmp:
        if "cost" in sections:
            res["cost"] = cost(args, Path(tmp))
    if "recording" in sections:
        res["recording"] = recording(args, fixtures)
    if "only" in sections:
        res["only"] = only(args, fixtures)
    summary(res, args)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
