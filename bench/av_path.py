"""Where a recording's A/V error comes from, on the wall clock.

Two measurements for bench/av_sync.py and bench/all.py (only the Python standard library):

- `sound_placement` checks pagecast's placement of sound against PulseAudio's own clock, with no
  browser involved: a native PulseAudio client (libpulse-simple through ctypes) plays a click
  into the recording's sink once a second and notes when PulseAudio says the click will play
  (now + the stream's latency, asked just before the click is written). Each click's place in
  the file, put back on the wall clock through the slot instants of the timing trace, less that
  play time is pagecast's own error in placing sound.
- `decompose` splits the canvas page's recorder error, flash by flash, into
  the sound's lag (the beep's play time on the wall clock less the instant the page asked for)
  and the picture's lag (the instant of the slot its first white frame is in, less the time the
  page drew that frame for, from its clock strip): error = sound lag - picture lag. The picture's
  lag is the browser's own delay from drawing to screen (`paint_lag_ms`: the last paint before
  the grab that first saw the flash, which is the latest the flash can have reached the screen)
  plus the rounding of the 30 fps grid (`grid_ms`: the slot instant less that paint).

On the file's timeline, slot `i`'s picture is at `video_start + i / fps` and its sound starts at
the same time: the decoded sound carries the AAC encoder's priming (1024 samples, 21.3 ms) before
it, which the muxer makes up for by starting the video that much later. A file time `t` is wall
time `instant_0 + (t - video_start)`; leaving the priming out puts every sound 21.3 ms late.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from frame_timing import DAMAGE_RE, GRAB_RE, TRACE_LOG  # bench/ is the script directory

SLOT_RE = re.compile(r"pagecast::timing: slot slot=(\d+) instant=([0-9.]+)")
RATE = 48000


def read_trace(log: Path) -> dict:
    """The slot instants (slot -> wall time), paints and grabs (wall time, offset in s) of a
    recording made with PAGECAST_LOG=TRACE_LOG."""
    slots: dict[int, float] = {}
    paints: list[float] = []
    grabs: list[tuple[float, float]] = []
    with open(log, errors="replace") as f:
        for line in f:
            if m := SLOT_RE.search(line):
                slots[int(m.group(1))] = float(m.group(2))
            elif m := DAMAGE_RE.search(line):
                paints.append(float(m.group(1)))
            elif m := GRAB_RE.search(line):
                grabs.append((float(m.group(1)), float(m.group(2)) / 1000.0))
    paints.sort()
    return {"slots": slots, "paints": paints, "grabs": grabs}


def wall_clock(trace: dict, video_start: float, fps: float):
    """Maps a file time (s) to the wall time it stands for (a recording without pauses)."""
    slots = trace["slots"]
    if not slots:
        raise ValueError("the trace has no slot instants")
    first = min(slots)
    origin = slots[first] - first / fps
    return lambda t: origin + (t - video_start)


def stream_start(file: Path, stream: str = "v:0") -> float:
    """The start time (s) of one of a file's streams on the file's timeline."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", stream, "-show_entries",
                          "stream=start_time", "-of", "csv=p=0", str(file)],
                         capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[0])


def intended_instant(wall: float) -> float:
    """The instant av_sync.html flashed and beeped for, nearest a wall time just after it: epoch
    second k plus (k mod 10) * 10/3 ms."""
    k = round(wall - 0.1)
    return k + (k % 10) * (10.0 / 3.0) / 1000.0


