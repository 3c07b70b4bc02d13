"""In-graph post-processing heads + the numpy host step vs the PyTorch reference post-processing.

At scale 1 (the original image is the network input: output size = valid size) head + host step must equal the
reference: identical semantic maps and panoptic segments, instance sets equal with scores within 1e-5."""
import dataclasses

import numpy as np
import pytest
import torch

from m2f import contract
from m2f.export.onnx_export import ExportOptions, export_onnx
from m2f.model.postprocess import postprocess
from m2f.runtime import head_decoding
from m2f.validate.compare import TOLERANCES

from ..model.helpers import random_model, tiny_config
from .helpers import detectron2_padded, random_batch, session

CANVAS = (96, 128)
VALID = [[96, 128], [70, 100]]  # two images, the second smaller than the canvas


def confident_model(variant: str):
    """Random tiny model whose class predictions are confident, so that segments survive the thresholds, but not
    saturated: with probabilities and sigmoids of exactly 1.0, score x sigmoid ties exactly and one-ulp differences
    between runtimes decide the argmax, which would test float noise, not the heads."""
    seed = {"things": 0, "mixed": 7, "stuff": 6, "stuff-merge": 4}[variant]
    cfg = dataclasses.replace(tiny_config("resnet"), object_mask_threshold=0.5, overlap_threshold=0.3)
    model = random_model(cfg, seed=seed)
    with torch.no_grad():
        pred = model.sem_seg_head.predictor
        pred.class_embed.weight.mul_(15)
        pred.mask_embed.layers[2].weight.mul_(5)
        if variant == "stuff-merge":
            pred.class_embed.bias[3] += 4.0  # more queries say stuff class 3: their segments merge into one
    return model


@pytest.fixture(scope="module", params=["things", "mixed", "stuff", "stuff-merge"])
def case(request):
    model = confident_model(request.param)
    image, valid = random_batch(2, *CANVAS, VALID, seed=1)
    with torch.no_grad():
        outputs = model(detectron2_padded(model, image, valid))
    sizes = [tuple(v) for v in valid.tolist()]
    reference = postprocess(outputs, sizes, sizes, model.config)
    return model, image, valid, reference


def _export(model, head, tmp_path):
    path = export_onnx(model, tmp_path / f"{head}.onnx", ExportOptions(height=CANVAS[0], width=CANVAS[1], batch=2,
                                                                       head=head)).path
    sess = session(path)
    _check_contract(sess, model.config, head)
    return sess, [o.name for o in sess.get_outputs()]


def _check_contract(sess, cfg, head):
    """The graph's I/O is what m2f.contract says: names, dtypes and shapes (read back through ONNX Runtime)."""
    sizes = contract.graph_sizes(2, CANVAS, cfg.num_queries, cfg.num_classes, cfg.test_topk_per_image)
    ort_type = {"float32": "tensor(float)", "int32": "tensor(int32)", "uint8": "tensor(uint8)", "bool": "tensor(bool)"}
    for got, spec in zip(sess.get_inputs() + sess.get_outputs(),
                         contract.input_specs("uint8", head) + contract.output_specs(head)):
        assert (got.name, got.type, got.shape) == \
            (spec.name, ort_type[spec.dtype], contract.resolve_dims(spec, sizes)), got


def test_semantic_head(case, tmp_path):
    model, image, valid, reference = case
    sess, names = _export(model, "semantic", tmp_path)
    (sem_seg,) = sess.run(None, {"image": image, "valid_size": valid})
    assert names == ["sem_seg"] and sem_seg.dtype == np.int32
    for i, v in enumerate(valid.tolist()):
        got = head_decoding.semantic(sem_seg[i], v, v)
        want = reference[i]["sem_seg"].argmax(0).numpy()
        assert got.shape == want.shape
        assert (got == want).mean() >= 0.999


def test_panoptic_head(case, tmp_path):
    model, image, valid, reference = case
    sess, names = _export(model, "panoptic", tmp_path)
    outs = dict(zip(names, sess.run(None, {"image": image, "valid_size": valid})))
    total = 0
    for i, v in enumerate(valid.tolist()):
        seg, segments = head_decoding.panoptic({k: o[i] for k, o in outs.items()}, model.config.overlap_threshold,
                                               model.config.thing_ids, v, v)
        ref_seg, ref_segments = reference[i]["panoptic_seg"]
        assert segments == ref_segments
        # discrete maps: a small pixel budget for near-ties that float noise may flip (docs/model.md §4.1)
        assert (seg == ref_seg.numpy()).mean() >= 0.999
        total += len(segments)
    assert total > 0  # the case really exercises segment logic


def test_instance_head(case, tmp_path):
    model, image, valid, reference = case
    sess, names = _export(model, "instance", tmp_path)
    outs = dict(zip(names, sess.run(None, {"image": image, "valid_size": valid})))
    k = min(model.config.test_topk_per_image, model.config.num_queries * model.config.num_classes)
    assert outs["inst_scores"].shape == (2, k) and outs["inst_labels"].dtype == np.int32
    for i, v in enumerate(valid.tolist()):
        got = head_decoding.instance({k_: o[i] for k_, o in outs.items()}, model.config.panoptic_on,
                                     model.config.thing_ids, v, v)
        ref = reference[i]["instances"]
        got_by_key = {(int(q), int(lab)): (s, m) for q, lab, s, m in
                      zip(got["query_ids"], got["labels"], got["scores"], got["masks"])}
        ref_by_key = {(int(q), int(lab)): (float(s), m.numpy()) for q, lab, s, m in
                      zip(ref["query_ids"], ref["labels"], ref["scores"], ref["masks"])}
        assert got_by_key.keys() == ref_by_key.keys() and len(got_by_key) > 0
        for key, (score, mask) in ref_by_key.items():
            assert abs(got_by_key[key][0] - score) <= TOLERANCES["instance_score"]
            inter = np.logical_and(got_by_key[key][1], mask).sum()
            union = np.logical_or(got_by_key[key][1], mask).sum()
            assert union == 0 or inter / union >= 0.999
