"""The Triton kernels against the float64 PyTorch references of their op files.

Without a GPU they run in Triton's interpreter (TRITON_INTERPRET=1, set by tests/conftest.py): the same kernel
source, executed with numpy on CPU tensors. With a GPU, the "cuda" cases run them compiled.
"""
import numpy as np
import pytest
import torch

from m2f.plugins.masked_attention import contract as ma_contract
from m2f.plugins.masked_attention import kernel as ma_kernel
from m2f.plugins.masked_attention import reference as ma_reference
from m2f.plugins.ms_deform_attn import kernel as msda_kernel
from m2f.plugins.ms_deform_attn import reference as msda_reference
from m2f.plugins.triton_support import interpreting, triton
from m2f.testing import has_gpu
from m2f.validate.compare import TOLERANCES


def _devices(cpu_slow: bool = False):
    """cpu (Triton's interpreter) and cuda; ``cpu_slow``: the interpreter case is slow-marked (Mask2Former sizes,
    which the cuda case checks compiled)."""
    reason = None if triton is not None else "Triton is not installed (pip install triton)"
    cpu_reason = reason or (None if interpreting() else "TRITON_INTERPRET is not set: kernels run compiled here")
    gpu_ok, gpu_reason = has_gpu()
    cuda_reason = reason or (None if gpu_ok and not interpreting() else gpu_reason or "interpreter mode is on")
    cpu_marks = [pytest.mark.skipif(cpu_reason is not None, reason=str(cpu_reason))] + \
        ([pytest.mark.slow] if cpu_slow else [])
    return [pytest.param("cpu", marks=cpu_marks),
            pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
                cuda_reason is not None, reason=str(cuda_reason))])]


DEVICES = _devices()
FULL_SIZE_DEVICES = _devices(cpu_slow=True)


def _check(got, ref, dtype):
    err = (got.double().cpu() - ref).abs()
    if dtype == torch.float32:
        assert err.max().item() <= TOLERANCES["op_fp32_vs_fp64"], err.max().item()
    else:
        bound = TOLERANCES["kernel_fp16_atol"] + TOLERANCES["kernel_fp16_rtol"] * ref.abs()
        assert bool((err <= bound).all()), (err - bound).max().item()
    assert torch.isfinite(got).all()


def _msda_inputs(seed, n, lq, m, d, shapes, points, dtype, device):
    g = torch.Generator().manual_seed(seed)
    s = sum(h * w for h, w in shapes)
    levels = len(shapes)
    value = torch.randn(n, s, m, d, generator=g).to(dtype)
    locations = (torch.rand(n, lq, m, levels, points, 2, generator=g) * 1.6 - 0.3).to(dtype)  # some outside
    weights = torch.rand(n, lq, m, levels, points, generator=g)
    weights = (weights / weights.sum((-1, -2), keepdim=True)).to(dtype)
    return [t.to(device) for t in (value, locations, weights)]


