"""m2f's portable ONNX export vs HuggingFace transformers' Mask2Former exported the best way it exports (the dynamo
exporter at opset 18, with onnxscript), and both vs PyTorch eager, at one 800x1344 canvas.

Both models: R50 backbone, 133 classes, 100 queries, random weights. Prints export time and node count of each graph,
then ONNX Runtime CPU latency with the same threads for m2f's graph, HF's graph and m2f's PyTorch model, measured
interleaved (m2f, HF, eager, m2f, HF, eager...) after two warm-ups each: medians and the median paired ratios.
The targets of issue 22: m2f's graph has fewer nodes than HF's, takes <= 0.8x its time and <= 0.5x eager's.

    python benchmarks/export_vs_hf.py [--threads 1] [--runs 5] [--out DIR]
"""
from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

H, W = 800, 1344


def export_m2f(out: Path):
    import torch

    from m2f.export.onnx_export import ExportOptions, export_onnx
    from m2f.model.mask2former import Mask2Former
    from m2f.model.presets import get_preset

    torch.manual_seed(0)
    model = Mask2Former(get_preset("coco-panoptic-r50")).eval()
    start = time.perf_counter()
    summary = export_onnx(model, out / "m2f_r50.onnx", ExportOptions(height=H, width=W))
    return model, summary.path, time.perf_counter() - start


def export_hf(out: Path):
    import torch
    import transformers

    backbone = transformers.ResNetConfig(depths=[3, 4, 6, 3], hidden_sizes=[256, 512, 1024, 2048],
                                         layer_type="bottleneck",
                                         out_features=["stage1", "stage2", "stage3", "stage4"])
    cfg = transformers.Mask2FormerConfig(backbone_config=backbone, num_labels=133, num_queries=100)
    torch.manual_seed(0)
    model = transformers.Mask2FormerForUniversalSegmentation(cfg).eval()

    class Raw(torch.nn.Module):  # the two raw outputs, as m2f's graph returns them
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, pixel_values):
            o = self.m(pixel_values=pixel_values)
            return o.class_queries_logits, o.masks_queries_logits

    path = out / "hf_r50_dynamo18.onnx"
    start = time.perf_counter()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(Raw(model), (torch.randn(1, 3, H, W),), str(path), dynamo=True, opset_version=18,
                          input_names=["pixel_values"], output_names=["class_queries_logits", "masks_queries_logits"])
    return path, time.perf_counter() - start


def session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import onnx
    import torch

    from m2f.validate.bench import host_description, interleaved

    torch.set_num_threads(args.threads)
    out = args.out or Path(tempfile.mkdtemp(prefix="m2f_vs_hf_"))
    out.mkdir(parents=True, exist_ok=True)
    model, m2f_path, m2f_export = export_m2f(out)
    hf_path, hf_export = export_hf(out)
    nodes = {name: len(onnx.load(str(p), load_external_data=False).graph.node)
             for name, p in (("m2f", m2f_path), ("hf", hf_path))}

    image = np.random.default_rng(0).integers(0, 256, (1, H, W, 3), dtype=np.uint8)
    m2f_feeds = {"image": image, "valid_size": np.array([[H, W]], np.int32)}
    pixels = ((image.astype(np.float32) - 127.5) / 58.0).transpose(0, 3, 1, 2)
    m2f_session, hf_session = session(m2f_path, args.threads), session(hf_path, args.threads)
    tensor = torch.from_numpy(image.transpose(0, 3, 1, 2).astype(np.float32).copy())

    def eager():  # what the graph computes: normalisation, then the network's raw outputs
        with torch.no_grad():
            model(model.normalize(tensor))

    runs = {"m2f": lambda: m2f_session.run(None, m2f_feeds),
            "hf": lambda: hf_session.run(None, {"pixel_values": pixels}),
            "eager": eager}
    t = interleaved(runs, args.runs)
    print(f"R50, {H}x{W}, ONNX Runtime CPU and PyTorch with {args.threads} thread(s) of {host_description()}, "
          f"{args.runs} interleaved runs")
    print("| | export s | nodes | latency s (median) |")
    print("|---|---|---|---|")
    print(f"| m2f portable (opset 17) | {m2f_export:.1f} | {nodes['m2f']} | {np.median(t['m2f']):.2f} |")
    print(f"| HF transformers, dynamo exporter, opset 18 | {hf_export:.1f} | {nodes['hf']} | "
          f"{np.median(t['hf']):.2f} |")
    print(f"| m2f model, PyTorch eager | — | — | {np.median(t['eager']):.2f} |")
    vs_hf = float(np.median(t["m2f"] / t["hf"]))
    vs_eager = float(np.median(t["m2f"] / t["eager"]))
    print(f"m2f / HF latency (paired median) {vs_hf:.2f}x (target <= 0.8x); m2f / eager {vs_eager:.2f}x "
          f"(target <= 0.5x); nodes m2f / HF {nodes['m2f'] / nodes['hf']:.2f} (target < 1)")
    for other in ("hf", "eager"):  # the spread: the machine's load moves every run
        ratios = np.sort(t["m2f"] / t[other])
        print(f"m2f / {other} per run: " + ", ".join(f"{r:.2f}" for r in ratios))


if __name__ == "__main__":
    main()
