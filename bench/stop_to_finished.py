#!/usr/bin/env python3
"""Stop -> finished benchmark for pagecast's delivery path.

Starts a throwaway redis-server and s3s-fs (the S3-compatible test server that
scripts/install-test-deps.sh builds), serves tests/fixtures/ on loopback, runs `pagecast serve`
against them, records tests/fixtures/animated.html for --seconds, sends Stop and measures
how long the task takes to reach `finished` with its result confirmed in the bucket. It also
measures Start -> first frame: from sending Start to the worker's "recording started" log line
(the instant of the recording's first frame), with a fresh `pagecast serve` per run.
Prints one line per run and the medians.

Example:
    python3 bench/stop_to_finished.py --pagecast target/release/pagecast --seconds 600

Only the Python standard library is used.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from fixtures import fixture_server  # bench/ is the script directory

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, what: str, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not listen on port {port}")


def call(api: str, action: str, data: dict) -> dict:
    body = json.dumps({"Action": action, "Data": data}).encode()
    req = urllib.request.Request(api, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=15) as r:
        return json.load(r)


def first_frame_at(log: Path) -> float | None:
    """Wall-clock time of the first "recording started" line in pagecast's log."""
    for line in log.read_text(errors="replace").splitlines():
        if "recording started" in line:
            stamp = line.split()[0].rstrip("Z")
            return datetime.fromisoformat(stamp).replace(tzinfo=timezone.utc).timestamp()
    return None


def one_run(args: argparse.Namespace, tmp: Path, fixtures: str) -> dict:
    procs: list[subprocess.Popen] = []
    try:
        redis_port, s3_port, api_port = free_port(), free_port(), free_port()
        procs.append(subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no",
             "--dir", str(tmp)], stdout=subprocess.DEVNULL))
        (tmp / "s3" / "bench").mkdir(parents=True, exist_ok=True)
        procs.append(subprocess.Popen(
            [args.s3s_fs, "--host", "127.0.0.1", "--port", str(s3_port), "--access-key", "bench",
             "--secret-key", "bench-secret", str(tmp / "s3")], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL))
        wait_port(redis_port, "redis-server")
        wait_port(s3_port, "s3s-fs")
        env = dict(os.environ,
                   PAGECAST_REDIS_URL=f"redis://127.0.0.1:{redis_port}/",
                   PAGECAST_LISTEN=f"127.0.0.1:{api_port}",
                   PAGECAST_WORK_DIR=str(tmp / "work"),
                   PAGECAST_OUTPUT_DIR=str(tmp / "out"),
                   PAGECAST_WORKER_CAPACITY="1",
                   PAGECAST_ALLOW_PRIVATE_URLS="true",
                   PAGECAST_ALLOWED_PRIVATE_NETWORKS="127.0.0.0/8,::1",
                   PAGECAST_S3_ENDPOINT=f"http://127.0.0.1:{s3_port}",
                   PAGECAST_S3_BUCKET="bench",
                   PAGECAST_S3_PATH_STYLE="true",
                   AWS_ACCESS_KEY_ID="bench",
                   AWS_SECRET_ACCESS_KEY="bench-secret",
                   # The recording's "recording started" line is needed for Start -> first frame.
                   PAGECAST_LOG=f"{args.log_level},pagecast::recording=info")
        log_path = Path(args.log or (tmp / "serve.log"))
        log = open(log_path, "w")
        procs.append(subprocess.Popen([args.pagecast, "serve"], env=env, stdout=log, stderr=log))
        wait_port(api_port, "pagecast serve")
        api = f"http://127.0.0.1:{api_port}/"
        data = {"RecordURL": f"{fixtures}/animated.html", "MaxDurationLimit": 36000,
                "Width": args.width, "Height": args.height}
        if args.muxer == "hls":
            data["Output"] = {"Video": {"Muxer": "hls"}}
        started = time.time()
        task = call(api, "Start", data)["TaskID"]
        while call(api, "Describe", {"TaskID": task})["Status"] != "recording":
            time.sleep(0.1)
        time.sleep(args.seconds)
        stopped = time.monotonic()
        call(api, "Stop", {"TaskID": task})
        stages: dict[str, float] = {}
        while True:
            d = call(api, "Describe", {"TaskID": task})
            stages.setdefault(d["Status"], time.monotonic() - stopped)
            if d["Status"] == "finished":
                break
            if time.monotonic() - stopped > 600:
                sys.exit(f"task did not finish within 10 min of Stop: {d}")
            time.sleep(0.05)
        elapsed = time.monotonic() - stopped
        if "ErrorCode" in d.get("Result", {}):
            sys.exit(f"task failed: {d['Result']}")
        size = sum(v["FileSize"] for v in d["Result"]["Videos"])
        first_frame = first_frame_at(log_path)
        return {"stop_to_finished_s": round(elapsed, 2),
                "start_to_first_frame_s": round(first_frame - started, 2) if first_frame else None,
                "recorded_s": d.get("RecordedDuration"),
                "bytes": size,
                "objects": len(d["Result"]["Videos"]),
                "stage_reached_s": {k: round(v, 2) for k, v in stages.items()}}
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pagecast", default=str(ROOT / "target/release/pagecast"))
    ap.add_argument("--s3s-fs", default=str(Path.home() / ".cache/pagecast-tools/bin/s3s-fs"))
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--muxer", choices=["mp4", "hls"], default="mp4")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--log", help="keep pagecast's log in this file")
    ap.add_argument("--log-level", default="warn", help="PAGECAST_LOG for pagecast serve")
    args = ap.parse_args()
    fixtures = fixture_server()
    results, first_frames = [], []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="pagecast-bench-") as tmp:
            r = one_run(args, Path(tmp), fixtures)
        print(f"run {i + 1}: {json.dumps(r)}", flush=True)
        results.append(r["stop_to_finished_s"])
        if r["start_to_first_frame_s"] is not None:
            first_frames.append(r["start_to_first_frame_s"])
    print(f"median Stop->finished: {statistics.median(results):.2f} s "
          f"({args.muxer}, {args.seconds:.0f} s recorded, {args.width}x{args.height})")
    if first_frames:
        print(f"median Start->first frame: {statistics.median(first_frames):.2f} s")


if __name__ == "__main__":
    main()
