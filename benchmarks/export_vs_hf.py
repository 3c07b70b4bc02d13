"""m2f's ONNX export vs HuggingFace transformers' Mask2Former exported with torch.onnx.export, same size.

Both models: R50 backbone, 133 classes, 100 queries, random weights, one 800x1344 canvas. Prints export time, node
count, file size and ONNX Runtime CPU latency (median of --runs, after one warm-up) for each, then the ratios.
Usage: python benchmarks/export_vs_hf.py [--threads 2] [--runs 3] [--out DIR]
"""
from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

H, W = 800, 1344


def latency(path: Path, feeds: dict, threads: int, runs: int) -> float:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    sess.run(None, feeds)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, feeds)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def ours(out: Path, threads: int, runs: int) -> dict:
    from m2f.export.onnx_export import ExportOptions, export_onnx
    from m2f.model.mask2former import Mask2Former
    from m2f.model.presets import get_preset

    torch.manual_seed(0)
    model = Mask2Former(get_preset("coco-panoptic-r50")).eval()
    t = time.perf_counter()
    summary = export_onnx(model, out / "m2f_r50.onnx", ExportOptions(height=H, width=W))
    export_s = time.perf_counter() - t
    img = np.random.default_rng(0).integers(0, 256, (1, H, W, 3), dtype=np.uint8)
    feeds = {"image": img, "valid_size": np.array([[H, W]], np.int32)}
    return {"export_s": export_s, "nodes": summary.nodes, "mb": summary.size_bytes / 1e6,
            "latency_s": latency(summary.path, feeds, threads, runs)}


def hf(out: Path, threads: int, runs: int) -> dict:
    import transformers

    backbone = transformers.ResNetConfig(depths=[3, 4, 6, 3], hidden_sizes=[256, 512, 1024, 2048],
                                         layer_type="bottleneck",
                                         out_features=["stage1", "stage2", "stage3", "stage4"])
    cfg = transformers.Mask2FormerConfig(backbone_config=backbone, num_labels=133, num_queries=100)
    torch.manual_seed(0)
    model = transformers.Mask2FormerForUniversalSegmentation(cfg).eval()

    class Raw(torch.nn.Module):  # the two raw outputs, as ours
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, pixel_values):
            o = self.m(pixel_values=pixel_values)
            return o.class_queries_logits, o.masks_queries_logits

    x = torch.randn(1, 3, H, W)
    result: dict = {}
    for exporter, dynamo in (("torchscript", False), ("dynamo", True)):
        path = out / f"hf_r50_{exporter}.onnx"
        t = time.perf_counter()
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(Raw(model), (x,), str(path), dynamo=dynamo, opset_version=17,
                                  input_names=["pixel_values"],
                                  output_names=["class_queries_logits", "masks_queries_logits"])
        except Exception as e:  # HF's export failing is one of the things measured
            result[exporter] = {"error": f"export: {type(e).__name__}: {str(e).splitlines()[0][:200]}"}
            continue
        row = {"export_s": time.perf_counter() - t,
               "nodes": len(onnx.load(str(path), load_external_data=False).graph.node),
               "mb": sum(p.stat().st_size for p in out.glob(path.name + "*")) / 1e6}
        try:
            row["latency_s"] = latency(path, {"pixel_values": x.numpy()}, threads, runs)
        except Exception as e:
            row["error"] = f"ONNX Runtime: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
        result[exporter] = row
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="m2f_vs_hf_"))
    out.mkdir(parents=True, exist_ok=True)
    results = {"m2f": ours(out, args.threads, args.runs)}
    results.update({f"hf-{k}": v for k, v in hf(out, args.threads, args.runs).items()})
    for name, r in results.items():
        parts = [f"{name:16}"]
        if "export_s" in r:
            parts.append(f"export {r['export_s']:6.1f} s  nodes {r['nodes']:6d}  size {r['mb']:7.1f} MB")
        if "latency_s" in r:
            parts.append(f"ORT CPU latency {r['latency_s']:.3f} s ({args.threads} threads)")
        if "error" in r:
            parts.append(f"FAILED: {r['error']}")
        print("  ".join(parts))
    for name, r in results.items():
        if name != "m2f" and "latency_s" in r:
            print(f"latency_ratio_{name}_over_m2f={r['latency_s'] / results['m2f']['latency_s']:.2f}")
        if name != "m2f" and "nodes" in r:
            print(f"nodes_ratio_{name}_over_m2f={r['nodes'] / results['m2f']['nodes']:.2f}")


if __name__ == "__main__":
    main()
