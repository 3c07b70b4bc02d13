"""Reference-exact post-processing in numpy (no torch), from raw outputs: docs/model.md §2, as ``m2f.model.postprocess``.

Per image: mask logits [Q, h, w] at 1/4 of the canvas -> bilinear to the canvas -> crop to the valid size -> bilinear
to the output size -> semantic / instance / panoptic. Only what a task needs is upsampled (kept queries for
panoptic, the top-k for instance), with OpenCV when present (same half-pixel convention as PyTorch's
align_corners=False) and numpy otherwise.

Panoptic at scale 1 (output size = valid size, e.g. an 800x1333 image on an 800x1344 canvas) has a fast path: an
upsampled pixel is a convex combination of its 2x2 low-resolution corners and sigmoid is monotone, so per 4x4 block
the winning query and its sigmoid >= 0.5 test are often decided by corner bounds alone; only undecided blocks are
computed per pixel, with PyTorch's bilinear arithmetic. Results equal the general path (tested).
"""
from __future__ import annotations

import numpy as np

from .resize import resize_bilinear


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # exp(-x) overflows to inf for x < -88: sigmoid is then 0, as it should be
        return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def _resize(stack: np.ndarray, height: int, width: int) -> np.ndarray:
    """[C, H, W] float32 -> [C, height, width], bilinear, half-pixel centres."""
    if stack.shape[1:] == (height, width):
        return stack
    try:
        import cv2
    except ImportError:
        return resize_bilinear(stack, height, width).astype(np.float32)
    out = np.empty((stack.shape[0], height, width), np.float32)
    for start in range(0, stack.shape[0], 256):  # OpenCV takes at most 512 channels
        chunk = np.ascontiguousarray(stack[start:start + 256].transpose(1, 2, 0))
        res = cv2.resize(chunk, (width, height), interpolation=cv2.INTER_LINEAR)
        out[start:start + 256] = res.reshape(height, width, -1).transpose(2, 0, 1)
    return out


def masks_at_output(lowres: np.ndarray, valid: tuple[int, int], out_size: tuple[int, int]) -> np.ndarray:
    """Mask logits [n, h, w] (1/4 canvas) -> [n, H0, W0]: upsample x4 to the canvas, crop, resize (reference order)."""
    canvas = _resize(lowres.astype(np.float32, copy=False), lowres.shape[1] * 4, lowres.shape[2] * 4)
    cropped = canvas[:, : valid[0], : valid[1]]
    return _resize(np.ascontiguousarray(cropped), *out_size)


def semantic(logits: np.ndarray, lowres: np.ndarray, valid, out_size, before_inference: bool,
             chunk_rows: int = 64) -> np.ndarray:
    """Class map int32 [H0, W0]: argmax of softmax(cls)[:-1] x sigmoid(mask), in row chunks to bound memory.

    ``before_inference`` (panoptic/instance configs) resizes masks before the einsum; semantic-only configs compute
    scores at the canvas, then crop and resize the scores (the orders differ; docs/model.md §2)."""
    probs = softmax(logits.astype(np.float32))[:, :-1]  # [Q, K]
    if before_inference:
        masks = masks_at_output(lowres, valid, out_size)
        out = np.empty(out_size, np.int32)
        q, w = masks.shape[0], out_size[1]
        for r in range(0, out_size[0], chunk_rows):
            s = sigmoid(masks[:, r:r + chunk_rows]).reshape(q, -1)
            out[r:r + chunk_rows] = (probs.T @ s).argmax(0).reshape(-1, w)
        return out
    canvas = sigmoid(_resize(lowres.astype(np.float32), lowres.shape[1] * 4, lowres.shape[2] * 4))
    q, hc, wc = canvas.shape
    scores = (probs.T @ canvas.reshape(q, -1)).reshape(-1, hc, wc)[:, : valid[0], : valid[1]]
    return _resize(np.ascontiguousarray(scores), *out_size).argmax(0).astype(np.int32)


def instance(logits: np.ndarray, lowres: np.ndarray, valid, out_size, topk: int, panoptic_on: bool,
             thing_ids) -> dict:
    """Top-k over Q x K (sorted by class probability; the reference's order is unspecified), non-things dropped
    for panoptic models, masks = logit > 0 at the output size, score = prob x mean sigmoid inside the mask."""
    q, k1 = logits.shape
    k = k1 - 1
    probs = softmax(logits.astype(np.float32))[:, :-1].reshape(-1)
    n = min(topk, q * k)
    idx = np.argpartition(-probs, n - 1)[:n] if n < probs.size else np.arange(probs.size)
    idx = idx[np.argsort(-probs[idx], kind="stable")]
    labels, queries, scores = (idx % k).astype(np.int64), idx // k, probs[idx]
    if panoptic_on:
        keep = np.isin(labels, np.asarray(sorted(thing_ids), np.int64))
        labels, queries, scores = labels[keep], queries[keep], scores[keep]
    masks = np.empty((len(queries), *out_size), bool)
    final = np.empty(len(queries), np.float32)
    for i, qi in enumerate(queries):
        m = masks_at_output(lowres[qi:qi + 1], valid, out_size)[0]
        binary = m > 0
        masks[i] = binary
        final[i] = scores[i] * (sigmoid(m)[binary].sum(dtype=np.float32) / (binary.sum() + 1e-6))
    return {"scores": final, "labels": labels, "query_ids": queries, "masks": masks}


