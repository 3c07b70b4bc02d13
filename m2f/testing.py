"""Test helpers shipped with the package: the one tolerance table, and what the gpu/trt markers need.

Tolerances (design.md §4): fp32 op vs float64 reference 1e-5; model fp32 vs PyTorch/HF 1e-4 max abs on logits;
INT8 is judged by task metrics only, never elementwise.
"""
from __future__ import annotations

import importlib.util
import os
import shutil

TOLERANCES = {
    "op_fp32_vs_fp64": 1e-5,
    "model_fp32_max_abs": 1e-4,
    "instance_score": 1e-5,
    # fp16 kernel inputs, fp32 accumulation, fp16 output: |got - ref| <= atol + rtol * |ref| against the float64
    # reference on the same fp16 inputs (fp16's epsilon is 9.8e-4: the output rounding alone is half of it)
    "kernel_fp16_atol": 1e-3,
    "kernel_fp16_rtol": 4e-3,
}


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
        return False, "TensorRT Python package not installed (it cannot be installed on this CI machine)"
    return True, ""
