"""m2f build's TensorRT-free logic: which build a graph gets on TensorRT 10 and 11, optimisation profiles from the
metadata, trtexec-style shape flags, the sidecar (read back by the TensorRT runner's version check), the trtexec
line. The build itself needs TensorRT and a GPU (test_build_and_run_bundled, marked trt/gpu)."""
import hashlib
import json
import shlex

import pytest

from m2f.contract import FileRecord, parse
from m2f.errors import ArgumentError
from m2f.calib.engine import BuildOptions, BuildPlan, default_profile, parse_shapes, parser_error, plan_build, \
    profile, sidecar, trtexec_command
from m2f.runtime.backends.tensorrt_backend import check_built_for


def _meta(dynamic=True, kind="uint8", precision="fp32"):
    return parse(json.dumps({
        "format_version": 1, "m2f_version": "0", "tasks": ["panoptic"], "num_classes": 2, "num_queries": 5,
        "class_names": ["a", "b"], "thing_ids": [0], "outputs": ["pred_logits", "pred_masks"],
        "input": {"names": ["image", "valid_size"] if kind == "uint8" else ["pixel_values"], "kind": kind,
                  "layout": "", "dynamic": dynamic, "shape": ["N", "H", "W", 3] if dynamic else [1, 800, 1344, 3]},
        "pixel_mean": [0, 0, 0], "pixel_std": [1, 1, 1], "resize": {"short": 800, "max": 1333},
        "size_divisibility": 32, "thresholds": {"object_mask": 0.8, "overlap": 0.8}, "op_flavor": "m2f",
        "opset": 17, "precision": precision, "source": {"name": "test"}}), "test metadata")


@pytest.mark.parametrize("major", [10, 11])
@pytest.mark.parametrize("graph", ["fp16", "int8"])
def test_precision_in_the_graph_builds_strongly_typed(major, graph):
    assert plan_build(graph, None, major, False) == BuildPlan(True, precision=graph)
    assert plan_build(graph, graph, major, False).strongly_typed


def test_builder_flags_only_on_tensorrt_10():
    assert plan_build("fp32", "fp16", 10, False) == BuildPlan(False, ("FP16",), False, "fp16")
    assert plan_build("fp32", "best", 10, True) == BuildPlan(False, ("FP16", "INT8"), True, "best")
    with pytest.raises(ArgumentError, match="TensorRT 11 removed .*m2f convert model.onnx --precision fp16"):
        plan_build("fp32", "fp16", 11, False)
    with pytest.raises(ArgumentError, match="m2f convert model.onnx --precision int8"):
        plan_build("fp32", "int8", 11, True)
    with pytest.raises(ArgumentError, match="needs --data"):
        plan_build("fp32", "int8", 10, False)
    with pytest.raises(ArgumentError, match="already fp16"):
        plan_build("fp16", "int8", 10, True)


def test_parse_shapes_trtexec_syntax():
    assert parse_shapes("image:1x800x1344x3, valid_size:1x2", "--opt-shapes") == \
        {"image": (1, 800, 1344, 3), "valid_size": (1, 2)}
    for bad in ("image", "image:1x0x3", "image:axb", ":1x2"):
        with pytest.raises(ArgumentError, match="NAME:DxDx"):
            parse_shapes(bad, "--min-shapes")


def test_default_profile_from_the_metadata():
    got = default_profile(_meta(), max_batch=4)
    assert got["image"] == ((1, 32, 32, 3), (1, 800, 1344, 3), (4, 1344, 1344, 3))
    assert got["valid_size"] == ((1, 2), (1, 2), (4, 2))
    nchw = default_profile(_meta(kind="float"))
    assert nchw["pixel_values"][1] == (1, 3, 800, 1344)
    assert default_profile(_meta(dynamic=False)) == {}


def test_profile_overrides_and_errors():
    got = profile(_meta(), opt_shapes="image:2x640x640x3", max_shapes="image:2x1024x1024x3")
    assert got["image"][1:] == ((2, 640, 640, 3), (2, 1024, 1024, 3))
    assert got["valid_size"] == ((1, 2), (2, 2), (2, 2)), "valid_size follows the image's batch"
    with pytest.raises(ArgumentError, match="not ordered"):
        profile(_meta(), min_shapes="image:1x2000x2000x3")
    with pytest.raises(ArgumentError, match="not an input"):
        profile(_meta(), opt_shapes="pixels:1x3x8x8")
    with pytest.raises(ArgumentError, match="needs 4"):
        profile(_meta(), opt_shapes="image:1x800x1344")
    with pytest.raises(ArgumentError, match="static shapes"):
        profile(_meta(dynamic=False), max_shapes="image:1x800x1344x3")


