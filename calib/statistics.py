"""Activation statistics for calibration: per tensor, the largest |x| and a histogram of |x| over [0, amax], from one
ONNX Runtime pass over the calibration set. Every method (m2f.calib.ranges) derives its range from these, so they
are cached (``.npz``) and a second calibration with another method does not run the model again.

The histogram has ``BINS`` bins over [0, amax]; when a later batch has a larger |x|, the counts so far are moved into
the wider bins (each old bin's count to the new bin holding its centre), as TensorRT's and ONNX Runtime's
histogram calibrators do.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from m2f.errors import M2FError
from m2f.fileio import atomic_path, hash_file

BINS = 2048  # TensorRT's entropy calibration histogram size
CACHE_VERSION = 1


@dataclass
class Statistics:
    """|x| statistics per tensor name: amax (float) and counts (int64 [BINS] over [0, amax])."""

    amax: dict[str, float] = field(default_factory=dict)
    counts: dict[str, np.ndarray] = field(default_factory=dict)
    key: str = ""

    def add(self, name: str, values: np.ndarray) -> None:
        magnitude = np.abs(values.astype(np.float32, copy=False)).ravel()
        finite = magnitude[np.isfinite(magnitude)]
        peak = float(finite.max()) if finite.size else 0.0
        old_peak = self.amax.get(name, 0.0)
        counts = self.counts.get(name)
        if counts is None:
            counts = np.zeros(BINS, np.int64)
        if peak > old_peak and counts.any():
            counts = _rebin(counts, old_peak, peak)
        top = max(peak, old_peak)
        if top > 0:
            counts += np.histogram(finite, bins=BINS, range=(0.0, top))[0]
        else:
            counts[0] += finite.size
        self.amax[name], self.counts[name] = top, counts

    def save(self, path: Path) -> None:
        names = sorted(self.amax)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:  # np.savez would append .npz to the temporary name
                np.savez(fh, version=CACHE_VERSION, key=self.key, names=np.asarray(names),
                         amax=np.asarray([self.amax[n] for n in names], np.float64),
                         counts=np.stack([self.counts[n] for n in names]) if names else np.zeros((0, BINS)))

    @classmethod
    def load(cls, path: Path, key: str) -> "Statistics | None":
        """The cached statistics when ``path`` holds those of ``key`` (model + data); None otherwise."""
        try:
            with np.load(path, allow_pickle=False) as data:
                if int(data["version"]) != CACHE_VERSION or str(data["key"]) != key:
                    return None
                names = [str(n) for n in data["names"]]
                return cls(dict(zip(names, data["amax"].tolist())), dict(zip(names, data["counts"])), key)
        except (OSError, KeyError, ValueError):
            return None


def _rebin(counts: np.ndarray, old_top: float, new_top: float) -> np.ndarray:
    centres = (np.arange(BINS) + 0.5) * (old_top / BINS)
    target = np.minimum((centres / (new_top / BINS)).astype(np.int64), BINS - 1)
    return np.bincount(target, weights=counts, minlength=BINS).astype(np.int64)


def cache_key(model_path: Path, data_fingerprint: str, tensors: list[str]) -> str:
    digest = hashlib.sha256()
    hash_file(digest, model_path)
    digest.update(data_fingerprint.encode())
    digest.update("\n".join(sorted(tensors)).encode())
    return digest.hexdigest()


def collect(model, tensors: list[str], batches, key: str, threads: int | None = None,
            progress: Callable[[int, int], None] = lambda done, total: None) -> Statistics:
    """Run ``model`` (onnx.ModelProto, not modified) over ``batches`` (an iterable of feed dicts with ``len``) and
    gather ``tensors``' statistics."""
    from .session import open_session

    session = open_session(model, threads, tensors)
    stats = Statistics(key=key)
    total = len(batches)
    for done, feeds in enumerate(batches, 1):
        values = session.run(tensors, feeds)
        for name, value in zip(tensors, values):
            if not np.isfinite(value).all():
                raise M2FError(f"{name} holds NaN or infinity on calibration batch {done}; the graph itself is "
                               f"broken there (check it with m2f validate) and cannot be calibrated")
            stats.add(name, value)
        progress(done, total)
    return stats
