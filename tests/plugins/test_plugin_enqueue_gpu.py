"""The plugins' enqueue on a GPU, without TensorRT: harness/plugin_enqueue.cpp creates each plugin through its creator
(as TensorRT does at runtime), runs enqueue on device buffers at Mask2Former R50 800x1344 sizes, and the output is
compared with the float64 references (fp32 within 1e-5, fp16 within the kernels' fp16 bound). Without a CUDA driver
the program must say so and exit non-zero, not crash (checked on every machine)."""
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from m2f.plugins.masked_attention import contract as ma_contract
from m2f.plugins.masked_attention import reference as ma_reference
from m2f.plugins.ms_deform_attn import contract as msda_contract
from m2f.plugins.ms_deform_attn import reference as msda_reference
from m2f.plugins.build import build_library, find_cuda_include
from m2f.validate.compare import TOLERANCES

from ..conftest import require_capability

PROGRAM = Path(__file__).parent / "harness" / "plugin_enqueue.cpp"
LEVELS = [(100, 168), (50, 84), (25, 42)]  # the encoder's maps of an 800x1344 canvas (1/8, 1/16, 1/32)
RUNS = 20

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="no C++ compiler")


def _compile(include: Path, out: Path) -> Path:
    exe = out / "plugin_enqueue"
    subprocess.run(["g++", "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", f"-isystem{include}",
                    f"-isystem{find_cuda_include()}", str(PROGRAM), "-ldl", "-o", str(exe)], check=True)
    return exe


def _newest(header_sets) -> Path:
    return header_sets[max(header_sets, key=lambda v: tuple(map(int, v.split("."))))]


def test_without_a_driver_it_fails_cleanly(header_sets, tmp_path):
    if shutil.which("nvidia-smi") is not None:
        pytest.skip("this machine has a CUDA driver (the GPU tests below cover it)")
    spec = tmp_path / "spec.txt"
    spec.write_text("plugin M2fMaskedAttention\n")
    done = subprocess.run([str(_compile(_newest(header_sets), tmp_path)), "/nonexistent.so", str(spec)],
                          capture_output=True, text=True)
    assert done.returncode == 1 and "plugin_enqueue: no CUDA device" in done.stderr


@pytest.fixture(scope="module")
def runner(header_sets, tmp_path_factory):
    """run(plugin, fields, inputs, output_shape, dtype) -> (output, median ms) through the compiled program."""
    require_capability("gpu")  # a module fixture runs before the per-test marker check
    major, minor = torch.cuda.get_device_capability()
    out = tmp_path_factory.mktemp("enqueue")
    library = build_library(out / "lib", (10 * major + minor,), str(_newest(header_sets)), use_cmake=False)
    exe = _compile(_newest(header_sets), out)

    def run(plugin: str, fields: dict, inputs: list, output_shape: tuple, dtype: torch.dtype):
        work = Path(out / f"case{len(list(out.glob('case*')))}")
        work.mkdir()
        names = {torch.float32: "float", torch.float16: "half", torch.int32: "int32"}
        lines = [f"plugin {plugin} " + " ".join(f"{k} {v}" for k, v in fields.items()), f"runs {RUNS}"]
        for i, t in enumerate(inputs):
            (work / f"in{i}.bin").write_bytes(t.contiguous().cpu().numpy().tobytes())
            lines.append(f"input {names[t.dtype]} {t.dim()} {' '.join(map(str, t.shape))} {work / f'in{i}.bin'}")
        lines.append(f"output {names[dtype]} {len(output_shape)} {' '.join(map(str, output_shape))} {work / 'out.bin'}")
        (work / "spec.txt").write_text("\n".join(lines) + "\n")
        done = subprocess.run([str(exe), str(library), str(work / "spec.txt")], capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        facts = dict(line.split()[1:3] for line in done.stdout.splitlines() if line.startswith("fact "))
        np_type = np.float16 if dtype == torch.float16 else np.float32
        output = torch.from_numpy(np.fromfile(work / "out.bin", dtype=np_type).reshape(output_shape))
        return output, float(facts.get("median_ms", "nan"))

    return run


def _close(got, expected, dtype, pytorch_fp32=None):
    """``pytorch_fp32``: PyTorch's own fp32 result of the op on the same inputs. Where given, an fp32 kernel may
    differ from float64 by twice what PyTorch's fp32 does: at R50 sizes a sampling position times a map width of
    168 already carries ~1e-5 pixels of fp32 rounding, which neighbouring values differing by O(1) turn into
    ~2e-5 (measured on an H200: the kernels 2.2e-5 and 2.8e-5)."""
    if dtype == torch.float32:
        atol = TOLERANCES["op_fp32_vs_fp64"]
        if pytorch_fp32 is not None:
            atol = max(atol, 2 * (pytorch_fp32.double() - expected).abs().max().item())
        torch.testing.assert_close(got.double(), expected, atol=atol, rtol=0)
    else:
        torch.testing.assert_close(got.double(), expected, atol=TOLERANCES["kernel_fp16_atol"],
                                   rtol=TOLERANCES["kernel_fp16_rtol"])


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,sampling", [(torch.float32, torch.float32), (torch.float16, torch.float16),
                                            (torch.float16, torch.float32)], ids=["fp32", "fp16", "fp16-fp32sampling"])
