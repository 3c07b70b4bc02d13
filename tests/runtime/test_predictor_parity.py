"""The torch-free runtime vs the PyTorch reference pipeline (model + reference post-processing) on the same image."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from m2f.model.postprocess import panoptic_inference, postprocess
from m2f.model.reference_pipeline import predict
from m2f.runtime import Predictor
from m2f.runtime import postprocess as np_post
from m2f.validate.compare import TOLERANCES



def _image(shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def _iou(a, b):
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else np.logical_and(a, b).sum() / union


@pytest.mark.parametrize("shape", [(96, 128, 3), (120, 90, 3), (60, 200, 3), (17, 23, 3), (70, 50), (80, 100, 4)],
                         ids=["landscape", "portrait", "wide", "tiny-17x23", "grayscale", "rgba"])
def test_runtime_equals_reference(exported, shape):
    model, path = exported
    image = _image(shape, seed=sum(shape))
    result = Predictor(path).predict(image)
    rgb = image if image.ndim == 3 else np.repeat(image[:, :, None], 3, 2)
    ref = predict(model, rgb[:, :, :3])
    assert (result.height, result.width) == shape[:2]
    assert np.array_equal(result.semantic, ref["sem_seg"].argmax(0).numpy())
    ref_seg, ref_segments = ref["panoptic_seg"]
    assert np.array_equal(result.panoptic, ref_seg.numpy())
    ref_areas = {s["id"]: int((ref_seg == s["id"]).sum()) for s in ref_segments}
    assert [(s.id, s.category_id, s.isthing, s.area) for s in result.segments] == \
        [(s["id"], s["category_id"], s["isthing"], ref_areas[s["id"]]) for s in ref_segments]
    ours = {(i.query, i.category_id): i for i in result.instances}
    inst = ref["instances"]
    theirs = {(int(q), int(c)): (float(s), m.numpy()) for q, c, s, m in
              zip(inst["query_ids"], inst["labels"], inst["scores"], inst["masks"])}
    assert ours.keys() == theirs.keys()
    for key, (score, mask) in theirs.items():
        assert abs(ours[key].score - score) <= TOLERANCES["instance_score"]
        assert _iou(ours[key].mask, mask) >= 0.999


def test_cases_have_content(exported):
    model, path = exported
    result = Predictor(path).predict(_image((96, 128, 3), seed=227))
    assert len(result.segments) >= 1 and len(result.instances) >= 1 and len(np.unique(result.semantic)) >= 2


def _blob_case(seed, q=30, k=12, h=24, w=40):
    """Logits with some confident queries and smooth blob masks (a scale of realistic structure)."""
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((q, k + 1)).astype(np.float32)
    conf = rng.choice(q, q // 3, replace=False)
    logits[conf, rng.integers(0, k, conf.size)] += rng.uniform(3, 9, conf.size)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx, r = rng.uniform(0, h, q), rng.uniform(0, w, q), rng.uniform(2, 10, q)
    masks = 8 * (1 - ((yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2) / r[:, None, None] ** 2)
    return logits, (np.maximum(masks, -12) + rng.normal(0, 0.2, masks.shape)).astype(np.float32)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("geometry", [((96, 150), (96, 150)), ((96, 160), (96, 160)), ((80, 150), (57, 107)),
                                      ((96, 140), (150, 219))], ids=["scale1", "scale1-full", "down", "up"])
def test_numpy_postprocess_equals_torch_reference(seed, geometry):
    """Same logits into both post-processings: panoptic (fast scale-1 path and general path) and instance."""
    from m2f.model.presets import get_preset
    import dataclasses

    valid, out_size = geometry
    logits, masks = _blob_case(seed)
    k = logits.shape[1] - 1
    cfg = dataclasses.replace(get_preset("coco-panoptic-r50"), num_classes=k, class_names=[],
                              thing_ids=list(range(6)), object_mask_threshold=0.6, overlap_threshold=0.5)
    outputs = {"pred_logits": torch.from_numpy(logits)[None], "pred_masks": torch.from_numpy(masks)[None]}
    ref = postprocess(outputs, [valid], [out_size], cfg)[0]
    seg, segments = np_post.panoptic(logits, masks, valid, out_size, k, cfg.thing_ids, 0.6, 0.5)
    assert segments == ref["panoptic_seg"][1]
    assert (seg == ref["panoptic_seg"][0].numpy()).mean() >= 0.9999
    sem = np_post.semantic(logits, masks, valid, out_size, before_inference=True)
    assert (sem == ref["sem_seg"].argmax(0).numpy()).mean() >= 0.9999
    inst = np_post.instance(logits, masks, valid, out_size, 100, True, cfg.thing_ids)
    ref_inst = ref["instances"]
    assert sorted(zip(inst["query_ids"].tolist(), inst["labels"].tolist())) == \
        sorted(zip(ref_inst["query_ids"].tolist(), ref_inst["labels"].tolist()))


def test_semantic_only_order(exported):
    """Semantic-only configs compute scores at the canvas before crop + resize (docs/model.md §2)."""
    logits, masks = _blob_case(3)
    from m2f.model.presets import get_preset
    import dataclasses

    cfg = dataclasses.replace(get_preset("ade20k-semantic-r50"), num_classes=logits.shape[1] - 1, class_names=[],
                              thing_ids=[])
    outputs = {"pred_logits": torch.from_numpy(logits)[None], "pred_masks": torch.from_numpy(masks)[None]}
    ref = postprocess(outputs, [(80, 150)], [(57, 107)], cfg)[0]["sem_seg"].argmax(0).numpy()
    got = np_post.semantic(logits, masks, (80, 150), (57, 107), before_inference=False)
    assert (got == ref).mean() >= 0.9999


def test_runtime_without_torch(exported, tmp_path):
    """The runtime runs an ONNX model with torch made unimportable."""
    _, path = exported
    code = ("import sys; sys.modules['torch'] = None\n"
            "import numpy as np\n"
            "from m2f.runtime import Predictor\n"
            f"r = Predictor({str(path)!r}).predict(np.full((50, 70, 3), 128, np.uint8))\n"
            "assert 'torch' not in [k for k, v in sys.modules.items() if v is not None]\n"
            "print(r.semantic.shape, len(r.segments), len(r.instances))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("(50, 70)")


def test_panoptic_helpers_agree_with_reference_on_degenerate_inputs():
    """No query kept, and a single query."""
    from m2f.model.presets import get_preset

    cfg = get_preset("coco-panoptic-r50")
    logits = np.full((3, 134), -5, np.float32)
    logits[:, -1] = 5
    masks = np.random.default_rng(0).standard_normal((3, 8, 10)).astype(np.float32)
    seg, segments = np_post.panoptic(logits, masks, (32, 40), (32, 40), 133, range(80), 0.8, 0.8)
    assert segments == [] and (seg == 0).all()
    logits[1, 5], logits[1, -1] = 20, -5
    seg, segments = np_post.panoptic(logits, masks, (32, 40), (32, 40), 133, range(80), 0.8, 0.0)
    up = torch.nn.functional.interpolate(torch.from_numpy(masks)[None], size=(32, 40), mode="bilinear")[0]
    ref_seg, ref_segments = panoptic_inference(torch.from_numpy(logits), up, cfg)
    assert segments == ref_segments and np.array_equal(seg, ref_seg.numpy())


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("valid", [(96, 150), (93, 157)])
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "duplicated-queries"])
def test_scale1_fast_path_is_exact(seed, valid, ties):
    """At scale 1 the bounds-based fast path gives exactly the reference's segment map and segments, also when two
    kept queries tie (equal scores x probabilities everywhere, different classes: the first query must win)."""
    import dataclasses

    from m2f.model.presets import get_preset

    logits, masks = _blob_case(seed)
    if ties:  # queries 0 and 1: the same mask and the same score, for different classes
        masks[1] = masks[0]
        logits[0, :] = -5.0
        logits[0, 2] = 9.0
        logits[1] = logits[0][[0, 1, 3, 2] + list(range(4, logits.shape[1]))]
    k = logits.shape[1] - 1
    cfg = dataclasses.replace(get_preset("coco-panoptic-r50"), num_classes=k, class_names=[],
                              thing_ids=list(range(6)), object_mask_threshold=0.6, overlap_threshold=0.0)
    outputs = {"pred_logits": torch.from_numpy(logits)[None], "pred_masks": torch.from_numpy(masks)[None]}
    ref_seg, ref_segments = postprocess(outputs, [valid], [valid], cfg)[0]["panoptic_seg"]
    seg, segments = np_post.panoptic(logits, masks, valid, valid, k, cfg.thing_ids, 0.6, 0.0)
    assert segments == ref_segments
    assert np.array_equal(seg, ref_seg.numpy())
