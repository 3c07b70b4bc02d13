"""Tensor comparison: the one module every parity check uses (validate, the demo, the tests). Numpy only.

``compare(name, got, ref)`` -> ``Comparison``: max / mean / p99 absolute and relative error, cosine similarity,
the fraction of elements outside ``atol + rtol * |ref|``, NaN and Inf counts in ``got``, and by kind: for mask
logits the IoU agreement of the binary masks at the 0.5 threshold (logit > 0), for class logits the top-1 class
agreement per query. ``Comparison.merge`` aggregates several images' comparisons of one output.

Relative error is |got - ref| / max(|ref|, 1e-6 * max |ref|): elements near zero are measured against the tensor's
own scale rather than blowing up. Stage drift (validate's taps) uses ``drift`` = max abs error / max |ref|.

Tolerances live in ``TOLERANCES`` (docs/numerics.md): fp32 op vs float64 reference 1e-5; model fp32 vs PyTorch/HF 1e-4
on logits; fp16 kernels |err| <= 1e-3 + 4e-3 |ref|; INT8 is judged by task metrics only, never elementwise.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

TOLERANCES = {
    "op_fp32_vs_fp64": 1e-5,
    "model_fp32_max_abs": 1e-4,
    "instance_score": 1e-5,
    # fp16 kernel inputs, fp32 accumulation, fp16 output: |got - ref| <= atol + rtol * |ref| against the float64
    # reference on the same fp16 inputs (fp16's epsilon is 9.8e-4: the output rounding alone is half of it)
    "kernel_fp16_atol": 1e-3,
    "kernel_fp16_rtol": 4e-3,
    # a stage tap (validate --taps) drifts when max |got - ref| / max |ref| exceeds this, per graph precision
    "stage_drift_fp32": 1e-4,
    "stage_drift_fp16": 2e-2,
    "stage_drift_int8": 2e-1,
}
HIST_EDGES = np.arange(-12.0, 2.25, 0.25)  # log10 |error| bins of the error histograms
_REL_FLOOR = 1e-6


@dataclass
class Comparison:
    name: str
    elements: int
    max_abs: float
    mean_abs: float
    p99_abs: float
    max_rel: float
    mean_rel: float
    cosine: float
    mismatch: float  # fraction of elements with |got - ref| > atol + rtol * |ref|
    nan: int  # NaN elements in got
    inf: int  # Inf elements in got
    scale: float  # max |ref|
    mask_iou: float | None = None  # masks: mean IoU of got's and ref's binary masks over (image, query) pairs
    mask_iou_min: float | None = None
    top1: float | None = None  # logits: fraction of queries whose best class agrees
    histogram: list[int] = field(default_factory=list)  # counts of log10 |error| in HIST_EDGES bins

    @property
    def drift(self) -> float:
        """max abs error relative to the reference's scale."""
        return self.max_abs / self.scale if self.scale > 0 else (0.0 if self.max_abs == 0 else float("inf"))

    def to_dict(self) -> dict:
        return dict(asdict(self), drift=self.drift)

    @staticmethod
    def merge(parts: list["Comparison"]) -> "Comparison":
        """One output's comparisons over several images: maxima of maxima, element-weighted means; p99 and the
        cosine are the worst image's (a bound, not the pooled percentile)."""
        n = sum(p.elements for p in parts)

        def weighted(attr):
            return sum(getattr(p, attr) * p.elements for p in parts) / max(n, 1)

        def mean_of(attr):
            values = [getattr(p, attr) for p in parts if getattr(p, attr) is not None]
            return float(np.mean(values)) if values else None

        ious = [p.mask_iou_min for p in parts if p.mask_iou_min is not None]
        return Comparison(
            name=parts[0].name, elements=n, max_abs=max(p.max_abs for p in parts), mean_abs=weighted("mean_abs"),
            p99_abs=max(p.p99_abs for p in parts), max_rel=max(p.max_rel for p in parts),
            mean_rel=weighted("mean_rel"), cosine=min(p.cosine for p in parts), mismatch=weighted("mismatch"),
            nan=sum(p.nan for p in parts), inf=sum(p.inf for p in parts), scale=max(p.scale for p in parts),
            mask_iou=mean_of("mask_iou"), mask_iou_min=min(ious) if ious else None, top1=mean_of("top1"),
            histogram=[int(x) for x in np.sum([p.histogram for p in parts], axis=0)])


def _mask_iou(got: np.ndarray, ref: np.ndarray) -> tuple[float, float] | None:
    """Mean and min IoU of (got > 0) vs (ref > 0) over the leading (image, query) pairs whose union is not empty."""
    a = (got > 0).reshape(-1, got.shape[-2] * got.shape[-1])
    b = (ref > 0).reshape(a.shape)
    union = (a | b).sum(1)
    keep = union > 0
    if not keep.any():
        return None
    iou = (a & b).sum(1)[keep] / union[keep]
    return float(iou.mean()), float(iou.min())


def compare(name: str, got: np.ndarray, ref: np.ndarray, atol: float = 0.0, rtol: float = 1e-3,
            kind: str | None = None) -> Comparison:
    """got vs ref (same shape). ``kind``: "masks" (mask logits [..., H, W]) or "logits" (class logits [..., K+1])
    adds the task-level agreement."""
    got, ref = np.asarray(got), np.asarray(ref)
    if got.shape != ref.shape:
        from m2f.errors import ArgumentError

        raise ArgumentError(f"{name}: shapes differ, {list(got.shape)} vs {list(ref.shape)}")
    g, r = got.astype(np.float64).ravel(), ref.astype(np.float64).ravel()
    finite = np.isfinite(g)
    err = np.where(finite, np.abs(g - r), np.inf)
    scale = float(np.abs(r).max()) if r.size else 0.0
    rel = err / np.maximum(np.abs(r), max(_REL_FLOOR * scale, 1e-30))
    gf, rf = np.where(finite, g, 0.0), r
    denom = np.linalg.norm(gf) * np.linalg.norm(rf)
    cosine = float(gf @ rf / denom) if denom > 0 else (1.0 if not gf.any() and not rf.any() else 0.0)
    counts, _ = np.histogram(np.log10(np.maximum(err[finite], 1e-300)), bins=HIST_EDGES)
    counts[0] += int((err[finite] < 10 ** HIST_EDGES[0]).sum())  # exact or tiny errors in the first bin
    with np.errstate(invalid="ignore"):  # inf errors (NaN/Inf outputs) make the percentile's arithmetic inf - inf
        p99 = float(np.percentile(err, 99)) if g.size else 0.0
    result = Comparison(
        name=name, elements=int(g.size), max_abs=float(err.max()) if g.size else 0.0,
        mean_abs=float(err.mean()) if g.size else 0.0, p99_abs=p99, max_rel=float(rel.max()) if g.size else 0.0,
        mean_rel=float(rel[np.isfinite(rel)].mean()) if np.isfinite(rel).any() else 0.0, cosine=cosine,
        mismatch=float((err > atol + rtol * np.abs(r)).mean()) if g.size else 0.0,
        nan=int(np.isnan(g).sum()), inf=int(np.isinf(g).sum()), scale=scale, histogram=counts.tolist())
    if kind == "masks" and got.ndim >= 2:
        agreement = _mask_iou(got, ref)
        if agreement is not None:
            result.mask_iou, result.mask_iou_min = agreement
    elif kind == "logits" and got.ndim >= 1:
        result.top1 = float((got.argmax(-1) == ref.argmax(-1)).mean())
    return result
