"""The plugin flavors (m2f, trt-builtin) vs PyTorch and vs the portable graph, in ONNX Runtime (plugin nodes run as
m2f.runtime.custom_ops' numpy ops): static and dynamic, ResNet and Swin, batch 1 and 2, sizes never traced; the
graphs hold one plugin node per op and none of the portable lowering's gathers; TensorRT's parser matrix accepts them.
"""
import collections

import numpy as np
import onnx
import pytest
import torch

from m2f import contract
from m2f.export.onnx_export import ExportOptions, export_onnx, plugin_requirements
from m2f.onnx_graph import STANDARD_DOMAINS
from m2f.plugins.masked_attention import contract as ma_contract
from m2f.plugins.ms_deform_attn import contract as msda_contract
from m2f.calib.trt_compat import check_graph
from m2f.validate.compare import TOLERANCES

from ..model.helpers import random_model, tiny_config
from .helpers import detectron2_padded, random_batch, session

TOL = TOLERANCES["model_fp32_max_abs"]
PLUGIN_FLAVORS = ("m2f", "trt-builtin")


def _outputs(path, image, valid):
    return session(path).run(None, {"image": image, "valid_size": valid})


def _reference(model, image, valid):
    with torch.no_grad():
        ref = model(detectron2_padded(model, image, valid))
    return ref["pred_logits"].numpy(), ref["pred_masks"].numpy()


def _ops(path) -> collections.Counter:
    return collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)


# every flavor on each backbone; the other two pairs in the slow run
@pytest.fixture(scope="module", params=[("swin", "m2f"), ("resnet", "trt-builtin"),
                                        pytest.param(("resnet", "m2f"), marks=pytest.mark.slow),
                                        pytest.param(("swin", "trt-builtin"), marks=pytest.mark.slow)],
                ids=lambda p: "-".join(p))
def dynamic_flavor(request, tmp_path_factory):
    kind, flavor = request.param
    model = random_model(tiny_config(kind), seed=5)
    folder = tmp_path_factory.mktemp(f"{kind}-{flavor}")
    path = export_onnx(model, folder / "g.onnx", ExportOptions(dynamic=True, flavor=flavor)).path
    return model, flavor, path


@pytest.mark.parametrize("n,height,width,valid", [
    (1, 96, 160, [[96, 150]]),
    (2, 160, 64, [[160, 64], [131, 40]]),
])
def test_dynamic_flavor_matches_pytorch(dynamic_flavor, n, height, width, valid):
    """Sizes other than the traced 128x160 example: plugin nodes carry no baked-in shapes."""
    model, _, path = dynamic_flavor
    image, valid = random_batch(n, height, width, valid, seed=height)
    logits, masks = _outputs(path, image, valid)
    ref_logits, ref_masks = _reference(model, image, valid)
    np.testing.assert_allclose(logits, ref_logits, atol=TOL, rtol=0)
    np.testing.assert_allclose(masks, ref_masks, atol=TOL, rtol=0)


def test_plugin_nodes_replace_the_lowering(dynamic_flavor):
    """One plugin node per op; the portable lowering (Floor for bilinear corners, the cross-attention Softmax) gone."""
    model, flavor, path = dynamic_flavor
    ops = _ops(path)
    cfg = model.config
    softmax = collections.Counter(("pixel_decoder" if "pixel_decoder" in n.name else
                                   "cross" if "cross_attention" in n.name else "other")
                                  for n in onnx.load(str(path)).graph.node if n.op_type == "Softmax")
    assert ops["Floor"] == 0  # the portable deformable attention floors every sampling location
    if flavor == "m2f":
        assert ops[msda_contract.PLUGIN_NAME] == cfg.enc_layers
        assert ops[ma_contract.PLUGIN_NAME] == cfg.dec_layers
        assert softmax["pixel_decoder"] == 0 and softmax["cross"] == 0  # both softmaxes are inside the plugins
    else:
        assert ops[msda_contract.TRT_BUILTIN_NAME] == cfg.enc_layers
        # TensorRT's plugin takes normalised weights; the masked attention stays standard ops
        assert softmax["pixel_decoder"] == cfg.enc_layers and softmax["cross"] == cfg.dec_layers


def test_plugin_node_attributes_and_opsets(dynamic_flavor):
    _, flavor, path = dynamic_flavor
    proto = onnx.load(str(path))
    plugin = [n for n in proto.graph.node if n.domain not in STANDARD_DOMAINS]
    attrs = {(n.op_type, a.name): onnx.helper.get_attribute_value(a) for n in plugin for a in n.attribute}
    domains = {o.domain: o.version for o in proto.opset_import}
    if flavor == "m2f":
        assert attrs[(msda_contract.PLUGIN_NAME, "plugin_version")] == b"1"
        assert attrs[(msda_contract.PLUGIN_NAME, "plugin_namespace")] == b"m2f"
        assert attrs[(msda_contract.PLUGIN_NAME, "fused")] == 1
        assert attrs[(ma_contract.PLUGIN_NAME, "plugin_version")] == b"1"
        assert "m2f" in domains
    else:
        assert attrs[(msda_contract.TRT_BUILTIN_NAME, "plugin_version")] == b"1"  # TensorRT 10.3 (the default)
        assert "trt" in domains
    assert domains[""] == 17 and proto.ir_version <= 10  # ONNX Runtime 1.31 reads IR <= 13


