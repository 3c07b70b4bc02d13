"""m2f.calib.trt_compat (TensorRT's ONNX-parser operator matrix, checked without TensorRT): the bundled matrix is the
upstream table, each rule refuses what the table says the parser refuses, and ``m2f inspect --trt-compat``."""
import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from m2f.calib.trt_compat import MATRIX, check_graph, parse_matrix

ROOT = Path(__file__).resolve().parents[2]
TABLE = Path(os.environ.get("M2F_TENSORRT_HEADERS", ROOT.parent / "shared" / "third_party" / "tensorrt")).parent \
    / "onnx-tensorrt" / "operators-10.1.md"


@pytest.mark.skipif(not TABLE.exists(), reason=f"onnx-tensorrt's operators.md is not at {TABLE}")
def test_bundled_matrix_is_the_upstream_table():
    parsed = parse_matrix(TABLE.read_text())
    assert json.loads(MATRIX.read_text()) == parsed
    # spot checks read off the table by hand
    assert parsed["TopK"]["types"] == ["FP32", "FP16", "BF16", "INT32", "INT64"]
    assert parsed["AffineGrid"]["supported"] is False and parsed["Softmax"]["supported"] is True
    assert "INT64" in parsed["ConstantOfShape"]["types"]  # the table's "INF64" typo read as INT64
    assert len(parsed) > 150


def _model(nodes, inputs, outputs, initializers=(), opsets=(("", 17),)):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    return onnx.shape_inference.infer_shapes(model)


def _tensor(name, dtype=TensorProto.FLOAT, shape=(1, 4)):
    return helper.make_tensor_value_info(name, dtype, list(shape))


def _problems(model):
    return [(i.op, i.problem) for i in check_graph(model)]


def test_supported_graph_passes():
    model = _model([helper.make_node("Relu", ["x"], ["y"])], [_tensor("x")], [_tensor("y")])
    assert _problems(model) == []


def test_unsupported_op():
    model = _model([helper.make_node("Bernoulli", ["x"], ["y"])], [_tensor("x")], [_tensor("y")])
    assert _problems(model) == [("Bernoulli", "the parser does not support this op")]


def test_uint8_only_at_network_io():
    """Cast of the uint8 input: fine. A Transpose of it (the adapter's old order): its row has no UINT8. A uint8
    tensor inside the network: refused even for Cast, whose row lists UINT8 for network I/O only."""
    ok = _model([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT)], [_tensor("x", TensorProto.UINT8)],
                [_tensor("y")])
    assert _problems(ok) == []
    transpose = _model([helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0]),
                        helper.make_node("Cast", ["t"], ["y"], to=TensorProto.FLOAT)],
                       [_tensor("x", TensorProto.UINT8)], [_tensor("y", shape=(4, 1))])
    assert _problems(transpose) == [
        ("Transpose", "input type UINT8 is not one of FP32, FP16, BF16, INT32, INT64, BOOL"),
        ("Cast", "UINT8 is supported only for network inputs and outputs")]  # the transposed copy is internal
    inside = _model([helper.make_node("Cast", ["x"], ["u"], to=TensorProto.UINT8),
                     helper.make_node("Cast", ["u"], ["y"], to=TensorProto.FLOAT)], [_tensor("x")], [_tensor("y")])
    assert _problems(inside) == [("Cast", "UINT8 is supported only for network inputs and outputs")]


def test_input_type_outside_the_row():
    model = _model([helper.make_node("MatMul", ["a", "b"], ["y"])], [_tensor("a", TensorProto.INT32),
                                                                      _tensor("b", TensorProto.INT32, (4, 2))],
                   [_tensor("y", TensorProto.INT32, (1, 2))])
    assert _problems(model) == [("MatMul", "input type INT32 is not one of FP32, FP16, BF16")]


def test_topk_limits():
    def topk(k, sorted_=1):
        kk = numpy_helper.from_array(np.asarray([k], np.int64), "k")
        return _model([helper.make_node("TopK", ["x", "k"], ["v", "i"], sorted=sorted_)],
                      [_tensor("x", shape=(1, 5000))], [_tensor("v", shape=(1, k)),
                                                        _tensor("i", TensorProto.INT64, (1, k))], [kk])
    assert _problems(topk(100)) == []
    assert _problems(topk(3840)) == [("TopK", "K is 3840; it must be less than 3840")]
    assert _problems(topk(10, sorted_=0)) == [("TopK", "sorted must be 1")]


def test_resize_modes_and_constant_axes():
    scales = numpy_helper.from_array(np.asarray([1, 1, 2, 2], np.float32), "scales")
    cubic = _model([helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="cubic")],
                   [_tensor("x", shape=(1, 1, 2, 2))], [_tensor("y", shape=(1, 1, 4, 4))], [scales])
    assert _problems(cubic) == [("Resize", "mode cubic is not nearest or linear")]
    computed_axes = _model([helper.make_node("Unsqueeze", ["x", "axes"], ["y"])],
                           [_tensor("x"), _tensor("axes", TensorProto.INT64, (1,))], [_tensor("y", shape=(1, 1, 4))])
    assert _problems(computed_axes) == [("Unsqueeze", "its axes input must be a constant (an initializer)")]


def test_plugin_nodes():
    known = helper.make_node("M2fMaskedAttention", ["q", "q", "q"], ["y"], domain="m2f")
    unknown = helper.make_node("Mystery", ["y"], ["z"], domain="acme")
    model = _model([known, unknown], [_tensor("q", shape=(1, 1, 2, 4))], [_tensor("z", shape=(1, 1, 2, 4))],
                   opsets=(("", 17), ("m2f", 1), ("acme", 1)))
    assert _problems(model) == [("Mystery", "a acme node that no known plugin implements")]


def test_inspect_trt_compat_exit_status(bundled_onnx, tmp_path, capsys):
    pytest.importorskip("torch", reason="m2f.cli's model commands import PyTorch lazily; inspect itself does not")
    from m2f.cli import main

    assert main(["inspect", str(bundled_onnx), "--trt-compat"]) == 0
    assert "every node is in TensorRT's ONNX-parser operator matrix" in capsys.readouterr().out
    proto = onnx.load(str(bundled_onnx))
    proto.graph.node.append(helper.make_node("Bernoulli", [proto.graph.output[0].name], ["extra"]))
    bad = tmp_path / "bad.onnx"
    onnx.save(proto, str(bad))
    assert main(["inspect", str(bad), "--trt-compat"]) == 1
    out = capsys.readouterr().out
    assert "1 node(s) TensorRT's parser would refuse" in out and "(Bernoulli): the parser does not support" in out
