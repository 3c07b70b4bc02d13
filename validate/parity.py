"""Accuracy parity of exported models (ONNX Runtime, TensorRT) against PyTorch: ``run_parity``.

Per image, each backend gets the runtime's own feeds, and PyTorch gets the same feeds: the backend's outputs are
compared with PyTorch's (the first ``tensor_images`` images: every output and, when the graph has them, every stage
tap), and its task results (the runtime's numpy post-processing) with PyTorch's (the torch reference
post-processing of PyTorch's outputs). With ground truth, both are scored (PQ / mask AP / mIoU), so a score drop is
the backend's alone. The result is a ``ParityReport`` that ``validate.report`` writes out and whose ``checks`` say
whether the thresholds held.

Stage localisation: taps are compared in pipeline order (backbone, pixel decoder, mask features, each decoder
layer's predictions); the first stage whose drift (max |error| / max |reference|) exceeds the tolerance of the
graph's precision is where the backend starts to differ.
"""
from __future__ import annotations

import heapq
import math
import time
from dataclasses import dataclass, field

import numpy as np

from m2f import contract
from m2f.errors import ArgumentError

from .compare import TOLERANCES, Comparison, compare
from .evaluate import Evaluator, Prediction, from_runtime
from .metrics import PanopticQuality

# What fails a backend unless --fail-on says otherwise, by the precision its metadata records (INT8: task metrics
# only, never elementwise; docs/numerics.md).
DEFAULT_RULES = {"fp32": "nan>0,drift>1e-3,pq_drop>0.5", "fp16": "nan>0,pq_drop>0.5", "int8": "nan>0,pq_drop>1.0",
                 "best": "nan>0,pq_drop>1.0"}
RULE_METRICS = ("pq_drop", "ap_drop", "miou_drop", "max_abs", "drift", "mismatch", "nan", "pixel_disagreement")


@dataclass
class Check:
    rule: str  # e.g. "pq_drop>0.5"
    value: float | None  # the backend's value; None when the metric does not apply (no ground truth...)
    failed: bool


@dataclass
class WorstImage:
    index: int
    name: str
    disagreement: float  # 1 - pixel agreement with PyTorch
    image: np.ndarray
    reference: Prediction
    backend: Prediction


@dataclass
class BackendReport:
    model: str
    runner: str
    precision: str
    flavor: str
    outputs: dict[str, Comparison] = field(default_factory=dict)  # final outputs, merged over images
    taps: dict[str, Comparison] = field(default_factory=dict)
    stages: list[tuple[str, float]] = field(default_factory=list)  # (stage, drift) in pipeline order
    first_drift: str | None = None
    stage_tolerance: float = 0.0
    scores: dict | None = None  # against ground truth
    reference_scores: dict | None = None  # PyTorch's on the same inputs, against ground truth
    agreement: dict = field(default_factory=dict)  # task results against PyTorch's
    infer_ms: float = 0.0  # mean inference time per image (host wall time, copies included)
    worst: list[WorstImage] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not any(c.failed for c in self.checks)

    def metric(self, name: str) -> float | None:
        final = list(self.outputs.values())
        if name == "max_abs":
            return max((c.max_abs for c in final), default=None)
        if name == "drift":
            return max((c.drift for c in final), default=None)
        if name == "mismatch":
            return max((c.mismatch for c in final), default=None)
        if name == "nan":
            return float(sum(c.nan + c.inf for c in final)) if final else None
        if name == "pixel_disagreement":
            agree = self.agreement.get("panoptic_pixels", self.agreement.get("semantic_pixels"))
            return None if agree is None else 100.0 * (1.0 - agree)
        key = {"pq_drop": "PQ", "ap_drop": "AP", "miou_drop": "mIoU"}[name]
        if self.scores and self.reference_scores and key in self.scores:
            return self.reference_scores[key] - self.scores[key]
        if name == "pq_drop" and "panoptic_pq" in self.agreement:
            return 100.0 - self.agreement["panoptic_pq"]  # no ground truth: PyTorch's panoptic result is the truth
        return None


@dataclass
class ParityReport:
    reference: str
    data: str
    images: int
    tensor_images: int
    backends: list[BackendReport]
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(b.passed for b in self.backends)


def parse_rules(text: str) -> list[tuple[str, str, float]]:
    """'pq_drop>0.5,max_abs>1e-3' -> [(metric, op, value)]; ArgumentError naming what is wrong."""
    rules = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        op = ">" if ">" in part else "<" if "<" in part else None
        name, _, value = part.partition(op) if op else (part, "", "")
        if op is None or name.strip() not in RULE_METRICS:
            raise ArgumentError(f"--fail-on rule {part!r} is not METRIC>VALUE or METRIC<VALUE with a metric from "
                                f"{', '.join(RULE_METRICS)}")
        try:
            threshold = float(value)
        except ValueError:
            raise ArgumentError(f"--fail-on rule {part!r}: {value!r} is not a number") from None
        if not math.isfinite(threshold):  # a comparison with nan is never true: the rule could never fail a run
            raise ArgumentError(f"--fail-on rule {part!r}: the threshold must be a finite number")
        rules.append((name.strip(), op, threshold))
    return rules


