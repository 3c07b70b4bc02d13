"""Constant folding around plugin nodes (m2f.export.folding): a static export of every flavor has its shape
arithmetic folded away, including what depends on a plugin node's output; the plugin nodes come back unchanged and
the folded graph computes what the unfolded one does (both in ONNX Runtime, plugin nodes as m2f.runtime.custom_ops).
Equal integer tables are stored once, float constants never merged."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from m2f.export import folding
from m2f.export.onnx_export import ExportOptions, export_onnx
from m2f.onnx_graph import STANDARD_DOMAINS

from ..model.helpers import random_model, tiny_config
from .helpers import random_batch, session


@pytest.fixture(scope="module")
def model():
    return random_model(tiny_config("resnet", num_classes=133))


@pytest.mark.parametrize("flavor", ["portable", "m2f", "trt-builtin"])
def test_static_exports_have_no_shape_arithmetic_left(model, tmp_path, flavor):
    path = export_onnx(model, tmp_path / "g.onnx", ExportOptions(height=64, width=96, flavor=flavor)).path
    graph = onnx.load(str(path)).graph
    assert not [n.name for n in graph.node if n.op_type in ("Shape", "Size", "ConstantOfShape")]
    if flavor != "portable":  # every plugin output typed with the traced sizes
        typed = {v.name: v.type.tensor_type.shape for v in graph.value_info}
        plugin_outputs = [n.output[0] for n in graph.node if n.domain not in STANDARD_DOMAINS]
        assert plugin_outputs
        for name in plugin_outputs:
            assert all(d.HasField("dim_value") for d in typed[name].dim), name


def test_folded_plugin_graph_computes_what_the_traced_one_does(model, tmp_path):
    options = dict(height=64, width=96, flavor="m2f")
    raw = export_onnx(model, tmp_path / "raw.onnx", ExportOptions(simplify=False, **options)).path
    folded = export_onnx(model, tmp_path / "folded.onnx", ExportOptions(**options)).path
    plugins = [[(n.op_type, n.domain, sorted((a.name, helper.get_attribute_value(a)) for a in n.attribute))
                for n in onnx.load(str(p)).graph.node if n.domain not in STANDARD_DOMAINS] for p in (raw, folded)]
    assert plugins[0] == plugins[1]
    assert len(onnx.load(str(folded)).graph.node) < len(onnx.load(str(raw)).graph.node)
    image, valid = random_batch(1, 64, 96, [[64, 90]])
    feeds = {"image": image, "valid_size": valid}
    for ours, theirs in zip(session(folded).run(None, feeds), session(raw).run(None, feeds)):
        np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=0)  # Conv+BN folding rounds differently


def _node(op, inputs, outputs, **kwargs):
    return helper.make_node(op, inputs, outputs, name=outputs[0], **kwargs)


def test_a_plugin_node_between_shape_arithmetic_is_cut_around():
    """x -> Relu -> plugin (an m2f-domain node, typed [2, 3]) -> Reshape to a shape computed from the plugin output's
    Shape: the Shape chain folds to a constant, the plugin node stays where its input is made."""
    nodes = [
        _node("Reshape", ["p", "target"], ["y"]),  # given out of order: the result must be sorted
        _node("Relu", ["x"], ["r"]),
        helper.make_node("Plug", ["r"], ["p"], name="plug", domain="m2f", plugin_version="1"),
        _node("Shape", ["p"], ["s"]),
        _node("ReduceProd", ["s"], ["n"], keepdims=1),
        _node("Concat", ["n", "one"], ["target"], axis=0),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[helper.make_tensor("one", TensorProto.INT64, [1], [1])],
        value_info=[helper.make_tensor_value_info("p", TensorProto.FLOAT, [2, 3])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("m2f", 1)])
    proto.ir_version = 9
    assert folding.foldable(proto)
    folded = folding.fold_constants(proto)
    ops = [n.op_type for n in folded.graph.node]
    assert ops == ["Relu", "Plug", "Reshape"]
    reshape = folded.graph.node[2]
    target = next(t for t in folded.graph.initializer if t.name == reshape.input[1])
    assert onnx.numpy_helper.to_array(target).tolist() == [6, 1]
    assert [i.name for i in folded.graph.input] == ["x"] and [o.name for o in folded.graph.output] == ["y"]
    assert {o.domain for o in folded.opset_import} >= {"m2f"}


def test_plugin_outputs_with_symbolic_sizes_are_left_to_onnxslim():
    graph = helper.make_graph(
        [helper.make_node("Plug", ["x"], ["p"], domain="m2f"), helper.make_node("Relu", ["p"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        value_info=[helper.make_tensor_value_info("p", TensorProto.FLOAT, ["n", 3])])
    assert not folding.foldable(helper.make_model(graph))


def _table_graph(tables: dict[str, np.ndarray]):
    """y_k = Gather(x, table_k) for every named initializer; x float [300, 2]."""
    nodes = [helper.make_node("Gather", ["x", name], [f"y_{name}"], name=f"gather_{name}") for name in tables]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [300, 2])],
        [helper.make_tensor_value_info(f"y_{name}", TensorProto.FLOAT, None) for name in tables],
        initializer=[onnx.numpy_helper.from_array(t, name) for name, t in tables.items()])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 9
    return proto


def test_equal_index_tables_are_stored_once():
    rng = np.random.default_rng(0)
    big = rng.integers(0, 300, (400,), dtype=np.int32)  # 1600 bytes: over SHARED_CONSTANT_MIN_BYTES
    small = big[:10].copy()
    tables = {"a": big, "b": big.copy(), "c": big.astype(np.int64), "d": big[::-1].copy(), "e": big.copy(),
              "s1": small, "s2": small.copy()}
    proto = _table_graph(tables)
    x = rng.standard_normal((300, 2)).astype(np.float32)
    want = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    assert folding.share_index_constants(proto) == 2
    reads = {n.name: n.input[1] for n in proto.graph.node}
    assert reads == {"gather_a": "a", "gather_b": "a", "gather_c": "c", "gather_d": "d", "gather_e": "a",
                     "gather_s1": "s1", "gather_s2": "s2"}, "int64 copy, reversed copy and small tables kept apart"
    assert sorted(t.name for t in proto.graph.initializer) == ["a", "c", "d", "s1", "s2"]
    got = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_float_constants_are_not_shared():
    weights = np.arange(400, dtype=np.float32)
    nodes = [helper.make_node("Add", ["x", name], [f"y_{name}"]) for name in ("w1", "w2")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [400])],
        [helper.make_tensor_value_info(f"y_{name}", TensorProto.FLOAT, None) for name in ("w1", "w2")],
        initializer=[onnx.numpy_helper.from_array(weights, name) for name in ("w1", "w2")])
    assert folding.share_index_constants(helper.make_model(graph)) == 0


def test_a_static_portable_export_stores_each_neighbour_list_once(bundled_onnx):
    from m2f.assets import DEFAULT_PRESET
    from m2f.model.presets import get_preset

    encoder_layers = get_preset(DEFAULT_PRESET).enc_layers
    assert encoder_layers >= 2, "the bundled model must have layers to share a list"
    graph = onnx.load(str(bundled_onnx)).graph
    tables = [(t.data_type, tuple(t.dims), t.raw_data) for t in graph.initializer
              if t.data_type in (TensorProto.INT32, TensorProto.INT64)
              and len(t.raw_data) >= folding.SHARED_CONSTANT_MIN_BYTES]
    assert tables and len(tables) == len(set(tables))
    gathers = [n.input[1] for n in graph.node if n.op_type == "Gather" and "self_attn" in n.name]
    readers = {name: gathers.count(name) for name in set(gathers)}
    assert max(readers.values()) == encoder_layers, readers
