"""The reference post-processing in numpy (no torch), from raw outputs: docs/model.md §2, as ``m2f.model.postprocess``.

Per image: mask logits [Q, h, w] at 1/4 of the canvas -> bilinear to the canvas -> crop to the valid size -> bilinear
to the output size -> semantic / instance / panoptic. Nothing is upsampled whole. Every output pixel's logit is a
convex combination of a small low-resolution window (``mask_geometry``), so bounds per cell of pixels decide most of
each task -- which query owns a pixel and whether it is confident (panoptic), which class wins (semantic), whether a
mask is on (instance) -- and only undecided cells, or an instance mask's bounding box, are computed. Work and memory
scale with the low-resolution logits and the undecided cells, not with Q x H x W.

Agreement with the reference: mask logits are within a few ulp of PyTorch's (its taps and weights, a different
grouping of the products; PyTorch's own CPU kernel rounds differently with the channel count and instruction set),
and numpy's float32 sigmoid and matrix products round differently from torch's. Decisions therefore equal the reference's except at near-ties: a pixel whose two best
panoptic candidates (prob x sigmoid) or two best semantic classes are within 1e-5 of each other (relative), or a mask
logit within 1e-5 of 0 (tests/runtime/test_postprocess.py checks each differing pixel at full size).
"""
from __future__ import annotations

import numpy as np

from .mask_geometry import MaskGeometry

# Decided cells keep this relative distance from every bound: the logits' last-ulp differences, float32 sigmoid and
# matrix-product rounding are all far below it, so no pixel of a decided cell could decide otherwise.
RELATIVE_MARGIN = np.float32(1e-4)
CELLS_PER_STEP = 256  # undecided semantic cells computed at once: [256, Cy, Q, Cx] logits, [.., K] scores
ACTIVE_SIGMOID = np.float32(1e-3)  # queries below this sigmoid over such a step only bound the class scores
PIXELS_PER_STEP = 16384  # the same for semantic-only configs, per pixel: [Q, 16384] logits, [K, 16384] scores


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """float32 1 / (1 + exp(-x)), in place on one new array."""
    out = np.negative(x, dtype=np.float32)
    with np.errstate(over="ignore"):  # exp(-x) overflows to inf for x < -88: sigmoid is then 0, as it should be
        np.exp(out, out=out)
    out += 1
    return np.reciprocal(out, out=out)


def masks_at_output(lowres: np.ndarray, valid: tuple[int, int], out_size: tuple[int, int]) -> np.ndarray:
    """Mask logits [n, h, w] (1/4 canvas) -> [n, H0, W0] float32, one query at a time."""
    lowres = np.ascontiguousarray(lowres, dtype=np.float32)
    geometry = MaskGeometry(lowres.shape[1:], valid, out_size)
    out = np.empty((lowres.shape[0], *out_size), np.float32)
    for k in range(lowres.shape[0]):
        out[k] = geometry.block(lowres[k:k + 1], slice(None), slice(None))[0]
    return out


