"""Where each output pixel's mask logit comes from, in PyTorch's arithmetic (numpy, no torch; docs/model.md §2).

The reference takes mask logits [Q, h, w] at 1/4 of the canvas, resizes them bilinearly x4 to the canvas, crops the
valid (vh, vw) region and resizes that bilinearly to the output size (H0, W0); both resizes are PyTorch's
``align_corners=False`` in float32. Per axis, an output index reads two canvas indices and each of those two
low-resolution ones, so every output value is a convex combination of a window of at most 4x4 low-resolution
logits (2x2 when the output is the valid size). Consecutive output rows (columns) whose windows start at the same
low-resolution row form a *group*; a group of rows times a group of columns is a *cell*: every pixel of a cell lies
between the min and the max of the cell's window (``bounds``). The tasks decide most pixels from those bounds and
compute only the rest:

- ``cell_values``: a cell's pixels from its window and the composite weights of both resizes, a few ulp from
  PyTorch's two resizes (the products and sums are grouped differently); ``pair_values`` the same for many
  (cell, query) pairs of one cell shape, pairs last;
- ``Blocks``: squares of 8 x 8 cells, a coarser level with the same bounds, so that most of an image is decided
  per block and only the undecided blocks' candidate queries are bounded per cell;
- ``block``: every pixel of a rectangle, separably, with PyTorch's taps, weights and order of operations (within
  2 ulp of PyTorch's CPU kernel, whose own rounding depends on the channel count and the instruction set);
- ``canvas_at_pixels`` / ``canvas_taps`` / ``second_resize``: the two resizes one at a time, for semantic-only
  configurations, which resize class scores, not logits.
"""
from __future__ import annotations

import functools

import numpy as np

UPSAMPLE = 4  # mask logits are at 1/4 of the canvas
PLANES_PER_STEP = 4  # queries whose bounds are computed together
BLOCK_CELLS = 8  # cells per side of a block (4x4-pixel cells at full size: 32x32 pixels)
SHAPE_SHARE = 0.05  # cells of a shape at least this common are computed without padding (MaskGeometry.shapes)
GEOMETRIES_KEPT = 8  # geometries (input / output sizes) remembered between images


