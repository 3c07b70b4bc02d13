"""The host steps around a network: pre-processing from the artifact's metadata and the reference-exact
post-processing (from raw outputs, or the host step of an in-graph head), with one options object (no torch).

``HostSteps(meta, options)`` serves every place the network runs somewhere else than in this process: the Predictor
(an ONNX Runtime or TensorRT runner in-process), Triton's Python backend around a served network, a client of a
network served raw.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from m2f import contract
from m2f.errors import ArgumentError, M2FError, M2FWarning

from . import head_decoding, postprocess
from .preprocess import Prepared, Preprocessor
from .results import Instance, Result, Segment

DYNAMIC_BATCH = 8  # images per network call for a dynamic-batch graph


@dataclass(frozen=True)
class HostOptions:
    """How the host steps run; every field's default is the artifact's own setting.

    tasks: which results to compute (default: every task the model produces, or its head's).
    resize: "pil" (reference-exact) or "cv2" (faster, slightly different).
    threshold / overlap_threshold: the object-mask and overlap thresholds (raw-output models).
    score_threshold: keep only instances scoring at least this (None: the reference's whole top-k, which COCO
    evaluation needs).
    thing_classes / stuff_classes: names or ids that are things / stuff (m2f.contract.resolve_thing_ids); by default
    the metadata's split, every class a thing when the model's dataset is unknown.
    """

    tasks: tuple[str, ...] | None = None
    resize: str = "pil"
    threshold: float | None = None
    overlap_threshold: float | None = None
    score_threshold: float | None = None
    thing_classes: tuple[str, ...] = ()
    stuff_classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for value, what in ((self.threshold, "the object-mask threshold"),
                            (self.overlap_threshold, "the overlap threshold"),
                            (self.score_threshold, "the score threshold")):
            if value is not None and not 0.0 <= value <= 1.0:  # NaN fails both comparisons
                raise ArgumentError(f"{what} must be between 0 and 1, not {value}")
        if self.resize not in ("pil", "cv2"):
            raise ArgumentError(f"resize must be 'pil' or 'cv2', not {self.resize!r}")
        unknown = [t for t in self.tasks or () if t not in contract.TASKS]
        if unknown:
            raise ArgumentError(f"task {unknown[0]!r} is not one of {', '.join(contract.TASKS)}")
        for name in ("tasks", "thing_classes", "stuff_classes"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))


class HostSteps:
    """``preprocess`` and ``postprocess`` for the graph ``meta`` (m2f.contract.Metadata) describes; ``name`` names
    the model in messages."""

    def __init__(self, meta: contract.Metadata, options: HostOptions = HostOptions(), name: str | None = None):
        self.meta, self.options = meta, options
        name = name or meta.model_name or "the model"
        self.head = meta.head
        available = [self.head] if self.head else list(contract.TASKS)  # raw outputs serve every task
        self.tasks = list(options.tasks or ([self.head] if self.head else meta.tasks))
        bad = [t for t in self.tasks if t not in available]
        if bad:
            raise M2FError(f"{name} does not produce {', '.join(bad)} results (it has {', '.join(available)}); pick "
                           f"from those or export another head")
        if self.head == "panoptic" and options.threshold is not None:
            raise M2FError("the panoptic head has its object-mask threshold built in; re-export without --head to "
                           "change it at run time")
        self.preprocess = Preprocessor(meta, resize=options.resize)
        self.threshold = meta.thresholds.object_mask if options.threshold is None else options.threshold
        self.overlap = meta.thresholds.overlap if options.overlap_threshold is None else options.overlap_threshold
        self.score_threshold = options.score_threshold
        self.names = list(meta.class_names)
        # which classes are things: the metadata's split unless the caller overrides it; every class when the dataset
        # is unknown
        known = [] if meta.thing_source == contract.THINGS_DEFAULT else list(meta.thing_ids)
        if options.thing_classes or options.stuff_classes or not known:
            self.thing_ids, self.thing_source = contract.resolve_thing_ids(
                self.names, meta.num_classes, known, options.thing_classes, options.stuff_classes)
        else:
            self.thing_ids, self.thing_source = known, meta.thing_source
        # the dataset's category id of each class (e.g. COCO's 1..200), for files other tools evaluate
        self.category_ids = list(meta.category_ids) if meta.category_ids else None
        self._fit_noted = False

    @property
    def batch_size(self) -> int:
        """Images per network call: a static graph's batch, else ``DYNAMIC_BATCH``."""
        return self.preprocess.batch if not self.meta.input.dynamic else DYNAMIC_BATCH

    def postprocess(self, outputs: dict[str, np.ndarray], prepared: Prepared) -> list[Result]:
        """A network's outputs for one prepared batch -> a Result per real image of the batch (padding slots of a
        static batch dropped)."""
        done = [self._post({k: v[i] for k, v in outputs.items()}, valid, size)
                for i, (valid, size) in enumerate(zip(prepared.valid_sizes, prepared.original_sizes))]
        for r, valid, fit in zip(done, prepared.valid_sizes, prepared.fit_scales):
            r.input_size, r.fit_scale = valid, fit
        self._note_fit(prepared)
        return done

    def _note_fit(self, prepared: Prepared) -> None:
        """Warn once that images are being shrunk to fit a static canvas."""
        shrunk = [(size, fit) for size, fit in zip(prepared.original_sizes, prepared.fit_scales) if fit < 1.0]
        if shrunk and not self._fit_noted:
            self._fit_noted = True
            (h, w), fit = shrunk[0]
            canvas = prepared.canvas
            warnings.warn(f"a {h}x{w} image does not fit this model's static {canvas[0]}x{canvas[1]} canvas at the "
                          f"reference scale, so it was shrunk further by {fit:.2f} (objects look smaller than the "
                          f"model expects; results record fit_scale); export with --square or --dynamic to avoid it",
                          M2FWarning, stacklevel=3)

    def _post(self, out: dict[str, np.ndarray], valid, size) -> Result:
        meta = self.meta
        r = Result(height=size[0], width=size[1])
        things = set(self.thing_ids)
        if self.head == "semantic":
            r.semantic = head_decoding.semantic(out["sem_seg"], valid, size)
        elif self.head == "panoptic":
            seg, segments = head_decoding.panoptic(out, self.overlap, things, valid, size)
            r.panoptic, r.segments = seg, self._segments(seg, segments)
        elif self.head == "instance":
            inst = head_decoding.instance(out, "panoptic" in meta.tasks, things, valid, size)
            r.instances = self._instances(inst)
        else:
            logits, masks = out[contract.PRED_LOGITS], out[contract.PRED_MASKS]
            if "semantic" in self.tasks:
                r.semantic = postprocess.semantic(logits, masks, valid, size,
                                                  meta.sem_seg_postprocess_before_inference)
            if "panoptic" in self.tasks:
                seg, segments = postprocess.panoptic(logits, masks, valid, size, meta.num_classes, things,
                                                     self.threshold, self.overlap)
                r.panoptic, r.segments = seg, self._segments(seg, segments)
            if "instance" in self.tasks:
                # the reference keeps only thing classes when panoptic inference is on: in the config, or asked for
                panoptic_on = "panoptic" in meta.tasks or "panoptic" in self.tasks
                inst = postprocess.instance(logits, masks, valid, size, meta.test_topk_per_image, panoptic_on,
                                            things)
                r.instances = self._instances(inst)
        return r

    def _segments(self, seg: np.ndarray, segments: list[dict]) -> list[Segment]:
        areas = np.bincount(seg.ravel(), minlength=len(segments) + 1)
        return [Segment(s["id"], s["category_id"], self.names[s["category_id"]], s["isthing"], int(areas[s["id"]]))
                for s in segments]

    def _instances(self, inst: dict) -> list[Instance]:
        floor = -1.0 if self.score_threshold is None else self.score_threshold
        items = [Instance(int(c), self.names[int(c)], float(s), m, int(q))
                 for c, s, m, q in zip(inst["labels"], inst["scores"], inst["masks"], inst["query_ids"])
                 if s >= floor]
        return sorted(items, key=lambda i: -i.score)

    def keep_asked(self, result: Result) -> Result:
        """A result computed elsewhere (a server, with its own settings) trimmed to these tasks and this score
        threshold."""
        if "semantic" not in self.tasks:
            result.semantic = None
        if "panoptic" not in self.tasks:
            result.panoptic, result.segments = None, []
        if "instance" not in self.tasks:
            result.instances = []
        elif self.score_threshold is not None:
            result.instances = [i for i in result.instances if i.score >= self.score_threshold]
        return result
