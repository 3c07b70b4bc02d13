"""fp32 m2f ONNX -> fp16 with measured fp32 islands (``m2f convert --precision fp16``, ``m2f export --precision
fp16``): the sensitivity sweep (m2f.calib.sensitivity) on calibration images, the conversion (m2f.export.fp16),
checks, metadata, and the sensitivity table beside the model."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .sensitivity import SWEEP_IMAGES, Sweep

DEFAULT_DATA = "synthetic:16:1"


@dataclass
class Fp16Summary:
    path: Path
    sweep: Sweep
    fp16_nodes: int
    fp32_nodes: int
    casts: int
    tables: tuple[Path, Path]
    trt_issues: list


def _feeds(meta: dict, data: str, images: int, seed: int) -> list[dict]:
    from .data import CalibrationSet

    return list(CalibrationSet.open(meta, data, images, seed))


def _check_unique_names(model) -> None:
    from m2f.errors import M2FError

    seen: set[str] = set()
    for node in model.graph.node:
        if node.name in seen:
            raise M2FError(f"the fp16 graph has two nodes named {node.name}; this is a bug in m2f's converter")
        seen.add(node.name)


def convert_fp16(model_path: str | Path, output: str | Path, data: str = DEFAULT_DATA, images: int = SWEEP_IMAGES,
                 seed: int = 0, threads: int | None = None, progress: Callable[[str], None] = lambda s: None) \
        -> Fp16Summary:
    """Measure, convert and write ``output`` atomically (its metadata: precision fp16 and the islands)."""
    import onnx

    from m2f.contract import KEY, dumps, parse
    from m2f.errors import ArgumentError
    from m2f.export.fp16 import block_of, to_fp16
    from m2f.fileio import atomic_path, check_output_file
    from m2f.trt_compat import check_graph

    from .sensitivity import sweep

    model_path, output = Path(model_path), check_output_file(output, (".onnx",))
    model = onnx.load(str(model_path))
    meta = parse(next((p.value for p in model.metadata_props if p.key == KEY), None), model_path.name)
    if meta["precision"] != "fp32":
        raise ArgumentError(f"{model_path.name} is already {meta['precision']}; convert the fp32 export")
    progress(f"[1/3] fp16 sensitivity of each block on {images} images of {data}")
    table = sweep(model, _feeds(meta, data, images, seed), threads, progress)
    progress(f"[2/3] converting: fp32 islands {', '.join(table.islands) or 'none'}")
    islands = set(table.islands)
    conversion = to_fp16(model, {n.name for n in model.graph.node if block_of(n.name) in islands})
    half = conversion.model
    onnx.checker.check_model(half, full_check=True)
    _check_unique_names(half)
    meta["precision"] = "fp16"
    meta["fp16"] = {"islands": table.islands, "data": data, "images": table.images or images,
                    "whole_graph": {"flips": table.whole.flips, "prob_change": table.whole.prob_change}}
    del half.metadata_props[:]
    entry = half.metadata_props.add()
    entry.key, entry.value = KEY, dumps(meta)
    progress(f"[3/3] writing {output}")
    with atomic_path(output) as tmp:
        onnx.save(half, str(tmp))
    table.images, table.data = images, data
    return Fp16Summary(output, table, conversion.fp16_nodes, conversion.fp32_nodes, conversion.casts,
                       table.write(output), check_graph(half))