@pytest.mark.slow  # three static exports; batch 2 through every flavor is also in the dynamic tests
def test_static_batch2_flavors_agree(tmp_path):
    """Static batch 2 at a canvas larger than the images: portable, m2f and trt-builtin give PyTorch's tensors; the
    static plugin graphs type plugin outputs with their sizes, so the shape arithmetic after them folds away."""
    model = random_model(tiny_config("resnet"), seed=6)
    image, valid = random_batch(2, 64, 96, [[64, 96], [50, 70]], seed=2)
    ref_logits, ref_masks = _reference(model, image, valid)
    nodes = {}
    for flavor in ("portable", *PLUGIN_FLAVORS):
        path = export_onnx(model, tmp_path / f"{flavor}.onnx", ExportOptions(height=64, width=96, batch=2,
                                                                             flavor=flavor)).path
        logits, masks = _outputs(path, image, valid)
        np.testing.assert_allclose(logits, ref_logits, atol=TOL, rtol=0, err_msg=flavor)
        np.testing.assert_allclose(masks, ref_masks, atol=TOL, rtol=0, err_msg=flavor)
        nodes[flavor] = sum(_ops(path).values())
    assert nodes["m2f"] < nodes["portable"] and nodes["trt-builtin"] < nodes["portable"], nodes


def test_trt_builtin_version_follows_tensorrt():
    """MultiscaleDeformableAttnPlugin_TRT is version 1 up to TensorRT 10.10 and 2 (IPluginV3) from 10.11 (no
    tracing: the graph's nodes are checked against these requirements by the parser-matrix test)."""
    needs = plugin_requirements(ExportOptions(flavor="trt-builtin", tensorrt_version="10.16"))
    assert needs == {"plugins": (contract.PluginInfo(name=msda_contract.TRT_BUILTIN_NAME, namespace="", version="2",
                                                     library="TensorRT's libnvinfer_plugin"),),
                     "min_tensorrt": "10.11"}
    assert plugin_requirements(ExportOptions(flavor="trt-builtin", tensorrt_version="10.3"))["min_tensorrt"] == "10.0"
    assert [msda_contract.trt_builtin_version(v) for v in ("10.0", "10.3", "10.10", "10.11", "11.1")] == \
        ["1", "1", "1", "2", "2"]


def _check_parser_and_plugins(path, flavor: str) -> None:
    """``path`` passes TensorRT's ONNX-parser matrix, and its metadata names exactly the plugins its nodes need, at
    the versions the nodes carry."""
    proto = onnx.load(str(path))
    issues = check_graph(onnx.shape_inference.infer_shapes(proto))
    assert issues == [], "\n".join(map(str, issues))
    meta = contract.parse(next(p.value for p in proto.metadata_props if p.key == contract.KEY), path.name)
    versions = {c.PLUGIN_NAME: c.PLUGIN_VERSION for c in (msda_contract, ma_contract)}
    nodes = {(n.op_type, n.domain, versions[n.op_type]) if n.op_type in versions else
             (n.op_type, "", onnx.helper.get_attribute_value(
                 next(a for a in n.attribute if a.name == "plugin_version")).decode())
             for n in proto.graph.node if n.op_type in (*versions, msda_contract.TRT_BUILTIN_NAME)}
    assert nodes == {(p.name, p.namespace, p.version) for p in meta.plugins}
    assert meta.op_flavor == flavor and meta.min_tensorrt == {"portable": "10.0", "m2f": "10.3",
                                                               "trt-builtin": "10.0"}[flavor]


@pytest.mark.parametrize("flavor,head", [("portable", "instance"), ("m2f", "panoptic"),
                                         pytest.param("m2f", "semantic", marks=pytest.mark.slow)])
def test_every_flavor_and_head_passes_the_parser_matrix(flavor, head, tmp_path):
    """Dynamic Swin graphs with heads against TensorRT's ONNX-parser matrix (without a head: the next test)."""
    model = random_model(tiny_config("swin"), seed=7)
    path = export_onnx(model, tmp_path / "g.onnx", ExportOptions(dynamic=True, flavor=flavor, head=head)).path
    _check_parser_and_plugins(path, flavor)


def test_dynamic_plugin_flavors_pass_the_parser_matrix(dynamic_flavor):
    _, flavor, path = dynamic_flavor
    _check_parser_and_plugins(path, flavor)


def test_metadata_lists_m2f_plugins():
    needs = plugin_requirements(ExportOptions(flavor="m2f"))
    assert needs["min_tensorrt"] == "10.3" and [(p.name, p.namespace, p.version) for p in needs["plugins"]] == [
        ("M2fMSDeformAttn", "m2f", "1"), ("M2fMaskedAttention", "m2f", "1")]
    assert plugin_requirements(ExportOptions()) == {"plugins": (), "min_tensorrt": "10.0"}


def test_dynamic_portable_at_a_larger_size_and_batch(tmp_path):
    """The portable deformable attention computes its row indices and bounds from the traced sizes: at a batch and
    canvas larger than the traced example nothing is clamped or read from a stale size."""
    model = random_model(tiny_config("resnet"), seed=5)
    path = export_onnx(model, tmp_path / "g.onnx", ExportOptions(dynamic=True)).path
    image, valid = random_batch(2, 256, 320, [[256, 320], [200, 300]], seed=4)
    logits, masks = _outputs(path, image, valid)
    ref_logits, ref_masks = _reference(model, image, valid)
    np.testing.assert_allclose(logits, ref_logits, atol=TOL, rtol=0)
    np.testing.assert_allclose(masks, ref_masks, atol=TOL, rtol=0)
