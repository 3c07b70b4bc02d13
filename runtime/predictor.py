"""``Predictor("model.onnx").predict(image)``: the runtime's Python API (no torch).

Pre-processing from the artifact's metadata, a backend (ONNX Runtime or a TensorRT engine), and the
reference-exact post-processing (from raw outputs, or the host step of an in-graph head).
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np

from m2f import contract
from m2f.errors import ArgumentError, M2FError, M2FWarning

from . import head_decoding, postprocess
from .backends import open_backend
from .image_io import read_image, to_rgb8
from .preprocess import Preprocessor
from .results import Instance, Result, Segment

SERVER_SCHEMES = ("http://", "grpc://")


def is_server_url(model) -> bool:
    """True for a served model, ``http://HOST:PORT/MODEL`` or ``grpc://HOST:PORT/MODEL``."""
    return isinstance(model, str) and model.startswith(SERVER_SCHEMES)


def check_probability(value: float | None, what: str) -> None:
    """ArgumentError unless ``value`` is None or within [0, 1]."""
    if value is not None and not 0.0 <= value <= 1.0:
        raise ArgumentError(f"{what} must be between 0 and 1, not {value}")


class Predictor:
    """Run an m2f artifact on images.

    model: ``.onnx`` from ``m2f export``, a TensorRT engine with its ``.json`` sidecar, or a served model's URL
    (``http://HOST:PORT/MODEL``, ``grpc://HOST:PORT/MODEL``: ``m2f serve`` or a repository from ``m2f triton-repo``;
    the server then does pre- and post-processing with its own settings, see ``m2f.serving.client``).
    tasks: which results to compute (default: every task the model produces, or its head's).
    resize: "pil" (reference-exact) or "cv2".
    threshold / overlap_threshold override the metadata's object-mask and overlap thresholds (raw-output models).
    score_threshold: keep only instances scoring at least this (default None: the reference's whole top-k, which
    COCO evaluation needs). threads: CPU threads of the ONNX Runtime backend (default: m2f.threads).
    thing_classes / stuff_classes (names or ids) override which classes are things (m2f.contract.resolve_thing_ids);
    by default the metadata's split, every class a thing when the model's dataset is unknown.
    """

    def __init__(self, model: str | Path, tasks: list[str] | None = None, providers: list[str] | None = None,
                 plugins: str | None = None, resize: str = "pil", threshold: float | None = None,
                 overlap_threshold: float | None = None, score_threshold: float | None = None,
                 threads: int | None = None, thing_classes: tuple[str, ...] = (),
                 stuff_classes: tuple[str, ...] = ()):
        for value, what in ((threshold, "the object-mask threshold"), (overlap_threshold, "the overlap threshold"),
                            (score_threshold, "the score threshold")):
            check_probability(value, what)
        if is_server_url(model):  # a served model does pre- and post-processing on the server
            from m2f.serving.client import ServedModel

            self.path, self.remote = str(model), ServedModel(str(model), threshold, overlap_threshold, resize,
                                                             thing_classes, stuff_classes)
            self.backend = self.remote
        else:
            self.path, self.remote = Path(model), None
            self.backend = open_backend(model, providers=providers, plugins=plugins, threads=threads)
        self._configure(self.backend.meta, self.path, tasks, resize, threshold, overlap_threshold, score_threshold,
                        thing_classes, stuff_classes)

    @classmethod
    def host_steps(cls, meta: contract.Metadata, tasks: list[str] | None = None, resize: str = "pil",
                   threshold: float | None = None, overlap_threshold: float | None = None,
                   score_threshold: float | None = None, thing_classes: tuple[str, ...] = (),
                   stuff_classes: tuple[str, ...] = ()) -> "Predictor":
        """``preprocess`` and ``postprocess`` for the graph ``meta`` describes, without a backend: for a network that
        runs elsewhere (Triton's Python backend around an ONNX Runtime or TensorRT model, or a client of a network
        served raw). Options as the constructor's."""
        self = cls.__new__(cls)
        self.path, self.remote, self.backend = meta.model_name or "model", None, None
        self._configure(meta, self.path, tasks, resize, threshold, overlap_threshold, score_threshold,
                        thing_classes, stuff_classes)
        return self

    def _configure(self, meta: contract.Metadata, model, tasks, resize, threshold, overlap_threshold, score_threshold,
                   thing_classes, stuff_classes) -> None:
        """Everything the host steps need from the metadata and the caller's options."""
        self.meta = meta
        self.head = meta.head
        available = [self.head] if self.head else list(contract.TASKS)  # raw outputs serve every task
        self.tasks = list(tasks or ([self.head] if self.head else meta.tasks))
        bad = [t for t in self.tasks if t not in available]
        if bad:
            raise M2FError(f"{Path(str(model)).name} does not produce {', '.join(bad)} results (it has "
                           f"{', '.join(available)}); pick from those or export another head")
        if self.head and (threshold is not None and self.head == "panoptic"):
            raise M2FError("the panoptic head has its object-mask threshold built in; re-export without --head to "
                           "change it at run time")
        self.preprocess = Preprocessor(meta, resize=resize)
        self.threshold = meta.thresholds.object_mask if threshold is None else threshold
        self.overlap = meta.thresholds.overlap if overlap_threshold is None else overlap_threshold
        self.score_threshold = score_threshold
        self.names = list(meta.class_names)
        # which classes are things: the metadata's split unless the caller overrides it; every class when the dataset
        # is unknown
        source = meta.thing_source
        known = [] if source == contract.THINGS_DEFAULT else list(meta.thing_ids)
        if thing_classes or stuff_classes or not known:
            self.thing_ids, self.thing_source = contract.resolve_thing_ids(
                self.names, meta.num_classes, known, thing_classes, stuff_classes)
        else:
            self.thing_ids, self.thing_source = known, source
        # the dataset's category id of each class (e.g. COCO's 1..200), for files other tools evaluate
        self.category_ids = list(meta.category_ids) if meta.category_ids else None
        self._fit_noted = False

    def predict(self, image: np.ndarray | str | Path) -> Result:
        """One image (a path, or an array: HxW gray, HxWx3 RGB, HxWx4 RGBA; uint8 or uint16) -> Result."""
        return self.predict_batch([image])[0]

    def predict_batch(self, images: list) -> list[Result]:
        """Several images; batched up to the model's batch size. Result.timings: per-image share of each stage."""
        arrays = [read_image(im) if isinstance(im, (str, Path)) else to_rgb8(im) for im in images]
        if self.remote is not None:
            return [self._keep_asked(r) for r in self.remote.predict_batch(arrays)]
        step = self._batch_size()
        results: list[Result] = []
        for start in range(0, len(arrays), step):
            chunk = arrays[start:start + step]
            t0 = time.perf_counter()
            prepared = self.preprocess(chunk)
            t1 = time.perf_counter()
            outputs = self.backend.infer(prepared.feeds)
            t2 = time.perf_counter()
            done = self.postprocess(outputs, prepared)
            t3 = time.perf_counter()
            for r in done:
                r.timings = {"pre": (t1 - t0) / len(chunk), "infer": (t2 - t1) / len(chunk),
                             "post": (t3 - t2) / len(chunk)}
            results += done
        return results

    def postprocess(self, outputs: dict[str, np.ndarray], prepared) -> list[Result]:
        """A backend's outputs for one prepared batch -> a Result per real image of the batch (padding slots of a
        static batch dropped)."""
        done = [self._post({k: v[i] for k, v in outputs.items()}, valid, size)
                for i, (valid, size) in enumerate(zip(prepared.valid_sizes, prepared.original_sizes))]
        for r, valid, fit in zip(done, prepared.valid_sizes, prepared.fit_scales):
            r.input_size, r.fit_scale = valid, fit
        self._note_fit(prepared)
        return done

    def _note_fit(self, prepared) -> None:
        """Warn once per Predictor that images are being shrunk to fit a static canvas."""
        shrunk = [(size, fit) for size, fit in zip(prepared.original_sizes, prepared.fit_scales) if fit < 1.0]
        if shrunk and not self._fit_noted:
            self._fit_noted = True
            (h, w), fit = shrunk[0]
            canvas = prepared.canvas
            warnings.warn(f"a {h}x{w} image does not fit this model's static {canvas[0]}x{canvas[1]} canvas at the "
                          f"reference scale, so it was shrunk further by {fit:.2f} (objects look smaller than the "
                          f"model expects; results record fit_scale); export with --square or --dynamic to avoid it",
                          M2FWarning, stacklevel=3)

    def _batch_size(self) -> int:
        return self.preprocess.batch if not self.meta.input.dynamic else 8

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

    def _keep_asked(self, result: Result) -> Result:
        """A served result, trimmed to this Predictor's tasks and score threshold (the server computes its own)."""
        if "semantic" not in self.tasks:
            result.semantic = None
        if "panoptic" not in self.tasks:
            result.panoptic, result.segments = None, []
        if "instance" not in self.tasks:
            result.instances = []
        elif self.score_threshold is not None:
            result.instances = [i for i in result.instances if i.score >= self.score_threshold]
        return result

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

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()

    def __enter__(self) -> "Predictor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
