"""Serving on NVIDIA Triton Inference Server (no torch).

- ``repository``: ``m2f triton-repo``, a model repository for a production server (the network as an ONNX Runtime
  or TensorRT model, Python-backend pre/post-processing, an ensemble that chains them).
- ``server``: ``m2f serve``, a real Triton server in-process through PyTriton, bound to the m2f runtime;
  ``access_token`` (with ``token_shim.c``) keeps its access token off tritonserver's command line.
- ``client``: a served model as a Predictor (``Predictor("http://host:8000/model")``), over HTTP or gRPC.
- ``protocol``: what a served model receives (an encoded image) and answers (JSON + PNG bytes), both ways.

The defaults below are stdlib-only so that the command line can show them without importing anything.
"""
import re

from m2f.errors import ArgumentError

DEFAULT_MODEL_NAME = "m2f"
DEFAULT_QUEUE_DELAY_US = 2000  # how long the dynamic batcher holds a request to fill a batch: 2 ms
# the largest image a server decodes by default: 40 megapixels, a 7 K x 5.5 K frame; a PNG of a few kB can hold far
# more, so the header is checked before decoding
DEFAULT_MAX_PIXELS = 40_000_000
PRE_POST = ("python", "client")  # m2f triton-repo: Python-backend pre/post + ensemble, or the network alone
# a served model's name becomes a folder of the repository (NAME, NAME_preprocess, ...) and a URL path segment:
# one path component of letters, digits, '_', '-' and '.', starting with a letter or digit (so never '.', '..' or
# hidden), short enough for the suffixes
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def check_model_name(name: str) -> str:
    """``name`` if it can name a served model; ArgumentError (one sentence) otherwise."""
    if not MODEL_NAME.fullmatch(name):
        raise ArgumentError(f"model name {name!r} cannot name a served model: use 1-64 letters, digits, '_', '-' or "
                            f"'.', starting with a letter or digit (it becomes a folder and a URL segment)")
    return name
