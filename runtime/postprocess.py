"""The reference post-processing in numpy (no torch), from raw outputs: docs/model.md §2, as ``m2f.model.postprocess``.

Per image: mask logits [Q, h, w] at 1/4 of the canvas -> bilinear to the canvas -> crop to the valid size -> bilinear
to the output size -> semantic / instance / panoptic. Nothing is upsampled whole. Every output pixel's logit is a
convex combination of a small low-resolution window (``mask_geometry``), so bounds per cell of pixels decide most of
each task -- which query owns a pixel and whether it is confident (panoptic), which class wins (semantic), whether a
mask is on (instance) -- and only undecided cells, or an instance mask's bounding box, are computed. Panoptic adds a
coarser level, blocks of 8 x 8 cells, and bounds only an undecided block's candidate queries per cell. Work and
memory scale with the low-resolution logits and the undecided cells, not with Q x H x W.

Agreement with the reference: mask logits are within a few ulp of PyTorch's (its taps and weights, a different
grouping of the products; PyTorch's own CPU kernel rounds differently with the channel count and instruction set),
and numpy's float32 sigmoid and matrix products round differently from torch's. Decisions therefore equal the
reference's except at near-ties: a pixel whose two best panoptic candidates (prob x sigmoid) or two best semantic
classes are within 1e-5 of each other (relative), or a mask logit within 1e-5 of 0 (tests/runtime/test_postprocess.py
checks each differing pixel at full size). A pixel is confident (sigmoid >= 0.5) where its logit is >= 0: float32
sigmoid also rounds logits in (-6e-8, 0) up to 0.5, a difference far inside that bound.
"""
from __future__ import annotations

import numpy as np

from .mask_geometry import BLOCK_CELLS, mask_geometry

# Decided cells keep this relative distance from every bound: the logits' last-ulp differences, float32 sigmoid and
# matrix-product rounding are all far below it, so no pixel of a decided cell could decide otherwise.
RELATIVE_MARGIN = np.float32(1e-4)
# semantic cells bounded at once: [4096, K] float32 bounds are 2 MB (numpy asks the kernel for huge pages from
# 4 MB on, whose faults can stall for compaction after another library freed a lot of memory)
CELLS_PER_BAND = 4096
CELLS_PER_STEP = 256  # undecided semantic cells computed at once: [256, Cy, Q, Cx] logits, [.., K] scores
ACTIVE_SIGMOID = np.float32(1e-3)  # queries below this sigmoid over such a step only bound the class scores
PIXELS_PER_STEP = 4096  # the same for semantic-only configs, per pixel: [Q, 4096] logits, [K, 4096] scores
# panoptic pixel values computed at once, (cell, query) pairs x pixels per cell: 32768 pairs of 4 x 4 pixels, 2 MB of
# float32 (twice L2 here, but fewer steps beat in-cache ones: 3 % (smooth) to 7 % (rough) less time at 800x1333
# than 8192 pairs); pairs of larger cells, fewer at a time
PAIR_PIXELS_PER_STEP = 16 * 32768


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """float32 1 / (1 + exp(-x)), in place on one new array."""
    out = np.negative(x, dtype=np.float32)
    with np.errstate(over="ignore"):  # exp(-x) overflows to inf for x < -88: sigmoid is then 0, as it should be
        np.exp(out, out=out)
    out += 1
    return np.divide(1, out, out=out)  # (np.reciprocal is not vectorised: twice as slow)


