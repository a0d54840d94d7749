#!/usr/bin/env python3
"""Frame-timing benchmark for pagecast.

Serves tests/fixtures/clock.html from a local HTTP server, records it with
`pagecast record`, measures the CPU time and peak memory (PSS) of pagecast and every
process it starts (Chromium, ffmpeg, ...), then runs `pagecast analyze --json` on the
recording and prints per-run figures plus the median over runs.

Example:
    python3 bench/frame_timing.py --pagecast target/release/pagecast \
        --seconds 30 --width 1280 --height 720 --fps 30 --runs 3

Only the Python standard library is used. Linux only (reads /proc).
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import http.server
import json
import math
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A failure that ends the benchmark with a message and a non-zero exit status."""


# --------------------------------------------------------------------------------------------
# Local HTTP server for the fixtures directory
# --------------------------------------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature fixed by the base class
        pass


class FixtureServer:
    """Serves FIXTURES on 127.0.0.1 at a free port from a background thread."""

    def __init__(self, directory: Path):
        handler = functools.partial(_QuietHandler, directory=str(directory))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="fixture-http", daemon=True)

    def __enter__(self) -> "FixtureServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


# --------------------------------------------------------------------------------------------
# /proc sampling
# --------------------------------------------------------------------------------------------


def read_stat(pid: int):
    """Returns (ppid, utime+stime ticks, starttime, state) of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name is in parentheses and may itself contain spaces or parentheses.
    close = data.rfind(b")")
    if close < 0:
        return None
    fields = data[close + 2 :].split()
    try:
        state = fields[0].decode("ascii", "replace")
        ppid = int(fields[1])
        cpu = int(fields[11]) + int(fields[12])
        start = int(fields[19])
    except (IndexError, ValueError):
        return None
    return ppid, cpu, start, state


def read_pss_kb(pid: int):
    """Proportional set size of a process in kB from smaps_rollup, or None if unreadable."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def all_pids():
    for name in os.listdir("/proc"):
        if name.isdigit():
            yield int(name)


def live_descendants(root: int) -> list[tuple[int, str]]:
    """(pid, command name) of every running (not zombie) process under `root`."""
    parent, names = {}, {}
    for pid in all_pids():
        st = read_stat(pid)
        if st is None or st[3] in ("Z", "X"):
            continue
        parent[pid] = st[0]
        try:
            names[pid] = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            names[pid] = "?"
    out = []
    for pid in parent:
        p, seen = parent.get(pid), 0
        while p is not None and p != root and seen < 64:
            p, seen = parent.get(p), seen + 1
        if p == root and pid != root:
            out.append((pid, names[pid]))
    return out


def settle(label: str, limit: float = 15.0) -> None:
    """Before a measured recording under this subreaper: reaps what earlier work left exited
    (reaped during the recording, its CPU time would count as the recording's) and waits up to
    `limit` seconds for what it left running (it would be sampled as part of the recording's
    tree and compete with it). What still runs then is named in a warning under `label`."""
    deadline = time.monotonic() + limit
    while True:
        reap_remaining(0.0)
        left = live_descendants(os.getpid())
        if not left:
            return
        if time.monotonic() >= deadline:
            print(f"{label}warning: still running from earlier work, measured with this recording: "
                  + ", ".join(f"{name} ({pid})" for pid, name in left), file=sys.stderr, flush=True)
            return
        time.sleep(0.2)