def semantic(logits: np.ndarray, lowres: np.ndarray, valid, out_size, before_inference: bool) -> np.ndarray:
    """Class map int32 [H0, W0]: argmax over K of sum_q softmax(cls)[q, :-1] x sigmoid(mask logit q).

    ``before_inference`` (panoptic/instance configs) resizes masks before the class scores; semantic-only configs
    compute scores at the canvas, then crop and resize the scores (docs/model.md §2). Either way a pixel's class
    scores lie between those of its window's smallest and largest logits (sigmoid is monotone, the weights are
    non-negative), so per cell two [cells, Q] x [Q, K] products bound them; cells whose best class clears every
    other class's upper bound are painted whole, the others computed pixel by pixel."""
    probs = softmax(logits.astype(np.float32))[:, :-1]  # [Q, K]
    lowres = np.ascontiguousarray(lowres, dtype=np.float32)
    geometry = MaskGeometry(lowres.shape[1:], valid, out_size)
    q = lowres.shape[0]
    lo_sig, hi_sig = geometry.bounds(sigmoid(lowres))  # sigmoid is monotone: bounds of sigmoid, [Q, Gy, Gx]
    lo = lo_sig.reshape(q, -1).T @ probs  # [cells, K]
    hi = hi_sig.reshape(q, -1).T @ probs
    best = lo.argmax(1)
    cell = np.arange(best.size)
    best_lo = lo[cell, best]
    contenders = hi >= best_lo[:, None] * (1 - RELATIVE_MARGIN)  # [cells, K]: classes that may win a pixel
    decided = contenders.sum(1) == 1
    out = geometry.paint(best.reshape(geometry.cells).astype(np.int32))
    undecided = np.flatnonzero(~decided)
    if before_inference:
        lo_sig, hi_sig = lo_sig.reshape(q, -1), hi_sig.reshape(q, -1)
        for start in range(0, undecided.size, CELLS_PER_STEP):
            cells = undecided[start:start + CELLS_PER_STEP]
            rows, cols, real = geometry.cell_pixels(cells)
            out[np.broadcast_to(rows, real.shape)[real], np.broadcast_to(cols, real.shape)[real]] = \
                _semantic_cells(lowres, probs, geometry, cells, real, lo_sig[:, cells], hi_sig[:, cells],
                                np.flatnonzero(contenders[cells].any(0)))
        return out
    rows, cols, _ = geometry.pixels_of(undecided)
    for start in range(0, rows.size, PIXELS_PER_STEP):
        r, c = rows[start:start + PIXELS_PER_STEP], cols[start:start + PIXELS_PER_STEP]
        if geometry.same:
            scores = probs.T @ sigmoid(geometry.canvas_at_pixels(lowres, r, c))
        else:
            taps = geometry.canvas_taps(r, c)
            scores = geometry.second_resize(
                [probs.T @ sigmoid(geometry.canvas_at_pixels(lowres, tr, tc)) for tr, tc, _, _ in taps], taps)
        out[r, c] = scores.argmax(0)
    return out


def _semantic_cells(lowres, probs, geometry, cells, real, lo_sig, hi_sig, classes) -> np.ndarray:
    """Classes of the real pixels of some cells (before-inference order), among ``classes`` (those that may win
    a pixel of these cells). Queries whose sigmoid stays below ACTIVE_SIGMOID over all these cells are not computed:
    their share of each class score is bounded per cell by lo_sig / hi_sig ([Q, cells]); a pixel that those bounds
    leave undecided is computed with every query."""
    probs = probs[:, classes]
    active = np.flatnonzero(hi_sig.max(1) >= ACTIVE_SIGMOID)
    rest = np.setdiff1d(np.arange(len(probs)), active)
    values = geometry.cell_values(geometry.cell_windows(lowres[active], cells), cells)  # [E, Cy, A, Cx]
    partial = sigmoid(values.transpose(0, 1, 3, 2)[real]) @ probs[active]  # [pixels, classes]
    cell_of = np.broadcast_to(np.arange(len(cells))[:, None, None], real.shape)[real]
    low = partial + (lo_sig[rest].T @ probs[rest])[cell_of]
    high = partial + (hi_sig[rest].T @ probs[rest])[cell_of]
    best = low.argmax(1)
    pixel = np.arange(best.size)
    best_low = low[pixel, best]
    high[pixel, best] = -np.inf
    unsure = np.flatnonzero(best_low <= high.max(1, initial=-np.inf) * (1 + RELATIVE_MARGIN))
    if unsure.size:  # every query for the cells of these pixels
        again = np.unique(cell_of[unsure])
        values = geometry.cell_values(geometry.cell_windows(lowres, cells[again]), cells[again])
        full = np.full((len(cells), *real.shape[1:]), -1, np.int64)
        full[again] = np.where(real[again], (sigmoid(values).transpose(0, 1, 3, 2) @ probs).argmax(-1), -1)
        best[unsure] = full[real][unsure]
    return classes[best]


