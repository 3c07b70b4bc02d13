"""Kernel speed on a GPU: the Triton kernels vs the PyTorch references at Mask2Former R50 sizes for an 800x1344
input, fp16.

- Deformable attention (pixel-decoder encoder): value over the 1/8, 1/16, 1/32 levels (100x168, 50x84, 25x42;
  S = 22,050), Lq = S queries, M = 8 heads, D = 32, P = 4, vs ``reference`` (grid_sample per level). Also the
  fused kernel (raw offsets and logits in) vs the unfused pipeline it replaces.
- Masked attention (transformer decoder): Q = 100, M = 8, D = 32 at each level, mask logits from random blobs
  (about half the keys blocked), vs ``scaled_dot_product_attention`` with a boolean mask (empty rows opened as the
  reference does).
Prints ms (median of --runs, CUDA events), effective GB/s (minimal bytes: every input read once, output written
once) and the speed ratio; the memory bandwidth a device-to-device copy reaches in the same run is the yardstick
for "% of measured bandwidth".
Usage: python benchmarks/kernels.py [--runs 50]   (needs a CUDA GPU and Triton)
"""
import argparse
import sys

import torch


def timed(fn, runs: int) -> float:
    """Median milliseconds of ``fn()`` over ``runs`` launches, after warm-up."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def nbytes(*tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def copy_bandwidth(runs: int) -> float:
    """GB/s of a 1 GiB device-to-device copy (read + write)."""
    src = torch.empty(1 << 29, dtype=torch.float16, device="cuda")
    dst = torch.empty_like(src)
    ms = timed(lambda: dst.copy_(src), runs)
    return 2 * nbytes(src) / ms / 1e6


def report(name: str, ms: float, ref_ms: float, moved: int, bandwidth: float) -> None:
    gbs = moved / ms / 1e6
    print(f"{name:<34} {ms:8.3f} ms  ref {ref_ms:8.3f} ms  speedup {ref_ms / ms:5.2f}x  "
          f"{gbs:7.1f} GB/s ({100 * gbs / bandwidth:4.1f}% of copy bandwidth)")


def bench_msda(runs: int, bandwidth: float) -> None:
    from m2f.plugins.ms_deform_attn import kernel, reference

    shapes = [(100, 168), (50, 84), (25, 42)]
    s, m, d, levels, points = sum(h * w for h, w in shapes), 8, 32, 3, 4
    g = torch.Generator(device="cuda").manual_seed(0)
    value = torch.randn(1, s, m, d, device="cuda", dtype=torch.float16, generator=g)
    locations = torch.rand(1, s, m, levels, points, 2, device="cuda", dtype=torch.float16, generator=g)
    weights = torch.rand(1, s, m, levels, points, device="cuda", generator=g).softmax(-1).half()
    shapes_t = torch.tensor(shapes, dtype=torch.int32, device="cuda")
    out = kernel.forward_triton(value, shapes_t, None, locations, weights)
    ms = timed(lambda: kernel.forward_triton(value, shapes_t, None, locations, weights), runs)
    ref_ms = timed(lambda: reference.reference(value, shapes, None, locations, weights), runs)
    report("deformable attention (fp16)", ms, ref_ms, nbytes(value, locations, weights, out), bandwidth)

    ref_points = torch.rand(1, s, levels, 2, device="cuda", dtype=torch.float16, generator=g)
    offsets = torch.randn(1, s, m, levels, points, 2, device="cuda", dtype=torch.float16, generator=g)
    logits = torch.randn(1, s, m, levels * points, device="cuda", dtype=torch.float16, generator=g)
    fused_ms = timed(lambda: kernel.forward_triton_fused(value, shapes_t, None, ref_points, offsets, logits), runs)
    unfused_ms = timed(lambda: reference.fused_reference(value, shapes, None, ref_points, offsets, logits), runs)
    report("deformable attention fused (fp16)", fused_ms, unfused_ms,
           nbytes(value, ref_points, offsets, logits, out), bandwidth)


def bench_masked_attention(runs: int, bandwidth: float) -> None:
    from m2f.plugins.masked_attention import kernel, reference

    g = torch.Generator(device="cuda").manual_seed(0)
    for h, w in [(25, 42), (50, 84), (100, 168)]:
        s, q, m, d = h * w, 100, 8, 32
        qt = torch.randn(1, m, q, d, device="cuda", dtype=torch.float16, generator=g)
        kt, vt = (torch.randn(1, m, s, d, device="cuda", dtype=torch.float16, generator=g) for _ in range(2))
        yy, xx = torch.meshgrid(torch.arange(h, device="cuda"), torch.arange(w, device="cuda"), indexing="ij")
        cy = torch.rand(q, 1, 1, device="cuda", generator=g) * h
        cx = torch.rand(q, 1, 1, device="cuda", generator=g) * w
        radius = torch.rand(q, 1, 1, device="cuda", generator=g) * 0.5 * min(h, w) + 2
        logits = (radius - ((yy - cy) ** 2 + (xx - cx) ** 2).sqrt()).reshape(1, q, s).float()
        out = kernel.forward_triton(qt, kt, vt, logits)
        ms = timed(lambda: kernel.forward_triton(qt, kt, vt, logits), runs)

        def sdpa():
            allowed = ~reference.blocked_keys(logits)[:, None]
            return torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, attn_mask=allowed)

        ref_ms = timed(sdpa, runs)
        report(f"masked attention S={s} (fp16)", ms, ref_ms, nbytes(qt, kt, vt, logits, out), bandwidth)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("benchmarks/kernels.py needs a CUDA GPU; none is visible to PyTorch", file=sys.stderr)
        return 2
    bandwidth = copy_bandwidth(args.runs)
    print(f"{torch.cuda.get_device_name()}: device-to-device copy {bandwidth:.0f} GB/s")
    bench_msda(args.runs, bandwidth)
    bench_masked_attention(args.runs, bandwidth)
    return 0


if __name__ == "__main__":
    sys.exit(main())