def _taps_torch(n_out: int, n_in: int):
    """PyTorch's upsample_bilinear2d source rows/cols and weights (align_corners=False), in float32."""
    scale = np.float32(n_in / n_out)
    src = np.maximum(scale * (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5), 0)
    i0 = src.astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = (src - i0).astype(np.float32)
    return i0, i1, (np.float32(1) - w1).astype(np.float32), w1


def _ragged_arange(counts: np.ndarray) -> np.ndarray:
    """0..c-1 for each count c, concatenated: [2, 3] -> [0, 1, 0, 1, 2]."""
    return np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)


class _Cells:
    """Scale-1 geometry: each valid canvas pixel (r, c) interpolates the 2x2 low-res cell (y0[r], x0[c])."""

    def __init__(self, h: int, w: int, valid):
        self.y0, self.y1, self.wy0, self.wy1 = (a[: valid[0]] for a in _taps_torch(4 * h, h))
        self.x0, self.x1, self.wx0, self.wx1 = (a[: valid[1]] for a in _taps_torch(4 * w, w))
        self.row_start, self.row_count = np.searchsorted(self.y0, np.arange(h)), np.bincount(self.y0, minlength=h)
        self.col_start, self.col_count = np.searchsorted(self.x0, np.arange(w)), np.bincount(self.x0, minlength=w)
        self.pixels_per_cell = np.outer(self.row_count, self.col_count)

    def pixels(self, cell_rows: np.ndarray, cell_cols: np.ndarray):
        """(rows, cols) of every canvas pixel inside the given cells."""
        nr, nc = self.row_count[cell_rows], self.col_count[cell_cols]
        total = nr * nc
        which = np.repeat(np.arange(len(cell_rows)), total)
        offset = _ragged_arange(total)
        ncw = nc[which]
        return self.row_start[cell_rows][which] + offset // ncw, self.col_start[cell_cols][which] + offset % ncw

    def interpolate_pairs(self, lowres: np.ndarray, k: np.ndarray, rows: np.ndarray, cols: np.ndarray):
        """Exact upsampled logit of query k[i] at pixel (rows[i], cols[i]), in PyTorch's arithmetic order."""
        h, w = lowres.shape[1:]
        flat = lowres.reshape(-1)
        top = k * (h * w) + self.y0[rows] * w  # flat offsets of the two source rows
        bottom = k * (h * w) + self.y1[rows] * w
        c, d = self.x0[cols], self.x1[cols]
        wx0, wx1 = self.wx0[cols], self.wx1[cols]
        return (self.wy0[rows] * (wx0 * flat.take(top + c) + wx1 * flat.take(top + d))
                + self.wy1[rows] * (wx0 * flat.take(bottom + c) + wx1 * flat.take(bottom + d)))


def _cell_bounds(lowres: np.ndarray):
    """Min and max over each cell's 2x2 corners (clamped at the border): [n, h, w] each."""

    def pair(a: np.ndarray, axis: int, op) -> np.ndarray:  # op(x[i], x[i + 1]) along axis, last one kept
        out = np.empty_like(a)
        head = [slice(None)] * 3
        tail = list(head)
        head[axis], tail[axis] = slice(None, -1), slice(1, None)
        op(a[tuple(head)], a[tuple(tail)], out=out[tuple(head)])
        last = [slice(None)] * 3
        last[axis] = slice(-1, None)
        out[tuple(last)] = a[tuple(last)]
        return out

    return (pair(pair(lowres, 1, np.minimum), 2, np.minimum), pair(pair(lowres, 1, np.maximum), 2, np.maximum))


def _nonzero(mask: np.ndarray) -> tuple[np.ndarray, ...]:
    """np.nonzero for a C-contiguous boolean array, via flat indices (about 2x faster for 3-D masks)."""
    flat = np.flatnonzero(mask)
    out = []
    for size in mask.shape[:0:-1]:
        flat, rest = np.divmod(flat, size)
        out.append(rest)
    return (flat, *out[::-1])