def instance(logits: np.ndarray, lowres: np.ndarray, valid, out_size, topk: int, panoptic_on: bool,
             thing_ids) -> dict:
    """Top-k over Q x K (sorted by class probability; the reference's order is unspecified), non-things dropped
    for panoptic models, masks = logit > 0 at the output size, score = prob x mean sigmoid inside the mask.

    A query chosen for several classes is computed once, and only over the bounding box of the cells its window
    maximum says may be positive (a cell whose window is <= 0 has no positive pixel)."""
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
    lowres = np.ascontiguousarray(lowres, dtype=np.float32)
    geometry = MaskGeometry(lowres.shape[1:], valid, out_size)
    masks = np.zeros((len(queries), *out_size), bool)  # zero pages: only the boxes written below are touched
    unique, which = np.unique(queries, return_inverse=True)
    mean_sigmoid = np.zeros(len(unique), np.float32)
    for j, query in enumerate(unique):
        _, hi = geometry.bounds(lowres[query:query + 1])
        cell_rows, cell_cols = np.nonzero(hi[0] > 0)
        if cell_rows.size == 0:
            continue
        rows = slice(geometry.y.start[cell_rows.min()], geometry.y.start[cell_rows.max()]
                     + geometry.y.count[cell_rows.max()])
        cols = slice(geometry.x.start[cell_cols.min()], geometry.x.start[cell_cols.max()]
                     + geometry.x.count[cell_cols.max()])
        values = geometry.block(lowres[query:query + 1], rows, cols)[0]
        binary = values > 0
        masks[np.flatnonzero(which == j), rows, cols] = binary
        mean_sigmoid[j] = sigmoid(values[binary]).sum(dtype=np.float32) / (binary.sum() + 1e-6)
    return {"scores": (scores * mean_sigmoid[which]).astype(np.float32), "labels": labels, "query_ids": queries,
            "masks": masks}


