"""``m2f serve``: a real NVIDIA Triton Inference Server, started in-process with PyTriton, bound to the m2f runtime.

PyTriton (``nvidia-pytriton``) ships the ``tritonserver`` binary and its Python backend; the server hands each batch
of requests that its dynamic batcher formed to ``ServedPipeline`` (decode, ``Predictor.predict_batch``, encode),
on any backend the runtime has (ONNX Runtime here, TensorRT on a GPU). ``--instances K`` binds K Predictors, which
Triton runs as K model instances in parallel. Health: ``/v2/health/live`` and ``/v2/health/ready`` on the HTTP port;
Prometheus metrics (``nv_inference_*``: counts, queue and compute times, batch sizes) on the metrics port at
``/metrics``. Stopping (``stop()``, or Ctrl-C / SIGTERM in ``m2f serve``) lets the server answer the requests in
flight before it exits (Triton's exit timeout).
"""
from __future__ import annotations

import errno
import logging
import os
import shutil
import socket
import sysconfig
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from m2f import contract
from m2f.errors import ArgumentError, M2FError, require

from . import DEFAULT_MAX_PIXELS, DEFAULT_MODEL_NAME, DEFAULT_QUEUE_DELAY_US, access_token, check_model_name
from .pipeline import ServedPipeline

EXIT_TIMEOUT_S = 30  # on stop, how long Triton waits for requests in flight
# on stop, how long PyTriton may take in all: Triton's exit timeout, PyTriton's own 30 s wait for the process and
# 20 s for its handlers, with room for a loaded machine; past it the stop is abandoned (its threads are daemons)
STOP_LIMIT_S = 120
RESTRICTED_ENDPOINTS = ["shared-memory", "model-repository", "trace", "logging"]  # PyTriton's, less statistics

MAX_PORT = 65535