def torch_taps(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """PyTorch's bilinear source indices and weights along one axis (align_corners=False, float32 arithmetic):
    (i0, i1, w0, w1), each [n_out]; output j = x[i0[j]] * w0[j] + x[i1[j]] * w1[j]."""
    scale = np.float64(np.float32(n_in / n_out))
    # scale * (j + 0.5) - 0.5 rounded once, as PyTorch's compiled kernel computes it (one fused multiply-add)
    src = np.maximum(scale * (np.arange(n_out) + 0.5) - 0.5, 0).astype(np.float32)
    i0 = src.astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = (src - i0).astype(np.float32)
    return i0, i1, (np.float32(1) - w1).astype(np.float32), w1


class Axis:
    """One axis (rows or columns): low-resolution size -> canvas (x4) -> valid crop -> output size."""

    def __init__(self, low: int, valid: int, out: int):
        self.low, self.valid, self.out = low, valid, out
        # canvas index -> two low-resolution indices (only the valid part is ever read)
        self.a0, self.a1, self.wa0, self.wa1 = (t[:valid] for t in torch_taps(UPSAMPLE * low, low))
        self.same = out == valid  # the second resize is the identity (PyTorch copies)
        if self.same:
            self.b0 = self.b1 = np.arange(out)
            self.wb0, self.wb1 = np.ones(out, np.float32), np.zeros(out, np.float32)
        else:
            self.b0, self.b1, self.wb0, self.wb1 = torch_taps(out, valid)
        # each output index reads low-resolution indices first..last (a0, a1 and b0 <= b1 are non-decreasing);
        # a group is a run of output indices with the same first one, its window first..the run's largest last
        first, last = self.a0[self.b0], self.a1[self.b1]
        self.start = np.flatnonzero(np.diff(first, prepend=-1)).astype(np.int64)
        self.count = np.diff(np.append(self.start, out)).astype(np.int64)
        self.first = first[self.start]
        self.last = last[np.append(self.start[1:], out) - 1]
        self.span = self.last - self.first + 1
        # composite weights of both resizes: group g's output index start[g] + i reads low-resolution index
        # first[g] + j with weight composite[g, i, j] (rows past the group's count are zero)
        self.composite = self._composite()
        self.composite_t = np.ascontiguousarray(self.composite.transpose(1, 2, 0))  # [max count, max span, groups]
        # groups whose weights are equal (at full size, every group but the edges): pair_values broadcasts them
        patterns, self.pattern = np.unique(self.composite.reshape(self.groups, -1), axis=0, return_inverse=True)
        self.pattern = self.pattern.reshape(-1)
        self.patterns = patterns.reshape(-1, *self.composite.shape[1:])  # [patterns, max count, max span]

    def _composite(self) -> np.ndarray:
        """float32 [groups, max count, max span]."""
        group = np.repeat(np.arange(self.groups), self.count)
        position = np.arange(self.out) - self.start[group]
        weights = np.zeros((self.groups, int(self.count.max()), int(self.span.max())))
        for b, wb in ((self.b0, self.wb0), (self.b1, self.wb1)):
            for a, wa in ((self.a0, self.wa0), (self.a1, self.wa1)):
                np.add.at(weights, (group, position, a[b] - self.first[group]), wb.astype(np.float64) * wa[b])
        return weights.astype(np.float32)

    @property
    def groups(self) -> int:
        return len(self.start)

    def reads(self, groups: slice) -> slice:
        """The low-resolution indices that these groups' windows read."""
        start, stop, _ = groups.indices(self.groups)
        return slice(int(self.first[start]), int(self.last[stop - 1]) + 1)

    def outputs(self, groups: slice) -> slice:
        """The output indices of these groups."""
        start, stop, _ = groups.indices(self.groups)
        return slice(int(self.start[start]), int(self.start[stop - 1] + self.count[stop - 1]))

    def weights(self, groups: np.ndarray, count: int) -> np.ndarray:
        """Composite weights of ``groups`` [E] for their first ``count`` outputs, pairs last: [count, span, E], or
        [count, span, 1] when all of them weigh alike (broadcast, not gathered)."""
        pattern = self.pattern[groups]
        if pattern.size and (pattern == pattern[0]).all():
            return self.patterns[pattern[0], :count, :, None]
        return np.take(self.composite_t[:count], groups, axis=2)

    def window(self, values: np.ndarray, ops=(np.minimum, np.maximum), groups: slice = slice(None)
               ) -> list[np.ndarray]:
        """For each op (np.minimum / np.maximum): that op over each group's window along axis 1 of ``values``
        [n, low, m] -> [n, groups, m]. Steps past a window's end repeat its last index, which changes no min or
        max; each shifted gather serves every op. ``groups``: only these, and ``values`` holds only the
        low-resolution indices they read (``reads``)."""
        first, last = self.first[groups], self.last[groups]
        first, last = first - first[0], last - first[0]
        outs = [np.take(values, first, axis=1)]
        outs += [outs[0].copy() for _ in ops[1:]]
        for step in range(1, int(self.span[groups].max())):
            shifted = np.take(values, np.minimum(first + step, last), axis=1)
            for op, out in zip(ops, outs):
                op(out, shifted, out=out)
        return outs


def _ragged_arange(counts: np.ndarray) -> np.ndarray:
    """0..c-1 for each count c, concatenated: [2, 3] -> [0, 1, 0, 1, 2]."""
    return np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)


@functools.lru_cache(maxsize=GEOMETRIES_KEPT)
def mask_geometry(low: tuple[int, int], valid: tuple[int, int], out: tuple[int, int]) -> "MaskGeometry":
    """The ``MaskGeometry`` of these sizes, built once: a stream of same-sized images shares it (it is read-only)."""
    return MaskGeometry(low, valid, out)