def _argmax_rows(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(argmax over axis 0, the max) of [n, m], first index on ties; a running maximum is several times faster than
    ``argmax(0)``, whose reduction runs across the strided axis."""
    best_value = values[0].copy()
    best = np.zeros(values.shape[1], np.int64)
    for k in range(1, values.shape[0]):
        np.copyto(best, k, where=values[k] > best_value)
        np.maximum(best_value, values[k], out=best_value)
    return best, best_value


class _Panoptic:
    """Panoptic inference without full-resolution masks (module docstring).

    Bounds live in the space of v = score x sigmoid(logit): monotone in the logit for each query, so the window
    minimum/maximum of v bound every pixel of a cell, and sigmoid >= 0.5 is v >= score / 2. A cell whose best lower
    bound no other query's upper bound reaches, and whose owner is surely confident or surely not, is counted and
    painted whole; the pixels of the other cells are computed for that cell's candidates only, and go to the first
    of them with the highest v (as argmax)."""

    def __init__(self, lowres: np.ndarray, scores: np.ndarray, valid, out_size):
        n = lowres.shape[0]
        self.geometry = geometry = MaskGeometry(lowres.shape[1:], valid, out_size)
        ppc = geometry.pixels_per_cell().reshape(-1)
        lo, hi = (b.reshape(n, -1) for b in geometry.bounds(sigmoid(lowres) * scores[:, None, None]))
        half = (scores * np.float32(0.5)).astype(np.float32)[:, None]
        surely_conf = lo >= half * (1 + RELATIVE_MARGIN)  # [n, cells]: every pixel's sigmoid >= 0.5
        # sigmoid >= 0.5 area of each query: sure cells whole, sign-ambiguous cells per pixel
        self.orig = np.rint(surely_conf.astype(np.float32) @ ppc.astype(np.float32)).astype(np.int64)
        amb_k, amb_cell = np.divmod(np.flatnonzero(~surely_conf & (hi > half * (1 - RELATIVE_MARGIN))), lo.shape[1])
        if amb_k.size:
            values = geometry.cell_values(geometry.cell_windows(lowres, amb_cell, amb_k), amb_cell)
            confident = (sigmoid(values) >= 0.5) & geometry.cell_pixels(amb_cell)[2]
            self.orig += np.bincount(amb_k, weights=confident.sum((1, 2)), minlength=n).astype(np.int64)
        # owner per cell: the best lower bound; every query whose upper bound reaches it is a candidate
        best, best_lo = _argmax_rows(lo)
        candidates = hi >= best_lo * (1 - RELATIVE_MARGIN)
        cell = np.arange(best.size)
        owner_conf = surely_conf[best, cell]
        owner_not = hi[best, cell] <= half[best, 0] * (1 - RELATIVE_MARGIN)
        decided = (candidates.sum(0) == 1) & (owner_conf | owner_not)
        self.decided, self.best, self.cell_conf = decided, best, owner_conf
        self.owned = np.bincount(best[decided], weights=ppc[decided], minlength=n).astype(np.int64)
        both = decided & owner_conf
        self.both = np.bincount(best[both], weights=ppc[both], minlength=n).astype(np.int64)
        self._undecided(lowres, scores, candidates)

    def _undecided(self, lowres, scores, candidates) -> None:
        """Owner and confidence of every pixel of the undecided cells, from that cell's candidates."""
        geometry, n = self.geometry, lowres.shape[0]
        cells = np.flatnonzero(~self.decided)
        self.rows, self.cols, self.real = geometry.cell_pixels(cells)
        if cells.size == 0:
            self.pixel_owner, self.pixel_conf = np.zeros(self.real.shape, np.int64), np.zeros(self.real.shape, bool)
            return
        # candidate pairs: cell-major, ascending query within a cell (so the first maximum is argmax's)
        pair_cell, pair_k = np.nonzero(candidates[:, cells].T)
        segment = np.flatnonzero(np.diff(pair_cell, prepend=-1))  # first pair of each cell
        rank = np.arange(pair_k.size) - segment[pair_cell]
        p = sigmoid(geometry.cell_values(geometry.cell_windows(lowres, cells[pair_cell], pair_k), cells[pair_cell]))
        v = scores[pair_k][:, None, None] * p
        best_v, best_p = v[segment], p[segment]
        owner = np.broadcast_to(pair_k[segment][:, None, None], best_v.shape).copy()
        for r in range(1, int(rank.max(initial=0)) + 1):
            at = np.flatnonzero(rank == r)
            cell = pair_cell[at]
            better = v[at] > best_v[cell]  # strict: an equal later query does not take over
            best_v[cell] = np.where(better, v[at], best_v[cell])
            best_p[cell] = np.where(better, p[at], best_p[cell])
            owner[cell] = np.where(better, pair_k[at][:, None, None], owner[cell])
        self.pixel_owner, self.pixel_conf = owner, best_p >= 0.5
        real = self.real
        self.owned += np.bincount(self.pixel_owner[real], minlength=n)
        self.both += np.bincount(self.pixel_owner[real & self.pixel_conf], minlength=n)

    def paint(self, segment_of: np.ndarray) -> np.ndarray:
        """int32 [H0, W0]: segment_of[owner] where the owner's sigmoid >= 0.5, else 0."""
        per_cell = np.where(self.decided & self.cell_conf, segment_of[self.best], 0).astype(np.int32)
        seg = self.geometry.paint(per_cell.reshape(self.geometry.cells))
        real = self.real
        rows, cols = np.broadcast_to(self.rows, real.shape)[real], np.broadcast_to(self.cols, real.shape)[real]
        seg[rows, cols] = np.where(self.pixel_conf, segment_of[self.pixel_owner], 0)[real]
        return seg


def panoptic(logits: np.ndarray, lowres: np.ndarray, valid, out_size, num_classes: int, thing_ids,
             object_mask_threshold: float, overlap_threshold: float):
    """-> (int32 [H0, W0] segment ids, segments) as the reference panoptic_inference."""
    probs_cls = softmax(logits.astype(np.float32))
    scores, labels = probs_cls.max(-1), probs_cls.argmax(-1)
    keep = np.flatnonzero((labels != num_classes) & (scores > object_mask_threshold))
    segments: list[dict] = []
    if keep.size == 0:
        return np.zeros(out_size, np.int32), segments
    kept = np.ascontiguousarray(lowres[keep], dtype=np.float32)
    regions = _Panoptic(kept, scores[keep], valid, out_size)
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