@pytest.mark.parametrize("fused", [1, 0], ids=["fused", "plain"])
def test_msda_enqueue_at_r50_sizes(runner, fused, dtype, sampling):
    """fp16-fp32sampling: an fp16 graph's value with its coordinate inputs kept fp32 (the fp16_sfp32 kernels)."""
    g = torch.Generator(device="cuda").manual_seed(fused)
    n, m, d, points = 1, 8, 32, 4
    nl, s = len(LEVELS), sum(h * w for h, w in LEVELS)
    lq = s  # the encoder's queries are every position of every level
    value = torch.randn(n, s, m, d, device="cuda", generator=g).to(dtype)
    spatial = torch.tensor(LEVELS, dtype=torch.int32)
    starts = torch.tensor([0, LEVELS[0][0] * LEVELS[0][1], s - LEVELS[2][0] * LEVELS[2][1]], dtype=torch.int32)
    reference_points = torch.rand(n, lq, nl, 2, device="cuda", generator=g).to(sampling)
    offsets = (torch.randn(n, lq, m, nl, points, 2, device="cuda", generator=g) * 4).to(sampling)
    logits = torch.randn(n, lq, m, nl * points, device="cuda", generator=g).to(sampling)
    if fused:
        inputs = [value, spatial, starts, reference_points, offsets, logits]
        expected = msda_reference.fused_reference(value.double(), LEVELS, None, reference_points.double(),
                                                  offsets.double(), logits.double())
        pytorch = msda_reference.fused_reference(value.float(), LEVELS, None, reference_points.float(),
                                                 offsets.float(), logits.float())
    else:
        locations, weights = msda_reference.locations_and_weights(LEVELS, reference_points.float(), offsets.float(),
                                                                  logits.float())
        locations, weights = locations.to(sampling), weights.to(sampling)
        inputs = [value, spatial, starts, locations, weights]
        expected = msda_reference.reference(value.double(), LEVELS, None, locations.double(), weights.double())
        pytorch = msda_reference.reference(value.float(), LEVELS, None, locations.float(), weights.float())
    got, ms = runner(msda_contract.PLUGIN_NAME, {"fused": fused}, inputs, (n, lq, m * d), dtype)
    print(f"M2fMSDeformAttn {'fused' if fused else 'plain'} {str(dtype)[6:]} (sampling {str(sampling)[6:]}) S=Lq={s}: "
          f"{ms:.3f} ms")
    _close(got, expected.cpu(), dtype, pytorch.cpu())


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("level", range(3))
def test_masked_attention_enqueue_at_r50_sizes(runner, level, dtype):
    """Q = 100 queries on each level the decoder attends to, mask logits of random blobs (some rows all blocked)."""
    g = torch.Generator(device="cuda").manual_seed(level)
    n, m, q_len, d = 1, 8, 100, 32
    h, w = LEVELS[2 - level]  # the decoder goes from the coarsest level to the finest
    s = h * w
    q, k, v = (torch.randn(n, m, length, d, device="cuda", generator=g).to(dtype) for length in (q_len, s, s))
    yy, xx = torch.meshgrid(torch.arange(h, device="cuda"), torch.arange(w, device="cuda"), indexing="ij")
    cy = torch.rand(q_len, 1, 1, device="cuda", generator=g) * h
    cx = torch.rand(q_len, 1, 1, device="cuda", generator=g) * w
    radius = torch.rand(q_len, 1, 1, device="cuda", generator=g) * 0.4 * min(h, w)
    mask = (radius - ((yy - cy) ** 2 + (xx - cx) ** 2).sqrt()).reshape(1, q_len, s).float()
    mask[0, :5] = -1.0  # every key blocked: the empty-row rule
    got, ms = runner(ma_contract.PLUGIN_NAME, {}, [q, k, v, mask], (n, m, q_len, d), dtype)
    print(f"M2fMaskedAttention {str(dtype)[6:]} Q={q_len} S={s}: {ms:.3f} ms")
    expected = ma_reference.reference(q.double(), k.double(), v.double(), mask)
    assert torch.isfinite(got).all()
    _close(got, expected.cpu(), dtype)
