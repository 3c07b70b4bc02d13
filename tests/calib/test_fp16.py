"""The fp16 converter (m2f.calib.fp16) on graphs small enough to check by hand, and on every op flavor of the
bundled model: ONNX Runtime runs the converted graph, fp32 islands stay fp32, one Cast per tensor and direction,
the graph's inputs and outputs keep their types."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from m2f.calib.session import open_session
from m2f.onnx_graph import STANDARD_DOMAINS
from m2f.plugins.ms_deform_attn import contract as msda_contract
from m2f.calib.fp16 import block_of, required_island, to_fp16


def _tiny_graph():
    """y = softmax(x @ W) + x @ W, x [1, 4], W [4, 4] (an initializer)."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(4, 4)).astype(np.float32), "W")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"], name="/model/backbone/res2/MatMul"),
             helper.make_node("Softmax", ["h"], ["p"], name="/model/backbone/res2/Softmax", axis=-1),
             helper.make_node("Add", ["p", "h"], ["y"], name="/model/backbone/res2/Add")]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # onnx writes its newest IR; ONNX Runtime reads up to 13
    return model, numpy_helper.to_array(w)


def test_tiny_graph_by_hand():
    model, w = _tiny_graph()
    conversion = to_fp16(model, set())
    half = conversion.model
    onnx.checker.check_model(half, full_check=True)
    types = {v.name: v.type.tensor_type.elem_type for v in list(half.graph.value_info) + list(half.graph.output)}
    assert types["h"] == TensorProto.FLOAT16, "MatMul computes in fp16"
    assert types["p"] == TensorProto.FLOAT, "Softmax is a required fp32 island"
    assert types["y"] == TensorProto.FLOAT, "graph outputs keep their declared type"
    casts = [(n.input[0], n.attribute[0].i) for n in half.graph.node if n.op_type == "Cast"]
    assert sorted(casts) == sorted(set(casts))
    assert ("h", TensorProto.FLOAT) in casts and ("x", TensorProto.FLOAT16) in casts
    assert {i.name: i.data_type for i in half.graph.initializer}["W"] == TensorProto.FLOAT16
    x = np.random.default_rng(1).normal(size=(1, 4)).astype(np.float32)
    h = x.astype(np.float16).astype(np.float64) @ w.astype(np.float16).astype(np.float64)
    p = np.exp(h - h.max()) / np.exp(h - h.max()).sum()
    got = open_session(half, 1).run(["y"], {"x": x})[0]
    np.testing.assert_allclose(got, p + h, rtol=2e-3, atol=2e-3)  # fp16 rounding of h, float64 elsewhere


def test_kept_nodes_and_oversized_constants_stay_fp32():
    model, _ = _tiny_graph()
    kept = to_fp16(model, {"/model/backbone/res2/MatMul"}).model
    assert all(n.op_type != "Cast" or n.input[0] != "x" for n in kept.graph.node), "nothing to cast for fp32 MatMul"
    big = numpy_helper.from_array(np.full((4, 4), 1e6, np.float32), "W")
    model.graph.initializer[0].CopyFrom(big)
    half = to_fp16(model, set()).model
    assert {i.name: i.data_type for i in half.graph.initializer}["W"] == TensorProto.FLOAT, "1e6 overflows fp16"


@pytest.mark.parametrize("name, block", [
    ("/Cast", "pre/post-processing"),
    ("/model/backbone/res3/res3.0/conv1/Conv", "backbone/res3"),
    ("/model/sem_seg_head/pixel_decoder/layers.1/self_attn/value_proj/MatMul",
     "pixel_decoder/layers.1/attention projections"),
    ("/model/sem_seg_head/pixel_decoder/layers.1/self_attn/Floor_3", "pixel_decoder/layers.1/deformable sampling"),
    ("/model/sem_seg_head/pixel_decoder/layers.0/norm1/LayerNormalization", "pixel_decoder/layers.0/ffn and norms"),
    ("/model/sem_seg_head/predictor/transformer_cross_attention_layers.2/multihead_attn/Softmax",
     "predictor/transformer_cross_attention_layers.2"),
    ("/model/sem_seg_head/predictor/mask_embed_3/Relu", "predictor/prediction heads"),
])
def test_blocks_from_scope_names(name, block):
    assert block_of(name) == block


