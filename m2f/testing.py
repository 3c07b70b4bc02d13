"""Test helpers shipped with the package: what the gpu/trt markers need. The tolerance table lives with the
comparison code, in ``m2f.validate.compare.TOLERANCES``."""
from __future__ import annotations

import importlib.util
import os
import shutil


def required() -> set[str]:
    """Capabilities that must be present (``M2F_REQUIRE=gpu,trt``): their tests fail instead of skipping."""
    return {s.strip() for s in os.environ.get("M2F_REQUIRE", "").split(",") if s.strip()}


def has_gpu() -> tuple[bool, str]:
    """(available, reason when not). Uses torch if installed, else nvidia-smi."""
    if importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            return True, ""
        return False, "no CUDA GPU visible to PyTorch"
    if shutil.which("nvidia-smi"):
        return True, ""
    return False, "no CUDA GPU (nvidia-smi not found)"


def has_tensorrt() -> tuple[bool, str]:
    if importlib.util.find_spec("tensorrt") is None:
        return False, ("TensorRT is not installed (its Python package needs an NVIDIA GPU machine: "
                       "pip install 'm2f[trt]')")
    return True, ""
