"""A served m2f model used like a local one: ``RemotePredictor("http://127.0.0.1:8000/m2f")`` has the Predictor's
API (``predict``, ``predict_batch``, ``meta``, ``names``, ``tasks``, ``close``, a context manager) (no torch).

The URL names the protocol (``http://`` or ``grpc://``), the server and the model; the model is ``m2f serve``'s or
the ensemble of a repository from ``m2f triton-repo``. Its metadata (class names, tasks, category ids) comes from
the model config's ``m2f_metadata`` parameter. Images are sent losslessly (PNG), several at a time so that the
server can batch them, and the answers decode to the same ``Result`` objects a local Predictor returns.

Pre- and post-processing run on the server with the settings it was started with (``m2f serve --threshold …``);
asking the client for other thresholds, another resize or another thing/stuff split is refused with one sentence.
The client may narrow the tasks and set a score threshold: those only drop parts of the server's answer.
"""
from __future__ import annotations

import threading
import time
from urllib.parse import urlparse

import numpy as np

from m2f import contract
from m2f.errors import ArgumentError, require
from m2f.runtime.host import HostOptions, HostSteps

from .protocol import ServingError, decode_result, encode_png

DEFAULT_TIMEOUT_S = 120.0  # per request: a large image on a busy CPU server takes seconds
DEFAULT_CONCURRENCY = 8  # requests in flight from one client: enough for the server's dynamic batcher to batch


def parse_url(url: str) -> tuple[str, str, str]:
    """``http://HOST:PORT/MODEL`` -> ("http", "HOST:PORT", "MODEL"); ArgumentError naming what is missing."""
    parsed = urlparse(url)
    model = parsed.path.strip("/")
    if parsed.scheme not in ("http", "grpc") or not parsed.netloc or not model or "/" in model:
        raise ArgumentError(f"{url!r} is not a served model's URL; write http://HOST:PORT/MODEL or "
                            f"grpc://HOST:PORT/MODEL (e.g. http://127.0.0.1:8000/m2f)")
    if parsed.port is None:
        raise ArgumentError(f"{url!r} has no port; Triton listens on 8000 (HTTP) and 8001 (gRPC) by default")
    return parsed.scheme, parsed.netloc, model


SERVER_SCHEMES = ("http://", "grpc://")


def is_server_url(model) -> bool:
    """True for a served model, ``http://HOST:PORT/MODEL`` or ``grpc://HOST:PORT/MODEL``."""
    return isinstance(model, str) and model.startswith(SERVER_SCHEMES)


def _refuse_client_settings(options: HostOptions) -> None:
    asked = [flag for flag, given in (("threshold", options.threshold is not None),
                                      ("overlap threshold", options.overlap_threshold is not None),
                                      ("resize", options.resize != "pil"),
                                      ("thing/stuff classes", bool(options.thing_classes or options.stuff_classes)))
             if given]
    if asked:
        raise ArgumentError(f"a served model runs with the server's settings, so the {', '.join(asked)} cannot be "
                            f"chosen by the client; pass them to 'm2f serve' (or drop them here)")


