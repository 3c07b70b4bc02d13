"""ONNX Runtime backend: any execution provider (TensorRT EP, CUDA EP, CPU), metadata from the ONNX file."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from m2f.contract import KEY, parse
from m2f.errors import BackendError, first_line, require
from m2f.threads import default_threads


class OnnxRuntimeBackend:
    def __init__(self, path: Path, providers: list[str] | None = None, threads: int | None = None):
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
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as e:  # ORT raises its own exception types for corrupt or foreign files
            first = first_line(e)
            raise BackendError(f"ONNX Runtime cannot load {path.name} ({first}); is it a complete ONNX file?") from None
        self.meta = parse(self.session.get_modelmeta().custom_metadata_map.get(KEY), path.name)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.providers = self.session.get_providers()

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(None, {k: feeds[k] for k in self.input_names})))

    def close(self) -> None:
        self.session = None
