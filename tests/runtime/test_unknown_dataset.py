"""A raw-output model of a dataset m2f does not know (no class split, only semantic inference turned on, as a
custom detectron2 config or a HuggingFace directory gives): it serves panoptic and instance results too, every class
is a thing unless --thing-classes / --stuff-classes say otherwise, and the results equal the reference pipeline's
with the same split."""
import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

from m2f.assets import DEFAULT_PRESET, DEFAULT_WEIGHTS, sample_images
from m2f.cli import main
from m2f.contract import THINGS_DEFAULT, resolve_thing_ids
from m2f.errors import ArgumentError
from m2f.export.onnx_export import ExportOptions, export_onnx
from m2f.model.checkpoint import load_checkpoint
from m2f.model.reference_pipeline import predict
from m2f.runtime import HostOptions, Predictor

NAMES = ["robot", "pallet", "person", "box", "forklift", "floor", "wall", "shelf"]  # a dataset m2f does not know


@pytest.fixture(scope="module")
def custom(tmp_path_factory):
    """The bundled weights under a custom config: unknown classes, semantic inference only."""
    model = load_checkpoint(DEFAULT_WEIGHTS, preset=DEFAULT_PRESET)
    model.config = dataclasses.replace(model.config, class_names=list(NAMES), thing_ids=[], category_ids=[],
                                       instance_on=False, panoptic_on=False)
    path = tmp_path_factory.mktemp("custom") / "custom.onnx"
    export_onnx(model, path, ExportOptions(height=192, width=256))
    return model, path


def _reference(model, image, thing_ids):
    cfg = dataclasses.replace(model.config, thing_ids=sorted(thing_ids), instance_on=True, panoptic_on=True,
                              sem_seg_postprocess_before_inference=model.config.postprocess_before_inference)
    original, model.config = model.config, cfg
    try:
        with torch.no_grad():
            return predict(model, image)
    finally:
        model.config = original


def test_metadata_says_every_class_is_a_thing(custom):
    import onnx

    _, path = custom
    meta = json.loads(onnx.load(str(path)).metadata_props[0].value)
    assert meta["tasks"] == ["semantic"]
    assert meta["thing_ids"] == list(range(len(NAMES))) and meta["thing_source"] == THINGS_DEFAULT


@pytest.mark.parametrize("stuff", [(), ("floor", "wall", "7")])
def test_panoptic_and_instance_on_a_semantic_only_model(custom, stuff):
    model, path = custom
    image = np.asarray(Image.open(sample_images()[0]).convert("RGB"))
    things = set(range(len(NAMES))) - {NAMES.index(s) if not s.isdigit() else int(s) for s in stuff}
    with Predictor(path, HostOptions(tasks=("panoptic", "instance"), stuff_classes=stuff), threads=1) as predictor:
        got = predictor.predict(image)
    ref = _reference(model, image, things)
    ref_seg, ref_segments = ref["panoptic_seg"]
    assert np.array_equal(got.panoptic, ref_seg.numpy())
    assert [(s.id, s.category_id, s.isthing) for s in got.segments] == \
        [(s["id"], s["category_id"], s["isthing"]) for s in ref_segments]
    assert got.segments and all(s.isthing == (s.category_id in things) for s in got.segments)
    assert sorted((i.query, i.category_id) for i in got.instances) == \
        sorted((int(q), int(c)) for q, c in zip(ref["instances"]["query_ids"], ref["instances"]["labels"]))


def test_infer_command(custom, tmp_path):
    _, path = custom
    out = tmp_path / "out"
    assert main(["infer", str(path), str(sample_images()[0]), "-o", str(out), "--task", "panoptic", "--task",
                 "instance", "--thing-classes", "robot,pallet", "--thing-classes", "2", "--no-overlay",
                 "--threads", "1"]) == 0
    info = json.loads((out / "000000.segments.json").read_text())["segments_info"]
    assert info and all(s["isthing"] == (s["class"] in (0, 1, 2)) for s in info)
    assert {s["class"] for s in info} - {0, 1, 2}, "the image has stuff segments too"


def test_resolve_thing_ids():
    assert resolve_thing_ids(NAMES, 8, []) == (list(range(8)), THINGS_DEFAULT)
    assert resolve_thing_ids(NAMES, 8, [0, 1], stuff_classes=("pallet",)) == ([0], "--stuff-classes")
    assert resolve_thing_ids(NAMES, 8, [], thing_classes=("box", "0")) == ([0, 3], "--thing-classes")
    with pytest.raises(ArgumentError, match="'boat' is neither a class name of this model nor an id below 8"):
        resolve_thing_ids(NAMES, 8, [], thing_classes=("boat",))
    with pytest.raises(ArgumentError, match="name the same class box"):
        resolve_thing_ids(NAMES, 8, [], thing_classes=("box",), stuff_classes=("3",))
