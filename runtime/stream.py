"""Video files and cameras through OpenCV, with a real-time loop that drops frames when inference is late.

Drop policy "latest" (default for cameras): a reader thread keeps only the newest frame, so the loop always works on
the freshest one and the frames it could not keep up with are dropped (and counted). "none" (default for files)
processes every frame in order.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from m2f.errors import ArgumentError, M2FError, require

# a container's declared frame count may be one off its decodable frames (edit lists, B-frame reordering)
FRAME_COUNT_SLACK = 1
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


@dataclass
class Frame:
    index: int  # position in the source (gaps mean dropped frames)
    image: np.ndarray  # uint8 RGB [H, W, 3]


def open_capture(source: str | int):
    cv2 = require("cv2", "runtime", "reading video and cameras (OpenCV)")
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        what = f"camera {source}" if isinstance(source, int) else f"video {source}"
        raise M2FError(f"cannot open {what}; check that it exists and that OpenCV can decode it"
                       + (" (is the camera connected and not used by another program?)" if isinstance(source, int)
                          else ""))
    return cv2, capture


def frames(source: str | int, drop: str = "none") -> Iterator[Frame]:
    """Frames of a video file or camera index, converted to RGB; ``drop`` is "none" or "latest". A video file that
    ends more than FRAME_COUNT_SLACK frames before the count it declares raises M2FError after its last frame."""
    cv2, capture = open_capture(source)
    if drop == "none":
        try:
            index = 0
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                yield Frame(index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                index += 1
            declared = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if isinstance(source, str) else 0
        finally:
            capture.release()
        if declared - index > FRAME_COUNT_SLACK:
            raise M2FError(f"video {source} declares {declared} frames but only {index} could be read (truncated "
                           f"or damaged); the {index} frames read were processed")
        return
    if drop != "latest":
        raise ArgumentError(f"drop policy must be 'none' or 'latest', not {drop!r}")
    latest: list = [None]
    done = threading.Event()
    fresh = threading.Condition()

    def reader():
        index = 0
        while not done.is_set():
            ok, bgr = capture.read()
            with fresh:
                if ok:
                    latest[0] = (index, bgr)
                else:  # the end: the newest frame read so far is still delivered
                    done.set()
                fresh.notify()
            index += 1

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    last = -1
    try:
        while True:
            with fresh:
                fresh.wait_for(lambda: done.is_set() or (latest[0] is not None and latest[0][0] > last), timeout=5)
                item = latest[0]
            if item is None or item[0] <= last:
                if done.is_set():
                    return
                continue  # woken without a newer frame (timeout): wait again
            last = item[0]
            yield Frame(item[0], cv2.cvtColor(item[1], cv2.COLOR_BGR2RGB))
    finally:
        done.set()
        thread.join(timeout=2)
        capture.release()


class RateMeter:
    """Running per-stage means (ms) and frames per second, for a status line."""

    def __init__(self):
        self.start, self.count, self.sums = time.perf_counter(), 0, {}

    def add(self, timings: dict[str, float]) -> None:
        self.count += 1
        for k, v in timings.items():
            self.sums[k] = self.sums.get(k, 0.0) + v

    def line(self, dropped: int = 0) -> str:
        fps = self.count / max(time.perf_counter() - self.start, 1e-9)
        stages = ", ".join(f"{k} {1000 * v / max(self.count, 1):.1f} ms" for k, v in self.sums.items())
        return f"{self.count} frames, {fps:.1f} FPS ({stages})" + (f", dropped {dropped}" if dropped else "")
