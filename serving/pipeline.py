"""What a served m2f model does with a batch of requests, for ``m2f serve`` (no torch).

Each request holds encoded images (``encoded_image``, BYTES, one or more along its batch dimension). They are decoded
(refused with one sentence when empty, not an image, or larger than ``max_pixels``), run together through the
Predictor (which batches them up to the model's batch size) and answered per image with ``m2f.serving.protocol``'s
outputs plus ``error``. A refused image is answered in-band, in ``error``, so that it never fails the other requests
Triton batched with it (PyTriton fails a whole batch when its function raises).
"""
from __future__ import annotations

import numpy as np

from m2f import contract
from m2f.errors import M2FError, first_line
from m2f.runtime.image_io import decode_image

from . import DEFAULT_MAX_PIXELS
from .protocol import encode_result


class ServedPipeline:
    """predictor: the m2f runtime Predictor that does the work. max_pixels: the largest image accepted."""

    def __init__(self, predictor, max_pixels: int = DEFAULT_MAX_PIXELS):
        self.predictor = predictor
        self.max_pixels = max_pixels
        self.num_classes = predictor.meta.num_classes

    def answer(self, payloads: list[bytes]) -> list[dict[str, bytes]]:
        """Encoded images -> one answer each ({served output name: bytes}), refused ones with ``error`` set."""
        answers: list[dict[str, bytes] | None] = [None] * len(payloads)
        images, slots = [], []
        for i, data in enumerate(payloads):
            try:
                images.append(decode_image(data, self.max_pixels, what="the request's encoded_image"))
                slots.append(i)
            except M2FError as e:
                answers[i] = refusal(str(e))
        if images:
            try:
                results = self.predictor.predict_batch(images)
            except Exception as e:  # a backend failure answers every image of the batch instead of killing it
                for i in slots:
                    answers[i] = refusal(f"the model failed on this batch: {first_line(e, with_type=True)}")
            else:
                for i, result in zip(slots, results):
                    answers[i] = {**encode_result(result, self.num_classes), contract.SERVED_ERROR: b""}
        return answers  # type: ignore[return-value]

    def answer_requests(self, requests: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        """Triton requests ({input name: object array [n, 1]}) -> responses shaped the same way."""
        counts, payloads = [], []
        for request in requests:
            column = np.asarray(request[contract.SERVED_IMAGE], dtype=object).reshape(-1)
            counts.append(len(column))
            payloads += [bytes(v) for v in column]
        answers = iter(self.answer(payloads))
        responses = []
        for n in counts:
            mine = [next(answers) for _ in range(n)]
            responses.append({name: np.array([[a[name]] for a in mine], dtype=object)
                              for name in (*contract.SERVED_OUTPUTS, contract.SERVED_ERROR)})
        return responses


def refusal(sentence: str) -> dict[str, bytes]:
    """The answer to a request that was not run: every output empty, ``error`` the reason."""
    return {**{name: b"" for name in contract.SERVED_OUTPUTS}, contract.SERVED_ERROR: sentence.encode()}
