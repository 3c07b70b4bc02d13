"""What backends are judged against: the PyTorch model, live or as a saved reference file.

- ``PyTorchRunner``: the model behind the graph contract (the exporter's own adapter), as a runner with the same
  interface as ONNX Runtime and TensorRT: the same feeds in, the same output names out (stage taps included).
- ``LiveReference``: PyTorch at validation time, on each backend's own feeds (the same canvas, the same image in
  it): tensors through ``PyTorchRunner``, task results through the reference post-processing in torch
  (``m2f.model.postprocess``, the original's order of operations). Differences therefore come from the backend alone,
  not from how the image was placed on a static canvas (README, "Static canvases take every image").
- ``SavedReference``: the same, read from a file written by ``m2f validate --save-reference`` (numpy only), so a
  machine without torch (a Jetson) can validate its engine against PyTorch.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from m2f.errors import ArgumentError, DatasetError
from m2f.runtime.backends.base import Runner
from m2f.runtime.formats import rle_encode

from .evaluate import Prediction

SAVED_FORMAT = 1


class PyTorchRunner(Runner):
    """The PyTorch model with the contract's inputs and outputs (needs torch)."""

    name = "pytorch"

    def __init__(self, model, input_kind: str = "uint8", head: str | None = None, taps: bool = False):
        super().__init__()
        from m2f.export.adapter import GraphAdapter
        from m2f.export.onnx_export import ExportOptions, build_metadata

        self.adapter = GraphAdapter(model, input_kind, head, taps).eval()
        self.input_names, self.output_names = self.adapter.input_names, self.adapter.output_names
        self.meta = build_metadata(model, self.adapter, ExportOptions(input=input_kind, head=head, dynamic=True,
                                                                      taps=taps), (0, 0), {"name": "pytorch"})

    def input_metadata(self) -> dict[str, tuple[str, list]]:
        """Every dim dynamic, named as in a dynamic export."""
        from m2f import contract

        cfg = self.adapter.model.config
        sizes = contract.graph_sizes(None, None, cfg.num_queries, cfg.num_classes, cfg.test_topk_per_image)
        return {s.name: (s.dtype, contract.resolve_dims(s, sizes))
                for s in contract.input_specs(self.adapter.input_kind, self.adapter.head)}

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        with torch.no_grad():
            outputs = self.adapter(*(torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in self.input_names))
        return {name: t.numpy() for name, t in zip(self.output_names, outputs)}


def _fingerprint(feeds: dict[str, np.ndarray]) -> str:
    """A short digest of the network inputs, so a saved task result is only used for the same inputs."""
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(feeds):
        digest.update(name.encode() + str(feeds[name].shape).encode() + np.ascontiguousarray(feeds[name]).tobytes())
    return digest.hexdigest()[:16]


def prediction_to_json(pred: Prediction) -> dict:
    """A task result in a compact, numpy-free form (label maps as RLE per label, instance masks as RLE)."""
    out: dict = {}
    if pred.panoptic is not None:
        out["panoptic"] = {"shape": list(pred.panoptic.shape), "segments": [
            dict(s, rle=rle_encode(pred.panoptic == s["id"])) for s in pred.segments]}
    if pred.semantic is not None:
        out["semantic"] = {"shape": list(pred.semantic.shape), "labels": {
            str(int(c)): rle_encode(pred.semantic == c) for c in np.unique(pred.semantic)}}
    if pred.instances is not None:
        out["instances"] = [{"category_id": int(c), "score": float(s), "rle": rle_encode(m)}
                            for c, s, m in pred.instances]
    return out


def prediction_from_json(data: dict) -> Prediction:
    from m2f.runtime.formats import rle_decode

    pred = Prediction()
    if "panoptic" in data:
        seg = np.zeros(data["panoptic"]["shape"], np.int32)
        for s in data["panoptic"]["segments"]:
            seg[rle_decode(s["rle"])] = s["id"]
        pred.panoptic, pred.segments = seg, [{k: v for k, v in s.items() if k != "rle"}
                                             for s in data["panoptic"]["segments"]]
    if "semantic" in data:
        sem = np.zeros(data["semantic"]["shape"], np.int64)
        for label, rle in data["semantic"]["labels"].items():
            sem[rle_decode(rle)] = int(label)
        pred.semantic = sem
    if "instances" in data:
        pred.instances = [(i["category_id"], i["score"], rle_decode(i["rle"])) for i in data["instances"]]
    return pred


