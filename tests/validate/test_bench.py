"""m2f bench: stage statistics from the results' own timings, a JSON record, and FLOPs that match the paper's tool
(fvcore) on the same model."""
import json
import warnings

import pytest

from m2f.cli import main
from m2f.validate.bench import benchmark, host_description, interleaved


def test_interleaved_alternates_the_runs_after_their_warm_ups():
    calls = []
    times = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=3, warmups=2)
    assert calls == ["a", "a", "b", "b"] + ["a", "b"] * 3
    assert [len(t) for t in times.values()] == [3, 3] and all((t >= 0).all() for t in times.values())


X86_AVX512 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512vl

processor\t: 1
model name\t: AMD EPYC 9R14
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512vl
"""
X86_AVX2 = "processor\t: 0\nmodel name\t: AMD EPYC 7R13 Processor\nflags\t\t: fpu sse2 avx avx2 fma\n"
JETSON = ("processor\t: 0\nBogoMIPS\t: 62.50\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32\n"
          "CPU part\t: 0xd42\n")


@pytest.mark.parametrize("cpuinfo, model, vector", [(X86_AVX512, "AMD EPYC 9R14", "AVX-512"),
                                                    (X86_AVX2, "AMD EPYC 7R13 Processor", "AVX2"),
                                                    (JETSON, None, "NEON")], ids=["avx512", "avx2", "arm"])
def test_host_description_names_the_cpu_and_its_vector_width(cpuinfo, model, vector):
    """Benchmark headers say which CPU their figures come from (the same VM ran on AVX2 and AVX-512 hosts): the
    first processor's model name (ARM's cpuinfo has none: the machine's name instead) and the widest vector unit."""
    import os

    text = host_description(cpuinfo)
    assert text.endswith(f", {os.cpu_count()} CPUs, {vector}")
    if model:
        assert text.startswith(model + ",")
    assert host_description("").count(",") >= 1  # no /proc/cpuinfo: still the machine and the CPU count


def test_bench_json_record(bundled_onnx, capsys):
    assert main(["bench", str(bundled_onnx), "--iterations", "4", "--warmup", "1", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    (batch,) = record["batches"]
    assert batch["batch"] == 1 and batch["runs"] == 4 and record["peak_rss_mb"] > 0
    assert record["host"] == host_description()
    for stage in ("pre", "infer", "post", "e2e"):
        s = batch["ms"][stage]
        assert 0 <= s["min"] <= s["median"] <= s["p90"] <= s["p99"] <= s["max"], stage
    assert batch["ms"]["e2e"]["median"] >= batch["ms"]["infer"]["median"]
    assert batch["images_per_s"] == pytest.approx(1000 / batch["ms"]["e2e"]["median"])


def test_stage_latencies_are_the_results_own_timings(tmp_path):
    """The per-stage statistics are the sums of what the results report per image (a stand-in predictor whose
    timings are known exactly); comparing two CPU timings is a benchmark's job, not a test's."""
    from pathlib import Path

    import numpy as np

    from m2f import contract
    from m2f.runtime import Result

    meta = contract.parse((Path(__file__).parents[1] / "data" / "metadata_v1.json").read_text(), "test")
    shares = {"pre": 0.001, "infer": 0.004, "post": 0.0025}

    class StandIn:
        path, backend, calls = "stand-in.onnx", type("Backend", (), {"name": "stand-in"})(), 0

        def predict_batch(self, images):
            self.calls += 1
            return [Result(1, 1, timings=dict(shares)) for _ in images]

    predictor = StandIn()
    predictor.meta = meta
    record = benchmark(predictor, [1], [np.zeros((4, 4, 3), np.uint8)], iterations=7, warmup=2)
    (batch,) = record["batches"]
    assert predictor.calls == 9 and batch["runs"] == 7
    for stage, share in shares.items():
        assert all(batch["ms"][stage][k] == pytest.approx(1000 * share) for k in ("min", "median", "max")), stage
    assert record["backend"] == "stand-in" and record["precision"] == "fp32"


def test_static_batch_is_explained(bundled_onnx, capsys):
    assert main(["bench", str(bundled_onnx), "--batch", "2", "--iterations", "1"]) == 2
    assert "static batch of 1, not 2" in capsys.readouterr().err


def test_flops_match_fvcore_on_the_same_model(tmp_path):
    """fvcore (the paper's counter) on the PyTorch model vs our count on its export, for the op types both count
    (convolutions, linear layers and matrix products, einsum, bilinear upsampling): backbone and pixel decoder agree
    exactly; the decoder within 1% (fvcore estimates einsums through numpy's contraction path: 983000 where the
    product of the dims is 983040 here; a static export also folds what depends only on weights, such as the
    initial predictions from the learned query features)."""
    torch = pytest.importorskip("torch")
    fvcore = pytest.importorskip("fvcore.nn", reason="fvcore is the independent reference (test extra)")
    from m2f.export.onnx_export import ExportOptions, export_onnx
    from m2f.validate.flops import count_flops

    from ..runtime.conftest import confident_model

    model = confident_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysis = fvcore.FlopCountAnalysis(model, (torch.zeros(1, 3, 96, 160),))
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        by_module = analysis.by_module_and_operator()
    counted = ("conv", "linear", "matmul", "einsum", "bmm", "addmm", "upsample_bilinear2d")
    theirs = {stage: sum(v for op, v in by_module[module].items() if op in counted) for stage, module in
              (("backbone", "backbone"), ("pixel decoder", "sem_seg_head.pixel_decoder"),
               ("transformer decoder", "sem_seg_head.predictor"))}
    path = export_onnx(model, tmp_path / "m.onnx", ExportOptions(dynamic=True)).path
    ours = {stage: cost.flops for stage, cost in count_flops(path, 96, 160).items()}
    # the portable graph sums its samples with one MatMul per layer ([.., 1, 4LP] x [.., 4LP, D]) where PyTorch calls
    # grid_sample, which fvcore counts apart (not in `counted`): N * Lq * M * 4LP * D multiply-adds per encoder layer
    layers = [m for name, m in model.named_modules() if name.endswith("self_attn") and hasattr(m, "n_points")]
    queries = sum((96 // stride) * (160 // stride) for stride in (8, 16, 32))
    sampling = sum(a.n_levels * queries * a.n_heads * 4 * a.n_points * (a.value_proj.out_features // a.n_heads)
                   for a in layers)
    assert ours["backbone"] == theirs["backbone"] and ours["pixel decoder"] == theirs["pixel decoder"] + sampling
    assert ours["transformer decoder"] == pytest.approx(theirs["transformer decoder"], rel=0.01)


def test_estimate_names_known_gpus(bundled_onnx, capsys):
    assert main(["bench", str(bundled_onnx), "--iterations", "1", "--warmup", "0", "--estimate", "orin-agx,t4"]) == 0
    out = capsys.readouterr().out
    assert "Jetson AGX Orin 64GB (GPU) fp16: at least" in out and "a roofline lower bound" in out
    assert main(["bench", str(bundled_onnx), "--iterations", "1", "--estimate", "gtx1080"]) == 2
    assert "unknown GPU gtx1080" in capsys.readouterr().err


def test_bench_runs_without_torch(bundled_onnx):
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None; from m2f.cli import main; "
            f"raise SystemExit(main(['bench', {str(bundled_onnx)!r}, '--iterations', '1', '--warmup', '0', "
            "'--flops', '--json']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["flops"]["total_gflops"] > 0