def masks_at_output(lowres: np.ndarray, valid: tuple[int, int], out_size: tuple[int, int]) -> np.ndarray:
    """Mask logits [n, h, w] (1/4 canvas) -> [n, H0, W0] float32, one query at a time."""
    lowres = np.ascontiguousarray(lowres, dtype=np.float32)
    geometry = mask_geometry(lowres.shape[1:], tuple(valid), tuple(out_size))
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
    other class's upper bound are painted whole, the others computed pixel by pixel. Bands of rows of cells are
    done one after the other (about CELLS_PER_BAND cells): memory is bounded by the band, not by the image."""
    probs = softmax(logits.astype(np.float32))[:, :-1]  # [Q, K]
    lowres = np.ascontiguousarray(lowres, dtype=np.float32)
    geometry = mask_geometry(lowres.shape[1:], tuple(valid), tuple(out_size))
    out = np.empty(out_size, np.int32)
    gy, gx = geometry.cells
    band_rows = max(1, CELLS_PER_BAND // gx)
    for first_row in range(0, gy, band_rows):
        rows = slice(first_row, min(first_row + band_rows, gy))
        out[geometry.y.outputs(rows)] = _semantic_band(lowres, probs, geometry, rows, before_inference)
    return out


def _semantic_band(lowres, probs, geometry, rows: slice, before_inference: bool) -> np.ndarray:
    """The class map int32 [len(y.outputs(rows)), W0] of some rows of cells (``semantic``)."""
    q = lowres.shape[0]
    gx = geometry.x.groups
    lo_sig, hi_sig = geometry.bounds(sigmoid(lowres[:, geometry.y.reads(rows)]), rows)  # [Q, rows, Gx]
    lo = lo_sig.reshape(q, -1).T @ probs  # [cells, K]
    hi = hi_sig.reshape(q, -1).T @ probs
    best = lo.argmax(1)
    cell = np.arange(best.size)
    best_lo = lo[cell, best]
    contenders = hi >= best_lo[:, None] * (1 - RELATIVE_MARGIN)  # [cells, K]: classes that may win a pixel
    decided = contenders.sum(1) == 1
    out = geometry.paint(best.reshape(-1, gx).astype(np.int32), rows)
    first_pixel_row = geometry.y.outputs(rows).start
    undecided = np.flatnonzero(~decided)  # in the band; + rows.start * gx in the image
    if before_inference:
        lo_sig, hi_sig = lo_sig.reshape(q, -1), hi_sig.reshape(q, -1)
        for start in range(0, undecided.size, CELLS_PER_STEP):
            local = undecided[start:start + CELLS_PER_STEP]
            cells = local + rows.start * gx
            pixel_rows, pixel_cols, real = geometry.cell_pixels(cells)
            out[np.broadcast_to(pixel_rows - first_pixel_row, real.shape)[real],
                np.broadcast_to(pixel_cols, real.shape)[real]] = \
                _semantic_cells(lowres, probs, geometry, cells, real, lo_sig[:, local], hi_sig[:, local],
                                np.flatnonzero(contenders[local].any(0)))
        return out
    pixel_rows, pixel_cols, _ = geometry.pixels_of(undecided + rows.start * gx)
    for start in range(0, pixel_rows.size, PIXELS_PER_STEP):
        r, c = pixel_rows[start:start + PIXELS_PER_STEP], pixel_cols[start:start + PIXELS_PER_STEP]
        if geometry.same:
            scores = probs.T @ sigmoid(geometry.canvas_at_pixels(lowres, r, c))
        else:
            taps = geometry.canvas_taps(r, c)
            scores = geometry.second_resize(
                [probs.T @ sigmoid(geometry.canvas_at_pixels(lowres, tr, tc)) for tr, tc, _, _ in taps], taps)
        out[r - first_pixel_row, c] = scores.argmax(0)
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
    geometry = mask_geometry(lowres.shape[1:], tuple(valid), tuple(out_size))
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


def _rank_major(group: np.ndarray, segment: np.ndarray) -> tuple[np.ndarray, list[slice]]:
    """A reordering of pairs grouped by ``_groups`` that puts them rank by rank: first every group's first pair,
    groups with more pairs first, then every second pair of the same groups in the same order, and so on -> (the
    order, one slice per rank). Rank r's pairs belong to the first len(slice r) groups of rank 0, in order: a
    running maximum over ranks is then contiguous slices, no gathers."""
    size = np.diff(np.append(segment, len(group)))
    # larger groups first; int16 sizes (a few queries per cell or block) sort by radix, twice as fast as int64
    by_size = np.argsort(-size.astype(np.int16 if len(group) < np.iinfo(np.int16).max else np.int64), kind="stable")
    first, size = segment[by_size], size[by_size]
    having = np.searchsorted(-size, -np.arange(1, int(size[0]) + 1), side="right")  # groups with more than r pairs
    order = np.concatenate([first[:m] + r for r, m in enumerate(having)])
    ends = np.cumsum(having)
    return order, [slice(int(e - m), int(e)) for e, m in zip(ends, having)]


def _running_argmax(values: np.ndarray, slices: list[slice]) -> np.ndarray:
    """Index (into the last axis of ``values`` [..., pairs]) of the first largest value of each group of
    rank-major pairs (``_rank_major``), elementwise over the leading axes -> int64 [..., groups].

    The running maximum keeps the rank of the winner, not its index: ranks only grow, so "take this rank where
    strictly better" is a maximum with rank x better (int8, no masked loops), and group j's pair at rank r is
    slices[r].start + j."""
    first = slices[0]
    best_value = values[..., first].copy()
    best_rank = np.zeros(best_value.shape, np.int8 if len(slices) < 128 else np.int32)
    for rank, part in enumerate(slices[1:], start=1):
        m = part.stop - part.start
        value, kept = values[..., part], best_value[..., :m]
        better = value > kept  # strict: an equal later pair does not take over
        np.maximum(kept, value, out=kept)
        won = best_rank[..., :m]
        np.maximum(won, better * best_rank.dtype.type(rank), out=won)
    starts = np.array([part.start for part in slices])
    return starts[best_rank] + np.arange(first.stop)


def _pairs_per_step(shape: tuple[int, int]) -> int:
    """(cell, query) pairs of cells of this shape computed per pixel at once (PAIR_PIXELS_PER_STEP)."""
    return max(1, PAIR_PIXELS_PER_STEP // (shape[0] * shape[1]))


def _code(owner: np.ndarray, confident: np.ndarray) -> np.ndarray:
    """owner x 2 + confident: one array for the counts (np.bincount) and the painting (a lookup)."""
    return owner * 2 + confident


def _nonzero(mask: np.ndarray) -> tuple[np.ndarray, ...]:
    """np.nonzero (C order), from the flat positions: 2-3x faster than np.nonzero on the 3-d masks here."""
    flat = np.flatnonzero(mask)
    index = []
    for size in mask.shape[:0:-1]:
        flat, last = np.divmod(flat, size)
        index.append(last)
    return (flat, *index[::-1])


def _along_last(index: np.ndarray, n: int) -> np.ndarray:
    """Flat indices into an array [..., n] of ``index`` [..., m] (positions along its last axis, elementwise over the
    leading axes): np.take with them is take_along_axis, several times faster."""
    rows = np.arange(int(np.prod(index.shape[:-1]))).reshape(*index.shape[:-1], 1)
    return index + rows * n


def _groups(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(group of each element, first element of each group) of non-negative keys (cell or block indices) whose
    equal values are next to each other."""
    starts = np.diff(keys, prepend=-1) != 0
    return np.cumsum(starts) - 1, np.flatnonzero(starts)


