"""The one runner interface every backend implements (Polygraphy's runner habits), torch-free.

    with open_backend("model.onnx") as runner:          # or TensorRT, or validate's PyTorch runner
        runner.input_metadata()                         # {name: (dtype, shape)}; symbolic dims as names
        outputs = runner.infer(feeds)                   # {name: np.ndarray}
        runner.last_inference_time()                    # seconds of that infer call

A runner holds its resources (session, engine, buffers, model) from construction until ``close()``, which leaving
the ``with`` block calls; ``close()`` may be called more than once.
"""
from __future__ import annotations

import time

import numpy as np

from m2f.contract import Metadata


class Runner:
    """Base class: subclasses set ``name``, ``meta`` (m2f metadata), ``input_names`` and ``output_names`` and
    implement ``_infer`` and ``input_metadata``; ``_release`` frees what they hold."""

    name = "runner"
    meta: Metadata  # the artifact's m2f metadata
    input_names: list[str]
    output_names: list[str]

    def __init__(self):
        self._last_time: float | None = None
        self.closed = False

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def input_metadata(self) -> dict[str, tuple[str, list]]:
        raise NotImplementedError

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs for ``feeds`` (every input name must be there; extra entries are ignored)."""
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            from m2f.errors import ArgumentError

            raise ArgumentError(f"{self.name} needs the input(s) {', '.join(missing)} (got {', '.join(feeds)})")
        start = time.perf_counter()
        outputs = self._infer({n: feeds[n] for n in self.input_names})
        self._last_time = time.perf_counter() - start
        return outputs

    def last_inference_time(self) -> float | None:
        """Seconds the last ``infer`` took (host-side wall time, copies included), None before the first."""
        return self._last_time

    def close(self) -> None:
        if not self.closed:
            self._release()
            self.closed = True

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _release(self) -> None:
        pass
