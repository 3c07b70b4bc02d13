"""The numpy post-processing at full size against the PyTorch reference pipeline (m2f.model.postprocess, written
from docs/model.md §2): an 800x1333 image on an 800x1344 canvas and a COCO photo (800x1067 on 800x1088, reported at
480x640), smooth and rough mask logits, Q=100, K=133.

The stated bound (runtime/postprocess.py): decisions equal the reference's except at near-ties. Every differing
pixel is checked against a float64 recomputation from PyTorch's own upsampled logits: the two candidates' scores
within 1e-5 (relative), or the logit within 1e-5 of 0."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the reference pipeline is PyTorch")

from m2f.datasets.raw_outputs import raw_outputs  # noqa: E402
from m2f.model import postprocess as reference  # noqa: E402
from m2f.model.presets import get_preset  # noqa: E402
from m2f.runtime import postprocess  # noqa: E402

NEAR_TIE = 1e-5
K = 133
GEOMETRIES = {"800x1333": ((200, 336), (800, 1333), (800, 1333)),
              "photo-480x640": ((200, 272), (800, 1067), (480, 640))}
CONFIG = dataclasses.replace(get_preset("coco-panoptic-r50"), semantic_on=True, instance_on=True, panoptic_on=True)


# panoptic only, small: an output far smaller than the valid size (window starts skip low-resolution indices, so
# blocks and cells take their general, gathered paths) and one larger than it
OTHER_GEOMETRIES = {"shrunk-20x30": ((50, 70), (200, 270), (20, 30)),
                    "enlarged-500x700": ((30, 40), (120, 150), (500, 700))}


def _case(geometry, noise: float):
    """(logits, masks, valid, out, canvas logits [Q, Hc, Wc] and output logits [Q, H0, W0] from PyTorch)."""
    torch.set_num_threads(1)
    low, valid, out = geometry
    logits, masks = raw_outputs(low, seed=3, noise=noise)
    canvas = torch.nn.functional.interpolate(torch.from_numpy(masks)[None], size=(4 * low[0], 4 * low[1]),
                                             mode="bilinear", align_corners=False)[0]
    return logits, masks, valid, out, canvas, reference.sem_seg_postprocess(canvas, valid, out)


@pytest.fixture(scope="module", params=[(g, n) for g in GEOMETRIES for n in (0.05, 1.0)],
                ids=lambda p: f"{p[0]}-{'smooth' if p[1] < 0.5 else 'rough'}")
def case(request):
    name, noise = request.param
    return _case(GEOMETRIES[name], noise)


def _class_scores(logits: np.ndarray, mask_logits: np.ndarray) -> np.ndarray:
    """float64 [K, n] class scores of n pixels from their logits [Q, n]."""
    probs = np.exp(logits.astype(np.float64) - logits.max(1, keepdims=True))
    probs = (probs / probs.sum(1, keepdims=True))[:, :-1]
    return probs.T @ (1 / (1 + np.exp(-mask_logits.astype(np.float64))))


def test_semantic(case):
    logits, masks, valid, out, _, up = case
    ref = reference.semantic_inference(torch.from_numpy(logits), up).argmax(0).numpy()
    got = postprocess.semantic(logits, masks, valid, out, before_inference=True)
    rows, cols = np.nonzero(got != ref)
    assert rows.size <= 10
    scores = _class_scores(logits, up.numpy()[:, rows, cols])
    mine, theirs = scores[got[rows, cols], np.arange(rows.size)], scores[ref[rows, cols], np.arange(rows.size)]
    assert (np.abs(mine - theirs) <= NEAR_TIE * theirs).all()


def test_semantic_only_configurations_resize_scores(case):
    logits, masks, valid, out, canvas, _ = case
    scores = reference.semantic_inference(torch.from_numpy(logits), canvas)
    ref = reference.sem_seg_postprocess(scores, valid, out).argmax(0).numpy()
    got = postprocess.semantic(logits, masks, valid, out, before_inference=False)
    assert (got != ref).sum() <= 10


def test_panoptic(case):
    _assert_panoptic_matches(case)


@pytest.mark.parametrize("noise", [0.05, 1.0], ids=["smooth", "rough"])
@pytest.mark.parametrize("name", OTHER_GEOMETRIES)
def test_panoptic_at_other_output_sizes(name, noise):
    _assert_panoptic_matches(_case(OTHER_GEOMETRIES[name], noise))


def _assert_panoptic_matches(case):
    logits, masks, valid, out, _, up = case
    ref_seg, ref_segments = reference.panoptic_inference(torch.from_numpy(logits), up, CONFIG)
    seg, segments = postprocess.panoptic(logits, masks, valid, out, K, CONFIG.thing_ids, 0.8, 0.8)
    assert segments == ref_segments and len(segments) >= 5
    rows, cols = np.nonzero(seg != ref_seg.numpy())
    assert rows.size <= 10
    probs = torch.softmax(torch.from_numpy(logits).double(), -1)
    score = probs.max(-1).values.numpy()
    values = up.numpy()[:, rows, cols].astype(np.float64)
    v = score[:, None] / (1 + np.exp(-values))  # [Q, differing pixels]
    kept = (probs.argmax(-1).numpy() != K) & (score > 0.8)
    v[~kept] = -1
    top2 = np.sort(v, 0)[-2:]
    near_owner = top2[1] - top2[0] <= NEAR_TIE * top2[1]
    near_confidence = np.abs(values[v.argmax(0), np.arange(rows.size)]) <= NEAR_TIE
    assert (near_owner | near_confidence).all()


def test_instance(case):
    logits, masks, valid, out, _, up = case
    ref = reference.instance_inference(torch.from_numpy(logits), up, CONFIG)
    got = postprocess.instance(logits, masks, valid, out, 100, True, CONFIG.thing_ids)
    position = {(int(q), int(c)): i for i, (q, c) in enumerate(zip(ref["query_ids"], ref["labels"]))}
    assert sorted(position) == sorted(zip(got["query_ids"].tolist(), got["labels"].tolist()))
    up = up.numpy()
    for i, (q, c) in enumerate(zip(got["query_ids"].tolist(), got["labels"].tolist())):
        j = position[(q, c)]
        differ = got["masks"][i] != ref["masks"][j].numpy()
        assert (np.abs(up[q][differ]) <= NEAR_TIE).all()
        assert got["scores"][i] == pytest.approx(float(ref["scores"][j]), rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("before_inference", [True, False], ids=["panoptic-configs", "semantic-only"])
def test_semantic_memory_is_bounded_by_its_band(before_inference):
    """The issue's bound: memory grows with the band of cells (CELLS_PER_BAND), not with Q x H x W (426 MB of float32
    masks here) nor with cells x K (two 35 MB bound arrays at once before banding): numpy reports its allocations
    to tracemalloc, and the peak, the 4 MB class map included, stays under 32 MiB."""
    import tracemalloc

    logits, masks = raw_outputs(GEOMETRIES["800x1333"][0], seed=3, noise=0.05)
    _, valid, out = GEOMETRIES["800x1333"]
    tracemalloc.start()
    try:
        postprocess.semantic(logits, masks, valid, out, before_inference)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 * 2 ** 20, f"{peak / 2 ** 20:.1f} MiB"


def test_panoptic_memory_is_bounded_by_its_steps():
    """The same bound for panoptic, where cells are largest: an 8x upscaled output (1600x2144 from a 200x268 valid
    size), rough logits. The mask logits at the output would be 1.4 GB of float32; the pixel work goes in steps of
    PAIR_PIXELS_PER_STEP values (2 MB of float32 each), so the peak, the 13.7 MB segment map included, stays under
    64 MiB (47 MiB measured; 128 MiB when steps counted pairs, whatever the cells' size)."""
    import tracemalloc

    logits, masks = raw_outputs((50, 68), seed=3, noise=1.0)
    tracemalloc.start()
    try:
        seg, segments = postprocess.panoptic(logits, masks, (200, 268), (1600, 2144), K, CONFIG.thing_ids, 0.8, 0.8)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seg.shape == (1600, 2144) and len(segments) >= 5
    assert peak < 64 * 2 ** 20, f"{peak / 2 ** 20:.1f} MiB"
