"""What an ONNX graph holds, for people and for checks: its inputs and outputs (name, dtype, dims) and its nodes by
op type. One place for ``m2f export``'s summary, ``m2f inspect`` and the compatibility checks; and ``load_onnx``,
the one way every command opens an .onnx a user gave (needs onnx)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from m2f.errors import ArgumentError

STANDARD_DOMAINS = ("", "ai.onnx")  # the names a node or opset of the standard operator set may carry
Io = tuple[str, str, list]  # (name, dtype such as "uint8", dims: ints, or names for symbolic dims)


@dataclass
class GraphInfo:
    inputs: list[Io]
    outputs: list[Io]
    nodes: int
    op_counts: dict[str, int]  # op type -> count, most frequent first


def not_onnx(path: Path, detail: str) -> str:
    """The sentence for bytes that are not an ONNX model."""
    return f"{path} is not an ONNX model ({detail}): a truncated copy or another kind of file; export it again"


def check_onnx_file(path: str | Path) -> Path:
    """``path`` when it is a non-empty file, else ArgumentError with one sentence."""
    path = Path(path)
    if not path.exists():
        raise ArgumentError(f"{path} does not exist")
    if not path.is_file():
        raise ArgumentError(f"{path} is a folder, not an .onnx file")
    if path.stat().st_size == 0:
        raise ArgumentError(f"{path} is empty (0 bytes): the export that wrote it did not finish; export it again")
    return path


def load_onnx(path: str | Path, external_data: bool = True):
    """The ModelProto at ``path``, or one sentence (ArgumentError) saying why not: missing, a folder, empty, or
    bytes that are not an ONNX model (a truncated download, a text file, a checkpoint)."""
    import onnx
    from google.protobuf.message import DecodeError

    path = check_onnx_file(path)
    try:
        model = onnx.load(str(path), load_external_data=external_data)
    except (DecodeError, UnicodeDecodeError):
        raise ArgumentError(not_onnx(path, "its bytes do not parse")) from None
    except (ValueError, RuntimeError, OSError) as e:  # e.g. external data missing beside it
        detail = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise ArgumentError(f"cannot read {path} ({detail})") from None
    if not model.graph.node and not model.graph.input:
        raise ArgumentError(not_onnx(path, "it parses, but holds no graph"))
    return model


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