def decompose(report: dict, trace: dict, start: float, fps: float) -> list[dict]:
    """Per pair of `pagecast analyze --av-sync --json` on av_sync.html: sound_lag_ms,
    picture_lag_ms (their difference is the recorder error), paint_lag_ms and grid_ms."""
    wall = wall_clock(trace, start, fps)
    half = 0.5 / fps
    rows = []
    for p in report.get("pairs", []):
        if p.get("lateness_ms") is None:
            continue
        beep = wall(p["beep_s"])
        intent = intended_instant(beep)
        drawn_for = intent + p["lateness_ms"] / 1000.0
        slot = wall(p["flash_s"])
        row = {"sound_lag_ms": (beep - intent) * 1000.0, "picture_lag_ms": (slot - drawn_for) * 1000.0,
               "paint_lag_ms": None, "grid_ms": None}
        # The grab that made the slot's picture: taken half a slot after the slot's instant,
        # moved by its offset.
        grab = min(trace["grabs"], key=lambda g: abs(g[0] - g[1] - half - slot), default=None)
        if grab is not None and abs(grab[0] - grab[1] - half - slot) < 0.004:
            before = [t for t in trace["paints"] if t <= grab[0]]
            if before:
                row["paint_lag_ms"] = (before[-1] - drawn_for) * 1000.0
                row["grid_ms"] = (slot - before[-1]) * 1000.0
        rows.append(row)
    return rows


def summarize(rows: list[dict]) -> dict:
    """Medians of `decompose`'s columns (None where no row has the column)."""
    out = {}
    for key in ("sound_lag_ms", "picture_lag_ms", "paint_lag_ms", "grid_ms"):
        vals = [r[key] for r in rows if r[key] is not None]
        out[key] = statistics.median(vals) if vals else None
    return out


class _Spec(ctypes.Structure):
    _fields_ = [("format", ctypes.c_int), ("rate", ctypes.c_uint32), ("channels", ctypes.c_uint8)]


class _Attr(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint32) for n in ("maxlength", "tlength", "prebuf", "minreq", "fragsize")]


