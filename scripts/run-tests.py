#!/usr/bin/env python3
"""Runs every test of `cargo test --all-targets`, two at a time across all test binaries.

`cargo test -- --test-threads=2` runs its test binaries one after another: while a binary's
last long test runs (or the tests of a file that take a lock one at a time), one core sits
idle. This script builds the same binaries (`cargo test --all-targets --no-run`), lists each
test file's tests, and runs each test as a process of its own (`--exact NAME`) from one pool of
`--jobs` (2) slots, the longest first. So the machine never runs more tests at once than under
`cargo test -- --test-threads=2` (two), and no core waits for a binary's tail. Except:

- every test that takes `alone()` (tests/common/mod.rs: the timing-sensitive tests) runs with
  nothing else on the machine, in a phase of its own before the pool starts;
- the binaries in EXCLUSIVE (tests/audio.rs: every test a timing test, one at a time behind a
  lock of its own) run whole in that same phase;
- a unit-test binary (hundreds of fast tests) runs whole, in one slot.

Like `cargo test --no-fail-fast`, every test runs whatever failed before; a failing test's
output is printed whole when it ends, and the command fails at the end naming every failing
test. Each test's run time is kept in the target directory and orders the next run (longest
first); without it, scripts/test-times.json (the times of a whole run) does.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Binaries whose every test is timing-sensitive: run whole, alone.
EXCLUSIVE = {"audio"}
# `#[test] fn name() { let _machine = alone();` -- the only way a test takes the lock.
ALONE_TEST = re.compile(
    r"#\[test\]\s*(?:#\[[^\]]*\]\s*)*fn\s+(\w+)\s*\(\)\s*\{\s*let\s+_\w*\s*=\s*(?:common::)?alone\(\);"
)
ALONE_CALL = re.compile(r"(?<!fn )\balone\(\)")
# A test none of the times files knows yet: placed as a long one (run early).
UNKNOWN_SECONDS = 30.0


def build(cargo):
    """Builds every test target; returns [(name, executable, cwd, source)]."""
    cmd = [cargo, "test", "--all-targets", "--no-run", "--message-format=json-render-diagnostics"]
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        sys.exit(f"run-tests: `{' '.join(cmd)}` failed ({proc.returncode})")
    binaries = []
    for line in proc.stdout.splitlines():
        msg = json.loads(line)
        if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
            continue
        if not msg["profile"]["test"]:
            continue
        target = msg["target"]
        kind = target["kind"][0]
        name = target["name"] if kind == "test" else f"{kind} {target['name']}"
        binaries.append(
            (name, msg["executable"], str(Path(msg["manifest_path"]).parent), target["src_path"])
        )
    return binaries


def alone_tests(source):
    """The tests of a test file that take `alone()`; refuses a call it cannot attribute."""
    text = Path(source).read_text()
    names = ALONE_TEST.findall(text)
    if len(names) != len(ALONE_CALL.findall(text)):
        sys.exit(
            f"run-tests: {source} calls alone() other than as a test's first statement "
            "(`let _machine = alone();`); this script could not run that test alone"
        )
    return names


def tests_of(exe, cwd, env):
    """The tests a test binary holds (`--list`)."""
    out = subprocess.run([exe, "--list", "--format", "terse"], cwd=cwd, env=env,
                         stdout=subprocess.PIPE, check=True, text=True).stdout
    return [line[: -len(": test")] for line in out.splitlines() if line.endswith(": test")]


def jobs_of(binaries, env):
    """(alone jobs, pooled jobs); a job is (label, argv, cwd, the result it must report)."""
    alone, pooled = [], []
    for name, exe, cwd, source in binaries:
        if name in EXCLUSIVE:
            alone.append((name, [exe, "--test-threads=1"], cwd, "ok."))
            continue
        if not name.isidentifier():  # "lib pagecast", "bin pagecast", "example ...": unit tests
            pooled.append((name, [exe, "--test-threads=1"], cwd, "ok."))
            continue
        timing = set(alone_tests(source))
        for test in tests_of(exe, cwd, env):
            job = (f"{name}::{test}", [exe, "--exact", test, "--test-threads=1"], cwd, "ok. 1 passed")
            (alone if test in timing else pooled).append(job)
    return alone, pooled


class Runner:
    def __init__(self, env):
        self.env = env
        self.lock = threading.Lock()
        self.failed = []
        self.times = {}

    def run(self, job):
        label, argv, cwd, result = job
        start = time.monotonic()
        proc = subprocess.run(argv, cwd=cwd, env=self.env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
        took = time.monotonic() - start
        output = proc.stdout.decode(errors="replace")
        with self.lock:
            self.times[label] = took
            # Passed, and ran what it was meant to (one test, or a whole binary to its result).
            if proc.returncode == 0 and f"test result: {result}" in output:
                print(f"ok     {took:6.1f} s  {label}", flush=True)
            else:
                print(f"FAILED {took:6.1f} s  {label} (exit {proc.returncode})\n{output}", flush=True)
                self.failed.append(label)

    def pool(self, jobs, width):
        queue = list(jobs)
        take = threading.Lock()

        def worker():
            while True:
                with take:
                    if not queue:
                        return
                    job = queue.pop(0)
                self.run(job)

        workers = [threading.Thread(target=worker) for _ in range(width)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="tests run at once in the pool (2)")
    parser.add_argument("--only", default="",
                        help="comma-separated binaries to run, e.g. `capture,cli` (default: all)")
    args = parser.parse_args()

    cargo = os.environ.get("CARGO") or shutil.which("cargo") or "cargo"
    target_dir = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    # What `cargo test` sets for the binaries it runs (tests/dependencies.rs runs `$CARGO tree`).
    env = dict(os.environ, CARGO=cargo)

    wall = time.monotonic()
    binaries = build(cargo)
    if args.only:
        wanted = set(args.only.split(","))
        binaries = [b for b in binaries if b[0] in wanted]
    alone, pooled = jobs_of(binaries, env)
    build_took = time.monotonic() - wall

    times_file = target_dir / "pagecast-test-times.json"
    known = {}
    for f in (ROOT / "scripts" / "test-times.json", times_file):
        if f.exists():
            known.update(json.loads(f.read_text()))
    pooled.sort(key=lambda j: -known.get(j[0], UNKNOWN_SECONDS))

    print(f"== {len(alone)} alone, then {len(pooled)} in a pool of {args.jobs}", flush=True)
    runner = Runner(env)
    for job in alone:
        runner.run(job)
    alone_took = time.monotonic() - wall - build_took
    runner.pool(pooled, args.jobs)

    known.update({k: round(v, 1) for k, v in runner.times.items()})
    times_file.parent.mkdir(parents=True, exist_ok=True)
    times_file.write_text(json.dumps(dict(sorted(known.items())), indent=1) + "\n")
    tests_took = time.monotonic() - wall - build_took
    print(f"== build {build_took:.0f} s, tests {tests_took:.0f} s "
          f"(alone {alone_took:.0f} s, pool {tests_took - alone_took:.0f} s)")
    if runner.failed:
        print(f"== {len(runner.failed)} FAILED:")
        for label in runner.failed:
            print(f"   {label}")
        sys.exit(101)


if __name__ == "__main__":
    main()