def become_subreaper() -> bool:
    """Makes this process the reaper of orphaned descendants (Linux PR_SET_CHILD_SUBREAPER).

    A process started by pagecast whose parent exits is then reparented to us instead of init,
    so it stays in the measured tree and its resource usage is returned to us when reaped.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER = 36
    except (OSError, AttributeError):
        return False


class TreeSampler:
    """Tracks CPU time and PSS of a root process and all its descendants.

    `root_pid` is pagecast itself, or this script when it is a subreaper (then the tree also
    holds orphans reparented to us; this script itself is never counted). Every sample walks
    the ppid links of all processes to find the current tree. Each process
    is keyed by (pid, start time) so a recycled pid is never confused with an earlier process,
    and stays tracked after being reparented (its parent exited). CPU time is the sum over all
    processes ever seen of the largest utime+stime observed, which cannot double count; it
    misses only each process's last sampling interval and processes that lived for less than
    one interval.
    """

    def __init__(self, root_pid: int, interval: float):
        self.root_pid = root_pid
        self.interval = interval
        self.cpu_ticks: dict[tuple[int, int], int] = {}
        self.tracked: set[tuple[int, int]] = set()
        self.peak_pss_kb = 0
        # Largest PSS seen in each minute since the sampler started: shows whether memory stays
        # flat over a long recording.
        self.pss_by_minute_kb: list[int] = []
        self.started = time.monotonic()
        self.peak_procs = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="proc-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.sample()
            except Exception as e:  # never let a sampling hiccup kill the benchmark
                print(f"warning: sampling failed: {e}", file=sys.stderr)
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def sample(self) -> None:
        stats = {}
        children: dict[int, list[int]] = {}
        for pid in all_pids():
            st = read_stat(pid)
            if st is None:
                continue
            stats[pid] = st
            children.setdefault(st[0], []).append(pid)

        root = stats.get(self.root_pid)
        if root is not None:
            if self.root_pid != os.getpid():
                self.tracked.add((self.root_pid, root[2]))
            stack = [self.root_pid]
            while stack:
                for child in children.get(stack.pop(), ()):
                    self.tracked.add((child, stats[child][2]))
                    stack.append(child)

        pss_total = 0
        alive = 0
        for key in self.tracked:
            pid, start = key
            st = stats.get(pid)
            if st is None or st[2] != start:
                continue  # exited (or pid reused); its last observed CPU time stays counted
            alive += 1
            if st[1] > self.cpu_ticks.get(key, -1):
                self.cpu_ticks[key] = st[1]
            pss = read_pss_kb(pid)
            if pss is not None:
                pss_total += pss
        self.peak_pss_kb = max(self.peak_pss_kb, pss_total)
        minute = int((time.monotonic() - self.started) // 60)
        while len(self.pss_by_minute_kb) <= minute:
            self.pss_by_minute_kb.append(0)
        self.pss_by_minute_kb[minute] = max(self.pss_by_minute_kb[minute], pss_total)
        self.peak_procs = max(self.peak_procs, alive)
        self.samples += 1

    def cpu_seconds(self) -> float:
        return sum(self.cpu_ticks.values()) / CLK_TCK

    def descendants_alive(self) -> list[int]:
        """Pids of tracked processes that are still running (zombies excluded)."""
        out = []
        for pid, start in self.tracked:
            st = read_stat(pid)
            if st is not None and st[2] == start and st[3] not in ("Z", "X"):
                out.append(pid)
        return out


# --------------------------------------------------------------------------------------------
# Process control
# --------------------------------------------------------------------------------------------


def signal_pids(pids, sig) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def kill_tree(proc: subprocess.Popen, sampler: TreeSampler | None, grace: float = 5.0) -> None:
    """Terminates the child's process group and every tracked descendant, then kills leftovers."""
    if sampler is not None:
        try:
            sampler.sample()  # pick up processes started since the last sample
        except Exception:
            pass
    extra = sampler.descendants_alive() if sampler is not None else []
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass
    signal_pids(extra, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if proc.poll() is not None and not (sampler and sampler.descendants_alive()):
            break
        time.sleep(0.1)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if sampler is not None:
        signal_pids(sampler.descendants_alive(), signal.SIGKILL)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass


def wait_with_rusage(proc: subprocess.Popen, timeout: float, reap_orphans: bool):
    """Waits for `proc` with wait4 so its resource usage can be read.

    With `reap_orphans` (this script is a subreaper and `proc` is its only child process),
    orphaned descendants reparented to us are reaped too and their usage added. Returns
    (returncode, cpu seconds of the child plus every descendant reaped along the way), or
    raises subprocess.TimeoutExpired.
    """
    deadline = time.monotonic() + timeout
    cpu = 0.0
    while True:
        try:
            pid, status, rusage = os.wait4(-1 if reap_orphans else proc.pid, os.WNOHANG)
        except ChildProcessError:
            # Already reaped elsewhere; no resource usage available.
            return proc.wait(), cpu
        if pid == 0:
            if time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(proc.args, timeout)
            time.sleep(0.05)
            continue
        cpu += rusage.ru_utime + rusage.ru_stime
        if pid == proc.pid:
            rc = os.waitstatus_to_exitcode(status)
            proc.returncode = rc
            return rc, cpu


def reap_remaining(timeout: float) -> float:
    """Reaps child processes left after pagecast exited (orphans reparented to this subreaper).

    Returns their CPU seconds.
    """
    deadline = time.monotonic() + timeout
    cpu = 0.0
    while True:
        try:
            pid, _status, rusage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return cpu  # no children left
        if pid == 0:
            if time.monotonic() >= deadline:
                return cpu
            time.sleep(0.05)
            continue
        cpu += rusage.ru_utime + rusage.ru_stime


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.rstrip().splitlines()[-lines:]) or "(empty log)"