@dataclass
class ServeOptions:
    """Where and how the model is served. max_batch: the largest batch Triton's dynamic batcher forms;
    instances: parallel model instances (one Predictor each)."""

    model_name: str = DEFAULT_MODEL_NAME
    address: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    max_batch: int = 8
    queue_delay_us: int = DEFAULT_QUEUE_DELAY_US
    instances: int = 1
    max_pixels: int = DEFAULT_MAX_PIXELS
    log_verbose: int = 0
    log_file: Path | None = None  # the server's log; None prints it to this process's output

    def __post_init__(self):
        """One sentence for a name, port or address the server could not use, before anything starts."""
        check_model_name(self.model_name)
        ports = {"--http-port": self.http_port, "--grpc-port": self.grpc_port, "--metrics-port": self.metrics_port}
        for flag, port in ports.items():
            if not 1 <= port <= MAX_PORT:
                raise ArgumentError(f"{flag} {port} is not a TCP port (1-{MAX_PORT})")
        if len(set(ports.values())) < len(ports):
            raise ArgumentError(f"--http-port, --grpc-port and --metrics-port must differ, not "
                                f"{'/'.join(map(str, ports.values()))}")
        try:
            socket.getaddrinfo(self.address, None, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            raise ArgumentError(f"--address {self.address!r} is not an IP address or a known host name (e.g. "
                                f"127.0.0.1, or 0.0.0.0 for every interface)") from None

    def urls(self) -> dict[str, str]:
        host = "127.0.0.1" if self.address in ("0.0.0.0", "") else self.address
        return {"http": f"http://{host}:{self.http_port}/{self.model_name}",
                "grpc": f"grpc://{host}:{self.grpc_port}/{self.model_name}",
                "metrics": f"http://{host}:{self.metrics_port}/metrics"}


def preferred_batch_sizes(max_batch: int) -> list[int]:
    """Powers of two up to ``max_batch`` and ``max_batch`` itself: the sizes the batcher prefers to send."""
    sizes = [b for b in (1, 2, 4, 8, 16, 32, 64) if 1 < b <= max_batch]
    return sorted(set(sizes + [max_batch])) if max_batch > 1 else [1]


def python_backend_library_path() -> None:
    """Make Triton's Python-backend stub load this interpreter's libpython.

    The stub is linked against ``libpython3.X.so``; without this the dynamic loader may pick the system's copy (e.g.
    Debian's 3.11.2) while the stub imports this interpreter's standard library (3.11.7), and the mismatch fails at
    the first multiprocessing call ('_thread.RLock' object has no attribute '_recursion_count', PyTriton #51)."""
    if sysconfig.get_config_var("Py_ENABLE_SHARED"):
        libdir = sysconfig.get_config_var("LIBDIR")
        paths = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
        if libdir and libdir not in paths:
            os.environ["LD_LIBRARY_PATH"] = os.pathsep.join([libdir] + paths)


class Server:
    """A running Triton server with one m2f model; a context manager. ``predictors``: one per instance."""

    def __init__(self, predictors: list, options: ServeOptions):
        if not predictors:
            raise M2FError("serving needs at least one model instance")
        self.options = options
        self.meta = predictors[0].meta
        self.pipelines = [ServedPipeline(p, options.max_pixels) for p in predictors]
        self._triton = None

    def start(self) -> "Server":
        pytriton = require("pytriton.triton", "serve", "m2f serve")
        self._check_ports()
        python_backend_library_path()
        logging.getLogger("pytriton").setLevel(logging.WARNING if not self.options.log_verbose else logging.INFO)
        o = self.options
        config = pytriton.TritonConfig(http_address=o.address, http_port=o.http_port, grpc_address=o.address,
                                       grpc_port=o.grpc_port, metrics_address=o.address, metrics_port=o.metrics_port,
                                       log_verbose=o.log_verbose, log_file=o.log_file,
                                       exit_timeout_secs=EXIT_TIMEOUT_S)
        # PyTriton puts these endpoints behind a generated token; statistics (read-only, as the metrics are) stay open
        # so that operators and load tests can read batch sizes and queue times
        security = pytriton.TritonSecurityConfig(restricted_endpoints=RESTRICTED_ENDPOINTS)
        self._triton = pytriton.Triton(config=config, security_config=security)
        self._bind()
        private = Path(tempfile.mkdtemp(prefix="m2f-serve-token-"))  # mode 0700: the shim and the token's file
        try:
            with access_token.off_command_line(_server_config(self._triton), private):
                self._triton.run()
        except M2FError:
            self._stop_quietly()
            raise
        except Exception as e:
            self._stop_quietly()
            raise M2FError(f"the Triton server did not start ({str(e).splitlines()[0][:200]}); are ports "
                           f"{o.http_port}/{o.grpc_port}/{o.metrics_port} free? choose others with --http-port, "
                           f"--grpc-port and --metrics-port") from None
        finally:
            shutil.rmtree(private, ignore_errors=True)
        return self

    def _stop_quietly(self) -> None:
        """Stop a server that failed to start; it may not stop cleanly either, and the first error matters."""
        try:
            self.stop()
        except Exception:
            self._triton = None

    def _check_ports(self) -> None:
        """One sentence for a port already taken (PyTriton would otherwise talk to whatever listens there)."""
        o = self.options
        for flag, port in (("--http-port", o.http_port), ("--grpc-port", o.grpc_port),
                           ("--metrics-port", o.metrics_port)):
            with socket.socket() as probe:
                try:
                    probe.bind((o.address, port))
                except OSError as e:
                    if e.errno == errno.EADDRNOTAVAIL:
                        raise M2FError(f"--address {o.address} is not an address of this machine; give one of its "
                                       f"own (127.0.0.1, or 0.0.0.0 for every interface)") from None
                    raise M2FError(f"port {port} on {o.address} is in use (another server?); choose another with "
                                   f"{flag}") from None

    def _bind(self) -> None:
        """The m2f model: one infer function per instance, BYTES in and out, dynamic batching, the metadata."""
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor

        o = self.options
        batcher = DynamicBatcher(max_queue_delay_microseconds=o.queue_delay_us,
                                 preferred_batch_size=preferred_batch_sizes(o.max_batch))
        outputs = [Tensor(name=n, dtype=np.bytes_, shape=(1,))
                   for n in (*contract.SERVED_OUTPUTS, contract.SERVED_ERROR)]
        self._triton.bind(model_name=o.model_name, infer_func=[p.answer_requests for p in self.pipelines],
                          inputs=[Tensor(name=contract.SERVED_IMAGE, dtype=np.bytes_, shape=(1,))], outputs=outputs,
                          config=ModelConfig(max_batch_size=o.max_batch, batcher=batcher), strict=False)
        _publish_metadata(self._triton, o.model_name, self.meta)

    def stop(self, limit_s: float = STOP_LIMIT_S) -> None:
        """Stop the server; requests in flight are answered first (up to EXIT_TIMEOUT_S).

        PyTriton's stop joins its handler threads without a time limit; one that never returns must not keep a
        stopped ``m2f serve`` alive forever. After ``limit_s`` the stop is abandoned, a tritonserver still running
        is killed, and M2FError says so."""
        if self._triton is None:
            return
        triton, self._triton = self._triton, None
        failure = []

        def stop_triton():
            try:
                triton.stop()
            except Exception as e:  # re-raised in the caller's thread below
                failure.append(e)

        stopping = threading.Thread(target=stop_triton, name="m2f-triton-stop", daemon=True)
        stopping.start()
        stopping.join(limit_s)
        if failure:
            raise failure[0]
        if stopping.is_alive():
            killed = _kill_children("tritonserver")
            raise M2FError(f"the Triton server did not stop within {limit_s:g} s"
                           f"{'; its tritonserver process was killed' if killed else ''}")

    def is_alive(self) -> bool:
        return self._triton is not None and self._triton.is_alive()

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _kill_children(name: str) -> int:
    """SIGKILL this process's child processes called ``name`` (Linux: read from /proc); how many were killed."""
    import signal

    killed = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # it exited meanwhile
            continue
        command = text[text.index("(") + 1:text.rindex(")")]
        parent = int(text[text.rindex(")") + 2:].split()[1])
        if parent == os.getpid() and command == name:
            try:
                os.kill(int(stat.parent.name), signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
    return killed


def _publish_metadata(triton, model_name: str, meta: contract.Metadata) -> None:
    """Put the m2f metadata into the served model's config as the ``m2f_metadata`` parameter, where clients read it
    (``GET /v2/models/NAME/config``).

    PyTriton 0.7 has no public way to add a config parameter; its model keeps the generated Triton config, whose
    ``backend_parameters`` become ``parameters``. A PyTriton without that structure gets one clear error."""
    try:
        model = next(m for m in triton._model_manager.models if m.model_name == model_name)
        model._get_triton_model_config().backend_parameters[contract.METADATA_PARAMETER] = meta.to_json()
    except (AttributeError, StopIteration):
        import pytriton

        raise M2FError(f"this PyTriton ({getattr(pytriton, '__version__', 'unknown version')}) does not let m2f "
                       f"publish the model's metadata; install the tested one: pip install nvidia-pytriton==0.7.0"
                       ) from None


def _server_config(triton):
    """PyTriton's ``TritonServerConfig`` for ``triton``: the options its tritonserver will be started with.

    PyTriton 0.7 keeps it private; m2f changes the access-token setting in it (``access_token``). A PyTriton without
    it gets one clear error rather than a server whose token is on its command line."""
    config = getattr(triton, "_triton_server_config", None)
    if config is None or not all(hasattr(config, a) for a in ("__getitem__", "__setitem__", "__contains__")):
        import pytriton
        raise M2FError(f"this PyTriton ({getattr(pytriton, '__version__', 'unknown version')}) does not let m2f "
                       f"keep the server's access token off its command line; install the tested one: pip install "
                       f"nvidia-pytriton==0.7.0")
    return config


def client_example(options: ServeOptions) -> str:
    """What to run against the server, printed by ``m2f serve``."""
    urls = options.urls()
    return "\n".join([
        f"  m2f infer {urls['http']} image.jpg -o out/",
        "  python -c \"from m2f.serving.client import RemotePredictor; "
        f"print(RemotePredictor('{urls['grpc']}').predict('image.jpg').segments)\"",
        f"  curl -s {urls['http'].rsplit('/', 1)[0]}/v2/models/{options.model_name}/config  # inputs, outputs, "
        "metadata",
        f"  curl -s {urls['metrics']} | grep nv_inference_  # Prometheus metrics",
    ])