def test_sidecar_records_the_build_and_satisfies_the_runner(tmp_path):
    onnx_path, lib = tmp_path / "m.onnx", tmp_path / "libm2f_plugins.so"
    onnx_path.write_bytes(b"graph bytes")
    lib.write_bytes(b"library bytes")
    plan = plan_build("fp16", None, 10, False)
    text = sidecar(_meta(precision="fp16"), trt_version="10.3.0.26", gpu="Orin", compute_capability="8.7",
                   plan=plan, profiles=profile(_meta()), plugins=[lib], onnx_path=onnx_path)
    meta = parse(text, "engine sidecar")
    built = meta.tensorrt
    assert built.onnx.sha256 == hashlib.sha256(b"graph bytes").hexdigest()
    assert built.plugins == (FileRecord(str(lib), hashlib.sha256(b"library bytes").hexdigest()),)
    assert built.profiles["image"].opt == (1, 800, 1344, 3) and built.strongly_typed
    assert meta.precision == "fp16" and built.flavor == "m2f"
    check_built_for(meta.tensorrt, "m.engine", "10.3.0.26", ("Orin", "8.7"))
    with pytest.raises(Exception, match="TensorRT 10.3.0.26 but this is TensorRT 10.16"):
        check_built_for(meta.tensorrt, "m.engine", "10.16.0.1", ("Orin", "8.7"))
    with pytest.raises(Exception, match=r"Orin \(compute capability 8.7\) but this is NVIDIA H100 \(9.0\)"):
        check_built_for(meta.tensorrt, "m.engine", "10.3.1", ("NVIDIA H100", "9.0"))
    json.loads(text)


def test_trtexec_line(tmp_path):
    options = BuildOptions(plugins=[tmp_path / "libm2f_plugins.so"], timing_cache=tmp_path / "t.cache",
                           workspace_mb=2048, dla_core=0)
    line = trtexec_command(tmp_path / "m.onnx", tmp_path / "m.engine", plan_build("int8", None, 11, False),
                           profile(_meta()), options)
    args = shlex.split(line)
    assert args[0] == "trtexec" and "--stronglyTyped" in args
    assert "--optShapes=image:1x800x1344x3,valid_size:1x2" in args
    assert f"--dynamicPlugins={tmp_path / 'libm2f_plugins.so'}" in args
    assert "--memPoolSize=workspace:2048M" in args and "--useDLACore=0" in args
    flags = trtexec_command(tmp_path / "m.onnx", tmp_path / "m.engine", plan_build("fp32", "best", 10, True), {},
                            BuildOptions(calib_cache=tmp_path / "c.calib"))
    assert "--fp16" in flags and "--int8" in flags and "--stronglyTyped" not in flags and "--calib=" in flags


def test_parser_errors_name_the_node_and_a_way_out():
    msg = parser_error([("/model/x/M2fMSDeformAttn", "M2fMSDeformAttn", "Plugin not found"), ("b", "c", "d")], "m2f")
    assert msg.startswith("TensorRT's ONNX parser refused node /model/x/M2fMSDeformAttn (M2fMSDeformAttn)")
    assert "(and 1 more)" in msg and "--plugins" in msg and "\n" not in msg
    assert "m2f inspect --trt-compat" in parser_error([("n", "GridSample", "unsupported")], "portable")


@pytest.mark.trt
@pytest.mark.gpu
def test_build_and_run_bundled(bundled_onnx, tmp_path):
    """The real thing on a TensorRT machine: build the bundled fp32 graph and run it through the runtime."""
    import numpy as np

    from m2f.calib.engine import build_engine
    from m2f.runtime import Predictor

    meta = parse(next(p.value for p in __import__("onnx").load(str(bundled_onnx)).metadata_props), "bundled")
    engine = tmp_path / "bundled.engine"
    build_engine(bundled_onnx, engine, meta, BuildOptions())
    image = np.zeros((192, 256, 3), np.uint8)
    with Predictor(engine) as trt_predictor, Predictor(bundled_onnx, threads=1) as ort_predictor:
        assert np.array_equal(trt_predictor.predict(image).semantic, ort_predictor.predict(image).semantic)