MSDA_CASES = [  # (n, lq, m, d, shapes, points)
    (1, 1, 1, 32, [(3, 5)], 1),
    (2, 37, 2, 32, [(7, 9), (4, 5)], 3),
    (1, 45, 3, 64, [(6, 7), (3, 4), (2, 2)], 4),
    (2, 20, 2, 64, [(9, 11), (5, 6), (3, 3), (1, 2)], 8),
    (1, 33, 1, 32, [(1, 1), (2, 1), (1, 3)], 2),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("case", MSDA_CASES, ids=lambda c: f"n{c[0]}-lq{c[1]}-m{c[2]}-d{c[3]}-L{len(c[4])}-P{c[5]}")
def test_msda_kernel_matches_reference(case, dtype, device):
    n, lq, m, d, shapes, points = case
    value, locations, weights = _msda_inputs(len(shapes) * 7 + points, n, lq, m, d, shapes, points, dtype, device)
    ref = msda_reference.reference(value.double().cpu(), shapes, None, locations.double().cpu(),
                                   weights.double().cpu())
    got = msda_kernel.forward_triton(value, shapes, None, locations, weights)
    assert got.dtype == dtype and got.shape == (n, lq, m * d)
    _check(got, ref, dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("case", MSDA_CASES[1:4], ids=lambda c: f"lq{c[1]}-d{c[3]}-L{len(c[4])}-P{c[5]}")
def test_msda_fused_kernel_matches_reference(case, dtype, device):
    n, lq, m, d, shapes, points = case
    g = torch.Generator().manual_seed(11)
    levels = len(shapes)
    value = torch.randn(n, sum(h * w for h, w in shapes), m, d, generator=g).to(dtype)
    ref_points = torch.rand(n, lq, levels, 2, generator=g).to(dtype)
    offsets = (torch.randn(n, lq, m, levels, points, 2, generator=g) * 3).to(dtype)  # pixels; some land outside
    logits = (torch.randn(n, lq, m, levels * points, generator=g) * 2).to(dtype)
    args = [t.to(device) for t in (value, ref_points, offsets, logits)]
    ref = msda_reference.fused_reference(*[t.double().cpu() for t in args[:1]], shapes, None,
                                         *[t.double().cpu() for t in args[1:]])
    got = msda_kernel.forward_triton_fused(args[0], shapes, None, *args[1:])
    _check(got, ref, dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fused", [False, True], ids=["plain", "fused"])
def test_msda_fp16_value_with_fp32_sampling(fused, device):
    """An fp16 graph keeps its sampling coordinates fp32 (the fp16_sfp32 AOT configuration): an fp16 value with fp32
    locations and weights (or reference points, offsets and logits) against the float64 reference on the same
    inputs, fp16 output."""
    n, lq, m, d, shapes, points = MSDA_CASES[2]
    g = torch.Generator().manual_seed(12)
    levels = len(shapes)
    value = torch.randn(n, sum(h * w for h, w in shapes), m, d, generator=g).half()
    if fused:
        sampling = [torch.rand(n, lq, levels, 2, generator=g),
                    torch.randn(n, lq, m, levels, points, 2, generator=g) * 3,
                    torch.randn(n, lq, m, levels * points, generator=g) * 2]
        ref = msda_reference.fused_reference(value.double(), shapes, None, *[t.double() for t in sampling])
        run = msda_kernel.forward_triton_fused
    else:
        _, locations, weights = _msda_inputs(13, n, lq, m, d, shapes, points, torch.float32, "cpu")
        sampling = [locations, weights]
        ref = msda_reference.reference(value.double(), shapes, None, *[t.double() for t in sampling])
        run = msda_kernel.forward_triton
    got = run(value.to(device), shapes, None, *[t.to(device) for t in sampling])
    assert got.dtype == torch.float16
    _check(got, ref, torch.float16)


def test_msda_kernel_refuses_mixed_sampling_dtypes():
    value, locations, weights = _msda_inputs(3, 1, 4, 1, 32, [(3, 5)], 1, torch.float16, "cpu")
    with pytest.raises(Exception, match="sampling inputs must all be float32 or all torch.float16"):
        msda_kernel.forward_triton(value, [(3, 5)], None, locations.float(), weights)
    with pytest.raises(Exception, match="sampling inputs must all be float32 or all torch.float32"):
        msda_kernel.forward_triton(value.float(), [(3, 5)], None, locations, weights)


@pytest.mark.parametrize("device", FULL_SIZE_DEVICES)
def test_msda_kernel_mask2former_size(device):
    """Lq = 100 queries, M = 8, D = 32 over the 1/32, 1/16, 1/8 levels of an 800x1344 canvas, P = 4."""
    shapes = [(25, 42), (50, 84), (100, 168)]
    value, locations, weights = _msda_inputs(5, 1, 100, 8, 32, shapes, 4, torch.float32, device)
    ref = msda_reference.reference(value.double().cpu(), shapes, None, locations.double().cpu(),
                                   weights.double().cpu())
    _check(msda_kernel.forward_triton(value, torch.tensor(shapes, dtype=torch.int32), None, locations, weights),
           ref, torch.float32)


def test_msda_kernel_rejects_wrong_level_start_index():
    value, locations, weights = _msda_inputs(0, 1, 3, 1, 32, [(2, 3), (1, 2)], 1, torch.float32, "cpu")
    with pytest.raises(ValueError, match="level_start_index"):
        msda_kernel.forward_triton(value, [(2, 3), (1, 2)], torch.tensor([0, 5]), locations, weights)


def _attention_inputs(seed, n, m, q, s, d, dtype, device):
    g = torch.Generator().manual_seed(seed)
    qkv = [torch.randn(n, m, length, d, generator=g).to(dtype) for length in (q, s, s)]
    logits = (torch.randn(n, q, s, generator=g) * 3 - 1).to(dtype)
    return [t.to(device) for t in qkv], logits.to(device)


ATTENTION_CASES = [(1, 1, 1, 1, 32), (2, 3, 37, 150, 32), (1, 2, 70, 129, 64), (2, 1, 5, 64, 64)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("with_mask", [True, False], ids=["mask", "nomask"])
@pytest.mark.parametrize("case", ATTENTION_CASES, ids=lambda c: "n{}-m{}-q{}-s{}-d{}".format(*c))
def test_masked_attention_kernel_matches_reference(case, with_mask, dtype, device):
    n, m, q, s, d = case
    (qt, kt, vt), logits = _attention_inputs(sum(case), n, m, q, s, d, dtype, device)
    if with_mask and q > 3:
        logits[0, 2] = -4.0  # a query with every key blocked: attends to all keys
        logits[-1, :, : min(s, 64)] = -9.0  # the first key tile blocked for every query: skipped
    mask = logits if with_mask else None
    ref = ma_reference.reference(qt.double().cpu(), kt.double().cpu(), vt.double().cpu(),
                                     None if mask is None else mask.double().cpu())
    got = ma_kernel.forward_triton(qt, kt, vt, mask)
    assert got.dtype == dtype and got.shape == qt.shape
    _check(got, ref, dtype)


@pytest.mark.parametrize("device", DEVICES)
def test_masked_attention_kernel_sigmoid_boundary(device):
    """Logits whose float32 sigmoid is exactly 0.5 are open; the next float below blocks (torch's decision)."""
    (qt, kt, vt), _ = _attention_inputs(3, 1, 2, 4, 40, 32, torch.float32, device)
    below = np.nextafter(np.float32(ma_contract.BLOCKED_BELOW), np.float32(-1))
    logits = torch.full((1, 4, 40), -5.0)
    logits[0, 0, :20] = ma_contract.BLOCKED_BELOW  # open: sigmoid rounds to 0.5
    logits[0, 1, :20] = float(below)  # blocked
    logits[0, 1, 20] = 1e-30
    logits[0, 2, :] = -1e-30  # every sigmoid is 0.5: all open
    logits[0, 3, 5] = 0.0
    logits = logits.to(device)
    ref = ma_reference.reference(qt.double().cpu(), kt.double().cpu(), vt.double().cpu(), logits.double().cpu())
    _check(ma_kernel.forward_triton(qt, kt, vt, logits), ref, torch.float32)


def test_blocked_below_is_torch_float32_sigmoid_threshold():
    """BLOCKED_BELOW reproduces torch.sigmoid(x) < 0.5 in float32 for every float near the boundary."""
    bits = np.arange(0x33000000, 0x34C00000, dtype=np.int64).astype(np.int32)
    x = -torch.from_numpy(bits.view(np.float32).copy())
    x = torch.cat([x, -x])
    np.testing.assert_array_equal((torch.sigmoid(x) < 0.5).numpy(), (x < ma_contract.BLOCKED_BELOW).numpy())


@pytest.mark.parametrize("device", FULL_SIZE_DEVICES)
@pytest.mark.parametrize("level", [(25, 42), pytest.param((50, 84), marks=pytest.mark.slow),
                                   pytest.param((100, 168), marks=pytest.mark.slow)], ids=["1/32", "1/16", "1/8"])
def test_masked_attention_kernel_mask2former_size(level, device):
    """Q = 100, M = 8, D = 32 at each level of an 800x1344 canvas (the larger two take 25-85 s interpreted)."""
    s = level[0] * level[1]
    (qt, kt, vt), logits = _attention_inputs(s, 1, 8, 100, s, 32, torch.float32, device)
    ref = ma_reference.reference(qt.double().cpu(), kt.double().cpu(), vt.double().cpu(), logits.double().cpu())
    _check(ma_kernel.forward_triton(qt, kt, vt, logits), ref, torch.float32)
