"""Soak: ``m2f infer`` over one long synthetic video, its resident memory sampled while it runs.

    python benchmarks/soak.py                      # 10,000 frames through the bundled model (exported at 64x64)
    python benchmarks/soak.py --frames 2000 --model model.onnx

A stream must run in bounded memory (results are streamed to disk, summaries come from counters): after the warm-up
(the first --warmup frames, which fill the allocator's pools and ONNX Runtime's arenas) the run's RSS should grow by
less than --limit MB up to the last frame. The frames are moving rectangles on a noise background (MJPG .avi,
--size HxW), so every frame gives a different result to write. The run is a real ``m2f infer`` process; RSS comes
from /proc/PID/status (VmRSS) every --every seconds, with the frames written so far (counted from the files it
writes). Prints the samples, the growth after warm-up and PASS/FAIL.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_FRAMES = 10_000
DEFAULT_LIMIT_MB = 5.0


def synthetic_video(path: Path, frames: int, height: int, width: int, seed: int = 0) -> None:
    """An MJPG .avi of ``frames`` frames: uint8 noise with a few moving bright rectangles."""
    import cv2

    rng = np.random.default_rng(seed)
    background = rng.integers(0, 96, (height, width, 3), dtype=np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (width, height))
    if not writer.isOpened():
        sys.exit("OpenCV cannot write MJPG video here")
    for k in range(frames):
        frame = background.copy()
        for j, colour in enumerate(((255, 64, 64), (64, 255, 64), (64, 64, 255))):
            y = (k * (j + 1) + 7 * j) % max(height - height // 4, 1)
            x = (k * (2 + j) + 11 * j) % max(width - width // 4, 1)
            frame[y:y + height // 4, x:x + width // 4] = colour
        writer.write(frame)
    writer.release()


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def export_bundled(path: Path, size: int) -> None:
    from m2f.assets import DEFAULT_PRESET, DEFAULT_WEIGHTS

    subprocess.run([sys.executable, "-m", "m2f", "export", str(DEFAULT_WEIGHTS), "--preset", DEFAULT_PRESET, "-o",
                    str(path), "--height", str(size), "--width", str(size), "--threads", "1"], check=True,
                   stdout=subprocess.DEVNULL)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=DEFAULT_FRAMES)
    p.add_argument("--model", type=Path, help=".onnx to run (default: the bundled model exported at 64x64)")
    p.add_argument("--size", default="48x64", help="frame size HxW (default 48x64)")
    p.add_argument("--warmup", type=int, default=500, help="frames before the baseline sample (default 500)")
    p.add_argument("--every", type=float, default=2.0, help="seconds between samples (default 2)")
    p.add_argument("--limit", type=float, default=DEFAULT_LIMIT_MB, help="allowed growth after warm-up, MB")
    args = p.parse_args()
    height, width = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = args.model
        if model is None:
            model = tmp / "bundled.onnx"
            print("exporting the bundled model at 64x64 ...", flush=True)
            export_bundled(model, 64)
        video = tmp / "soak.avi"
        print(f"writing a {args.frames}-frame {height}x{width} video ...", flush=True)
        synthetic_video(video, args.frames, height, width)
        out = tmp / "out"
        command = [sys.executable, "-m", "m2f", "infer", str(model), str(video), "-o", str(out), "--no-overlay",
                   "--threads", "1"]
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        samples: list[tuple[float, int, float]] = []  # (seconds, frames written, RSS MB)
        start = time.perf_counter()
        frames_dir = out / "soak"
        while proc.poll() is None:
            time.sleep(args.every)
            rss = rss_mb(proc.pid)
            done = sum(1 for _ in frames_dir.glob("*.segments.json")) if frames_dir.is_dir() else 0
            if rss is not None:
                samples.append((time.perf_counter() - start, done, rss))
                print(f"  {samples[-1][0]:7.0f} s  {done:6d} frames  RSS {rss:7.1f} MB", flush=True)
        stderr = proc.stderr.read()
        if proc.returncode != 0:
            print(f"m2f infer exited {proc.returncode}: {stderr.strip()[-2000:]}")
            return 1
    warm = [s for s in samples if s[1] >= args.warmup]
    if len(warm) < 2:
        print(f"too few samples after {args.warmup} frames to judge (take more --frames or a smaller --every)")
        return 1
    base, last = warm[0], warm[-1]
    peak = max(s[2] for s in warm)
    growth = peak - base[2]
    print(f"RSS after warm-up ({base[1]} frames): {base[2]:.1f} MB; at {last[1]} frames {last[2]:.1f} MB; peak "
          f"{peak:.1f} MB; growth {growth:+.1f} MB ({'PASS' if growth < args.limit else 'FAIL'}: limit "
          f"{args.limit:.0f} MB)")
    return 0 if growth < args.limit else 1


if __name__ == "__main__":
    sys.exit(main())
