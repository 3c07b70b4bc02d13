"""m2f.runtime.custom_ops (the numpy ops ONNX Runtime runs for plugin nodes) against the float64 naive references
written from the op contracts, and the graph rewrite that runs fp16 plugin nodes between Casts."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from m2f import contract
from m2f.errors import MissingDependencyError
from m2f.plugins.masked_attention import onnxruntime_op as ma_ort
from m2f.plugins.ms_deform_attn import onnxruntime_op as msda_ort
from m2f.runtime import custom_ops
from m2f.validate.compare import TOLERANCES

from ..plugins.test_reference_ops import masked_attention_case, naive_masked_attention, naive_msda

TOL = TOLERANCES["op_fp32_vs_fp64"]
SHAPES = [(5, 7), (3, 4), (2, 2), (1, 1)]


def _msda_inputs(rng, n=2, lq=6, heads=3, dim=5, points=4):
    s, nl = sum(h * w for h, w in SHAPES), len(SHAPES)
    value = rng.standard_normal((n, s, heads, dim))
    locations = rng.uniform(-0.2, 1.2, (n, lq, heads, nl, points, 2))  # samples outside the map included
    weights = rng.random((n, lq, heads, nl, points))
    weights /= weights.reshape(n, lq, heads, -1).sum(-1)[..., None, None]
    shapes = np.asarray(SHAPES, np.int32)
    starts = np.cumsum([0] + [h * w for h, w in SHAPES])[:-1].astype(np.int32)
    return value, shapes, starts, locations, weights


def test_msda_plain_matches_float64():
    value, shapes, starts, locations, weights = _msda_inputs(np.random.default_rng(0))
    got = msda_ort.msda_plain(value.astype(np.float32), shapes, starts, locations.astype(np.float32),
                                weights.astype(np.float32))
    ref = naive_msda(value, SHAPES, locations, weights)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got.reshape(ref.shape), ref, atol=TOL)


def test_msda_fused_matches_float64():
    """Fused form: locations = reference + offsets / (W_l, H_l), weights = softmax over levels x points."""
    rng = np.random.default_rng(1)
    value, shapes, starts, _, _ = _msda_inputs(rng)
    n, lq, heads, nl, points = 2, 6, 3, len(SHAPES), 4
    reference = rng.uniform(0, 1, (n, lq, nl, 2))
    offsets = rng.standard_normal((n, lq, heads, nl, points, 2)) * 2
    logits = rng.standard_normal((n, lq, heads, nl * points))
    wh = np.asarray([(w, h) for h, w in SHAPES], np.float64)
    locations = reference[:, :, None, :, None, :] + offsets / wh[None, None, None, :, None, :]
    e = np.exp(logits - logits.max(-1, keepdims=True))
    weights = (e / e.sum(-1, keepdims=True)).reshape(n, lq, heads, nl, points)
    ref = naive_msda(value, SHAPES, locations, weights)
    got = msda_ort.msda_fused(*(a.astype(np.float32) for a in (value,)), shapes, starts,
                                *(a.astype(np.float32) for a in (reference, offsets, logits)))
    np.testing.assert_allclose(got.reshape(ref.shape), ref, atol=TOL)


@pytest.mark.parametrize("with_mask", [True, False])
def test_masked_attention_matches_float64(with_mask):
    q, k, v, logits = masked_attention_case(2, with_mask)
    if with_mask:
        logits[1, 3, :4] = np.nextafter(np.float32(contract.MASK_BLOCKED_BELOW), np.float32(-1))  # just blocked
    ref = naive_masked_attention(q, k, v, logits)
    f32 = lambda a: None if a is None else a.astype(np.float32)  # noqa: E731
    got = ma_ort.masked_attention(f32(q), f32(k), f32(v), f32(logits))
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, ref, atol=TOL)


def _plugin_graph(dtype):
    """One M2fMaskedAttention node with ``dtype`` q/k/v and output (mask logits float32, as the export writes)."""
    dims = {"q": [1, 2, 3, 4], "k": [1, 2, 5, 4], "v": [1, 2, 5, 4]}
    inputs = [helper.make_tensor_value_info(name, dtype, shape) for name, shape in dims.items()]
    inputs.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 3, 5]))
    node = helper.make_node("M2fMaskedAttention", ["q", "k", "v", "mask"], ["out"], domain="m2f",
                            plugin_version="1", plugin_namespace="m2f")
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("out", dtype, [1, 2, 3, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("m2f", 1)])
    model.ir_version = 10
    return model


@pytest.mark.parametrize("dtype", [TensorProto.FLOAT, TensorProto.FLOAT16])
def test_prepare_runs_plugin_nodes_in_onnxruntime(dtype, tmp_path):
    """fp16 plugin nodes run in fp32 between Casts; the graph's fp16 outputs stay fp16."""
    path = tmp_path / "g.onnx"
    onnx.save(_plugin_graph(dtype), str(path))
    rewritten, library = custom_ops.prepare(path)
    assert rewritten is not None and library
    options = ort.SessionOptions()
    options.register_custom_ops_library(library)
    session = ort.InferenceSession(rewritten, options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(3)
    np_type = np.float16 if dtype == TensorProto.FLOAT16 else np.float32
    q, k, v = (rng.standard_normal(s).astype(np_type) for s in ((1, 2, 3, 4), (1, 2, 5, 4), (1, 2, 5, 4)))
    mask = rng.standard_normal((1, 3, 5)).astype(np.float32)
    (out,) = session.run(None, {"q": q, "k": k, "v": v, "mask": mask})
    ref = naive_masked_attention(*(a.astype(np.float64) for a in (q, k, v)), mask)
    assert out.dtype == np_type
    np.testing.assert_allclose(out.astype(np.float64), ref, atol=TOL if np_type == np.float32 else 2e-3)


def test_graph_without_plugin_nodes_is_left_alone(bundled_onnx):
    assert custom_ops.prepare(bundled_onnx) == (None, "")


def test_unknown_plugin_node_is_one_sentence(tmp_path):
    model = _plugin_graph(TensorProto.FLOAT)
    model.graph.node.append(helper.make_node("SomethingElse_TRT", ["out"], ["more"], domain="trt"))
    model.graph.output[0].name = "more"
    model.opset_import.append(helper.make_opsetid("trt", 1))
    path = tmp_path / "u.onnx"
    onnx.save(model, str(path))
    with pytest.raises(MissingDependencyError, match="has a trt::SomethingElse_TRT node, which m2f's ONNX Runtime "
                                                     "ops do not implement"):
        custom_ops.prepare(path)
