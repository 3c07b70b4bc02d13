"""FP16 with fp32 islands chosen by measurement: which blocks of the graph lose accuracy in fp16.

The sweep converts one block at a time to fp16 (the rest stays fp32; blocks as ``m2f.export.fp16.block_of`` names
them) and runs it next to the fp32 graph on calibration images in ONNX Runtime. A block is sensitive when its fp16
version flips more than ``FLIP_TOLERANCE`` of the mask-logit signs or moves a class probability by more than
``PROB_TOLERANCE``; sensitive blocks become fp32 islands, on top of the islands that are never measured away
(``m2f.export.fp16.required_island``). The table of every block's cost is written next to the fp16 model.

What ONNX Runtime's CPU provider measures is fp16 *storage*: tensors are rounded to fp16 between nodes, but most
ops compute in fp32 after an inserted Cast. fp16 arithmetic is estimated separately by PyTorch's autocast
(``m2f.calib.autocast``).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

FLIP_TOLERANCE = 1e-3  # fraction of mask-logit signs (or integer outputs) allowed to change
PROB_TOLERANCE = 1e-2  # largest allowed change of a class probability (softmax of the logits)
SWEEP_IMAGES = 8


@dataclass
class BlockCost:
    """The measured cost of one block in fp16 (all others fp32)."""

    block: str
    nodes: int
    flips: float  # fraction of mask-logit signs / integer outputs that changed
    prob_change: float  # largest change of a class probability
    max_rel: float  # largest |fp16 - fp32| / max|fp32| over the float outputs
    island: str = ""  # why it stays fp32 ("" = converted)


@dataclass
class Sweep:
    blocks: list[BlockCost] = field(default_factory=list)
    whole: BlockCost | None = None  # the final graph (every non-island block fp16)
    images: int = 0
    data: str = ""
    seconds: float = 0.0

    @property
    def islands(self) -> list[str]:
        return [b.block for b in self.blocks if b.island]

    def write(self, model_path: Path) -> tuple[Path, Path]:
        """``<model>.sensitivity.json`` and ``.md`` beside the model."""
        from m2f.fileio import atomic_path

        json_path = model_path.with_name(model_path.name + ".sensitivity.json")
        md_path = model_path.with_name(model_path.name + ".sensitivity.md")
        doc = {"images": self.images, "data": self.data, "seconds": round(self.seconds, 1),
               "tolerances": {"flips": FLIP_TOLERANCE, "prob_change": PROB_TOLERANCE},
               "blocks": [asdict(b) for b in self.blocks], "whole_graph": asdict(self.whole) if self.whole else None}
        with atomic_path(json_path) as tmp:
            tmp.write_text(json.dumps(doc, indent=1))
        with atomic_path(md_path) as tmp:
            tmp.write_text(self.markdown())
        return json_path, md_path

    def markdown(self) -> str:
        rows = [f"# fp16 sensitivity ({self.images} images of {self.data}, ONNX Runtime CPU: fp16 storage)", "",
                f"A block is kept fp32 when its fp16 version flips more than {FLIP_TOLERANCE:g} of the mask signs or "
                f"moves a class probability by more than {PROB_TOLERANCE:g}.", "",
                "| block | nodes | mask flips | prob change | max rel err | precision |", "|---|---|---|---|---|---|"]
        for b in self.blocks + ([self.whole] if self.whole else []):
            precision = "the converted graph" if b is self.whole else f"fp32: {b.island}" if b.island else "fp16"
            rows.append(f"| {b.block} | {b.nodes} | {b.flips:.2e} | {b.prob_change:.2e} | {b.max_rel:.2e} | "
                        f"{precision} |")
        return "\n".join(rows) + "\n"


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _cost(block: str, nodes: int, got: list[dict], ref: list[dict]) -> BlockCost:
    """Disagreement of ``got`` with ``ref`` (lists of output dicts, one per batch)."""
    from m2f.contract import PRED_LOGITS, PRED_MASKS

    changed = total = 0
    prob_change = max_rel = 0.0
    for g, r in zip(got, ref):
        for name, want in r.items():
            have = g[name].astype(want.dtype)
            if name == PRED_LOGITS:
                prob_change = max(prob_change, float(np.abs(_softmax(have) - _softmax(want)).max()))
            if want.dtype.kind == "f":
                scale = float(np.abs(want).max()) or 1.0
                max_rel = max(max_rel, float(np.abs(have - want).max()) / scale)
            if name == PRED_MASKS or name == "inst_masks":
                changed += int(np.count_nonzero((have > 0) != (want > 0)))
                total += want.size
            elif want.dtype.kind in "iub":
                changed += int(np.count_nonzero(have != want))
                total += want.size
    return BlockCost(block, nodes, changed / max(total, 1), prob_change, max_rel)


def _run(model, feeds: list[dict], threads: int | None) -> list[dict]:
    from .session import open_session

    session = open_session(model, threads)
    names = [o.name for o in session.get_outputs()]
    return [dict(zip(names, session.run(names, f))) for f in feeds]


def sweep(model, feeds: list[dict], threads: int | None = None,
          progress: Callable[[str], None] = lambda s: None) -> Sweep:
    """Measure every block of ``model`` (fp32 onnx.ModelProto) in fp16 on ``feeds`` (graph input dicts) and decide
    the islands (module docstring). Returns the table; ``convert`` applies it."""
    from m2f.export.fp16 import block_of, required_island, to_fp16

    t0 = time.perf_counter()
    reference = _run(model, feeds, threads)
    nodes_by_block: dict[str, list[str]] = {}
    reasons: dict[str, set] = {}
    for node in model.graph.node:
        nodes_by_block.setdefault(block_of(node.name), []).append(node.name)
        reasons.setdefault(block_of(node.name), set()).add(required_island(node))
    # blocks whose every node is a required island are not measured
    required = {b: "; ".join(sorted(r)) for b, r in reasons.items() if None not in r}
    result = Sweep()
    blocks = sorted(nodes_by_block)
    for i, block in enumerate(blocks, 1):
        names = nodes_by_block[block]
        if block in required:
            result.blocks.append(BlockCost(block, len(names), 0.0, 0.0, 0.0, required[block]))
            continue
        progress(f"      [{i}/{len(blocks)}] {block} ({len(names)} nodes)")
        others = {n.name for n in model.graph.node if block_of(n.name) != block}
        cost = _cost(block, len(names), _run(to_fp16(model, others).model, feeds, threads), reference)
        if cost.flips > FLIP_TOLERANCE or cost.prob_change > PROB_TOLERANCE:
            cost.island = "measured sensitive"
        result.blocks.append(cost)
    keep = {n.name for n in model.graph.node if block_of(n.name) in set(result.islands)}
    final = to_fp16(model, keep).model
    result.whole = _cost("whole graph (islands fp32)", len(model.graph.node), _run(final, feeds, threads), reference)
    result.seconds = time.perf_counter() - t0
    return result
