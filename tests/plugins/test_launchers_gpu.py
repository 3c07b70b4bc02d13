"""The AOT launchers the plugins' enqueue calls, run on a GPU through ctypes (no TensorRT): the cubin for this GPU's
architecture, loaded by m2f_kernels.c through libcuda, against the PyTorch references. This is the plugin's launch
path minus TensorRT's tensor descriptors."""
import ctypes
import math
import shutil
import subprocess

import pytest
import torch

from m2f.plugins.masked_attention import contract as ma_contract
from m2f.plugins.masked_attention import reference as ma_reference
from m2f.plugins.ms_deform_attn import reference as msda_reference
from m2f.validate.compare import TOLERANCES

from ..conftest import require_capability

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(shutil.which("gcc") is None, reason="no C compiler")]

FP32_TOL = TOLERANCES["op_fp32_vs_fp64"]


def _close(got: torch.Tensor, expected: torch.Tensor, dtype) -> None:
    """fp32 within 1e-5 of float64; fp16 within the kernels' fp16 bound (atol + rtol * |ref|)."""
    if dtype == torch.float32:
        torch.testing.assert_close(got.double(), expected, atol=FP32_TOL, rtol=0)
    else:
        torch.testing.assert_close(got.double(), expected, atol=TOLERANCES["kernel_fp16_atol"],
                                   rtol=TOLERANCES["kernel_fp16_rtol"])


@pytest.fixture(scope="module")
def launchers(tmp_path_factory):
    """ctypes handle of the launchers built for this GPU's architecture."""
    require_capability("gpu")  # a module fixture runs before the per-test marker check
    from m2f.plugins.aot import build_kernels
    from m2f.plugins.build import KERNEL_SOURCES, find_cuda_include

    major, minor = torch.cuda.get_device_capability()
    out = tmp_path_factory.mktemp("launchers")
    build_kernels(out, archs=(10 * major + minor,))
    library = out / "libm2f_launchers.so"
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", f"-I{out}", f"-isystem{find_cuda_include()}",
                    *(str(out / s) for s in KERNEL_SOURCES), "-o", str(library), "-ldl", "-lpthread"], check=True)
    return ctypes.CDLL(str(library))


def _last_error(launchers) -> str:
    launchers.m2f_kernels_last_error.restype = ctypes.c_char_p
    return launchers.m2f_kernels_last_error().decode()


def _ptr(t: torch.Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr())


def _stream() -> ctypes.c_void_p:
    return ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("fused", [False, True])
def test_msda_launcher(launchers, dtype, fused):
    g = torch.Generator(device="cuda").manual_seed(0)
    shapes = [(25, 42), (13, 21), (7, 11)]
    n, m, d, points, lq = 2, 8, 32, 4, 300
    s, nl = sum(h * w for h, w in shapes), len(shapes)
    value = torch.randn(n, s, m, d, device="cuda", generator=g).to(dtype)
    spatial = torch.tensor(shapes, dtype=torch.int32, device="cuda")
    starts = torch.tensor([0, 25 * 42, 25 * 42 + 13 * 21], dtype=torch.int32, device="cuda")
    reference_points = torch.rand(n, lq, nl, 2, device="cuda", generator=g).to(dtype)
    offsets = (torch.randn(n, lq, m, nl, points, 2, device="cuda", generator=g) * 3).to(dtype)
    logits = torch.randn(n, lq, m, nl * points, device="cuda", generator=g).to(dtype)
    if fused:
        locations, weights = offsets, logits
        expected = msda_reference.fused_reference(value.double(), shapes, None, reference_points.double(),
                                                  offsets.double(), logits.double())
    else:
        locations, weights = msda_reference.locations_and_weights(shapes, reference_points.float(), offsets.float(),
                                                                  logits.float())
        locations, weights = locations.to(dtype).contiguous(), weights.to(dtype).contiguous()
        expected = msda_reference.reference(value.double(), shapes, None, locations.double(), weights.double())
    out = torch.empty(n, lq, m * d, dtype=dtype, device="cuda")
    name = f"m2f_msda{'_fused' if fused else ''}_{'fp16' if dtype == torch.float16 else 'fp32'}_d32"
    result = getattr(launchers, name)(_stream(), _ptr(value), _ptr(spatial), _ptr(starts), _ptr(locations),
                                      _ptr(weights), _ptr(reference_points), _ptr(out), s, lq, m, nl, points, d, n)
    torch.cuda.synchronize()
    assert result == 0, _last_error(launchers)
    _close(out, expected, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("with_mask", [True, False])
def test_masked_attention_launcher(launchers, dtype, with_mask):
    g = torch.Generator(device="cuda").manual_seed(1)
    n, m, q_len, s, d = 2, 8, 100, 1050, 32
    q, k, v = (torch.randn(n, m, length, d, device="cuda", generator=g).to(dtype) for length in (q_len, s, s))
    mask = torch.randn(n, q_len, s, device="cuda", generator=g) * 3
    mask[0, 5] = -10.0  # every key blocked: the empty-row rule
    out = torch.empty_like(q)
    name = f"m2f_masked_attention{'' if with_mask else '_nomask'}_{'fp16' if dtype == torch.float16 else 'fp32'}_d32"
    launcher = getattr(launchers, name)
    launcher.argtypes = [ctypes.c_void_p] * 6 + [ctypes.c_int32] * 4 + [ctypes.c_float] * 2 + [ctypes.c_int32]
    result = launcher(_stream(), _ptr(q), _ptr(k), _ptr(v), _ptr(mask if with_mask else q), _ptr(out), q_len, s, m, d,
                      1.0 / math.sqrt(d), ma_contract.BLOCKED_BELOW, n)
    torch.cuda.synchronize()
    assert result == 0, _last_error(launchers)
    expected = ma_reference.reference(q.double(), k.double(), v.double(), mask if with_mask else None)
    assert torch.isfinite(out).all()
    _close(out, expected, dtype)