# --------------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------------


def record(args, run: int, out_dir: Path) -> dict:
    out = out_dir / f"run{run}.mp4"
    log = out_dir / f"run{run}.record.log"
    if out.exists():
        out.unlink()
    with FixtureServer(FIXTURES) as server:
        url = f"http://127.0.0.1:{server.port}/clock.html"
        if args.query:
            url += "?" + args.query.lstrip("?")
        if args.recorder in ("x11grab", "puppeteer"):
            script = Path(__file__).resolve().parent / f"{args.recorder}_baseline.sh"
            cmd = ["bash", str(script), url,
                   str(args.width), str(args.height), str(int(args.fps)), str(args.seconds), str(out)]
        else:
            cmd = [
                args.pagecast, "record", url,
                "--width", str(args.width), "--height", str(args.height),
                "--fps", str(args.fps), "--duration", str(args.seconds),
                "-o", str(out),
            ] + shlex.split(args.record_args)
        print(f"[run {run}] {shlex.join(cmd)}", file=sys.stderr, flush=True)
        timeout = args.timeout if args.timeout else args.seconds * 2 + 90
        if args.subreaper:
            settle(f"[run {run}] ")
        with open(log, "wb") as logf:
            started = time.monotonic()
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            sampler = TreeSampler(os.getpid() if args.subreaper else proc.pid, args.sample_interval)
            sampler.start()
            try:
                rc, rusage_cpu = wait_with_rusage(proc, timeout, args.subreaper)
            except subprocess.TimeoutExpired:
                sampler.stop()
                kill_tree(proc, sampler)
                raise BenchError(f"pagecast record did not finish within {timeout:.0f} s (killed)\n"
                                 f"--- {log} ---\n{log_tail(log)}")
            except BaseException:  # Ctrl-C / SIGTERM: do not leave Chromium behind
                sampler.stop()
                kill_tree(proc, sampler)
                raise
            wall = time.monotonic() - started
            sampler.stop()
            leftovers = sampler.descendants_alive()
            if leftovers:
                print(f"[run {run}] warning: {len(leftovers)} descendant process(es) outlived pagecast; "
                      "killing them", file=sys.stderr)
                signal_pids(leftovers, signal.SIGKILL)
            if args.subreaper:
                rusage_cpu += reap_remaining(5.0)
    if rc != 0:
        raise BenchError(f"pagecast record failed with exit status {rc}\n--- {log} ---\n{log_tail(log)}")
    if not out.exists() or out.stat().st_size == 0:
        raise BenchError(f"pagecast record exited 0 but wrote no output at {out}\n--- {log} ---\n{log_tail(log)}")
    sampled_cpu = sampler.cpu_seconds()
    return {
        "video": str(out),
        "wall_s": wall,
        # Both figures are lower bounds of the true CPU time; the larger is the better estimate.
        "cpu_s": max(sampled_cpu, rusage_cpu),
        "cpu_sampled_s": sampled_cpu,
        "cpu_rusage_s": rusage_cpu,
        "peak_pss_mb": sampler.peak_pss_kb / 1024.0 if sampler.peak_pss_kb else None,
        "pss_by_minute_mb": [round(kb / 1024.0, 1) for kb in sampler.pss_by_minute_kb],
        "peak_processes": sampler.peak_procs,
        "samples": sampler.samples,
    }


TRACE_LOG = "pagecast::timing=trace,info"
"""PAGECAST_LOG for a recording whose paints and grabs are to be read back (`paint_trace`)."""

