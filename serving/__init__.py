"""Serving on NVIDIA Triton Inference Server (no torch).

- ``repository``: ``m2f triton-repo``, a model repository for a production server (the network as an ONNX Runtime
  or TensorRT model, Python-backend pre/post-processing, an ensemble that chains them).
- ``server``: ``m2f serve``, a real Triton server in-process through PyTriton, bound to the m2f runtime.
- ``client``: a served model as a Predictor (``Predictor("http://host:8000/model")``), over HTTP or gRPC.
- ``protocol``: what a served model receives (an encoded image) and answers (JSON + PNG bytes), both ways.

The defaults below are stdlib-only so that the command line can show them without importing anything.
"""

DEFAULT_MODEL_NAME = "m2f"
DEFAULT_QUEUE_DELAY_US = 2000  # how long the dynamic batcher holds a request to fill a batch: 2 ms
# the largest image a server decodes by default: 40 megapixels, a 7 K x 5.5 K frame; a PNG of a few kB can hold far
# more, so the header is checked before decoding
DEFAULT_MAX_PIXELS = 40_000_000
PRE_POST = ("python", "client")  # m2f triton-repo: Python-backend pre/post + ensemble, or the network alone
