"""Reference post-processing vs naive numpy implementations written from docs/model.md §2 (independent code)."""
import dataclasses

import numpy as np
import pytest
import torch

from m2f.model.presets import get_preset
from m2f.model.postprocess import instance_inference, panoptic_inference, postprocess, semantic_inference


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def naive_resize(a, out_h, out_w):
    """Bilinear, align_corners=False (half-pixel centres, negative source clamped to 0), on [C, H, W]."""
    c, h, w = a.shape

    def taps(n_out, n_in):
        src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0)
        i0 = np.floor(src).astype(int)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, src - i0

    y0, y1, ly = taps(out_h, h)
    x0, x1, lx = taps(out_w, w)
    top = a[:, y0][:, :, x0] * (1 - lx) + a[:, y0][:, :, x1] * lx
    bottom = a[:, y1][:, :, x0] * (1 - lx) + a[:, y1][:, :, x1] * lx
    return top * (1 - ly[:, None]) + bottom * ly[:, None]


def naive_panoptic(cls, masks, k, things, obj_thr, overlap_thr):
    probs = softmax(cls)
    scores, labels = probs.max(-1), probs.argmax(-1)
    p = sigmoid(masks)
    keep = [i for i in range(len(cls)) if labels[i] != k and scores[i] > obj_thr]
    seg = np.zeros(masks.shape[1:], np.int32)
    segments, stuff, next_id = [], {}, 0
    if not keep:
        return seg, segments
    ids = np.argmax(np.stack([scores[i] * p[i] for i in keep]), 0)
    for j, i in enumerate(keep):
        lab = int(labels[i])
        owned, conf = ids == j, p[i] >= 0.5
        mask = owned & conf
        if owned.sum() == 0 or conf.sum() == 0 or mask.sum() == 0 or owned.sum() / conf.sum() < overlap_thr:
            continue
        if lab not in things and lab in stuff:
            seg[mask] = stuff[lab]
            continue
        next_id += 1
        if lab not in things:
            stuff[lab] = next_id
        seg[mask] = next_id
        segments.append({"id": next_id, "isthing": lab in things, "category_id": lab})
    return seg, segments


def _case(seed, q=12, k=5, h=20, w=28):
    rng = np.random.default_rng(seed)
    cls = rng.standard_normal((q, k + 1)) * 3
    masks = rng.standard_normal((q, h, w)) * 4
    return cls.astype(np.float32), masks.astype(np.float32)


def _cfg(k=5, **kw):
    cfg = get_preset("coco-panoptic-r50")
    return dataclasses.replace(cfg, num_classes=k, class_names=[], thing_ids=[0, 1, 2], **kw)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("thresholds", [(0.8, 0.8), (0.3, 0.5), (0.0, 0.0)])
def test_panoptic_matches_naive(seed, thresholds):
    cls, masks = _case(seed)
    cfg = _cfg(object_mask_threshold=thresholds[0], overlap_threshold=thresholds[1])
    seg, segments = panoptic_inference(torch.from_numpy(cls), torch.from_numpy(masks), cfg)
    ref_seg, ref_segments = naive_panoptic(cls, masks, 5, {0, 1, 2}, *thresholds)
    assert segments == ref_segments
    assert np.array_equal(seg.numpy(), ref_seg)


def test_panoptic_stuff_merges_and_empty_result():
    cls, masks = _case(0, q=4, k=5)
    cls[:] = -10
    cls[:, 4] = 10  # every query: confident stuff class 4
    masks[0, :, :14], masks[1, :, 14:] = 5, 5
    masks[0, :, 14:], masks[1, :, :14] = -5, -5
    masks[2:] = -5
    seg, segments = panoptic_inference(torch.from_numpy(cls), torch.from_numpy(masks), _cfg())
    assert segments == [{"id": 1, "isthing": False, "category_id": 4}]
    assert (seg.numpy() == 1).all()
    cls[:, -1] = 20  # now every query is no-object
    seg, segments = panoptic_inference(torch.from_numpy(cls), torch.from_numpy(masks), _cfg())
    assert segments == [] and (seg.numpy() == 0).all() and seg.dtype == torch.int32


@pytest.mark.parametrize("panoptic_on", [False, True])
def test_instance_matches_naive(panoptic_on):
    cls, masks = _case(7, q=30, k=5)
    cfg = _cfg(panoptic_on=panoptic_on, test_topk_per_image=20)
    got = instance_inference(torch.from_numpy(cls), torch.from_numpy(masks), cfg)
    probs = softmax(cls)[:, :-1].reshape(-1)
    top = np.argsort(-probs, kind="stable")[:20]
    expected = {}
    for idx in top:
        qi, lab = divmod(int(idx), 5)
        if panoptic_on and lab not in (0, 1, 2):
            continue
        binary = masks[qi] > 0
        mask_score = (sigmoid(masks[qi]) * binary).sum() / (binary.sum() + 1e-6)
        expected[(qi, lab)] = probs[idx] * mask_score
    got_set = {(int(qi), int(lab)): float(s) for qi, lab, s in zip(got["query_ids"], got["labels"], got["scores"])}
    assert got_set.keys() == expected.keys()
    for key, score in expected.items():
        assert abs(got_set[key] - score) < 1e-5
    for qi, m in zip(got["query_ids"], got["masks"]):
        assert np.array_equal(m.numpy(), masks[int(qi)] > 0)


def test_semantic_matches_naive():
    cls, masks = _case(3)
    got = semantic_inference(torch.from_numpy(cls), torch.from_numpy(masks)).numpy()
    ref = np.einsum("qc,qhw->chw", softmax(cls.astype(np.float64))[:, :-1], sigmoid(masks.astype(np.float64)))
    np.testing.assert_allclose(got, ref, atol=1e-5)


@pytest.mark.parametrize("before", [True, False])
def test_pipeline_order_of_operations(before):
    """Upsample x4 to the canvas, then (panoptic/instance configs) crop + resize before inference, or
    (semantic-only configs) semantic inference at the canvas, then crop + resize: the orders differ."""
    cls, masks = _case(11, q=6, k=5, h=8, w=12)
    cfg = _cfg(semantic_on=True, panoptic_on=before, instance_on=False)
    valid, out_size = (27, 41), (50, 77)
    outputs = {"pred_logits": torch.from_numpy(cls)[None], "pred_masks": torch.from_numpy(masks)[None]}
    got = postprocess(outputs, [valid], [out_size], cfg)[0]["sem_seg"].numpy()

    up = naive_resize(masks.astype(np.float64), 32, 48)
    probs = softmax(cls.astype(np.float64))[:, :-1]
    if before:
        m = naive_resize(up[:, :valid[0], :valid[1]], *out_size)
        ref = np.einsum("qc,qhw->chw", probs, sigmoid(m))
    else:
        sem = np.einsum("qc,qhw->chw", probs, sigmoid(up))
        ref = naive_resize(sem[:, :valid[0], :valid[1]], *out_size)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert got.shape == (5, *out_size)