def play_clicks(server: str, sink: str, seconds: float, buffer_ms: float) -> list[dict]:
    """Plays 30 ms clicks of 1 kHz into `sink` once a second (silence between) and returns, per
    click, the wall time PulseAudio says it starts playing and the stream latency then."""
    lib = ctypes.CDLL(ctypes.util.find_library("pulse-simple") or "libpulse-simple.so.0")
    lib.pa_simple_new.restype = ctypes.c_void_p
    lib.pa_simple_get_latency.restype = ctypes.c_uint64
    lib.pa_simple_get_latency.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
    lib.pa_simple_write.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                    ctypes.POINTER(ctypes.c_int)]
    lib.pa_simple_free.argtypes = [ctypes.c_void_p]
    block = RATE // 100  # 10 ms, stereo s16le
    spec = _Spec(3, RATE, 2)  # PA_SAMPLE_S16LE
    attr = _Attr(0xFFFFFFFF, int(RATE * buffer_ms / 1000) * 4, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
    err = ctypes.c_int(0)
    stream = lib.pa_simple_new(server.encode(), b"pagecast-bench", 1, sink.encode(), b"clicks",
                               ctypes.byref(spec), None, ctypes.byref(attr), ctypes.byref(err))
    if not stream:
        raise RuntimeError(f"could not open a PulseAudio stream on {server} (error {err.value})")
    click = b"".join(int(16000 * math.sin(2 * math.pi * 1000 * i / RATE)).to_bytes(2, "little", signed=True) * 2
                     for i in range(3 * block))
    silence = bytes(block * 4)
    clicks: list[dict] = []
    try:
        start = time.time()
        due = start + 1.5
        pending = b""
        while time.time() - start < seconds:
            if not pending and time.time() >= due:
                before = time.time()
                latency = lib.pa_simple_get_latency(stream, ctypes.byref(err))
                after = time.time()
                clicks.append({"plays": (before + after) / 2 + latency / 1e6, "latency_ms": latency / 1000.0})
                pending = click
                due += 1.0
            data, pending = (pending[:block * 4], pending[block * 4:]) if pending else (silence, b"")
            if lib.pa_simple_write(stream, data, len(data), ctypes.byref(err)) < 0:
                raise RuntimeError(f"PulseAudio write failed (error {err.value})")
    finally:
        lib.pa_simple_free(stream)
    return clicks


def onsets(file: Path, threshold: int = 3000, quiet: int = 200) -> list[float]:
    """File times (s, on the audio stream's own timeline) where a sound starts after silence."""
    pcm = subprocess.run(["ffmpeg", "-v", "error", "-i", str(file), "-map", "0:a:0", "-ac", "1", "-ar", str(RATE),
                          "-f", "s16le", "-"], capture_output=True, check=True).stdout
    n = len(pcm) // 2
    x = memoryview(pcm[: n * 2]).cast("h")
    found, i = [], 0
    while i < n:
        if abs(x[i]) > threshold:
            j = i
            while j > 0 and abs(x[j - 1]) > quiet:
                j -= 1
            found.append(j / RATE)
            i += RATE // 2
        else:
            i += 1
    return found


def _server_dirs() -> list[Path]:
    """The private PulseAudio servers' directories pagecast makes (in its temporary directory,
    which TMPDIR moves for it and for Python alike)."""
    return list(Path(tempfile.gettempdir()).glob("pagecast-pulse-*"))


def _private_server(before: set[str], limit: float = 20.0) -> Path | None:
    """The private PulseAudio server directory a recording started after `before` was listed."""
    deadline = time.time() + limit
    while time.time() < deadline:
        for d in _server_dirs():
            if str(d) not in before and (d / "native").exists():
                return d
        time.sleep(0.05)
    return None


def _sink(server_dir: Path, limit: float = 20.0) -> str | None:
    env = dict(os.environ, PULSE_COOKIE=str(server_dir / "cookie"))
    deadline = time.time() + limit
    while time.time() < deadline:
        out = subprocess.run(["pactl", f"--server=unix:{server_dir}/native", "list", "short", "sinks"],
                             capture_output=True, text=True, env=env).stdout
        names = [line.split("\t")[1] for line in out.splitlines() if "\t" in line and "pagecast" in line]
        if names:
            return names[0]
        time.sleep(0.1)
    return None


def sound_placement(pagecast: str, base: str, out: Path, seconds: int = 20, buffer_ms: float = 20.0) -> dict:
    """Records av_sync.html with `silent=1` while a native client clicks into the recording's
    sink; returns the clicks' placement errors (ms: pagecast's wall time less PulseAudio's play
    time). Uses the private PulseAudio server pagecast starts for a recording (its default)."""
    log = out.with_suffix(".log")
    before = {str(d) for d in _server_dirs()}
    env = dict(os.environ, PAGECAST_LOG=TRACE_LOG)
    with open(log, "w") as err:
        rec = subprocess.Popen([pagecast, "record", f"{base}/av_sync.html?silent=1", "-o", str(out),
                                "--duration", str(seconds)], stderr=err, stdout=subprocess.DEVNULL, env=env)
    clicks: list[dict] = []
    failure = None
    try:
        server_dir = _private_server(before)
        sink = _sink(server_dir) if server_dir else None
        if not sink:
            failure = "could not find the recording's PulseAudio sink"
        else:
            # libpulse reads the server's cookie from the environment.
            saved = os.environ.get("PULSE_COOKIE")
            os.environ["PULSE_COOKIE"] = str(server_dir / "cookie")
            try:
                clicks = play_clicks(f"unix:{server_dir}/native", sink, seconds - 3, buffer_ms)
            finally:
                if saved is None:
                    os.environ.pop("PULSE_COOKIE", None)
                else:
                    os.environ["PULSE_COOKIE"] = saved
    finally:
        rc = rec.wait()
    if failure or rc != 0:
        raise RuntimeError(failure or f"record failed (exit {rc}); see {log}")
    trace = read_trace(log)
    wall = wall_clock(trace, stream_start(out), 30.0)
    a0 = stream_start(out, "a:0")
    errors = []
    for t in onsets(out):
        w = wall(a0 + t)
        nearest = min(clicks, key=lambda c: abs(c["plays"] - w), default=None)
        if nearest and abs(nearest["plays"] - w) < 0.2:
            errors.append((w - nearest["plays"]) * 1000.0)
    return {"clicks": len(clicks), "placed": len(errors), "errors_ms": errors,
            "median_ms": statistics.median(errors) if errors else None,
            "max_abs_ms": max((abs(e) for e in errors), default=None),
            "latency_ms": statistics.median(c["latency_ms"] for c in clicks) if clicks else None}

