"""The bundled model exported with each plugin flavor gives the PyTorch reference pipeline's panoptic, semantic and
instance results, and the three flavors give identical panoptic segments, on the first images of the demo's
held-out set and the bundled samples (plugin nodes run as m2f.runtime.custom_ops in ONNX Runtime)."""
import numpy as np
import pytest
import torch
from PIL import Image

from m2f.assets import DEFAULT_PRESET, DEFAULT_WEIGHTS, sample_images
from m2f.assets import HELD_OUT_SEED
from m2f.datasets.synthetic import generate
from m2f.export.onnx_export import ExportOptions, export_onnx
from m2f.model.checkpoint import load_checkpoint
from m2f.model.reference_pipeline import predict
from m2f.runtime import Predictor

HELD_OUT = 3  # the first images of the demo's held-out set
FLAVORS = ("portable", "m2f", "trt-builtin")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    annotations = generate(tmp_path_factory.mktemp("held-out"), HELD_OUT, seed=HELD_OUT_SEED)
    paths = sorted((annotations.parent / "images").glob("*.png")) + sample_images()
    assert len(paths) == HELD_OUT + 3
    return [(p.name, np.asarray(Image.open(p).convert("RGB"))) for p in paths]


@pytest.fixture(scope="module")
def predictions(images, tmp_path_factory):
    """{flavor: [Result per image]} for the bundled model exported as the demo exports it (static 192x256)."""
    model = load_checkpoint(DEFAULT_WEIGHTS, preset=DEFAULT_PRESET)
    folder = tmp_path_factory.mktemp("flavors")
    results = {}
    for flavor in FLAVORS:
        path = export_onnx(model, folder / f"{flavor}.onnx", ExportOptions(height=192, width=256, flavor=flavor)).path
        with Predictor(path, threads=1) as predictor:
            results[flavor] = [predictor.predict(image) for _, image in images]
    with torch.no_grad():
        results["reference"] = [predict(model, image) for _, image in images]
    return results


def _segments(result):
    return [(s.id, s.category_id, s.isthing, s.area) for s in result.segments]


@pytest.mark.parametrize("flavor", ["m2f", "trt-builtin"])
def test_flavor_equals_portable(predictions, images, flavor):
    assert sum(len(r.segments) for r in predictions["portable"]) >= 2 * len(images), "the images should have content"
    for (name, _), ours, portable in zip(images, predictions[flavor], predictions["portable"]):
        assert np.array_equal(ours.panoptic, portable.panoptic), name
        assert _segments(ours) == _segments(portable), name


@pytest.mark.parametrize("flavor", FLAVORS)
def test_flavor_reproduces_reference(predictions, images, flavor):
    for (name, _), ours, ref in zip(images, predictions[flavor], predictions["reference"]):
        ref_seg, ref_segments = ref["panoptic_seg"]
        assert np.array_equal(ours.panoptic, ref_seg.numpy()), name
        assert [(s.id, s.category_id) for s in ours.segments] == [(s["id"], s["category_id"]) for s in ref_segments]
        assert np.array_equal(ours.semantic, ref["sem_seg"].argmax(0).numpy()), name
        assert sorted((i.query, i.category_id) for i in ours.instances) == \
            sorted((int(q), int(c)) for q, c in zip(ref["instances"]["query_ids"], ref["instances"]["labels"]))