def _category_map(pred: Prediction) -> np.ndarray | None:
    """Per pixel the category of its panoptic segment (-1 = void)."""
    if pred.panoptic is None:
        return None
    table = np.full(int(pred.panoptic.max(initial=0)) + 1, -1, np.int64)
    for s in pred.segments:
        table[s["id"]] = s["category_id"]
    return table[pred.panoptic]


class _Agreement:
    """Task results of a backend against PyTorch's, accumulated over images."""

    def __init__(self, thing_ids: list[int]):
        self.thing_ids = thing_ids
        self.pq = PanopticQuality()
        self.pixels = {"panoptic_pixels": [0, 0], "semantic_pixels": [0, 0]}
        self.instance_ious: list[float] = []

    def add(self, ref: Prediction, got: Prediction) -> float:
        """Accumulate one image; returns its disagreement (1 - pixel agreement) for picking the worst images."""
        disagreement = 0.0
        if ref.semantic is not None and got.semantic is not None:
            same = int((ref.semantic == got.semantic).sum())
            self.pixels["semantic_pixels"][0] += same
            self.pixels["semantic_pixels"][1] += ref.semantic.size
            disagreement = 1.0 - same / ref.semantic.size
        if ref.panoptic is not None and got.panoptic is not None:
            self.pq.add(ref.panoptic, ref.segments, got.panoptic, got.segments)
            same = int((_category_map(ref) == _category_map(got)).sum())
            self.pixels["panoptic_pixels"][0] += same
            self.pixels["panoptic_pixels"][1] += ref.panoptic.size
            disagreement = 1.0 - same / ref.panoptic.size
        if ref.instances is not None and got.instances is not None:
            for category, score, mask in ref.instances:
                if score < 0.5:
                    continue
                best = 0.0
                for c, _, m in got.instances:
                    if c == category:
                        union = (mask | m).sum()
                        best = max(best, float((mask & m).sum() / union) if union else 1.0)
                self.instance_ious.append(best)
        return disagreement

    def result(self) -> dict:
        out = {k: done / total for k, (done, total) in self.pixels.items() if total}
        if self.pq.tp or self.pq.fp or self.pq.fn:
            out["panoptic_pq"] = self.pq.result(self.thing_ids)["all"]["PQ"]
        if self.instance_ious:
            out["instance_mask_iou"] = float(np.mean(self.instance_ious))
        return out


def _stage_drift(taps: dict[str, Comparison]) -> list[tuple[str, float]]:
    stages: dict[str, float] = {}
    for name, c in taps.items():
        stage = contract.tap_stage(name)
        stages[stage] = max(stages.get(stage, 0.0), c.drift)
    return list(stages.items())


class _BackendRun:
    """One backend's state during a run."""

    def __init__(self, path: str, predictor, reference, want_taps: bool, thing_ids: list[int]):
        self.predictor, self.path = predictor, path
        meta = predictor.meta
        self.taps = [n for n in predictor.backend.output_names if n.startswith(contract.TAP_PREFIX)]
        if want_taps and not self.taps:
            raise ArgumentError(f"{path} has no stage taps; export it with --taps (m2f export ... --taps) or leave "
                                f"out --taps")
        self.report = BackendReport(model=path, runner=predictor.backend.name, precision=meta.precision,
                                    flavor=meta.op_flavor)
        self.report.stage_tolerance = TOLERANCES.get(f"stage_drift_{meta.precision}",
                                                     TOLERANCES["stage_drift_int8"])
        self.parts: dict[str, list[Comparison]] = {}
        self.agreement = _Agreement(thing_ids)
        self.evaluator = self.reference_evaluator = None
        self.worst: list = []  # heap of (disagreement, index, WorstImage)
        self.seconds = 0.0

    def compare_tensors(self, outputs: dict, ref: dict) -> None:
        rtol = 1e-3 if self.report.precision == "fp32" else 2e-2
        for name, got in outputs.items():
            if name not in ref:
                continue
            kind = "masks" if name.endswith(("masks", "pred_masks")) else \
                "logits" if name.endswith(("logits", "pred_logits")) else None
            self.parts.setdefault(name, []).append(compare(name, got, ref[name], rtol=rtol, kind=kind))

    def keep_if_worst(self, item: WorstImage, keep: int) -> None:
        entry = (item.disagreement, item.index, item)
        if len(self.worst) < keep:
            heapq.heappush(self.worst, entry)
        elif item.disagreement > self.worst[0][0]:
            heapq.heapreplace(self.worst, entry)

    def finish(self, images: int, keep: int) -> BackendReport:
        r = self.report
        merged = {name: Comparison.merge(parts) for name, parts in self.parts.items()}
        r.outputs = {n: c for n, c in merged.items() if not n.startswith(contract.TAP_PREFIX)}
        r.taps = {n: c for n, c in merged.items() if n.startswith(contract.TAP_PREFIX)}
        r.stages = _stage_drift(r.taps)
        r.first_drift = next((stage for stage, drift in r.stages if drift > r.stage_tolerance), None)
        r.agreement = self.agreement.result()
        r.scores = self.evaluator.result() if self.evaluator else None
        r.reference_scores = self.reference_evaluator.result() if self.reference_evaluator else None
        r.infer_ms = 1000 * self.seconds / max(images, 1)
        r.worst = [w for _, _, w in sorted(self.worst, key=lambda e: -e[0])][:keep]
        if not r.outputs:
            r.notes.append("no tensors were compared: the reference holds no outputs for this model's feeds")
        return r


