"""The served answer's bytes decode to the Result they encode, checked with independent decoders (PIL for the PNGs,
pycocotools for the RLE masks)."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest

from m2f import contract
from m2f.runtime.results import Instance, Result, Segment


def _result(rng, num_classes):
    panoptic = rng.integers(0, 4, (37, 53)).astype(np.int32) * 70001 % 300000  # ids beyond 16 bits
    semantic = rng.integers(0, num_classes, (37, 53)).astype(np.int32)
    masks = rng.random((3, 37, 53)) < 0.4
    instances = [Instance(int(c), f"class{c}", float(np.float32(s)), m, q)
                 for c, s, m, q in zip((1, 2, 0), rng.random(3), masks, (5, 9, 2))]
    segments = [Segment(int(i), 1, "class1", True, int((panoptic == i).sum())) for i in np.unique(panoptic) if i]
    return Result(37, 53, input_size=(30, 43), fit_scale=0.75, semantic=semantic, panoptic=panoptic,
                  segments=segments, instances=instances, timings={"pre": 0.5})


@pytest.mark.parametrize("num_classes", [133, 847])  # 8- and 16-bit semantic PNGs
def test_round_trip_against_independent_decoders(num_classes):
    from PIL import Image
    from pycocotools import mask as coco_mask

    from m2f.serving.protocol import decode_result, encode_result

    want = _result(np.random.default_rng(num_classes), num_classes)
    answer = encode_result(want, num_classes)
    rgb = np.asarray(Image.open(io.BytesIO(answer[contract.SERVED_PANOPTIC]))).astype(np.int64)
    np.testing.assert_array_equal(rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2], want.panoptic)
    grey = np.asarray(Image.open(io.BytesIO(answer[contract.SERVED_SEMANTIC])))
    np.testing.assert_array_equal(grey, want.semantic)
    document = json.loads(answer[contract.SERVED_RESULT])
    assert len(document["instances"]) == len(want.instances) == 3
    for encoded, instance in zip(document["instances"], want.instances):
        rle = {"size": encoded["mask"]["size"], "counts": encoded["mask"]["counts"].encode()}
        np.testing.assert_array_equal(coco_mask.decode(rle).astype(bool), instance.mask)
        assert encoded["score"] == instance.score
    got = decode_result(answer)
    np.testing.assert_array_equal(got.panoptic, want.panoptic)
    np.testing.assert_array_equal(got.semantic, want.semantic)
    assert got.segments == want.segments and (got.input_size, got.fit_scale) == ((30, 43), 0.75)
    assert len(got.instances) == len(want.instances)
    for a, b in zip(got.instances, want.instances):
        assert (a.category_id, a.category, a.score, a.query) == (b.category_id, b.category, b.score, b.query)
        np.testing.assert_array_equal(a.mask, b.mask)


def test_tasks_not_computed_travel_as_empty_pngs():
    from m2f.serving.protocol import decode_result, encode_result

    answer = encode_result(Result(4, 5, semantic=np.zeros((4, 5), np.int32)), 10)
    assert answer[contract.SERVED_PANOPTIC] == b""
    got = decode_result(answer)
    assert got.panoptic is None and got.semantic.shape == (4, 5) and not got.instances


def test_unreadable_answer_is_one_sentence():
    from m2f.serving.protocol import ServingError, decode_result

    with pytest.raises(ServingError, match="no readable result_json; is the URL an m2f model"):
        decode_result({contract.SERVED_RESULT: b"<html>"})


@pytest.mark.parametrize("data, expected", [(b"", "is empty"), (b"GIF89a", "broken image|not an image")])
def test_decode_image_refusals(data, expected):
    from m2f.errors import ImageError
    from m2f.runtime.image_io import decode_image

    with pytest.raises(ImageError, match=expected):
        decode_image(data)
