"""Which blocks of the graph lose accuracy at a lower precision, measured: fp16 islands and int8's safe blocks.

The sweep converts one block at a time (to fp16, or gives its Conv/MatMul/Gemm nodes int8 Q/DQ; the rest stays fp32;
blocks as ``m2f.calib.fp16.block_of`` names them) and runs it next to the fp32 graph on calibration images in ONNX
Runtime. A block is sensitive when it flips more than ``FLIP_TOLERANCE`` of the mask-logit signs or changes more than
``DECISION_TOLERANCE`` of the queries' decisions (the class a query predicts, and whether its probability passes the
object-mask threshold). Sensitive blocks stay fp32 (fp16 islands, on top of ``m2f.calib.fp16.required_island``) or
float (no Q/DQ). The table of every block's cost is written next to the converted model.

What ONNX Runtime's CPU provider measures is fp16 *storage* (tensors rounded to fp16 between nodes, most ops computed
in fp32 after an inserted Cast) and int8 *rounding* (Q/DQ in float); fp16 arithmetic is estimated separately, by
PyTorch's autocast (benchmarks/precision.py).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

FLIP_TOLERANCE = 1e-3  # fraction of mask-logit signs (or integer outputs) allowed to change
DECISION_TOLERANCE = 1e-2  # fraction of queries allowed to change their predicted class or keep/drop decision
KEEP_THRESHOLD = 0.8  # the object-mask threshold of every Mask2Former config: a query is kept above it


@dataclass
class BlockCost:
    """The measured cost of one block in fp16 (all others fp32)."""

    block: str
    nodes: int
    flips: float  # fraction of mask-logit signs / integer outputs that changed
    decisions: float  # fraction of queries whose predicted class or keep/drop decision changed
    prob_change: float  # largest change of a class probability (reported; kept queries near 0.8 move decisions)
    max_rel: float  # largest |fp16 - fp32| / max|fp32| over the float outputs
    island: str = ""  # why it stays fp32 ("" = converted)


@dataclass
class Sweep:
    precision: str = "fp16"
    blocks: list[BlockCost] = field(default_factory=list)
    whole: BlockCost | None = None  # the graph that was written (whole_graph)
    images: int = 0
    data: str = ""
    seconds: float = 0.0
    reference: list = field(default_factory=list, repr=False)  # the fp32 graph's outputs per batch

    @property
    def islands(self) -> list[str]:
        return [b.block for b in self.blocks if b.island]

    def write(self, model_path: Path) -> tuple[Path, Path]:
        """``<model>.sensitivity.json`` and ``.md`` beside the model (``.int8-sensitivity`` for an int8 sweep)."""
        from m2f.fileio import atomic_path

        stem = "sensitivity" if self.precision == "fp16" else f"{self.precision}-sensitivity"
        json_path = model_path.with_name(f"{model_path.name}.{stem}.json")
        md_path = model_path.with_name(f"{model_path.name}.{stem}.md")
        doc = {"precision": self.precision, "images": self.images, "data": self.data, "seconds": round(self.seconds, 1),
               "tolerances": {"flips": FLIP_TOLERANCE, "decisions": DECISION_TOLERANCE},
               "blocks": [asdict(b) for b in self.blocks], "whole_graph": asdict(self.whole) if self.whole else None}
        with atomic_path(json_path) as tmp:
            tmp.write_text(json.dumps(doc, indent=1))
        with atomic_path(md_path) as tmp:
            tmp.write_text(self.markdown())
        return json_path, md_path

    def markdown(self) -> str:
        what = "fp16 storage" if self.precision == "fp16" else "int8 Q/DQ rounding, float compute"
        rows = [f"# {self.precision} sensitivity ({self.images} images of {self.data}, ONNX Runtime CPU: {what})", "",
                f"A block is kept out of {self.precision} when its {self.precision} version flips more than "
                f"{FLIP_TOLERANCE:g} of the mask signs or changes more than {DECISION_TOLERANCE:g} of the queries' "
                f"decisions (predicted class; probability above {KEEP_THRESHOLD:g}).", "",
                "| block | nodes | mask flips | query decisions | prob change | max rel err | precision |",
                "|---|---|---|---|---|---|---|"]
        for b in self.blocks + ([self.whole] if self.whole else []):
            kept = "fp32" if self.precision == "fp16" else "float"
            precision = "the converted graph" if b is self.whole else f"{kept}: {b.island}" if b.island \
                else self.precision
            rows.append(f"| {b.block} | {b.nodes} | {b.flips:.2e} | {b.decisions:.2e} | {b.prob_change:.2e} | "
                        f"{b.max_rel:.2e} | "
                        f"{precision} |")
        return "\n".join(rows) + "\n"


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _cost(block: str, nodes: int, got: list[dict], ref: list[dict]) -> BlockCost:
    """Disagreement of ``got`` with ``ref`` (lists of output dicts, one per batch)."""
    from m2f.contract import PRED_LOGITS, PRED_MASKS

    changed = total = decided = queries = 0
    prob_change = max_rel = 0.0
    for g, r in zip(got, ref):
        for name, want in r.items():
            have = g[name].astype(want.dtype)
            if name == PRED_LOGITS:
                p_have, p_want = _softmax(have), _softmax(want)
                prob_change = max(prob_change, float(np.abs(p_have - p_want).max()))
                decision = lambda p: (p.argmax(-1), p[..., :-1].max(-1) > KEEP_THRESHOLD)  # noqa: E731
                (label_h, keep_h), (label_w, keep_w) = decision(p_have), decision(p_want)
                decided += int(np.count_nonzero((label_h != label_w) | (keep_h != keep_w)))
                queries += label_w.size
            if want.dtype.kind == "f":
                scale = float(np.abs(want).max()) or 1.0
                max_rel = max(max_rel, float(np.abs(have - want).max()) / scale)
            if name == PRED_MASKS or name == "inst_masks":
                changed += int(np.count_nonzero((have > 0) != (want > 0)))
                total += want.size
            elif want.dtype.kind in "iub":
                changed += int(np.count_nonzero(have != want))
                total += want.size
    return BlockCost(block, nodes, changed / max(total, 1), decided / max(queries, 1), prob_change, max_rel)


def _run(model, feeds: list[dict], threads: int | None) -> list[dict]:
    from .session import open_session

    session = open_session(model, threads)
    names = [o.name for o in session.get_outputs()]
    return [dict(zip(names, session.run(names, f))) for f in feeds]


def measure(model, feeds: list[dict], blocks: dict[str, list[str]], convert: Callable[[str], object],
            required: dict[str, str], threads: int | None = None,
            progress: Callable[[str], None] = lambda s: None, precision: str = "fp16") -> Sweep:
    """Run ``convert(block)`` (``model`` with only that block at the lower precision) for every block not in
    ``required`` next to ``model`` on ``feeds`` and mark the blocks that cost more than the tolerances."""
    t0 = time.perf_counter()
    reference = _run(model, feeds, threads)
    result = Sweep(precision=precision)
    for i, block in enumerate(sorted(blocks), 1):
        names = blocks[block]
        if block in required:
            result.blocks.append(BlockCost(block, len(names), 0.0, 0.0, 0.0, 0.0, required[block]))
            continue
        progress(f"      [{i}/{len(blocks)}] {block} ({len(names)} nodes)")
        cost = _cost(block, len(names), _run(convert(block), feeds, threads), reference)
        if cost.flips > FLIP_TOLERANCE or cost.decisions > DECISION_TOLERANCE:
            cost.island = "measured sensitive"
        result.blocks.append(cost)
    result.reference = reference
    result.seconds = time.perf_counter() - t0
    return result


def whole_graph(result: Sweep, converted, feeds: list[dict], threads: int | None = None) -> None:
    """The final graph's cost, as the table's last row."""
    t0 = time.perf_counter()
    nodes = len(converted.graph.node)
    result.whole = _cost("whole graph", nodes, _run(converted, feeds, threads), result.reference)
    result.seconds += time.perf_counter() - t0


def sweep(model, feeds: list[dict], threads: int | None = None,
          progress: Callable[[str], None] = lambda s: None) -> Sweep:
    """fp16: every block of ``model`` (fp32 onnx.ModelProto) alone in fp16 on ``feeds`` (graph input dicts); blocks
    whose every node is a required island (m2f.calib.fp16.required_island) are not measured. The caller measures
    the graph it writes with ``whole_graph``."""
    from .fp16 import block_of, required_island, to_fp16

    blocks: dict[str, list[str]] = {}
    reasons: dict[str, set] = {}
    for node in model.graph.node:
        blocks.setdefault(block_of(node.name), []).append(node.name)
        reasons.setdefault(block_of(node.name), set()).add(required_island(node))
    required = {b: "; ".join(sorted(r)) for b, r in reasons.items() if None not in r}

    def convert(block: str):
        return to_fp16(model, {n.name for n in model.graph.node if block_of(n.name) != block}).model

    return measure(model, feeds, blocks, convert, required, threads, progress, "fp16")


def int8_sweep(model, feeds: list[dict], selection, amax: dict[str, float], threads: int | None = None,
               progress: Callable[[str], None] = lambda s: None) -> Sweep:
    """int8: the Q/DQ of each block's Conv/MatMul/Gemm nodes alone (m2f.calib.quantize), the rest fp32."""
    import dataclasses

    from .fp16 import block_of

    from .quantize import quantize

    blocks: dict[str, list[str]] = {}
    for name in selection.nodes:
        blocks.setdefault(block_of(name), []).append(name)

    def convert(block: str):
        return quantize(model, dataclasses.replace(selection, nodes=blocks[block]), amax)

    return measure(model, feeds, blocks, convert, {}, threads, progress, "int8")