class _Panoptic:
    """Panoptic inference without full-resolution masks (module docstring), on three levels: blocks of
    BLOCK_CELLS x BLOCK_CELLS cells, cells, pixels.

    Bounds live in the space of v = score x sigmoid(logit): monotone in the logit for each query, so the window
    minimum/maximum of v bound every pixel of a cell or block, and sigmoid >= 0.5 is v >= score / 2. A block (cell)
    whose best lower bound no other query's upper bound reaches, and whose owner is surely confident or surely not,
    is counted and painted whole. Only an undecided block's candidates (the queries whose upper bound reaches its
    best lower bound: no other query can own a pixel there) are bounded per cell, and only an undecided cell's
    candidates per pixel, where the pixel goes to the first of them with the highest v (as argmax). A query's
    confident area (sigmoid >= 0.5) is counted the same way: whole where surely confident, per cell and then per
    pixel where it is not sure."""

    def __init__(self, lowres: np.ndarray, planes: np.ndarray, scores: np.ndarray, valid, out_size):
        """lowres: float32 [Q, h, w], every query's mask logits; planes: int [n], the kept queries' planes in it;
        scores: float32 [n], theirs. Queries are numbered 0..n-1 from here on."""
        n = len(planes)
        self.planes = planes
        self.geometry = mask_geometry(lowres.shape[1:], tuple(valid), tuple(out_size))
        self.blocks = blocks = self.geometry.blocks
        self.scores, self.half = scores, (scores * np.float32(0.5)).astype(np.float32)
        self.owned, self.both, self.orig = (np.zeros(n, np.int64) for _ in range(3))
        queries = np.arange(n)[:, None]
        lo, hi = (self._v(b.reshape(n, -1), queries) for b in blocks.bounds(lowres, planes))  # [n, blocks]
        sure, surely_not = self._confidence(lo, hi, queries)
        block_pixels = blocks.pixels.reshape(-1)
        self.orig += sure.astype(np.int64) @ block_pixels
        best, best_lo = _argmax_rows(lo)
        candidates = hi >= best_lo * (1 - RELATIVE_MARGIN)  # [n, blocks]: queries that may own a pixel
        block = np.arange(best.size)
        owner_conf = sure[best, block]
        decided = (candidates.sum(0) == 1) & (owner_conf | surely_not[best, block])
        self._count(_code(best, owner_conf), np.where(decided, block_pixels, 0))
        self.block_owner = np.where(decided & owner_conf, best, -1)  # painted whole: its owner, else -1
        # the cells of (block, query) pairs still open: who owns an undecided block's cells, and where a query is
        # not sure of its own confidence
        need_owner, need_orig = candidates & ~decided, ~sure & ~surely_not
        pair_block, pair_k = _nonzero((need_owner | need_orig).T)  # block-major, ascending query
        # [S, S, P] (S = BLOCK_CELLS), pairs last; v of the windows, then bounds: fewer sigmoids than of both bounds
        cell_lo, cell_hi = blocks.cell_bounds(self._v(blocks.windows(lowres, pair_block, planes[pair_k]), pair_k),
                                              pair_block)
        cell_sure, cell_not = self._confidence(cell_lo, cell_hi, pair_k)
        pixels = blocks.cell_pixels[:, :, pair_block]
        self._confident_area(lowres, need_orig[pair_k, pair_block], pair_block, pair_k, cell_sure, cell_not, pixels)
        self.cell_blocks, self.cell_owner = np.zeros(0, np.int64), np.zeros((BLOCK_CELLS, BLOCK_CELLS, 0), np.int64)
        self.pixels = []  # per step of pixel work: (flat output index, owner x 2 + confident)
        mine = np.flatnonzero(need_owner[pair_k, pair_block])
        if mine.size:
            self._cell_owners(lowres, mine, pair_block, pair_k, cell_lo, cell_hi, cell_sure, cell_not, pixels)

    def _v(self, logits: np.ndarray, queries: np.ndarray) -> np.ndarray:
        """score x sigmoid(logit), queries broadcast against logits."""
        return sigmoid(logits) * self.scores[queries]

    def _confidence(self, lo, hi, queries) -> tuple[np.ndarray, np.ndarray]:
        """(surely sigmoid >= 0.5, surely < 0.5) on every pixel under bounds lo / hi of v."""
        half = self.half[queries]
        return lo >= half * (1 + RELATIVE_MARGIN), hi <= half * (1 - RELATIVE_MARGIN)

    def _count(self, code: np.ndarray, pixels: np.ndarray | None = None) -> None:
        """Add ``pixels`` (int, same shape; None: one each) to the owned count of the owners in ``code`` (``_code``),
        and to their owned-and-confident count where confident. Zero pixels leave an entry out: weights are cheaper
        than a boolean selection."""
        n = len(self.scores)
        counts = np.bincount(code.ravel(), None if pixels is None else pixels.ravel(),
                             minlength=2 * n).reshape(n, 2).astype(np.int64)  # [query, confident]
        self.owned += counts.sum(1)
        self.both += counts[:, 1]

    def _confident_area(self, lowres, which, pair_block, pair_k, cell_sure, cell_not, pixels) -> None:
        """Add the sigmoid >= 0.5 pixels of the (block, query) pairs ``which`` selects ([P] bool; cell arrays
        [S, S, P]): sure cells whole, the others pixel by pixel."""
        n = len(self.scores)
        pair_block, pair_k, cell_sure, cell_not, pixels = (
            a[..., which] for a in (pair_block, pair_k, cell_sure, cell_not, pixels))
        sure_pixels = (cell_sure * pixels).sum((0, 1))
        self.orig += np.bincount(pair_k, weights=sure_pixels, minlength=n).astype(np.int64)
        i, j, p = _nonzero(~(cell_sure | cell_not) & (pixels > 0))
        cells, k, geometry = self.blocks.cells(pair_block[p], i, j), pair_k[p], self.geometry
        for where, shape, real in geometry.shapes(cells):
            small = np.uint8 if shape[0] * shape[1] <= np.iinfo(np.uint8).max else np.int64  # the fastest sum
            step = _pairs_per_step(shape)
            for start in range(0, where.size, step):
                at = where[start:start + step]
                logit = geometry.pair_values(lowres, cells[at], self.planes[k[at]], shape)
                confident = logit >= 0  # sigmoid >= 0.5 (module docstring)
                if real is not None:
                    confident &= real[:, :, start:start + step]
                per_pair = confident.reshape(-1, at.size).view(np.uint8).sum(0, dtype=small)
                self.orig += np.bincount(k[at], weights=per_pair, minlength=n).astype(np.int64)

    def _cell_owners(self, lowres, mine, pair_block, pair_k, lo, hi, sure, surely_not, pixels) -> None:
        """Owners of the cells of the undecided blocks, from their candidates' cell bounds: pairs ``mine`` (block-major
        positions) of ``pair_*`` [P] and of the cell arrays [S, S, P] (gathered once, in the order of the work); the
        cells that stay undecided go to ``_pixel_owners``."""
        pair_block, pair_k = pair_block[mine], pair_k[mine]
        order, slices = _rank_major(*_groups(pair_block))  # pair_block / pair_k stay block-major
        ranked_k = pair_k[order]
        lo, hi, sure, surely_not = (a[:, :, mine[order]] for a in (lo, hi, sure, surely_not))
        group = np.concatenate([np.arange(part.stop - part.start) for part in slices])  # rank-major: its position
        best = _running_argmax(lo, slices)  # [S, S, U]: the owner's pair
        at_best = _along_last(best, lo.shape[2])  # flat indices of the owners' pairs into [S, S, P] arrays
        candidates = hi >= np.take(lo, at_best)[:, :, group] * (1 - RELATIVE_MARGIN)
        count = np.zeros(best.shape, np.int32)
        for part in slices:
            count[:, :, :part.stop - part.start] += candidates[:, :, part]
        owner, owner_conf = ranked_k[best], np.take(sure, at_best)
        cell_pixels = pixels[:, :, mine[order[slices[0]]]]
        decided = ((count == 1) & (owner_conf | np.take(surely_not, at_best))) | (cell_pixels == 0)
        self._count(_code(owner, owner_conf), np.where(decided, cell_pixels, 0))
        self.cell_blocks = pair_block[order[slices[0]]]
        self.cell_owner = np.where(decided & owner_conf, owner, -1)
        # pixels: each undecided cell's candidates, in the pairs' block-major order again: then nonzero lists a
        # cell's candidates together, in ascending query order (argmax's), without sorting
        still_open = np.empty_like(candidates)
        still_open[:, :, order] = candidates & ~decided[:, :, group]
        i, j, p = _nonzero(still_open)
        if p.size:
            self._pixel_owners(lowres, self.blocks.cells(pair_block[p], i, j), pair_k[p])

    def _pixel_owners(self, lowres, pair_cell, pair_k) -> None:
        """Owner and confidence of every pixel of the cells in ``pair_cell`` (each cell's pairs together, in ascending
        query order), from their candidates; cells of one shape at a time (no padding), whole cells of about
        ``_pairs_per_step`` pairs at a time."""
        found = []
        for where, shape, real in self.geometry.shapes(pair_cell):
            cell, k = pair_cell[where], pair_k[where]
            starts = _groups(cell)[1]  # each cell's first pair
            steps = np.searchsorted(starts, np.arange(0, cell.size, _pairs_per_step(shape)))
            cuts = np.append(np.unique(starts[steps[steps < starts.size]]), cell.size)
            for a, b in zip(cuts[:-1], cuts[1:]):
                found.append(self._pixel_step(lowres, cell[a:b], k[a:b], shape,
                                              None if real is None else real[:, :, a:b]))
        self.pixels = found

    def _pixel_step(self, lowres, cell, k, shape, real):
        """(flat output index, owner x 2 + confident: ``_code``) of the pixels of whole cells (each cell's pairs
        together, ascending query) of one shape, counted into owned / both; ``real`` [Cy, Cx, pairs] marks the pixels
        of padded cells (None: all are real)."""
        geometry = self.geometry
        order, slices = _rank_major(*_groups(cell))
        cell, k = cell[order], k[order]
        logit = geometry.pair_values(lowres, cell, self.planes[k], shape)  # [Cy, Cx, E]
        v = sigmoid(logit)
        v *= self.scores[k]
        best = _running_argmax(v, slices)  # [Cy, Cx, cells]
        i, j = np.indices(shape)
        pixel = geometry.first_pixel(cell[slices[0]]) + (i * geometry.out[1] + j)[:, :, None]  # [Cy, Cx, cells]
        confident = np.take(logit, _along_last(best, cell.size)) >= 0  # sigmoid >= 0.5 (module docstring)
        code = _code(k[best], confident)
        if real is None:
            pixel, code = pixel.ravel(), code.ravel()
        else:
            real = real[:, :, order[slices[0]]]
            pixel, code = pixel[real], code[real]
        self._count(code)
        return pixel, code

    def paint(self, segment_of: np.ndarray) -> np.ndarray:
        """int32 [H0, W0]: segment_of[owner] where the owner's sigmoid >= 0.5, else 0."""
        blocks, size = self.blocks, BLOCK_CELLS
        lookup = np.append(segment_of, 0).astype(np.int32)  # owner -1: not painted here
        by_code = np.stack([np.zeros_like(segment_of), segment_of], 1).reshape(-1).astype(np.int32)  # ``_code``
        per_cell = np.empty((blocks.y.blocks, size, blocks.x.blocks, size), np.int32)
        per_cell[:] = lookup[self.block_owner].reshape(blocks.shape)[:, None, :, None]
        by, bx = np.divmod(self.cell_blocks, blocks.x.blocks)
        per_cell[by, :, bx, :] = lookup[self.cell_owner].transpose(2, 0, 1)
        gy, gx = self.geometry.cells
        seg = self.geometry.paint(per_cell.reshape(blocks.y.blocks * size, -1)[:gy, :gx])
        flat = seg.reshape(-1)
        for pixel, code in self.pixels:
            flat[pixel] = by_code[code]
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
    regions = _Panoptic(np.ascontiguousarray(lowres, dtype=np.float32), keep, scores[keep], valid, out_size)
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