def _argmax0(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(argmax over axis 0, the max) of [n, h, w], first index on ties; a running maximum is faster than
    ``argmax(0)``, whose reduction runs across the strided axis."""
    best_value = values[0].copy()
    best = np.zeros(values.shape[1:], np.int64)
    for k in range(1, values.shape[0]):
        np.copyto(best, k, where=values[k] > best_value)
        np.maximum(best_value, values[k], out=best_value)
    return best, best_value


def _weighted_sigmoid(logits: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """scores[:, None, None] * sigmoid(logits), in four in-place passes (used for bounds only, which keep a margin,
    so its last-ulp differences from ``sigmoid`` do not matter)."""
    out = np.negative(logits)
    with np.errstate(over="ignore"):  # inf -> weight 0, correct
        np.exp(out, out=out)
    out += 1
    np.reciprocal(out, out=out)
    out *= scores[:, None, None]
    return out


# Decided cells keep this relative distance from every bound (score x sigmoid rounds relatively), so float rounding
# of exact pixels cannot cross it.
_RELATIVE_MARGIN = np.float32(1e-4)


class _Scale1Panoptic:
    """The scale-1 fast path of panoptic inference, without full-resolution masks (module docstring).

    Bounds live in the space of v = score x sigmoid(logit): monotone in the logit for each query, so the corner
    minimum/maximum of v bound every pixel of a cell, and sigmoid >= 0.5 is v >= score / 2. Cells whose owner and its
    confidence are decided by bounds are counted and painted per cell; in the other cells each pixel tries only the
    queries whose upper bound reaches the cell's best lower bound, in query order (first wins ties, as argmax)."""

    def __init__(self, lowres: np.ndarray, scores: np.ndarray, valid):
        n, h, w = lowres.shape
        self.cells = cells = _Cells(h, w, valid)
        ppc = cells.pixels_per_cell
        lo, hi = _cell_bounds(_weighted_sigmoid(lowres, scores))
        half = (scores * np.float32(0.5)).astype(np.float32)[:, None, None]
        surely_conf = lo >= half * (1 + _RELATIVE_MARGIN)  # [n, h, w]: every pixel's sigmoid >= 0.5
        # sigmoid >= 0.5 area of each query: sure cells whole, sign-ambiguous cells per pixel
        self.orig = surely_conf.reshape(n, -1).astype(np.float32) @ ppc.reshape(-1).astype(np.float32)
        self.orig = np.rint(self.orig).astype(np.int64)
        amb_k, amb_rows, amb_cols = _nonzero(~surely_conf & (hi > half * (1 - _RELATIVE_MARGIN)))
        if amb_k.size:
            rows, cols = cells.pixels(amb_rows, amb_cols)
            k_of_pixel = np.repeat(amb_k, ppc[amb_rows, amb_cols])
            confident = sigmoid(cells.interpolate_pairs(lowres, k_of_pixel, rows, cols)) >= 0.5
            self.orig += np.bincount(k_of_pixel, weights=confident, minlength=n).astype(np.int64)
        # owner per cell by bounds
        best, best_lo = _argmax0(lo)
        best_hi = np.take_along_axis(hi, best[None], 0)[0]
        np.put_along_axis(hi, best[None], -np.inf, 0)
        others = hi.max(0)
        np.put_along_axis(hi, best[None], best_hi[None], 0)
        owner_conf = np.take_along_axis(surely_conf, best[None], 0)[0]
        owner_not = best_hi <= half[:, 0, 0][best] * (1 - _RELATIVE_MARGIN)
        self.decided = (best_lo > others * (1 + _RELATIVE_MARGIN)) & (owner_conf | owner_not)
        self.best, self.cell_conf = best, owner_conf
        d, dc = self.decided, self.decided & owner_conf
        self.owned = np.bincount(best[d], weights=ppc[d], minlength=n)
        self.both = np.bincount(best[dc], weights=ppc[dc], minlength=n)
        self._undecided(lowres, scores, hi, best_lo)

    def _undecided(self, lowres, scores, hi, best_lo) -> None:
        """Exact owner and confidence of every pixel in the undecided cells."""
        cells, n = self.cells, lowres.shape[0]
        cell_rows, cell_cols = np.nonzero(~self.decided)
        counts = cells.pixels_per_cell[cell_rows, cell_cols]
        self.rows, self.cols = cells.pixels(cell_rows, cell_cols)
        first_pixel = np.cumsum(counts) - counts  # where each cell's pixels start in rows/cols
        # candidates: cell-major, ascending query within a cell; rank = position in the cell's list
        cand_cell, cand_k = np.nonzero((hi[:, cell_rows, cell_cols]
                                        >= best_lo[cell_rows, cell_cols] * (1 - _RELATIVE_MARGIN)).T)
        per_cell = np.bincount(cand_cell, minlength=len(cell_rows))
        rank = _ragged_arange(per_cell)
        best_v = np.full(self.rows.size, -1.0, np.float32)
        best_p = np.zeros(self.rows.size, np.float32)
        owner = np.zeros(self.rows.size, np.int64)
        for r in range(int(per_cell.max(initial=0))):
            at = rank == r
            cell, k = cand_cell[at], cand_k[at]
            npix = counts[cell]
            pixel = np.repeat(first_pixel[cell], npix) + _ragged_arange(npix)
            k = np.repeat(k, npix)
            p = sigmoid(cells.interpolate_pairs(lowres, k, self.rows[pixel], self.cols[pixel]))
            v = scores[k] * p
            better = v > best_v[pixel]  # strict: an equal later query does not take over (argmax keeps the first)
            pixel, k = pixel[better], k[better]
            best_v[pixel], best_p[pixel], owner[pixel] = v[better], p[better], k
        self.pixel_owner, self.pixel_conf = owner, best_p >= 0.5
        self.owned += np.bincount(owner, minlength=n)
        self.both += np.bincount(owner[self.pixel_conf], minlength=n)

    def paint(self, segment_of: np.ndarray) -> np.ndarray:
        """int32 [vh, vw]: segment_of[owner] where the owner's sigmoid >= 0.5, else 0."""
        cells = self.cells
        per_cell = np.where(self.decided & self.cell_conf, segment_of[self.best], 0).astype(np.int32)
        seg = np.repeat(np.repeat(per_cell, cells.row_count, axis=0), cells.col_count, axis=1)
        seg[self.rows, self.cols] = np.where(self.pixel_conf, segment_of[self.pixel_owner], 0)
        return seg


class _GeneralPanoptic:
    """Any output size: full-resolution masks of the kept queries (reference order)."""

    def __init__(self, lowres: np.ndarray, scores: np.ndarray, valid, out_size):
        probs = sigmoid(masks_at_output(lowres, valid, out_size))
        self.ids = (scores[:, None, None] * probs).argmax(0)
        self.conf = np.take_along_axis(probs, self.ids[None], 0)[0] >= 0.5
        n = len(probs)
        self.owned = np.bincount(self.ids.ravel(), minlength=n)
        self.both = np.bincount(self.ids[self.conf], minlength=n)
        self.orig = (probs >= 0.5).reshape(n, -1).sum(1)

    def paint(self, segment_of: np.ndarray) -> np.ndarray:
        return np.where(self.conf, segment_of[self.ids], 0).astype(np.int32)


def panoptic(logits: np.ndarray, lowres: np.ndarray, valid, out_size, num_classes: int, thing_ids,
             object_mask_threshold: float, overlap_threshold: float):
    """-> (int32 [H0, W0] segment ids, segments) exactly as the reference panoptic_inference."""
    probs_cls = softmax(logits.astype(np.float32))
    scores, labels = probs_cls.max(-1), probs_cls.argmax(-1)
    keep = np.flatnonzero((labels != num_classes) & (scores > object_mask_threshold))
    segments: list[dict] = []
    if keep.size == 0:
        return np.zeros(out_size, np.int32), segments
    kept = np.ascontiguousarray(lowres[keep], dtype=np.float32)
    if tuple(out_size) == tuple(valid):
        regions = _Scale1Panoptic(kept, scores[keep], valid)
    else:
        regions = _GeneralPanoptic(kept, scores[keep], valid, out_size)
    segment_of, segments = assign_segments(labels[keep], regions.owned, regions.orig, regions.both,
                                           overlap_threshold, thing_ids)
    return regions.paint(segment_of), segments


def assign_segments(labels, owned, orig, both, overlap_threshold: float, thing_ids):
    """The reference's segment decisions, for kept queries in query order -> (segment id per kept query, 0 = none;
    segments). owned: pixels the query wins; orig: its sigmoid >= 0.5 pixels; both: the two together.

    A query survives when all three are non-zero and owned / orig >= overlap_threshold; a stuff class seen before
    reuses its segment id. Each kept query's final mask (owned & confident) is disjoint from the others', so painting
    is one lookup: segment_of[owner] where the owner is confident.
    """
    things = set(int(t) for t in thing_ids)
    stuff: dict[int, int] = {}
    segments: list[dict] = []
    segment_of = np.zeros(len(labels), np.int32)
    for j, label in enumerate(int(x) for x in labels):
        if owned[j] == 0 or orig[j] == 0 or both[j] == 0 or owned[j] / orig[j] < overlap_threshold:
            continue
        if label not in things and label in stuff:
            segment_of[j] = stuff[label]
            continue
        new_id = len(segments) + 1
        if label not in things:
            stuff[label] = new_id
        segment_of[j] = new_id
        segments.append({"id": new_id, "isthing": label in things, "category_id": label})
    return segment_of, segments
