"""ONNX Runtime backend: any execution provider (TensorRT EP, CUDA EP, CPU), metadata from the ONNX file."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from m2f.contract import KEY, parse
from m2f.errors import BackendError, first_line, require
from m2f.onnx_graph import check_onnx_file, not_onnx
from m2f.threads import default_threads

from .. import custom_ops
from .base import Runner


_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int32)": "int32",
              "tensor(int64)": "int64", "tensor(uint8)": "uint8", "tensor(int8)": "int8", "tensor(bool)": "bool"}


class OnnxRuntimeBackend(Runner):
    """An ONNX graph in ONNX Runtime (the runner interface of ``base.Runner``)."""

    name = "onnxruntime"

    def __init__(self, path: Path, providers: list[str] | None = None, threads: int | None = None):
        super().__init__()
        ort = require("onnxruntime", "runtime", "running an ONNX model")
        available = ort.get_available_providers()
        providers = providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        missing = [p for p in providers if p not in available]
        if missing:
            raise BackendError(f"ONNX Runtime here has no {', '.join(missing)} (available: {', '.join(available)}); "
                               f"install the matching onnxruntime package or choose another provider")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()  # see m2f.threads
        options.inter_op_num_threads = 1
        rewritten, library = custom_ops.prepare(path)  # plugin nodes (m2f / trt-builtin flavors) -> numpy ops
        if library:
            options.register_custom_ops_library(library)
        check_onnx_file(path)
        try:
            self.session = ort.InferenceSession(rewritten or str(path), options, providers=providers)
        except Exception as e:  # ORT raises its own exception types for corrupt or foreign files
            first = first_line(e)
            if "INVALID_PROTOBUF" in first:
                raise BackendError(not_onnx(path, "its bytes do not parse")) from None
            raise BackendError(f"ONNX Runtime cannot load {path.name} ({first})") from None
        self.meta = parse(self.session.get_modelmeta().custom_metadata_map.get(KEY), path.name)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.providers = self.session.get_providers()

    def input_metadata(self) -> dict[str, tuple[str, list]]:
        return {i.name: (_ORT_TYPES.get(i.type, i.type), list(i.shape)) for i in self.session.get_inputs()}

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(None, feeds)))

    def _release(self) -> None:
        self.session = None
