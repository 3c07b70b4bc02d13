"""Panoptic post-processing: m2f's runtime (numpy) vs HuggingFace Mask2FormerImageProcessor, identical logits.

An 800x1333 output (canvas 800x1344, so mask logits are 200x336), Q=100 queries, K=133 classes, one CPU thread.
The logits: 20 confident queries (the rest near-uniform over classes, so they are dropped by the 0.8 threshold as in a
trained model) whose masks are smooth blobs over a smoothly varying negative background, plus mild noise. Prints the
median of --runs for both and, as its last line, ``speedup_vs_hf=<x>``.
Usage: python benchmarks/postprocess.py [--runs 7] [--noise 0.05]
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import time  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import numpy as np  # noqa: E402

Q, K, OUT, LOW = 100, 133, (800, 1333), (200, 336)


def make_case(seed: int, noise: float):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((Q, K + 1)).astype(np.float32)
    confident = rng.choice(Q, 20, replace=False)
    logits[confident, rng.integers(0, K, 20)] += 12
    yy, xx = np.mgrid[0:LOW[0], 0:LOW[1]].astype(np.float32)
    cy, cx, r = rng.uniform(0, LOW[0], Q), rng.uniform(0, LOW[1], Q), rng.uniform(10, 60, Q)
    blobs = 10 * (1 - ((yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2) / r[:, None, None] ** 2)
    background = -12 + 4 * np.sin(yy / rng.uniform(20, 80, (Q, 1, 1)) + rng.uniform(0, 6, (Q, 1, 1))) * \
        np.cos(xx / rng.uniform(20, 80, (Q, 1, 1)))
    masks = np.maximum(blobs, background) + rng.normal(0, noise, blobs.shape)
    return logits, masks.astype(np.float32)


def median_time(fn, runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--noise", type=float, default=0.05, help="std of per-pixel noise on the mask logits")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import cv2
    import torch
    import transformers

    from m2f.runtime import postprocess

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    logits, masks = make_case(args.seed, args.noise)

    def ours():
        return postprocess.panoptic(logits, masks, OUT, OUT, K, range(80), 0.8, 0.8)

    processor = transformers.Mask2FormerImageProcessorPil()
    hf_outputs = SimpleNamespace(class_queries_logits=torch.from_numpy(logits)[None],
                                 masks_queries_logits=torch.from_numpy(masks)[None])

    def hf():
        return processor.post_process_panoptic_segmentation(
            hf_outputs, threshold=0.8, overlap_mask_area_threshold=0.8, target_sizes=[OUT], label_ids_to_fuse=set())

    seg, segments = ours()
    hf_result = hf()[0]
    t_ours, t_hf = median_time(ours, args.runs), median_time(hf, args.runs)
    print(f"case: Q={Q}, K={K}, output {OUT[0]}x{OUT[1]}, 1 thread; m2f kept {len(segments)} segments, "
          f"HF {len(hf_result['segments_info'])} (HF's semantics differ: README 'Differences from HuggingFace')")
    print(f"m2f runtime (numpy): {1000 * t_ours:.1f} ms")
    print(f"HF Mask2FormerImageProcessorPil.post_process_panoptic_segmentation: {1000 * t_hf:.1f} ms")
    print(f"speedup_vs_hf={t_hf / t_ours:.2f}")


if __name__ == "__main__":
    main()
