"""How the two special ops are computed or exported: a scoped setting, not state on the model (docs/ops.md).

    with lowered("m2f"):          # inside the block the ops emit m2f's plugin nodes when traced
        torch.onnx.export(...)

reference     PyTorch, the original's arithmetic (grid_sample deformable attention); what a model runs by default
portable      standard ONNX ops only (gather-based bilinear sampling; masked attention as MatMul/Softmax/MatMul)
m2f           one M2fMSDeformAttn (fused form) and one M2fMaskedAttention node per op, namespace m2f
trt-builtin   deformable attention as TensorRT's MultiscaleDeformableAttnPlugin_TRT, masked attention portable

The setting is a context variable, so it is per thread and restored whatever happens inside the block.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

FLAVORS = ("reference", "portable", "m2f", "trt-builtin")
EXPORT_FLAVORS = ("portable", "m2f", "trt-builtin")
# tensorrt_version: the TensorRT a trt-builtin graph is for (JetPack 6's by default); static: the graph being traced
# has static shapes, so a plugin node's output may be typed with the traced sizes (see node_output_type)
DEFAULT_OPTIONS = {"tensorrt_version": "10.3", "static": False}
_CURRENT = contextvars.ContextVar("m2f_op_lowering", default=("reference", DEFAULT_OPTIONS))


def current() -> str:
    return _CURRENT.get()[0]


def option(name: str):
    return _CURRENT.get()[1][name]


@contextlib.contextmanager
def lowered(flavor: str, **options) -> Iterator[None]:
    """Within the block the ops are lowered as ``flavor``; ``options`` (tensorrt_version, static) refine it."""
    if flavor not in FLAVORS:
        from m2f.errors import ArgumentError

        raise ArgumentError(f"op flavor {flavor!r} is not one of {', '.join(FLAVORS)}")
    token = _CURRENT.set((flavor, {**DEFAULT_OPTIONS, **options}))
    try:
        yield
    finally:
        _CURRENT.reset(token)


def traced_sizes(*sizes) -> tuple[int, ...] | None:
    """A plugin node's output sizes for ``node_output_type``, taken where the op is called, from the traced example's
    real tensors: plain ints when the export is static, None when it is dynamic. (At conversion the tracer's own types
    have often lost them: a static tiny Swin's plugin inputs had every dim unknown.)"""
    return tuple(int(s) for s in sizes) if option("static") else None


def node_output_type(inputs: list, sizes: tuple[int, ...] | None, rank: int):
    """The ONNX type of a plugin node's output while tracing: the dtype of the first of ``inputs`` (traced values)
    whose dtype the tracer knows, with ``sizes`` (``traced_sizes``) when the export is static, so downstream shape
    arithmetic folds away, or ``rank`` unknown dims otherwise, so the example's sizes are never baked into a dynamic
    graph (ONNX shape inference cannot see into plugin nodes)."""
    import torch

    known = next((v for v in inputs if v.type().scalarType() is not None), None)
    dtype = getattr(torch, known.type().scalarType().lower()) if known is not None else torch.float32
    return inputs[0].type().with_dtype(dtype).with_sizes(list(sizes) if sizes is not None else [None] * rank)