GRAB_RE = re.compile(r"pagecast::timing: grab grabbed=([0-9.]+) .*offset_ms=(-?[0-9.e+-]+)")
"""A grab in the timing trace: its instant (s) and the grab offset (ms)."""

DAMAGE_RE = re.compile(r"pagecast::timing: damage painted=([0-9.]+)")
"""A paint in the timing trace (an X damage event): its instant (s)."""


def paint_trace(log: Path, bucket_s: float = 60.0) -> list[dict]:
    """Per `bucket_s` of a recording made with PAGECAST_LOG=TRACE_LOG: the page's paints a second
    (X damage events, those under 4 ms apart counted as one paint) and the median age of the
    newest paint at each grab, in ms. A paint rhythm of 60 Hz gives ages of 0-16.7 ms, 30 Hz
    0-33 ms; the age's walk from bucket to bucket is the paints drifting against the grab grid."""
    paints: list[float] = []
    grabs: list[float] = []
    with open(log, errors="replace") as f:
        for line in f:
            if m := DAMAGE_RE.search(line):
                t = float(m.group(1))
                if not paints or t - paints[-1] >= 0.004:
                    paints.append(t)
            elif m := GRAB_RE.search(line):
                grabs.append(float(m.group(1)))
    if not paints:
        return []
    t0 = paints[0]
    buckets: dict[int, dict] = {}
    for t in paints:
        buckets.setdefault(int((t - t0) // bucket_s), {"paints": 0, "ages": []})["paints"] += 1
    i = 0
    for g in grabs:
        while i + 1 < len(paints) and paints[i + 1] <= g:
            i += 1
        if paints[i] <= g:
            b = buckets.setdefault(int((g - t0) // bucket_s), {"paints": 0, "ages": []})
            b["ages"].append((g - paints[i]) * 1000.0)
    out = []
    for k in sorted(buckets):
        b = buckets[k]
        out.append({"from_s": k * bucket_s, "paints_per_s": round(b["paints"] / bucket_s, 1),
                    "median_age_ms": round(statistics.median(b["ages"]), 1) if b["ages"] else None})
    return out


def offset_by_second(log: Path) -> list[float | None]:
    """Second by second from the first grab of a recording made with PAGECAST_LOG=TRACE_LOG: the
    median grab offset (ms from the slot instants) that pagecast chose from the paints."""
    seconds: dict[int, list[float]] = {}
    t0 = None
    with open(log, errors="replace") as f:
        for line in f:
            if m := GRAB_RE.search(line):
                t = float(m.group(1))
                t0 = t if t0 is None else t0
                seconds.setdefault(int(t - t0), []).append(float(m.group(2)))
    if not seconds:
        return []
    return [statistics.median(seconds[k]) if k in seconds else None for k in range(max(seconds) + 1)]


LATENCY_STEP_MS = 8.0
"""A lasting change this large (half a 60 Hz paint) in the pictures' lag counts as a step."""


def latency_steps(error_by_second: list, offset_by_second: list, window: int = 10) -> list[dict]:
    """Where the page's pictures changed their latency for good: the lag of the painted page
    time behind the grab (the grab offset less the frame's timing error, per second) differs by
    at least LATENCY_STEP_MS between the `window` seconds before and the `window` seconds after.
    A grab offset that jumps a paint moves the error with it and leaves the lag alone, so what
    remains is the browser showing its frames a paint later (or sooner) than before. Each step:
    the second it happened at and its size in ms (above zero: the pictures fell behind)."""
    lag = [o - e if o is not None and e is not None else None
           for o, e in zip(offset_by_second, error_by_second)]
    def med(xs):
        xs = [x for x in xs if x is not None]
        return statistics.median(xs) if len(xs) >= window // 2 else None
    steps: list[dict] = []
    for s in range(window, len(lag) - window + 1):
        before, after = med(lag[s - window:s]), med(lag[s:s + window])
        if before is None or after is None or abs(after - before) < LATENCY_STEP_MS:
            continue
        size = after - before
        if steps and s - steps[-1]["at_s"] <= window:
            if abs(size) > abs(steps[-1]["ms"]):
                steps[-1] = {"at_s": s, "ms": round(size, 1)}
            continue
        steps.append({"at_s": s, "ms": round(size, 1)})
    return steps


def describe_steps(steps: list[dict]) -> str:
    """`latency_steps` as one line: "+15.8 ms at 258 s, ..." or "none"."""
    return ", ".join(f"{st['ms']:+.1f} ms at {st['at_s']} s" for st in steps) or "none"


def parse_json_output(text: str) -> dict:
    text = text.strip()
    try:
        obj = json.loads(text)
        if isinstance(obj, dict):
            return obj
    except ValueError:
        pass
    # Tolerate log lines around the JSON object: take the last line that parses as an object.
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                return obj
    raise ValueError("no JSON object in output")


def analyze(args, video: str, run: int) -> dict:
    cmd = [args.pagecast, "analyze", video, "--fps", str(args.fps), "--json"]
    try:
        res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=args.analyze_timeout, start_new_session=True)
    except subprocess.TimeoutExpired:
        raise BenchError(f"pagecast analyze did not finish within {args.analyze_timeout:.0f} s")
    if res.returncode != 0:
        raise BenchError(f"pagecast analyze failed with exit status {res.returncode}:\n"
                         f"{res.stderr.strip()[-3000:]}")
    try:
        report = parse_json_output(res.stdout)
    except ValueError:
        raise BenchError(f"pagecast analyze printed no JSON object:\n{res.stdout.strip()[-2000:]}")
    out = Path(video).with_suffix(".analysis.json")
    out.write_text(json.dumps(report, indent=2) + "\n")
    return report


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------


def num(x):
    """A finite float, or None for missing / null / NaN values."""
    if isinstance(x, bool) or x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def median(values):
    vals = [v for v in (num(x) for x in values) if v is not None]
    return statistics.median(vals) if vals else None


COLUMNS = [
    # key, header, format
    ("distinct_ratio", "distinct", "{:.4f}"),
    ("p95_error_ms", "p95 err ms", "{:.1f}"),
    ("max_error_ms", "max err ms", "{:.1f}"),
    ("longest_freeze_ms", "freeze ms", "{:.1f}"),
    ("drift", "drift", "{:.5f}"),
    ("gap_count", "gaps", "{:.0f}"),
    ("decoded_pct", "decoded %", "{:.1f}"),
    ("cpu_s_per_min", "CPU s/min", "{:.1f}"),
    ("peak_pss_mb", "peak PSS MB", "{:.0f}"),
    ("duration_s", "duration s", "{:.2f}"),
]


def fmt(fmt_str, value):
    v = num(value)
    return "-" if v is None else fmt_str.format(v)


def print_table(rows: list[dict]) -> None:
    headers = ["run"] + [c[1] for c in COLUMNS]
    table = []
    for r in rows:
        table.append([str(r["run"])] + [fmt(f, r.get(k)) for k, _, f in COLUMNS])
    if len(rows) > 1:
        table.append(["median"] + [fmt(f, median(r.get(k) for r in rows)) for k, _, f in COLUMNS])
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(headers)]
    line = "  ".join(h.rjust(w) for h, w in zip(headers, widths))
    print(line)
    print("-" * len(line))
    for i, t in enumerate(table):
        if len(rows) > 1 and i == len(table) - 1:
            print("-" * len(line))
        print("  ".join(c.rjust(w) for c, w in zip(t, widths)))


def summarize(run: int, rec: dict, rep: dict, args) -> dict:
    frames = num(rep.get("frames"))
    decoded = num(rep.get("decoded"))
    duration = num(rep.get("duration_s"))
    if duration is None and frames:
        duration = frames / args.fps
    cpu_per_min = rec["cpu_s"] / (duration / 60.0) if duration else None
    gaps = rep.get("gaps")
    return {
        "run": run,
        "distinct_ratio": rep.get("distinct_ratio"),
        "p95_error_ms": rep.get("p95_error_ms"),
        "max_error_ms": rep.get("max_error_ms"),
        "longest_freeze_ms": rep.get("longest_freeze_ms"),
        "drift": rep.get("drift"),
        "gap_count": len(gaps) if isinstance(gaps, list) else None,
        "decoded_pct": 100.0 * decoded / frames if frames and decoded is not None else None,
        "cpu_s_per_min": cpu_per_min,
        "peak_pss_mb": rec["peak_pss_mb"],
        "duration_s": duration,
        "record": rec,
        "analysis": rep,
    }


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Frame-timing benchmark: record clock.html with pagecast and "
                                            "report timing quality, CPU and memory.")
    p.add_argument("--pagecast", required=True, help="path to the pagecast binary")
    p.add_argument("--seconds", type=float, default=30.0, help="recording length (default 30)")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--runs", type=int, default=3, help="number of recordings (default 3)")
    p.add_argument("--out-dir", type=Path, help="where videos, logs and results go (default: a new temp dir)")
    p.add_argument("--query", default="",
                   help="query string for clock.html, e.g. 'pause=5000&resume=8000&refresh=12000'")
    p.add_argument("--recorder", choices=["pagecast", "x11grab", "puppeteer"], default="pagecast",
                   help="what records: pagecast, the Xvfb + ffmpeg x11grab reference "
                        "(bench/x11grab_baseline.sh) or puppeteer-screen-recorder "
                        "(bench/puppeteer_baseline.sh); pagecast is still used to analyze")
    p.add_argument("--record-args", default="", help="extra arguments for `pagecast record` (shell-quoted)")
    p.add_argument("--timeout", type=float, default=0.0,
                   help="seconds before a recording is killed (default: 2 x --seconds + 90)")
    p.add_argument("--analyze-timeout", type=float, default=600.0, help="seconds allowed for analyze")
    p.add_argument("--sample-interval", type=float, default=0.1, help="CPU/PSS sampling period in s")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("--runs must be at least 1")
    if args.seconds <= 0 or args.fps <= 0 or args.width <= 0 or args.height <= 0:
        p.error("--seconds, --fps, --width and --height must be positive")
    if args.sample_interval <= 0:
        p.error("--sample-interval must be positive")
    if args.fps == int(args.fps):
        args.fps = int(args.fps)
    if args.seconds == int(args.seconds):
        args.seconds = int(args.seconds)
    return args


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    args = parse_args(argv)
    if not sys.platform.startswith("linux"):
        print("error: this benchmark reads /proc and runs on Linux only", file=sys.stderr)
        return 2
    pagecast = Path(args.pagecast)
    if not (pagecast.is_file() and os.access(pagecast, os.X_OK)):
        print(f"error: pagecast binary not found or not executable: {pagecast}", file=sys.stderr)
        return 2
    args.pagecast = str(pagecast.resolve())
    if not (FIXTURES / "clock.html").is_file():
        print(f"error: missing fixture {FIXTURES / 'clock.html'}", file=sys.stderr)
        return 2
    out_dir = args.out_dir or Path(tempfile.mkdtemp(prefix="pagecast-frame-timing-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"output directory: {out_dir}", file=sys.stderr)

    signal.signal(signal.SIGTERM, _raise_interrupt)
    args.subreaper = become_subreaper()
    if not args.subreaper:
        print("warning: cannot become a child subreaper; processes orphaned by pagecast may be "
              "missed by the CPU figures", file=sys.stderr)
    rows = []
    try:
        for run in range(1, args.runs + 1):
            rec = record(args, run, out_dir)
            print(f"[run {run}] recorded in {rec['wall_s']:.1f} s, analyzing", file=sys.stderr, flush=True)
            rep = analyze(args, rec["video"], run)
            rows.append(summarize(run, rec, rep, args))
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        if rows:
            print_table(rows)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; child processes were stopped", file=sys.stderr)
        if rows:
            print_table(rows)
        return 130

    print(f"\nframe timing: {args.width}x{args.height} @ {args.fps} fps, {args.seconds} s, "
          f"{len(rows)} run(s)" + (f", query '{args.query}'" if args.query else ""))
    print_table(rows)
    for r in rows:
        by_minute = r["record"].get("pss_by_minute_mb") or []
        if len(by_minute) >= 3:
            # Minute 0 holds the start-up; the last minute holds the shutdown.
            steady = by_minute[1:-1]
            print(f"run {r['run']}: peak PSS by minute (MB): {' '.join(f'{x:.0f}' for x in by_minute)}; "
                  f"minutes 1..{len(by_minute) - 2}: {min(steady):.0f}-{max(steady):.0f} MB")
    summary = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "runs": rows,
        "median": {k: median(r.get(k) for r in rows) for k, _, _ in COLUMNS},
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nresults: {out_dir / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
