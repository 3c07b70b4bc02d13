"""The ``tritonserver`` binary that PyTriton ships, run on a model repository (no torch).

For checking a repository from ``m2f triton-repo`` on a machine without NVIDIA's container: this build of Triton
has the Python backend (so the pre- and post-processing models load and run for real) but not the ONNX Runtime or
TensorRT backends, so the network model and the ensemble that needs it cannot load here.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from m2f.errors import M2FError, require

from .server import python_backend_library_path

STARTUP_TIMEOUT_S = 120.0


def free_ports(n: int) -> list[int]:
    """``n`` TCP ports free on 127.0.0.1 right now (for test and benchmark servers)."""
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _distribution() -> tuple[Path, Path, Path]:
    """(the tritonserver binary, its backends folder, the Python-backend stub for this Python) from PyTriton."""
    require("pytriton", "serve", "running the bundled Triton server")
    from pytriton.utils.distribution import get_root_module_path, get_stub_path

    root = get_root_module_path() / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return root / "bin" / "tritonserver", root / "backends", get_stub_path(version)


class LocalTriton:
    """``tritonserver --model-repository REPO`` with explicit model control, loading ``models``; a context manager.
    ``http``: the HTTP address (host:port)."""

    def __init__(self, repo: str | Path, models: list[str], http_port: int, grpc_port: int, metrics_port: int):
        self.repo, self.models = Path(repo).resolve(), models
        self.http = f"127.0.0.1:{http_port}"
        self.ports = (http_port, grpc_port, metrics_port)
        self.shm_prefix = f"m2f{os.getpid()}x{http_port}"  # the Python backend's shared memory, unique per server
        self.process: subprocess.Popen | None = None
        self.workdir = Path(tempfile.mkdtemp(prefix="m2f-tritonserver-"))
        self.log = self.workdir / "tritonserver.log"

    def _backends(self) -> Path:
        """A backends folder whose Python backend has the stub for this Python (as PyTriton lays it out)."""
        binary, backends, stub = _distribution()
        folder = self.workdir / "backends"
        shutil.copytree(backends, folder)
        shutil.copy2(stub, folder / "python" / "triton_python_backend_stub")
        self.binary = binary
        return folder

    def _environment(self) -> dict:
        from pytriton.utils.distribution import get_libs_path

        python_backend_library_path()
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (env.get("LD_LIBRARY_PATH"), str(get_libs_path())) if p)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        return env

    def start(self) -> "LocalTriton":
        backends = self._backends()
        http, grpc, metrics = self.ports
        command = [str(self.binary), f"--model-repository={self.repo}", "--model-control-mode=explicit",
                   f"--backend-directory={backends}", f"--http-port={http}", f"--grpc-port={grpc}",
                   f"--metrics-port={metrics}", "--http-address=127.0.0.1", "--grpc-address=127.0.0.1",
                   f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
                   "--exit-timeout-secs=10", *[f"--load-model={m}" for m in self.models]]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self._environment())
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        client = require("tritonclient.http", "serve", "talking to a Triton server").InferenceServerClient(self.http)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise M2FError(f"tritonserver exited while loading {', '.join(self.models)}:\n{self.log_tail()}")
            try:
                if all(client.is_model_ready(m) for m in self.models):
                    return
            except Exception:  # not listening yet
                pass
            time.sleep(0.5)
        self.stop()
        raise M2FError(f"tritonserver did not load {', '.join(self.models)} within {STARTUP_TIMEOUT_S:.0f} s:\n"
                       f"{self.log_tail()}")

    def log_tail(self, lines: int = 25) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> "LocalTriton":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def check_repository(repo: str | Path, model: str | Path, name: str, image: np.ndarray,
                     threads: int | None = None) -> list[str]:
    """Run ``image`` through the repository the way its ensemble would, with the bundled server: its
    pre-processing model, then the network file (``model``, by the m2f runtime's backend, since this server has no
    ONNX Runtime or TensorRT backend), then its post-processing model. Returns the differences from the in-process
    Predictor on ``model`` ([] when the served answer is identical)."""
    import tritonclient.http as http
    from tritonclient.utils import np_to_triton_dtype

    from m2f import contract
    from m2f.runtime import Predictor

    from .client import _first_bytes
    from .protocol import decode_result, encode_png

    def call(client, model_name, tensors):
        inputs = []
        for tensor_name, value in tensors.items():
            inputs.append(http.InferInput(tensor_name, list(value.shape), np_to_triton_dtype(value.dtype)))
            inputs[-1].set_data_from_numpy(value)
        return client.infer(model_name, inputs)

    with Predictor(model, threads=threads) as local, \
            LocalTriton(repo, [f"{name}_preprocess", f"{name}_postprocess"], *free_ports(3)) as server:
        want = local.predict(image)
        client = http.InferenceServerClient(server.http)
        pre = call(client, f"{name}_preprocess", {contract.SERVED_IMAGE: np.array([[encode_png(image)]], object)})
        outputs = local.backend.infer({n: pre.as_numpy(n) for n in local.backend.input_names})
        sizes = {n: pre.as_numpy(n) for n in (contract.VALID_SIZE, contract.ORIGINAL_SIZE, contract.FIT_SCALE)}
        post = call(client, f"{name}_postprocess", {**outputs, **sizes})
        got = decode_result({n: _first_bytes(post.as_numpy(n)) for n in contract.SERVED_OUTPUTS})
    return result_differences(got, want)


def result_differences(got, want) -> list[str]:
    """What differs between two Results (maps, segments, instances), one line each."""
    problems = []
    for task in ("panoptic", "semantic"):
        a, b = getattr(got, task), getattr(want, task)
        if (a is None) != (b is None) or (a is not None and not np.array_equal(a, b)):
            problems.append(f"the {task} maps differ")
    if got.segments != want.segments:
        problems.append("the panoptic segments differ")
    if len(got.instances) != len(want.instances) or any(
            (x.category_id, x.score) != (y.category_id, y.score) or not np.array_equal(x.mask, y.mask)
            for x, y in zip(got.instances, want.instances)):
        problems.append("the instances differ")
    return problems