class MaskGeometry:
    """The two resizes from logits [n, h, w] to an (H0, W0) output through the valid (vh, vw) part of the canvas."""

    def __init__(self, low: tuple[int, int], valid: tuple[int, int], out: tuple[int, int]):
        self.y, self.x = Axis(low[0], valid[0], out[0]), Axis(low[1], valid[1], out[1])
        self.out = tuple(out)
        self.same = self.y.same and self.x.same  # output = valid size: one resize

    @property
    def cells(self) -> tuple[int, int]:
        return self.y.groups, self.x.groups

    @functools.cached_property
    def blocks(self) -> "Blocks":
        """Blocks of BLOCK_CELLS x BLOCK_CELLS cells (panoptic inference's coarse level)."""
        return Blocks(self, BLOCK_CELLS)

    def pixels_per_cell(self) -> np.ndarray:
        """int64 [Gy, Gx]."""
        return np.outer(self.y.count, self.x.count)

    def bounds(self, values: np.ndarray, rows: slice = slice(None)) -> tuple[np.ndarray, np.ndarray]:
        """(min, max) over each cell's window of ``values`` [n, h, w] -> [n, Gy, Gx] each. For any function that is
        monotone in the logit, bounds of its low-resolution values bound it on every pixel of the cell. (Windows
        are taken along rows, where a gather copies whole rows: the columns on a transposed copy.) ``rows``: only
        these rows of cells ([n, len(rows), Gx]), from ``values`` [n, len(y.reads(rows)), w]."""
        n = values.shape[0]
        low, high = (np.empty((n, len(range(*rows.indices(self.y.groups))), self.x.groups), values.dtype)
                     for _ in range(2))
        # a few whole planes at a time stay in cache through all the passes; as many more as fit of a band of rows
        step = PLANES_PER_STEP * max(1, self.y.low // values.shape[1])
        for start in range(0, n, step):
            part = slice(start, start + step)
            columns = np.ascontiguousarray(values[part].transpose(0, 2, 1))  # [p, w, h]
            for across, op, out in zip(self.x.window(columns), (np.minimum, np.maximum), (low, high)):
                out[part] = self.y.window(np.ascontiguousarray(across.transpose(0, 2, 1)), (op,), rows)[0]
        return low, high

    def pixels_of(self, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, cols, which) of every output pixel inside the given flat cell indices, cell by cell, row-major
        within a cell; ``which`` is the position in ``cells`` each pixel came from."""
        cell_rows, cell_cols = np.divmod(cells, self.x.groups)
        nr, nc = self.y.count[cell_rows], self.x.count[cell_cols]
        total = nr * nc
        which = np.repeat(np.arange(len(cells)), total)
        offset = _ragged_arange(total)
        ncw = nc[which]
        row_in, col_in = np.divmod(offset, ncw)
        return self.y.start[cell_rows][which] + row_in, self.x.start[cell_cols][which] + col_in, which

    def cell_windows(self, lowres: np.ndarray, cells: np.ndarray, queries: np.ndarray | None = None) -> np.ndarray:
        """The low-resolution windows of flat cell indices: [len(cells), Sy, Sx] of query ``queries[i]`` for cell i,
        or, with ``queries`` None, [len(cells), n, Sy, Sx] of every query (indices past the image edge repeat the
        last row or column; their weights are zero)."""
        cell_rows, cell_cols = np.divmod(cells, self.x.groups)
        span_y, span_x = self.y.composite.shape[2], self.x.composite.shape[2]
        rows = np.minimum(self.y.first[cell_rows][:, None] + np.arange(span_y), self.y.low - 1)[:, :, None]
        cols = np.minimum(self.x.first[cell_cols][:, None] + np.arange(span_x), self.x.low - 1)[:, None, :]
        if queries is not None:
            return lowres[queries[:, None, None], rows, cols]
        return lowres[:, rows, cols].transpose(1, 0, 2, 3)

    def shapes(self, cells: np.ndarray):
        """The flat cell indices grouped for work without padding: (positions in ``cells``, (rows, cols), None)
        first per common weight pattern (at least SHAPE_SHARE of the cells: ``pair_values`` is then one matrix
        product), then per common pixel count among the others, then the rest in one group padded to its largest
        counts, with real [Cy, Cx, E] saying which pixels exist. Positions keep their order."""
        cell_rows, cell_cols = np.divmod(cells, self.x.groups)
        rows, cols = self.y.count[cell_rows], self.x.count[cell_cols]
        left = np.ones(len(cells), bool)
        patterns = self.y.pattern[cell_rows] * len(self.x.patterns) + self.x.pattern[cell_cols]
        counts = rows * (int(self.x.count.max()) + 1) + cols
        for key in (patterns, counts):  # a pattern decides the counts
            times = np.bincount(key[left]) if left.any() else np.zeros(0)
            for value in np.flatnonzero(times >= SHAPE_SHARE * len(cells)):
                where = np.flatnonzero(left & (key == value))
                left[where] = False
                yield where, (int(rows[where[0]]), int(cols[where[0]])), None
        rest = np.flatnonzero(left)
        if rest.size:
            shape = int(rows[rest].max()), int(cols[rest].max())
            real = ((np.arange(shape[0])[:, None] < rows[rest])[:, None, :]
                    & (np.arange(shape[1])[:, None] < cols[rest])[None, :, :])
            yield rest, shape, real

    def cell_values(self, windows: np.ndarray, cells: np.ndarray) -> np.ndarray:
        """Output logits of cells from their windows (``cell_windows``): [E, Cy, Cx], or [E, Cy, n, Cx] for windows
        of every query; rows and columns past a cell's pixel count are zero (``cell_pixels`` says which are real).
        Each is a sum of at most Sy x Sx weighted logits in float32: within a few ulp of the two resizes."""
        cell_rows, cell_cols = np.divmod(cells, self.x.groups)
        wy = self.y.composite[cell_rows]  # [E, Cy, Sy]
        wx_t = self.x.composite[cell_cols].transpose(0, 2, 1)  # [E, Sx, Cx]
        if windows.ndim == 3:
            return wy @ windows @ wx_t
        e, n, sy, sx = windows.shape
        along_rows = wy @ windows.transpose(0, 2, 1, 3).reshape(e, sy, n * sx)  # [E, Cy, n * Sx]
        return (along_rows.reshape(e, -1, sx) @ wx_t).reshape(e, wy.shape[1], n, wx_t.shape[2])

    def pair_values(self, lowres: np.ndarray, cells: np.ndarray, queries: np.ndarray, shape: tuple[int, int]
                    ) -> np.ndarray:
        """float32 [*shape, E]: query ``queries[e]``'s output logits on cell ``cells[e]``, for cells of one
        ``shape`` (``shapes``), pairs last (every operation runs along them: long contiguous loops). Each window is
        gathered flat (indices past the edge clamped; their weights are zero) and weighted along the width, then
        the height, as PyTorch's bilinear kernel orders a single resize."""
        cell_rows, cell_cols = np.divmod(cells, self.x.groups)
        (cy, cx), h, w = shape, self.y.low, self.x.low
        span_y, span_x = self.y.composite.shape[2], self.x.composite.shape[2]
        rows = np.minimum(self.y.first[cell_rows] + np.arange(span_y)[:, None], h - 1) * w  # [Sy, E]
        cols = np.minimum(self.x.first[cell_cols] + np.arange(span_x)[:, None], w - 1)  # [Sx, E]
        window = np.take(lowres.reshape(-1), queries * (h * w) + rows[:, None, :] + cols[None, :, :])  # [Sy, Sx, E]
        wx = self.x.weights(cell_cols, cx)  # [Cx, Sx, E or 1]
        wy = self.y.weights(cell_rows, cy)  # [Cy, Sy, E or 1]
        if wx.shape[2] == 1 and wy.shape[2] == 1:  # all weigh alike: one matrix product
            both = (wy[:, None, :, None, 0] * wx[None, :, None, :, 0]).reshape(cy * cx, span_y * span_x)
            return (both @ window.reshape(span_y * span_x, -1)).reshape(cy, cx, -1)
        across = window[:, None, 0] * wx[None, :, 0]  # [Sy, Cx, E]
        for b in range(1, span_x):
            across += window[:, None, b] * wx[None, :, b]
        out = wy[:, None, 0] * across[None, 0]  # [Cy, Cx, E]
        for a in range(1, span_y):
            out += wy[:, None, a] * across[None, a]
        return out

    def first_pixel(self, cells: np.ndarray) -> np.ndarray:
        """The flat output index of each cell's first (top-left) pixel."""
        cell_rows, cell_cols = np.divmod(cells, self.x.groups)
        return self.y.start[cell_rows] * self.out[1] + self.x.start[cell_cols]

    def cell_pixels(self, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows [E, Cy, 1], cols [E, 1, Cx], real [E, Cy, Cx]) of the output pixels of flat cell indices, in the
        layout of ``cell_values``."""
        cell_rows, cell_cols = np.divmod(cells, self.x.groups)
        cy, cx = self.y.composite.shape[1], self.x.composite.shape[1]
        rows = self.y.start[cell_rows][:, None] + np.arange(cy)
        cols = self.x.start[cell_cols][:, None] + np.arange(cx)
        real = ((np.arange(cy) < self.y.count[cell_rows][:, None])[:, :, None]
                & (np.arange(cx) < self.x.count[cell_cols][:, None])[:, None, :])
        return np.minimum(rows, self.out[0] - 1)[:, :, None], np.minimum(cols, self.out[1] - 1)[:, None, :], real

    def paint(self, per_cell: np.ndarray, rows: slice = slice(None)) -> np.ndarray:
        """[Gy, Gx] -> [H0, W0]: each cell's value on all of its pixels (columns first: repeating rows then copies
        whole rows, three times faster at full size). ``rows``: per_cell holds only these rows of cells, and the
        result only their output rows (``y.outputs(rows)``)."""
        return np.repeat(np.repeat(per_cell, self.x.count, axis=1), self.y.count[rows], axis=0)

    def canvas_at_pixels(self, lowres: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """float32 [n, len(rows)]: every query's canvas logit (the first resize, in PyTorch's order) at canvas pixels
        (rows[i], cols[i])."""
        planes = lowres.reshape(lowres.shape[0], -1)
        y, x, w = self.y, self.x, self.x.low
        top, bottom = y.a0[rows] * w, y.a1[rows] * w
        c, d = x.a0[cols], x.a1[cols]
        wx0, wx1 = x.wa0[cols], x.wa1[cols]
        return (y.wa0[rows] * (wx0 * np.take(planes, top + c, axis=1) + wx1 * np.take(planes, top + d, axis=1))
                + y.wa1[rows] * (wx0 * np.take(planes, bottom + c, axis=1) + wx1 * np.take(planes, bottom + d, axis=1)))

    def canvas_taps(self, rows: np.ndarray, cols: np.ndarray):
        """The second resize at output pixels: (canvas rows, canvas cols, weight along the width, weight along the
        height) of its four taps, in PyTorch's order: (r0, c0), (r0, c1), (r1, c0), (r1, c1)."""
        y, x = self.y, self.x
        r0, r1, c0, c1 = y.b0[rows], y.b1[rows], x.b0[cols], x.b1[cols]
        wx0, wx1, wy0, wy1 = x.wb0[cols], x.wb1[cols], y.wb0[rows], y.wb1[rows]
        return ((r0, c0, wx0, wy0), (r0, c1, wx1, wy0), (r1, c0, wx0, wy1), (r1, c1, wx1, wy1))

    @staticmethod
    def second_resize(values: list[np.ndarray], taps) -> np.ndarray:
        """Values at the four ``canvas_taps`` (same order) combined as PyTorch's second resize combines them."""
        (_, _, wx0, wy0), (_, _, wx1, _), (_, _, _, wy1) = taps[0], taps[1], taps[2]
        v00, v01, v10, v11 = values
        return wy0 * (wx0 * v00 + wx1 * v01) + wy1 * (wx0 * v10 + wx1 * v11)

    def block(self, lowres: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
        """float32 [n, len(rows), len(cols)]: every query's output logits on a rectangle of the output, separably
        (along the width, then the height; each resize in turn)."""
        y, x = self.y, self.x
        r, c = np.arange(self.out[0])[rows], np.arange(self.out[1])[cols]
        if r.size == 0 or c.size == 0:
            return np.zeros((lowres.shape[0], r.size, c.size), np.float32)
        canvas_r = np.arange(y.b0[r[0]], y.b1[r[-1]] + 1)  # canvas rows and columns the rectangle reads
        canvas_c = np.arange(x.b0[c[0]], x.b1[c[-1]] + 1)
        low_r0, low_c0 = y.a0[canvas_r[0]], x.a0[canvas_c[0]]
        window = lowres[:, low_r0: y.a1[canvas_r[-1]] + 1, low_c0: x.a1[canvas_c[-1]] + 1]
        canvas = _rows(_columns(window, x.a0[canvas_c] - low_c0, x.a1[canvas_c] - low_c0, x.wa0[canvas_c],
                                x.wa1[canvas_c]),
                       y.a0[canvas_r] - low_r0, y.a1[canvas_r] - low_r0, y.wa0[canvas_r], y.wa1[canvas_r])
        if self.same:
            return canvas
        across = _columns(canvas, x.b0[c] - canvas_c[0], x.b1[c] - canvas_c[0], x.wb0[c], x.wb1[c])
        return _rows(across, y.b0[r] - canvas_r[0], y.b1[r] - canvas_r[0], y.wb0[r], y.wb1[r])


def _columns(values: np.ndarray, i0, i1, w0, w1) -> np.ndarray:
    """[n, rows, a] -> [n, rows, len(i0)]: out[..., j] = values[..., i0[j]] * w0[j] + values[..., i1[j]] * w1[j]
    (gathered as rows of the transposed array: contiguous copies, several times faster than a last-axis gather)."""
    t = np.ascontiguousarray(values.transpose(0, 2, 1))
    out = np.take(t, i0, axis=1) * w0[:, None] + np.take(t, i1, axis=1) * w1[:, None]
    return out.transpose(0, 2, 1)


def _rows(values: np.ndarray, i0, i1, w0, w1) -> np.ndarray:
    """[n, a, cols] -> [n, len(i0), cols], the same along the rows."""
    return np.take(values, i0, axis=1) * w0[:, None] + np.take(values, i1, axis=1) * w1[:, None]


class _BlockAxis:
    """One axis of ``Blocks``: ``size`` consecutive groups per block (the last block's missing groups repeat the
    last group's window and have no pixels)."""

    def __init__(self, axis: Axis, size: int):
        self.low, self.size = axis.low, size
        self.blocks = -(-axis.groups // size)
        group = np.minimum(np.arange(self.blocks * size), axis.groups - 1)
        first, last = axis.first[group], axis.last[group]
        self.start = first[::size]  # [blocks] the first low-resolution index a block's cells read
        self.end = last.reshape(self.blocks, size).max(1)  # ... and the last
        self.reach = int((self.end - self.start).max()) + 1
        span = int(axis.span.max())
        # [blocks, size]; steps past a window that ends at the last index read that index again (``rows`` clamps),
        # so such a window counts as full
        self.cell_span = np.where(last == self.low - 1, span, axis.span[group]).reshape(self.blocks, size)
        self.full_spans = bool((self.cell_span == span).all())  # cell_reduce then selects nothing per cell
        # a block's windows (Blocks.windows) also cover every cell's window steps in full (cell_reduce's slices)
        self.window_reach = max(self.reach, size + span - 1)
        # offset[b, i, a]: cell i's a-th window index, relative to its block's start (past the window: its last)
        steps = np.minimum(first[:, None] + np.arange(span), last[:, None])
        self.offset = (steps - np.repeat(self.start, size)[:, None]).reshape(self.blocks, size, span)
        # blocks start every ``size`` low-resolution indices: strided views instead of gathers
        self.regular = np.array_equal(self.start, np.arange(self.blocks) * size)

    def reduce(self, values: np.ndarray, axis: int, ops, planes: np.ndarray | None = None) -> list[np.ndarray]:
        """For each op (np.minimum / np.maximum): op over each block's range along ``axis`` (1 or 2) of [n, a, b] (or
        of its ``planes`` only): that axis becomes [blocks]. Each step's view serves every op while it is in cache. A
        regular axis may also take a few indices past a block's end (a looser bound, never a wrong one)."""
        if planes is not None and not (self.regular and axis == 1):
            values, planes = values[planes], None
        if self.regular:
            def every(k):  # indices k, k + size, ... along the axis: one per block (fewer near the end)
                if axis == 1:
                    view = values[:, k::self.size] if planes is None else values[planes, k::self.size]
                    return view[:, :self.blocks]
                return values[:, :, k::self.size][:, :, :self.blocks]
            first = every(0)
            outs = [first.copy() for _ in ops]
            for k in range(1, self.reach):
                part = every(k)
                m = part.shape[axis]
                for op, out in zip(ops, outs):
                    target = out[:, :m] if axis == 1 else out[:, :, :m]
                    op(target, part, out=target)
            return outs
        first = np.take(values, self.start, axis=axis)
        outs = [first] + [first.copy() for _ in ops[1:]]
        for k in range(1, self.reach):
            part = np.take(values, np.minimum(self.start + k, self.end), axis=axis)
            for op, out in zip(ops, outs):
                op(out, part, out=out)
        return outs

    def cell_reduce(self, windows: np.ndarray, blocks: np.ndarray, axis: int, ops) -> list[np.ndarray]:
        """For each op (np.minimum / np.maximum): op over each cell's window along ``axis`` (0 or 1) of block windows
        [a, b, P] (``Blocks.windows``): that axis becomes [size]. Cells of a regular axis read from their own index
        on: op over a cell's window is a running op over shifted slices, each cell stopping at its span; each step
        serves every op."""
        def along(k: int):
            return (slice(k, k + self.size),) if axis == 0 else (slice(None), slice(k, k + self.size))

        if self.regular:
            outs = [windows[along(0)]] * len(ops)  # (ops return new arrays: windows is never written)
            if self.full_spans:
                for k in range(1, self.offset.shape[2]):
                    step = windows[along(k)]
                    outs = [op(out, step) for op, out in zip(ops, outs)]
                return outs
            # a step past a cell's window is NaN there, which fmin / fmax skip: branch-free, unlike a per-cell
            # np.where (2.3x the time with mixed spans); a NaN logit, which no network should give, is skipped too
            span = self.cell_span[blocks].T  # [size, P]
            span = span[:, None, :] if axis == 0 else span[None]
            skip_nan = [{np.minimum: np.fmin, np.maximum: np.fmax}[op] for op in ops]
            for k in range(1, self.offset.shape[2]):
                step = windows[along(k)] + np.where(span > k, np.float32(0), np.float32(np.nan))
                outs = [op(out, step) for op, out in zip(skip_nan, outs)]
            return outs
        index = self.offset[blocks].transpose(1, 2, 0)  # [size, span, P]
        pick = (lambda a: index[:, a, None, :]) if axis == 0 else (lambda a: index[None, :, a, :])
        first = np.take_along_axis(windows, pick(0), axis=axis)
        outs = [first] + [first.copy() for _ in ops[1:]]
        for a in range(1, index.shape[1]):
            step = np.take_along_axis(windows, pick(a), axis=axis)
            for op, out in zip(ops, outs):
                op(out, step, out=out)
        return outs

    def rows(self, blocks: np.ndarray) -> np.ndarray:
        """[len(blocks), window_reach]: the low-resolution indices of each block's range (clamped at the edge)."""
        return np.minimum(self.start[blocks][:, None] + np.arange(self.window_reach), self.low - 1)


class Blocks:
    """Squares of ``size`` x ``size`` cells, a coarse level above cells: bounds over a block bound every pixel of
    its cells, so most blocks are decided without looking at their cells. Blocks are numbered row-major over
    [By, Bx]; the last row and column of blocks may hold cells past the image, which have no pixels."""

    def __init__(self, geometry: MaskGeometry, size: int):
        self.size = size
        self.y, self.x = _BlockAxis(geometry.y, size), _BlockAxis(geometry.x, size)
        self.shape = (self.y.blocks, self.x.blocks)
        self.groups_x = geometry.x.groups
        ppc = np.zeros((self.y.blocks * size, self.x.blocks * size), np.int32)  # (gathered per pair: int32 halves it)
        ppc[:geometry.y.groups, :geometry.x.groups] = geometry.pixels_per_cell()
        # [size, size, blocks]: pixels of each cell of each (flat) block
        self.cell_pixels = ppc.reshape(self.y.blocks, size, self.x.blocks, size).transpose(1, 3, 0, 2).reshape(
            size, size, -1)
        self.pixels = self.cell_pixels.sum((0, 1)).reshape(self.shape)  # [By, Bx]

    def bounds(self, values: np.ndarray, planes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(min, max) of ``values[planes]`` ([Q, h, w], planes [n]) over each block's range -> [n, By, Bx] each
        (rows first: whole rows are contiguous, and only every size-th row is copied; a few planes at a time, so that
        the minimum and the maximum read each row once from memory)."""
        n = len(planes)
        low, high = (np.empty((n, *self.shape), values.dtype) for _ in range(2))
        for start in range(0, n, PLANES_PER_STEP):
            part = slice(start, start + PLANES_PER_STEP)
            across = self.y.reduce(values, 1, (np.minimum, np.maximum), planes[part])
            for op, rows, out in zip((np.minimum, np.maximum), across, (low, high)):
                out[part] = self.x.reduce(rows, 2, (op,))[0]
        return low, high

    def windows(self, values: np.ndarray, blocks: np.ndarray, planes: np.ndarray) -> np.ndarray:
        """[reach_y, reach_x, P]: plane ``planes[p]`` of ``values`` [Q, h, w] over block ``blocks[p]``'s range (flat
        block indices), pairs last."""
        by, bx = np.divmod(blocks, self.x.blocks)
        h, w = self.y.low, self.x.low
        rows, cols = self.y.rows(by).T * w, self.x.rows(bx).T  # [reach, P]
        return np.take(values.reshape(-1), planes * (h * w) + rows[:, None, :] + cols[None, :, :])

    def cell_bounds(self, windows: np.ndarray, blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(min, max) over each cell's window, from ``windows`` of the same blocks -> [size, size, P] each."""
        by, bx = np.divmod(blocks, self.x.blocks)
        ops = (np.minimum, np.maximum)
        across = self.x.cell_reduce(windows, bx, 1, ops)  # [reach_y, size, P] each
        low, high = (self.y.cell_reduce(a, by, 0, (op,))[0] for op, a in zip(ops, across))  # [size, size, P]
        return low, high

    def cells(self, blocks: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """``MaskGeometry``'s flat index of cell (rows, cols) of flat ``blocks`` (real cells only)."""
        by, bx = np.divmod(blocks, self.x.blocks)
        return (by * self.size + rows) * self.groups_x + bx * self.size + cols