class LiveReference:
    """PyTorch now: ``tensors`` on a backend's feeds, ``task`` through the reference pipeline (needs torch)."""

    name = "pytorch"

    def __init__(self, model):
        self.model = model
        self._runners: dict[tuple, PyTorchRunner] = {}

    def tensors(self, index: int, feeds: dict[str, np.ndarray], input_kind: str, head: str | None,
                taps: bool) -> dict[str, np.ndarray]:
        key = (input_kind, head, taps)
        if key not in self._runners:
            self._runners[key] = PyTorchRunner(self.model, input_kind, head, taps)
        return self._runners[key].infer(feeds)

    def task(self, index: int, feeds: dict[str, np.ndarray], input_kind: str, valid: tuple[int, int],
             size: tuple[int, int]) -> Prediction:
        """PyTorch's raw outputs on these feeds (one image), post-processed by the torch reference at ``size``."""
        import torch

        from m2f import contract
        from m2f.model.postprocess import postprocess

        from .evaluate import from_reference

        outputs = self.tensors(index, feeds, input_kind, None, False)
        raw = {k: torch.from_numpy(outputs[k][:1]) for k in (contract.PRED_LOGITS, contract.PRED_MASKS)}
        return from_reference(postprocess(raw, [valid], [size], self.model.config)[0])

    @property
    def thing_ids(self) -> list[int]:
        return list(self.model.config.thing_ids)

    @property
    def num_classes(self) -> int:
        return self.model.config.num_classes


class RecordingReference:
    """Wraps a LiveReference and records what it returns, for ``--save-reference``."""

    def __init__(self, live: LiveReference, tensor_images: int):
        self.live, self.tensor_images, self.name = live, tensor_images, live.name
        self.saved_tensors: dict[str, np.ndarray] = {}
        self.saved_tasks: dict[int, dict] = {}

    def tensors(self, index, feeds, input_kind, head, taps):
        out = self.live.tensors(index, feeds, input_kind, head, taps)
        for name, array in {**feeds, **out}.items():
            self.saved_tensors[f"{index}/{name}"] = array
        return out

    def task(self, index, feeds, input_kind, valid, size):
        pred = self.live.task(index, feeds, input_kind, valid, size)
        self.saved_tasks[index] = {"feeds": _fingerprint(feeds), **prediction_to_json(pred)}
        return pred

    @property
    def thing_ids(self) -> list[int]:
        return self.live.thing_ids

    @property
    def num_classes(self) -> int:
        return self.live.num_classes

    def save(self, path: Path) -> None:
        from m2f.fileio import atomic_path

        header = {"format": SAVED_FORMAT, "thing_ids": self.thing_ids, "num_classes": self.num_classes,
                  "tasks": {str(k): v for k, v in self.saved_tasks.items()}}
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:  # savez appends .npz to a bare name; a file object keeps the name
                np.savez_compressed(f, __header__=np.frombuffer(json.dumps(header).encode(), np.uint8),
                                    **self.saved_tensors)


class SavedReference:
    """A file written by ``--save-reference`` (numpy only)."""

    name = "pytorch (saved)"

    def __init__(self, path: str | Path):
        path = Path(path)
        try:
            self.arrays = np.load(path, allow_pickle=False)
            header = json.loads(bytes(self.arrays["__header__"]).decode())
        except (OSError, ValueError, KeyError) as e:
            raise DatasetError(f"{path} is not a reference saved by 'm2f validate --save-reference' "
                               f"({type(e).__name__})") from None
        if header.get("format") != SAVED_FORMAT:
            raise DatasetError(f"{path} is a saved reference of format {header.get('format')!r}; this m2f reads "
                               f"format {SAVED_FORMAT}: save it again")
        self.thing_ids, self.num_classes = header["thing_ids"], header["num_classes"]
        self.tasks = header["tasks"]
        self.path = path

    def tensors(self, index, feeds, input_kind, head, taps) -> dict[str, np.ndarray]:
        """The saved outputs for image ``index``, if they were saved for these very feeds (else empty)."""
        prefix = f"{index}/"
        saved = {k[len(prefix):]: self.arrays[k] for k in self.arrays.files if k.startswith(prefix)}
        if any(name not in saved or saved[name].shape != array.shape or not np.array_equal(saved[name], array)
               for name, array in feeds.items()):
            return {}
        return {k: v for k, v in saved.items() if k not in feeds}

    def task(self, index, feeds, input_kind, valid, size) -> Prediction:
        saved = self.tasks.get(str(index))
        if saved is None:
            raise ArgumentError(f"{self.path} holds results for {len(self.tasks)} images, not for image {index}; "
                                f"validate on the same --data and --limit it was saved with")
        if saved["feeds"] != _fingerprint(feeds):
            raise ArgumentError(f"{self.path} was saved for other network inputs than this model's (another canvas "
                                f"or input kind); save the reference with a model of the same input shape")
        return prediction_from_json(saved)
