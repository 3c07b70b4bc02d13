"""The model on every accelerator gives the CPU result (torchvision-style device parametrisation; the CPU itself is
the reference here, so it is not one of the parameters)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .helpers import random_model, tiny_config

DEVICES = [pytest.param("cuda", marks=pytest.mark.gpu)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["resnet", "swin"])
def test_forward_on_device_matches_cpu(device, kind, monkeypatch):
    """In fp32: cuDNN's TF32 convolutions (PyTorch's default on Ampere and later) are turned off, as they round
    inputs to 10 mantissa bits (on an H200 the ResNet logits moved by 0.03 with them on)."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    model = random_model(tiny_config(kind))
    x = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(x)
        out = model.to(device)(x.to(device))
    for key in ("pred_logits", "pred_masks"):
        torch.testing.assert_close(out[key].cpu(), ref[key], atol=1e-4, rtol=0)


@pytest.mark.slow  # a whole pytest run in a subprocess
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path of M2F_REQUIRE")
def test_require_gpu_turns_skip_into_failure():
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, M2F_REQUIRE="gpu")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        f"{__file__}::test_forward_on_device_matches_cpu"], cwd=root, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stdout
    assert "M2F_REQUIRE=gpu but no CUDA GPU visible to PyTorch" in r.stdout
    assert "2 errors" in r.stdout and "passed" not in r.stdout  # failed at set-up: reported as errors, exit 1
