"""`bench/faults.py --takeover`: seconds of a recording lost when its worker is killed.

One run: a throwaway redis-server, `pagecast serve --no-worker` and worker processes of one node
(they share the work directory, as workers of one machine do), each worker in its own process
group. Worker A records tests/fixtures/clock.html (its page paints its wall clock into every
frame); after --fault-after seconds A's process group gets SIGKILL; worker B continues the task.
B is either a standby already running at the kill, or started right after it. The kill comes
--fault-after seconds plus a random 0-2 s (one segment) after recording began. The task runs
on for a few seconds, is stopped, and the result's video is read back: the jump in the page's
clock at the takeover is what the viewer lost.

Only the Python standard library is used (and `pagecast analyze` for the clock).
"""

from __future__ import annotations

import datetime
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stop_to_finished import call, free_port, wait_port  # bench/ is the script directory

SCENARIOS = ("standby", "started after")


def wait_log(path: Path, text: str, limit: float) -> str:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        for line in path.read_text(errors="replace").splitlines():
            if text in line:
                return line
        time.sleep(0.05)
    sys.exit(f"no {text!r} in {path} within {limit} s")


def log_time(line: str) -> float | None:
    stamp = line.split(" ", 1)[0]
    try:
        return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def has_children(pid: int) -> bool:
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    return True
        except (OSError, ValueError, IndexError):
            continue
    return False


def signal_group(p: subprocess.Popen, sig: int) -> None:
    """Signals the process group `p` leads (every process here is started in its own)."""
    if p.poll() is None:
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass


def one_run(args, fixtures: str, scenario: str, tmp: Path) -> dict:
    procs: list[subprocess.Popen] = []
    try:
        redis_port, api_port = free_port(), free_port()
        procs.append(subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no",
             "--dir", str(tmp)], stdout=subprocess.DEVNULL, start_new_session=True))
        wait_port(redis_port, "redis-server", 30.0)
        env = dict(os.environ,
                   PAGECAST_REDIS_URL=f"redis://127.0.0.1:{redis_port}/",
                   PAGECAST_LISTEN=f"127.0.0.1:{api_port}",
                   PAGECAST_PUBLIC_URL=f"http://127.0.0.1:{api_port}",
                   PAGECAST_WORK_DIR=str(tmp / "work"),
                   PAGECAST_OUTPUT_DIR=str(tmp / "out"),
                   PAGECAST_WORKER_CAPACITY="1",
                   PAGECAST_NODE_ID="bench-node",
                   PAGECAST_ALLOW_PRIVATE_URLS="true",
                   PAGECAST_ALLOWED_PRIVATE_NETWORKS="127.0.0.0/8,::1",
                   PAGECAST_LOG="info,chromiumoxide=off",
                   NO_COLOR="1")
        if args.lease_ms:
            env["PAGECAST_LEASE_MS"] = str(args.lease_ms)
        for kv in args.env:
            k, _, v = kv.partition("=")
            env[k] = v

        def spawn(cmd: list[str], log: str) -> subprocess.Popen:
            f = open(tmp / log, "w")
            p = subprocess.Popen([args.pagecast, *cmd], env=env, stdout=f, stderr=f,
                                 start_new_session=True)
            procs.append(p)
            return p

        spawn(["serve", "--no-worker"], "serve.log")
        wait_port(api_port, "pagecast serve", 30.0)
        api = f"http://127.0.0.1:{api_port}/"
        a = spawn(["worker"], "worker-a.log")
        wait_log(tmp / "worker-a.log", "worker started", 30)
        deadline = time.monotonic() + 30
        while True:
            try:
                task = call(api, "Start", {"RecordURL": f"{fixtures}/clock.html"})["TaskID"]
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        while call(api, "Describe", {"TaskID": task})["Status"] != "recording":
            time.sleep(0.1)
        if scenario == "standby":
            b = spawn(["worker"], "worker-b.log")
            wait_log(tmp / "worker-b.log", "worker started", 30)
        assert has_children(a.pid), "worker A records"
        # The kill lands anywhere within a 2 s segment (what the killed encoder had not written
        # depends on it), not always at the same phase.
        phase = random.uniform(0.0, 2.0)
        time.sleep(args.fault_after + phase)
        killed_at = time.time()
        os.killpg(a.pid, signal.SIGKILL)
        a.wait()
        if scenario != "standby":
            b = spawn(["worker"], "worker-b.log")
        line = wait_log(tmp / "worker-b.log", "recording continues after the takeover", 120)
        resumed_after = (log_time(line) or time.time()) - killed_at
        time.sleep(4)
        call(api, "Stop", {"TaskID": task})
        deadline = time.monotonic() + 120
        while True:
            d = call(api, "Describe", {"TaskID": task})
            if d["Status"] == "finished":
                break
            if time.monotonic() > deadline:
                sys.exit(f"task did not finish: {d}")
            time.sleep(0.1)
        if d.get("Result", {}).get("ErrorCode"):
            sys.exit(f"task failed: {d['Result']}")
        video = tmp / "out" / d["Result"]["Videos"][0]["Key"]
        analysis = subprocess.run([args.pagecast, "analyze", str(video), "--json"],
                                  capture_output=True, text=True)
        report = json.loads(analysis.stdout) if analysis.returncode == 0 else {}
        jumps = [g["jump_ms"] for g in report.get("gaps", []) if g.get("jump_ms") is not None]
        lost = (max(jumps) / 1000.0 - 1.0 / 30.0) if jumps else None
        gaps = d.get("Stats", {}).get("Gaps", [])
        if args.keep_logs:
            keep = Path(args.keep_logs) / f"{scenario.replace(' ', '-')}-{int(killed_at)}"
            keep.mkdir(parents=True, exist_ok=True)
            for log in tmp.glob("*.log"):
                (keep / log.name).write_text(log.read_text(errors="replace"))
            (keep / "killed_at").write_text(f"{killed_at:.3f}\n")
        return {
            "lost_s": None if lost is None else round(lost, 2),
            "reported_s": round(gaps[0]["Seconds"], 2) if gaps else None,
            "resumed_after_s": round(resumed_after, 2),
            "before_kill_s": None if lost is None else round(lost - resumed_after, 2),
            "restarts": d.get("Restarts"),
            "kill_phase_s": round(phase, 2),
        }
    finally:
        for p in reversed(procs):
            signal_group(p, signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                signal_group(p, signal.SIGKILL)
                p.wait()


def main(args, fixtures: str) -> None:
    print(f"{'takeover':<14} {'runs':>4} {'lost (median, runs)':>34} {'resumed after':>14} "
          f"{'before kill':>12} {'<= 5 s':>7}")
    for scenario in SCENARIOS:
        runs = []
        for i in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="pagecast-takeover-") as tmp:
                r = one_run(args, fixtures, scenario, Path(tmp))
            runs.append(r)
            print(f"  {scenario} run {i + 1}: {json.dumps(r)}", file=sys.stderr, flush=True)
        lost = [r["lost_s"] for r in runs if r["lost_s"] is not None]
        med = lambda k: statistics.median([r[k] for r in runs if r[k] is not None])  # noqa: E731
        met = "met" if lost and max(lost) <= 5.0 else "missed"
        print(f"{scenario:<14} {len(runs):>4} {statistics.median(lost):>8.2f} s "
              f"({', '.join(f'{x:.2f}' for x in lost):<20}) {med('resumed_after_s'):>12.2f} s "
              f"{med('before_kill_s'):>10.2f} s {met:>7}", flush=True)