class ServedModel:
    """A model on a Triton server (the connection). ``meta``: its m2f metadata; ``predict_batch`` runs images
    through it and returns the server's Results."""

    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT_S, concurrency: int = DEFAULT_CONCURRENCY):
        self.url = url
        self.scheme, self.address, self.model = parse_url(url)
        self.name = f"triton-{self.scheme}"
        self.timeout, self.concurrency = timeout, concurrency
        self._module = require(f"tritonclient.{self.scheme}", "serve", "a served model")
        self._client = self._connect()
        config = self._config()
        self.output_names = [o["name"] for o in config.get("output", [])]
        inputs = [i["name"] for i in config.get("input", [])]
        if inputs != [contract.SERVED_IMAGE]:
            raise ServingError(f"the served model {self.model} takes {', '.join(inputs) or 'no input'}, not one "
                               f"{contract.SERVED_IMAGE}: it is not an m2f serve model or a repository's ensemble "
                               f"(a raw network from --pre-post client is used with m2f.runtime.HostSteps)")
        text = config.get("parameters", {}).get(contract.METADATA_PARAMETER, {}).get("string_value")
        self.meta = contract.parse(text, f"the served model {self.model} at {self.address}")
        self._last_time: float | None = None

    def _connect(self):
        kwargs = {"concurrency": self.concurrency, "network_timeout": self.timeout,
                  "connection_timeout": self.timeout} if self.scheme == "http" else {}
        client = self._module.InferenceServerClient(self.address, **kwargs)
        try:
            live = client.is_server_live()
        except Exception:  # refused connection, wrong protocol on that port, DNS: all mean 'no server there'
            live = False
        if not live:
            raise ServingError(f"no Triton server answers at {self.scheme}://{self.address}; start one with "
                               f"'m2f serve MODEL' (HTTP on 8000, gRPC on 8001 by default) or check the address")
        if not client.is_model_ready(self.model):
            raise ServingError(f"the server at {self.address} has no ready model named {self.model!r}; "
                               f"'m2f serve' prints the name it serves under")
        return client

    def _config(self) -> dict:
        if self.scheme == "grpc":
            return self._client.get_model_config(self.model, as_json=True)["config"]
        return self._client.get_model_config(self.model)

    def _inputs(self, image: np.ndarray):
        data = np.array([[encode_png(image)]], dtype=object)  # [1, 1]: a batch of one, or the dims [1, 1]
        tensor = self._module.InferInput(contract.SERVED_IMAGE, list(data.shape), "BYTES")
        tensor.set_data_from_numpy(data)
        return [tensor]

    def _outputs(self):
        return [self._module.InferRequestedOutput(n) for n in self.output_names]

    def predict_batch(self, images: list[np.ndarray]) -> list:
        """uint8 RGB [H, W, 3] images -> their Results, sent ``concurrency`` at a time."""
        start = time.perf_counter()
        answers = self._send_http(images) if self.scheme == "http" else self._send_grpc(images)
        self._last_time = time.perf_counter() - start
        return [self._decode(a) for a in answers]

    def _send_http(self, images) -> list:
        results = []
        for first in range(0, len(images), self.concurrency):
            pending = [self._client.async_infer(self.model, self._inputs(im), outputs=self._outputs())
                       for im in images[first:first + self.concurrency]]
            results += [self._wait(lambda p=p: p.get_result()) for p in pending]
        return results

    def _send_grpc(self, images) -> list:
        answers: list = [None] * len(images)
        done = threading.Semaphore(0)

        def finished(index, result, error):
            answers[index] = error if error is not None else result
            done.release()

        for first in range(0, len(images), self.concurrency):
            chunk = range(first, min(first + self.concurrency, len(images)))
            for i in chunk:
                self._client.async_infer(self.model, self._inputs(images[i]), outputs=self._outputs(),
                                         callback=lambda result, error, i=i: finished(i, result, error),
                                         client_timeout=self.timeout)
            for _ in chunk:
                if not done.acquire(timeout=self.timeout + 5):
                    raise ServingError(f"the server at {self.address} did not answer within {self.timeout:.0f} s")
        return [self._wait(lambda a=a: _raise_or_return(a)) for a in answers]

    def _wait(self, get):
        from tritonclient.utils import InferenceServerException

        try:
            return get()
        except InferenceServerException as e:
            raise ServingError(f"the server refused the request: {e.message()}") from None

    def _decode(self, answer):
        outputs = {name: _first_bytes(answer.as_numpy(name)) for name in self.output_names}
        if outputs.get(contract.SERVED_ERROR):
            raise ServingError(outputs[contract.SERVED_ERROR].decode(errors="replace"))
        return decode_result(outputs)

    def last_inference_time(self) -> float | None:
        """Seconds the last ``predict_batch`` took on the client (encoding, network, server, decoding)."""
        return self._last_time

    def close(self) -> None:
        self._client.close()


class RemotePredictor:
    """A served model with the Predictor's API. url: ``http://HOST:PORT/MODEL`` or ``grpc://HOST:PORT/MODEL``;
    options: only ``tasks`` and ``score_threshold`` may differ from the defaults (the server decides the rest)."""

    def __init__(self, url: str, options: HostOptions = HostOptions(), timeout: float = DEFAULT_TIMEOUT_S,
                 concurrency: int = DEFAULT_CONCURRENCY):
        _refuse_client_settings(options)
        self.path = url
        self.backend = ServedModel(url, timeout, concurrency)
        self.meta = self.backend.meta
        self.host = HostSteps(self.meta, options, name=f"the served model {self.backend.model}")
        self.tasks, self.names, self.category_ids = self.host.tasks, self.host.names, self.host.category_ids

    def predict(self, image):
        """One image (a path or an array, as Predictor.predict takes) -> Result."""
        return self.predict_batch([image])[0]

    def predict_batch(self, images: list) -> list:
        from pathlib import Path

        from m2f.runtime.image_io import read_image, to_rgb8

        arrays = [read_image(im) if isinstance(im, (str, Path)) else to_rgb8(im) for im in images]
        return [self.host.keep_asked(r) for r in self.backend.predict_batch(arrays)]

    def stream(self, images, depth: int = 2):
        """As Predictor.stream, one request at a time in this thread (the server pre- and post-processes, and batches
        the requests of several clients)."""
        from m2f.runtime.pipeline import Pipeline

        return Pipeline(self, depth).stream(images)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> "RemotePredictor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _raise_or_return(answer):
    if isinstance(answer, Exception):
        raise answer
    return answer


def _first_bytes(array: np.ndarray | None) -> bytes:
    """The one BYTES element of a response tensor ([1] or [1, 1])."""
    if array is None or array.size == 0:
        return b""
    value = array.reshape(-1)[0]
    return value if isinstance(value, bytes) else bytes(value)