def test_required_islands():
    node = lambda op, name, domain="", inputs=(): helper.make_node(op, list(inputs), [], name=name, domain=domain)
    attn = "/model/sem_seg_head/predictor/transformer_cross_attention_layers.0/multihead_attn/"
    sampling = "/model/sem_seg_head/pixel_decoder/layers.0/self_attn/"
    assert required_island(node("Less", attn + "Less"))
    assert required_island(node("Add", attn + "Add_3", inputs=[attn + "MatMul_3_output_0", attn + "Where_output_0"]))
    assert required_island(node("Add", attn + "Add_1", inputs=["bias", attn + "MatMul_1_output_0"])) is None, \
        "a projection's bias add is not the masking"
    assert required_island(node("Floor", sampling + "Floor"))
    assert required_island(node("M2fMSDeformAttn", sampling + "M2fMSDeformAttn", "m2f")) is None, \
        "the plugin node itself takes fp16, as TensorRT's plugin does"
    assert required_island(node("Conv", "/model/backbone/res2/res2.0/conv1/Conv")) is None


def test_portable_masking_stays_fp32(bundled_onnx):
    """The portable masked attention adds a -inf / 0 mask to the scores: in an fp16 graph that Add reads the scores
    cast to fp32 and feeds the fp32 Softmax, as the threshold that makes the mask (docs/numerics.md)."""
    half = to_fp16(onnx.load(str(bundled_onnx)), set()).model
    producer = {o: n for n in half.graph.node for o in n.output}
    types = {v.name: v.type.tensor_type.elem_type for v in half.graph.value_info}
    softmaxes = [n for n in half.graph.node if n.op_type == "Softmax" and "/multihead_attn/" in n.name]
    masking = [producer[n.input[0]] for n in softmaxes]
    assert masking and all(n.op_type == "Add" for n in masking), [n.op_type for n in masking]
    for add in masking:
        assert [types[i] for i in add.input] == [TensorProto.FLOAT] * 2, add.name
        scores = producer[add.input[0]]
        assert scores.op_type == "Cast" and types[scores.input[0]] == TensorProto.FLOAT16, "MatMul in fp16"
        assert producer[add.input[1]].op_type == "Where"


@pytest.mark.parametrize("flavor", ["m2f", pytest.param("trt-builtin", marks=pytest.mark.slow)])
def test_plugin_flavors_in_fp16(flavor, tmp_path):
    """The plugin nodes take an fp16 value (run in ONNX Runtime as m2f's ops between Casts) and the outputs agree
    with the fp32 graph's; m2f's deformable attention keeps its sampling inputs fp32 (TensorRT's own cannot)."""
    from m2f.assets import DEFAULT_PRESET, DEFAULT_WEIGHTS
    from m2f.export.onnx_export import ExportOptions, export_onnx
    from m2f.model.checkpoint import load_checkpoint

    model = load_checkpoint(DEFAULT_WEIGHTS, preset=DEFAULT_PRESET)
    path = export_onnx(model, tmp_path / "m.onnx", ExportOptions(height=192, width=256, flavor=flavor)).path
    graph = onnx.load(str(path))
    half = to_fp16(graph, set()).model
    plugin_inputs = [i for n in half.graph.node if n.domain not in STANDARD_DOMAINS for i in n.input[:1]]
    types = {v.name: v.type.tensor_type.elem_type for v in half.graph.value_info}
    types.update({i.name: i.data_type for i in half.graph.initializer})
    assert plugin_inputs and all(types[i] == TensorProto.FLOAT16 for i in plugin_inputs)
    sampling = [types[i] for n in half.graph.node if n.op_type in (msda_contract.PLUGIN_NAME,
                                                                    msda_contract.TRT_BUILTIN_NAME)
                for i in n.input[3:]]
    want_sampling = TensorProto.FLOAT if flavor == "m2f" else TensorProto.FLOAT16
    assert sampling and all(t == want_sampling for t in sampling), (flavor, sampling)
    rng = np.random.default_rng(0)
    feeds = {"image": rng.integers(0, 256, (1, 192, 256, 3), dtype=np.uint8),
             "valid_size": np.array([[192, 256]], np.int32)}
    want = open_session(graph, 1).run(None, feeds)
    got = open_session(half, 1).run(None, feeds)
    assert np.isfinite(got[1]).all()
    assert np.mean((got[1] > 0) == (want[1] > 0)) > 0.999
    np.testing.assert_allclose(got[0], want[0], atol=0.05 * float(np.abs(want[0]).max()))
