"""A ``Result`` as the bytes a served model answers with, and back (no torch).

Outputs of one request (names in ``m2f.contract``): ``result_json`` (UTF-8 JSON: sizes, segments, instances with
COCO RLE masks, timings), ``panoptic_png`` (the COCO panoptic PNG, segment id = R + 256 G + 256^2 B) and
``semantic_png`` (class ids, 8-bit grey PNG up to 255 classes, 16-bit beyond); a PNG is empty when its task was not
computed. Every value survives the round trip exactly: maps are lossless PNGs, masks exact RLE, scores JSON floats
(a float32 score printed as a float64 reads back bit for bit).
"""
from __future__ import annotations

import json

import numpy as np

from m2f import contract
from m2f.errors import M2FError, first_line
from m2f.runtime.formats import panoptic_ids, panoptic_rgb, rle_decode, rle_encode, semantic_label_dtype
from m2f.runtime.results import Instance, Result, Segment


class ServingError(M2FError):
    """A served model refused a request or could not be reached; the message is one sentence."""


def encode_png(array: np.ndarray) -> bytes:
    """uint8/uint16 [H, W] or uint8 [H, W, 3] -> PNG bytes (lossless)."""
    import cv2

    image = array[:, :, ::-1] if array.ndim == 3 else array  # OpenCV writes BGR
    ok, data = cv2.imencode(".png", np.ascontiguousarray(image))
    if not ok:
        raise M2FError(f"OpenCV could not encode a {array.dtype} {list(array.shape)} array as PNG")
    return data.tobytes()


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes -> the array ``encode_png`` was given."""
    import cv2

    try:
        array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        array = None
    if array is None:
        raise ServingError("the server's answer holds a PNG that does not decode; is the URL an m2f model?")
    return array[:, :, ::-1] if array.ndim == 3 else array


def semantic_png(semantic: np.ndarray, num_classes: int) -> bytes:
    return encode_png(semantic.astype(semantic_label_dtype(num_classes)))


def encode_result(result: Result, num_classes: int) -> dict[str, bytes]:
    """One Result -> {output name: bytes} for the served model's outputs."""
    document = {"height": result.height, "width": result.width,
                "input_size": [int(v) for v in result.input_size] if result.input_size else None,
                "fit_scale": float(result.fit_scale),
                "segments": [{"id": int(s.id), "category_id": int(s.category_id), "category": s.category,
                              "isthing": bool(s.isthing), "area": int(s.area)} for s in result.segments],
                "instances": [{"category_id": int(i.category_id), "category": i.category, "score": float(i.score),
                               "query": int(i.query), "mask": rle_encode(i.mask)} for i in result.instances],
                "timings": result.timings}
    return {contract.SERVED_RESULT: json.dumps(document).encode(),
            contract.SERVED_PANOPTIC: b"" if result.panoptic is None else encode_png(panoptic_rgb(result.panoptic)),
            contract.SERVED_SEMANTIC: b"" if result.semantic is None else semantic_png(result.semantic, num_classes)}


def decode_result(outputs: dict[str, bytes]) -> Result:
    """{output name: bytes} of one answered request -> the Result the server computed."""
    try:
        document = json.loads(outputs[contract.SERVED_RESULT])
    except (KeyError, ValueError):
        raise ServingError("the server's answer has no readable result_json; is the URL an m2f model?") from None
    try:
        return _result(document, outputs)
    except ServingError:
        raise
    except Exception as e:  # any malformed field of an untrusted answer (a missing key, a wrong type, a bad RLE)
        raise ServingError(f"the server's answer is not an m2f result ({first_line(e, with_type=True)}); is the "
                           f"URL an m2f model?") from None


def _result(document: dict, outputs: dict[str, bytes]) -> Result:
    r = Result(height=document["height"], width=document["width"], fit_scale=document["fit_scale"],
               input_size=tuple(document["input_size"]) if document["input_size"] else None,
               timings=document.get("timings", {}))
    r.segments = [Segment(**s) for s in document["segments"]]
    r.instances = [Instance(i["category_id"], i["category"], i["score"], rle_decode(i["mask"]), i["query"])
                   for i in document["instances"]]
    if outputs.get(contract.SERVED_PANOPTIC):
        r.panoptic = panoptic_ids(decode_png(outputs[contract.SERVED_PANOPTIC]))
    if outputs.get(contract.SERVED_SEMANTIC):
        r.semantic = decode_png(outputs[contract.SERVED_SEMANTIC]).astype(np.int32)
    return r
