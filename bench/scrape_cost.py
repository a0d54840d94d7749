#!/usr/bin/env python3
"""What one /metrics scrape costs with many stored tasks (BENCHMARKS.md, "What a scrape costs").

Starts a throwaway redis-server, fills it with --unrelated keys of another application
(DEBUG POPULATE) and --tasks stored tasks through pagecast's own store (examples/scrape_fill.rs:
70 % finished, 10 % recording, 5 % paused, 15 % waiting), runs `pagecast serve --no-worker`
against it, then scrapes /metrics --scrapes times, one after the other. Prints the wall time
per scrape (median, p95, max) and the Redis CPU time per scrape (INFO commandstats, summed over
every command the scrapes sent), and checks that the scraped task counts add up to --tasks.

--compare BINARY measures another pagecast binary the same way on the same data (e.g. a build
from before the counts, whose scrapes walked the keyspace).

Example:
    cargo build --release --bin pagecast --example scrape_fill
    python3 bench/scrape_cost.py --pagecast target/release/pagecast \\
        --fill target/release/examples/scrape_fill

Only the Python standard library is used.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(port: int, *args: str) -> str:
    out = subprocess.run(
        ["redis-cli", "-p", str(port), *args], capture_output=True, text=True, check=True
    )
    return out.stdout


def wait(what: str, ok, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            if ok():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.05)
    sys.exit(f"{what} did not come up")


def command_usec(port: int) -> dict[str, tuple[int, int]]:
    """Per command: (calls, microseconds of Redis CPU), from INFO commandstats."""
    stats = {}
    for line in cli(port, "INFO", "commandstats").splitlines():
        m = re.match(r"cmdstat_([^:]+):calls=(\d+),usec=(\d+)", line)
        if m:
            stats[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return stats


def measure(binary: str, redis_port: int, scrapes: int, tasks: int, workdir: Path) -> dict:
    api_port = free_port()
    env = dict(
        os.environ,
        PAGECAST_REDIS_URL=f"redis://127.0.0.1:{redis_port}",
        PAGECAST_LISTEN=f"127.0.0.1:{api_port}",
        PAGECAST_LOG="warn",
        PAGECAST_WORK_DIR=str(workdir),
    )
    log = open(workdir / f"serve-{api_port}.log", "w")
    serve = subprocess.Popen(
        [binary, "serve", "--no-worker"], env=env, stdout=log, stderr=log
    )
    try:
        def healthy() -> bool:
            c = http.client.HTTPConnection("127.0.0.1", api_port, timeout=2)
            c.request("GET", "/healthz")
            return c.getresponse().status == 200

        wait("pagecast serve", healthy)
        conn = http.client.HTTPConnection("127.0.0.1", api_port, timeout=60)
        # One scrape first, so connection set-up and first-use costs are not counted.
        conn.request("GET", "/metrics")
        conn.getresponse().read()
        cli(redis_port, "CONFIG", "RESETSTAT")
        times = []
        body = ""
        for _ in range(scrapes):
            began = time.perf_counter()
            conn.request("GET", "/metrics")
            resp = conn.getresponse()
            body = resp.read().decode()
            times.append((time.perf_counter() - began) * 1000)
            if resp.status != 200:
                sys.exit(f"/metrics answered {resp.status}")
        stats = command_usec(redis_port)
    finally:
        serve.terminate()
        serve.wait(timeout=30)
        log.close()
    counted = sum(
        float(v) for v in re.findall(r'^pagecast_tasks\{status="[a-z]+"\} (\S+)$', body, re.M)
    )
    if int(counted) != tasks:
        print(f"warning: the scrape counted {counted} tasks, not {tasks}", file=sys.stderr)
    times.sort()
    redis_usec = sum(usec for calls, usec in stats.values())
    return {
        "median_ms": statistics.median(times),
        "p95_ms": times[int(0.95 * (len(times) - 1))],
        "max_ms": times[-1],
        "redis_us_per_scrape": redis_usec / scrapes,
        "commands": {k: v[0] // scrapes for k, v in sorted(stats.items()) if not k.startswith("config")},
        "counted": counted,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pagecast", default=str(ROOT / "target/release/pagecast"))
    p.add_argument("--fill", default=str(ROOT / "target/release/examples/scrape_fill"))
    p.add_argument("--tasks", type=int, default=100_000)
    p.add_argument("--unrelated", type=int, default=200_000)
    p.add_argument("--scrapes", type=int, default=200)
    p.add_argument("--compare", help="another pagecast binary to measure on the same data")
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="pagecast-scrape-") as d:
        workdir = Path(d)
        port = free_port()
        redis = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", d, "--enable-debug-command", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            wait("redis-server", lambda: cli(port, "PING").strip() == "PONG")
            cli(port, "DEBUG", "POPULATE", str(args.unrelated), "otherapp:key")
            began = time.monotonic()
            subprocess.run(
                [args.fill, "--redis", f"redis://127.0.0.1:{port}", "--tasks", str(args.tasks)],
                check=True,
            )
            keys = int(cli(port, "DBSIZE").strip())
            used = re.search(r"used_memory_human:(\S+)", cli(port, "INFO", "memory")).group(1)
            print(f"filled in {time.monotonic() - began:.0f} s: {keys} keys, {used}")
            runs = [("pagecast", args.pagecast)]
            if args.compare:
                runs.append(("compare", args.compare))
            for name, binary in runs:
                r = measure(binary, port, args.scrapes, args.tasks, workdir)
                print(
                    f"{name}: {args.scrapes} scrapes: median {r['median_ms']:.2f} ms, "
                    f"p95 {r['p95_ms']:.2f} ms, max {r['max_ms']:.2f} ms; "
                    f"Redis CPU {r['redis_us_per_scrape']:.0f} us per scrape; "
                    f"tasks counted {r['counted']:.0f}; commands per scrape {r['commands']}"
                )
        finally:
            redis.terminate()
            redis.wait(timeout=30)


if __name__ == "__main__":
    main()