def _label_map(data, meta):
    """Dataset contiguous class -> model class (by dataset category ids when the model knows them, else by
    order); None when the dataset's classes are not the model's (then no ground-truth scores)."""
    ids = meta.category_ids
    if ids and data.category_ids and set(data.category_ids) <= set(ids):
        where = {c: i for i, c in enumerate(ids)}
        return np.array([where[c] for c in data.category_ids], np.int64)
    if len(data.class_names) == meta.num_classes:
        return np.arange(len(data.class_names))
    return None


def run_parity(reference, predictors: dict[str, object], data, data_name: str, limit: int | None = None,
               tensor_images: int = 10, taps: bool = False, fail_on: str | None = None, worst: int = 4,
               progress=lambda done, total: None) -> ParityReport:
    """reference: LiveReference / SavedReference / RecordingReference; predictors: {model path: Predictor}."""
    total = len(data) if limit is None else min(limit, len(data))
    runs = [_BackendRun(path, p, reference, taps, reference.thing_ids) for path, p in predictors.items()]
    label_maps = {id(r): _label_map(data, r.predictor.meta) if data.has_ground_truth else None for r in runs}
    for run in runs:
        if label_maps[id(run)] is not None:
            meta = run.predictor.meta
            run.evaluator = Evaluator(meta.num_classes, list(meta.thing_ids))
            run.reference_evaluator = Evaluator(reference.num_classes, reference.thing_ids)
        elif data.has_ground_truth:
            run.report.notes.append("the dataset's classes are not this model's: no ground-truth scores")
    t0 = time.perf_counter()
    for index in range(total):
        image, sample, name = data.item(index)
        for run in runs:
            _one_image(run, reference, index, image, _relabel(sample, label_maps[id(run)]), name,
                       index < tensor_images, worst)
        progress(index + 1, total)
    reports = [run.finish(total, worst) for run in runs]
    report = ParityReport(reference=reference.name, data=data_name, images=total,
                          tensor_images=min(tensor_images, total), backends=reports,
                          seconds=time.perf_counter() - t0)
    for b in reports:
        rules = parse_rules(fail_on or DEFAULT_RULES.get(b.precision, DEFAULT_RULES["fp32"]))
        for metric, op, threshold in rules:
            value = b.metric(metric)
            failed = value is not None and (value > threshold if op == ">" else value < threshold)
            b.checks.append(Check(f"{metric}{op}{threshold:g}", value, failed))
    return report


def _relabel(sample, label_map):
    if sample is None or label_map is None:
        return sample
    from dataclasses import replace

    return replace(sample, labels=label_map[sample.labels])


def _one_image(run: _BackendRun, reference, index, image, sample, name, tensors: bool, keep_worst: int) -> None:
    predictor, meta = run.predictor, run.predictor.meta
    prepared = predictor.preprocess([image])
    start = time.perf_counter()
    outputs = predictor.backend.infer(prepared.feeds)
    run.seconds += time.perf_counter() - start
    got = from_runtime(predictor.postprocess(outputs, prepared)[0])
    kind = meta.input.kind
    ref_pred = reference.task(index, prepared.feeds, kind, prepared.valid_sizes[0], prepared.original_sizes[0])
    if tensors:
        run.compare_tensors(outputs, reference.tensors(index, prepared.feeds, kind, meta.head,
                                                       bool(run.taps)))
    disagreement = run.agreement.add(ref_pred, got)
    if run.evaluator is not None:
        run.evaluator.add(sample, got)
        run.reference_evaluator.add(sample, ref_pred)
    if keep_worst:
        run.keep_if_worst(WorstImage(index, name, disagreement, image, ref_pred, got), keep_worst)
