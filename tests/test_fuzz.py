"""Fuzzing the readers of bytes m2f does not control (Hypothesis): image files and served images, a server's
answers, and artifact metadata. Whatever the bytes, each reader returns its value or raises its one-sentence error
type, never anything else (an IndexError from deep inside is a defect)."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="Hypothesis is the fuzzer (test extra)")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from m2f import contract  # noqa: E402
from m2f.errors import ImageError, MetadataError  # noqa: E402

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
V1 = Path(__file__).parent / "data" / "metadata_v1.json"


def _png(height: int, width: int, mode: str) -> bytes:
    from PIL import Image

    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    array = np.arange(height * width * channels, dtype=np.uint8).reshape(height, width, channels).squeeze(-1) \
        if channels == 1 else np.arange(height * width * channels, dtype=np.uint8).reshape(height, width, channels)
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, "PNG")
    return buf.getvalue()


def _damaged(data: bytes, cut: int, flips: list[tuple[int, int]]) -> bytes:
    """``data`` cut to ``cut`` bytes with some bytes replaced: what a broken upload or a bad disk gives."""
    out = bytearray(data[:max(cut, 0)])
    for position, value in flips:
        if out:
            out[position % len(out)] = value
    return bytes(out)


@FUZZ
@given(st.binary(max_size=2048))
def test_any_bytes_as_a_served_image(data):
    from m2f.runtime.image_io import decode_image

    try:
        image = decode_image(data, max_pixels=1_000_000)
    except ImageError as e:
        assert "\n" not in str(e)
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


@FUZZ
@given(st.integers(1, 40), st.integers(1, 40), st.sampled_from(["L", "RGB", "RGBA"]), st.integers(0, 400),
       st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6))
def test_damaged_image_files(tmp_path, height, width, mode, cut, flips):
    from m2f.runtime.image_io import read_image

    path = tmp_path / "x.png"
    path.write_bytes(_damaged(_png(height, width, mode), cut, flips))
    try:
        image = read_image(path)
    except ImageError as e:
        assert str(path) in str(e) and "\n" not in str(e)
        return
    assert image.dtype == np.uint8 and image.shape[2] == 3


def _answer():
    """A served answer for a small panoptic result, as the server encodes it."""
    from m2f.runtime.results import Instance, Result, Segment
    from m2f.serving.protocol import encode_result

    panoptic = np.zeros((6, 8), np.int32)
    panoptic[2:5, 1:4] = 1
    result = Result(6, 8, input_size=(6, 8), panoptic=panoptic, semantic=(panoptic > 0).astype(np.int32),
                    segments=[Segment(1, 0, "a", True, 9)], instances=[Instance(0, "a", 0.9, panoptic == 1, 3)])
    return encode_result(result, 2)


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-3, 300) | st.floats(allow_nan=True) | st.text(max_size=5),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                   max_size=5), max_leaves=20)


@FUZZ
@given(st.sampled_from(["height", "width", "fit_scale", "input_size", "segments", "instances", "timings", None]),
       _JSON, st.sampled_from([None, "panoptic", "semantic"]), st.binary(max_size=64))
def test_a_malformed_served_answer_is_one_sentence(key, value, png, junk):
    from m2f.serving.protocol import ServingError, decode_result

    outputs = _answer()
    document = json.loads(outputs[contract.SERVED_RESULT])
    if key is not None:
        document[key] = value
    outputs[contract.SERVED_RESULT] = json.dumps(document).encode()
    if png is not None:
        outputs[{"panoptic": contract.SERVED_PANOPTIC, "semantic": contract.SERVED_SEMANTIC}[png]] = junk
    try:
        decode_result(outputs)
    except ServingError as e:
        assert "\n" not in str(e)


@FUZZ
@given(st.binary(max_size=512))
def test_any_bytes_as_a_served_answer(data):
    from m2f.serving.protocol import ServingError, decode_result

    try:
        decode_result({contract.SERVED_RESULT: data})
    except ServingError:
        pass


@FUZZ
@given(st.sampled_from(sorted(json.loads(V1.read_text()))), _JSON)
def test_metadata_with_any_value_for_a_key(key, value):
    document = json.loads(V1.read_text())
    document[key] = value
    try:
        meta = contract.parse(json.dumps(document), "m.onnx")
    except MetadataError as e:
        assert str(e).startswith("m.onnx") and "\n" not in str(e)
        return
    assert contract.parse(meta.to_json(), "again") == meta  # what parses also round-trips


@FUZZ
@given(st.text(max_size=200))
def test_metadata_from_any_text(text):
    try:
        contract.parse(text, "m.onnx")
    except MetadataError as e:
        assert "\n" not in str(e)


def test_an_image_beyond_pils_own_limit_is_over_max_pixels():
    """A 400-megapixel PNG of a few kB: PIL refuses it on opening (its decompression-bomb guard), before m2f's check
    of the header could run; the answer still names the size and --max-pixels, not a broken image."""
    from PIL import Image

    from m2f.runtime.image_io import decode_image

    buf = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(buf, "PNG")
    with pytest.raises(ImageError, match=r"is 400000000 pixels, more than the 40000000 this server accepts"):
        decode_image(buf.getvalue(), max_pixels=40_000_000)
