"""What an ONNX graph holds, for people and for checks: its inputs and outputs (name, dtype, dims) and its nodes by
op type. One place for ``m2f export``'s summary, ``m2f inspect`` and the compatibility checks (needs onnx)."""
from __future__ import annotations

from dataclasses import dataclass

Io = tuple[str, str, list]  # (name, dtype such as "uint8", dims: ints, or names for symbolic dims)


@dataclass
class GraphInfo:
    inputs: list[Io]
    outputs: list[Io]
    nodes: int
    op_counts: dict[str, int]  # op type -> count, most frequent first


def value_infos(values) -> list[Io]:
    """(name, dtype, dims) of graph inputs or outputs (``ValueInfoProto`` s)."""
    import onnx

    rows = []
    for v in values:
        t = v.type.tensor_type
        rows.append((v.name, onnx.TensorProto.DataType.Name(t.elem_type).lower(),
                     [d.dim_param or d.dim_value for d in t.shape.dim]))
    return rows


def op_counts(graph) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def describe_graph(proto) -> GraphInfo:
    """The I/O and node counts of a ``ModelProto``."""
    g = proto.graph
    return GraphInfo(value_infos(g.input), value_infos(g.output), len(g.node), op_counts(g))


def format_io(rows: list[Io]) -> str:
    """'image uint8 [1, 192, 256, 3]; valid_size int32 [1, 2]'."""
    return "; ".join(f"{n} {t} [{', '.join(map(str, d))}]" for n, t, d in rows)
