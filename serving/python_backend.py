"""The pre- and post-processing models of a repository from ``m2f triton-repo``, for Triton's Python backend.

Each repository model's ``model.py`` is one line that imports a class from here, so the code Triton runs is the
tested m2f runtime (the server's Python needs ``pip install 'm2f[runtime]'``). Both read the metadata from
``metadata.json`` next to their ``model.py``.

- ``PreprocessModel``: ``encoded_image`` (BYTES) -> the graph's inputs (``image`` uint8 [H, W, 3] and
  ``valid_size`` int32 [2], or ``pixel_values``) plus ``original_size`` int32 [2] and ``fit_scale`` float32 [1]:
  decoding and ``Preprocessor``, one image per request. A request that is not an image gets an error response
  with one sentence; the other requests of the batch go on.
- ``PostprocessModel``: the network's outputs for one image plus those sizes -> ``result_json``, ``panoptic_png``
  and ``semantic_png`` (``m2f.serving.protocol``), by ``HostSteps.postprocess``: the runtime's reference-exact
  post-processing.
Tensors carry a leading dimension of 1 per request either way: a batching model's batch dimension, or the first of
the dims a non-batching model's config lists (the repository writes ``[1] + dims`` there).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from m2f import contract
from m2f.errors import M2FError
from m2f.runtime.image_io import decode_image
from m2f.runtime.host import HostSteps
from m2f.runtime.preprocess import Prepared

from . import DEFAULT_MAX_PIXELS
from .protocol import encode_result

METADATA_FILE = "metadata.json"
MAX_PIXELS_PARAMETER = "max_pixels"  # a config parameter of the pre-processing model


def _load(args: dict) -> tuple[dict, dict]:
    """(m2f metadata, Triton model config) of the model Triton is initialising."""
    folder = Path(args["model_repository"]) / str(args["model_version"])
    meta = contract.parse((folder / METADATA_FILE).read_text(), str(folder / METADATA_FILE))
    return meta, json.loads(args["model_config"])


def _bytes_of(request, name: str) -> list[bytes]:
    import triton_python_backend_utils as pb_utils

    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return [] if tensor is None else [bytes(v) for v in tensor.as_numpy().reshape(-1)]


def _array(request, name: str) -> np.ndarray:
    import triton_python_backend_utils as pb_utils

    return pb_utils.get_input_tensor_by_name(request, name).as_numpy()


class _PerRequestModel:
    """A Triton Python model that answers each request of a batch on its own: a request it cannot answer gets an
    error response with one sentence, and the others of the batch go on."""

    def execute(self, requests: list) -> list:
        import triton_python_backend_utils as pb_utils

        responses = []
        for request in requests:
            try:
                responses.append(pb_utils.InferenceResponse(output_tensors=self._answer(request)))
            except M2FError as e:
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(e))))
        return responses

    def _answer(self, request) -> list:
        raise NotImplementedError

    def finalize(self) -> None:
        pass


class PreprocessModel(_PerRequestModel):
    """Triton Python model: encoded image -> the network's inputs."""

    def initialize(self, args: dict) -> None:
        meta, config = _load(args)
        self.predictor = HostSteps(meta)
        parameter = config.get("parameters", {}).get(MAX_PIXELS_PARAMETER, {}).get("string_value")
        self.max_pixels = int(parameter) if parameter else DEFAULT_MAX_PIXELS

    def _answer(self, request) -> list:
        import triton_python_backend_utils as pb_utils

        payloads = _bytes_of(request, contract.SERVED_IMAGE)
        if len(payloads) != 1:
            raise M2FError(f"send one image per request ({len(payloads)} came in one); Triton batches requests")
        image = decode_image(payloads[0], self.max_pixels, what="the request's encoded_image")
        prepared = self.predictor.preprocess([image])
        tensors = {name: value[:1] for name, value in prepared.feeds.items()}
        tensors[contract.VALID_SIZE] = np.asarray([prepared.valid_sizes[0]], np.int32)  # post needs it in any case
        tensors[contract.ORIGINAL_SIZE] = np.asarray([image.shape[:2]], np.int32)
        tensors[contract.FIT_SCALE] = np.asarray([[prepared.fit_scales[0]]], np.float32)
        return [pb_utils.Tensor(name, np.ascontiguousarray(value)) for name, value in tensors.items()]



class PostprocessModel(_PerRequestModel):
    """Triton Python model: the network's outputs for one image -> the served results."""

    def initialize(self, args: dict) -> None:
        meta, _ = _load(args)
        self.predictor = HostSteps(meta)
        self.outputs = list(contract.output_names(meta.head))

    def _answer(self, request) -> list:
        import triton_python_backend_utils as pb_utils

        outputs = {name: _array(request, name) for name in self.outputs}
        valid = _array(request, contract.VALID_SIZE).reshape(-1, 2)[0]
        original = _array(request, contract.ORIGINAL_SIZE).reshape(-1, 2)[0]
        fit = float(_array(request, contract.FIT_SCALE).reshape(-1)[0])
        canvas = tuple(int(v) for v in self.predictor.preprocess.static_canvas) if not \
            self.predictor.preprocess.dynamic else None
        prepared = Prepared({}, [tuple(int(v) for v in valid)], [tuple(int(v) for v in original)], canvas, [fit])
        result = self.predictor.postprocess(outputs, prepared)[0]
        answer = encode_result(result, self.predictor.meta.num_classes)
        return [pb_utils.Tensor(name, np.array([[answer[name]]], dtype=object)) for name in contract.SERVED_OUTPUTS]

