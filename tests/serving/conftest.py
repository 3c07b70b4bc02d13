"""A real ``m2f serve`` (PyTriton's Triton server) on the bundled model, on 127.0.0.1 with free ports."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from m2f.serving.local_triton import free_ports

STARTUP_TIMEOUT_S = 120
# a stop answers what is queued first (Triton waits up to 30 s), then unloads; once, under the other worker's load,
# that took over 90 s: a stuck shutdown still fails, only later
STOP_TIMEOUT_S = 180
MAX_PIXELS = 300_000  # the served model's limit in these tests: a 600x600 image is over it
# ``python -m m2f`` that prints every thread's stack on SIGUSR1: a server that does not stop says where it hangs
SERVE_WITH_STACKS = ("import faulthandler, signal, sys; faulthandler.register(signal.SIGUSR1, all_threads=True); "
                     "from m2f.cli import main; sys.exit(main())")
STACKS_WAIT_S = 5


class Served:
    """A running ``m2f serve`` subprocess: its URLs, output so far, and stop()."""

    def __init__(self, model, *extra: str):
        pytest.importorskip("pytriton", reason="m2f serve needs nvidia-pytriton (pip install 'm2f[serve]')")
        self.http_port, self.grpc_port, self.metrics_port = free_ports(3)
        command = [sys.executable, "-c", SERVE_WITH_STACKS, "serve", str(model), "--http-port", str(self.http_port),
                   "--grpc-port", str(self.grpc_port), "--metrics-port", str(self.metrics_port), "--threads", "1",
                   "--max-pixels", str(MAX_PIXELS), *extra]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.http = f"http://127.0.0.1:{self.http_port}/m2f"
        self.grpc = f"grpc://127.0.0.1:{self.grpc_port}/m2f"
        self.output = ""
        self._wait_ready()

    def _wait_ready(self) -> None:
        import tritonclient.http as http

        client = http.InferenceServerClient(f"127.0.0.1:{self.http_port}")
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"m2f serve exited ({self.process.returncode}):\n{self.process.stdout.read()}")
            try:
                if client.is_model_ready("m2f"):
                    return
            except Exception:
                pass
            time.sleep(0.5)
        self.process.kill()
        raise RuntimeError(f"m2f serve was not ready within {STARTUP_TIMEOUT_S} s:\n{self.process.stdout.read()}")

    def stop(self, sig=signal.SIGTERM) -> int:
        """Signal the server, wait for it; its exit status (its output is then in ``output``)."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            self.output, _ = self.process.communicate(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGUSR1)
            time.sleep(STACKS_WAIT_S)
            self.process.kill()
            self.output, _ = self.process.communicate()
            print(f"m2f serve did not stop within {STOP_TIMEOUT_S} s of {sig!r}; its output and stacks:\n"
                  f"{self.output}", file=sys.stderr)
        return self.process.returncode


@pytest.fixture(scope="session")
def served(bundled_onnx):
    server = Served(bundled_onnx)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sample_images():
    from m2f.assets import SAMPLES

    return sorted((SAMPLES / "images").glob("*.png"))


@pytest.fixture(scope="session")
def local_results(bundled_onnx, sample_images):
    """Predictor.predict on each sample image, in this process: what every served answer must equal."""
    from m2f.runtime import Predictor

    with Predictor(bundled_onnx, threads=1) as predictor:
        return [predictor.predict(p) for p in sample_images]
