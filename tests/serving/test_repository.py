"""m2f triton-repo: configs read back with Triton's own ModelConfig schema and checked against the ONNX graph
itself; the Python-backend models loaded by the real tritonserver binary and chained with the network (run by
ONNX Runtime here, as Triton's onnxruntime backend would; that backend is not in PyTriton's server build) give
the in-process Predictor's results."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from m2f import contract

from .conftest import free_ports
from .test_serve import assert_same

pytest.importorskip("tritonclient.grpc", reason="m2f triton-repo needs tritonclient (pip install 'm2f[serve]')")


def read_config(path):
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    message = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


@pytest.fixture(scope="module")
def repo(bundled_onnx, tmp_path_factory):
    from m2f.cli import main

    out = tmp_path_factory.mktemp("repo") / "models"
    assert main(["triton-repo", str(bundled_onnx), "-o", str(out), "--instances", "2"]) == 0
    return out


def _dynamic(meta):
    """``meta`` as if its graph had been exported with --dynamic."""
    return dataclasses.replace(meta, input=dataclasses.replace(meta.input, dynamic=True,
                                                               shape=("batch", "height", "width", 3)))


def _onnx_dims(bundled_onnx):
    import onnx

    graph = onnx.load(str(bundled_onnx)).graph
    dims = lambda value: [d.dim_value or -1 for d in value.type.tensor_type.shape.dim]  # noqa: E731
    return {v.name: dims(v) for v in graph.input}, {v.name: dims(v) for v in graph.output}


def test_layout_and_files(repo, bundled_onnx):
    names = sorted(p.name for p in repo.iterdir())
    assert names == ["README.md", "m2f", "m2f_network", "m2f_postprocess", "m2f_preprocess"]
    assert (repo / "m2f_network" / "1" / "model.onnx").read_bytes() == bundled_onnx.read_bytes()
    assert (repo / "m2f" / "1").is_dir()  # Triton wants a version folder, even an ensemble's
    for python_model in ("m2f_preprocess", "m2f_postprocess"):
        assert "from m2f.serving.python_backend import" in (repo / python_model / "1" / "model.py").read_text()
        json.loads((repo / python_model / "1" / "metadata.json").read_text())
    assert "tritonserver --model-repository=/models" in (repo / "README.md").read_text()


def test_network_config_matches_the_onnx_graph(repo, bundled_onnx):
    inputs, outputs = _onnx_dims(bundled_onnx)
    config = read_config(repo / "m2f_network" / "config.pbtxt")
    assert config["platform"] == "onnxruntime_onnx"
    assert config.get("max_batch_size", 0) == 0  # a static graph of batch 1: no dynamic batching
    assert {i["name"]: [int(d) for d in i["dims"]] for i in config["input"]} == inputs
    assert {o["name"]: [int(d) for d in o["dims"]] for o in config["output"]} == outputs
    assert config["input"][0]["data_type"] == "TYPE_UINT8"
    group = config["instance_group"][0]  # KIND_AUTO is the enum's default, which protobuf's text leaves out
    assert group["count"] == 2 and group.get("kind", "KIND_AUTO") == "KIND_AUTO"
    meta = json.loads(config["parameters"][contract.METADATA_PARAMETER]["string_value"])
    assert meta["class_names"] and meta["input"]["shape"] == inputs["image"]


def test_ensemble_wiring_is_consistent(repo):
    """Every tensor a step reads is the ensemble's input or an earlier step's output; every map names a tensor the
    step's model declares; the ensemble's outputs are produced."""
    ensemble = read_config(repo / "m2f" / "config.pbtxt")
    assert ensemble["platform"] == "ensemble"
    available = {i["name"] for i in ensemble["input"]}
    for step in ensemble["ensemble_scheduling"]["step"]:
        model = read_config(repo / step["model_name"] / "config.pbtxt")
        declared_in = {i["name"]: i for i in model["input"]}
        declared_out = {o["name"]: o for o in model["output"]}
        assert set(step["input_map"]) == set(declared_in), step["model_name"]
        assert set(step["output_map"]) <= set(declared_out), step["model_name"]
        assert set(step["input_map"].values()) <= available, step["model_name"]
        available |= set(step["output_map"].values())
    assert {o["name"] for o in ensemble["output"]} <= available


def test_python_models_run_in_the_real_tritonserver(repo, bundled_onnx, sample_images, local_results):
    pytest.importorskip("pytriton", reason="the bundled tritonserver comes with nvidia-pytriton")
    import onnxruntime as ort
    import tritonclient.http as http
    from tritonclient.utils import np_to_triton_dtype

    from m2f.serving.client import _first_bytes
    from m2f.serving.local_triton import LocalTriton
    from m2f.serving.protocol import decode_result

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    network = ort.InferenceSession(str(bundled_onnx), options, providers=["CPUExecutionProvider"])
    with LocalTriton(repo, ["m2f_preprocess", "m2f_postprocess"], *free_ports(3)) as server:
        client = http.InferenceServerClient(server.http)

        def call(model, tensors):
            inputs = []
            for name, value in tensors.items():
                inputs.append(http.InferInput(name, list(value.shape), np_to_triton_dtype(value.dtype)))
                inputs[-1].set_data_from_numpy(value)
            return client.infer(model, inputs)

        assert len(sample_images) == len(local_results) == 3
        for path, want in zip(sample_images, local_results):
            pre = call("m2f_preprocess", {contract.SERVED_IMAGE: np.array([[path.read_bytes()]], dtype=object)})
            feeds = {n: pre.as_numpy(n) for n in (contract.IMAGE, contract.VALID_SIZE)}
            logits, masks = network.run([contract.PRED_LOGITS, contract.PRED_MASKS], feeds)
            post = call("m2f_postprocess", {contract.PRED_LOGITS: logits, contract.PRED_MASKS: masks,
                                            **{n: pre.as_numpy(n) for n in (contract.VALID_SIZE,
                                                                            contract.ORIGINAL_SIZE,
                                                                            contract.FIT_SCALE)}})
            got = decode_result({n: _first_bytes(post.as_numpy(n)) for n in contract.SERVED_OUTPUTS})
            assert_same(got, want)
        from tritonclient.utils import InferenceServerException

        with pytest.raises(InferenceServerException, match="is not an image PIL can read"):
            call("m2f_preprocess", {contract.SERVED_IMAGE: np.array([[b"not an image"]], dtype=object)})


def test_dynamic_graph_gets_dynamic_batching(bundled_onnx):
    from m2f.serving.repository import RepoOptions, configs, read_metadata

    meta = _dynamic(read_metadata(bundled_onnx))
    models = configs(meta, bundled_onnx, RepoOptions(max_batch=16, queue_delay_us=500))
    network = models["m2f_network"]
    assert network["max_batch_size"] == 16
    assert network["dynamic_batching"] == {"preferred_batch_size": [2, 4, 8, 16],
                                           "max_queue_delay_microseconds": 500}
    assert {i["name"]: i["dims"] for i in network["input"]} == {"image": [-1, -1, 3], "valid_size": [2]}
    q, k = meta.num_queries, meta.num_classes
    assert {o["name"]: o["dims"] for o in network["output"]} == {"pred_logits": [q, k + 1],
                                                               "pred_masks": [q, -1, -1]}
    assert models["m2f"]["input"][0]["dims"] == [1] and models["m2f"]["max_batch_size"] == 16


def test_engine_repository_and_plugin_library(bundled_onnx, tmp_path):
    from m2f.serving.repository import RepoOptions, read_metadata, write_repository

    meta = read_metadata(bundled_onnx)
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"serialized engine bytes")
    (tmp_path / "model.engine.json").write_text(dataclasses.replace(meta, op_flavor="m2f").to_json())
    from m2f.errors import ArgumentError

    with pytest.raises(ArgumentError, match="needs m2f's TensorRT plugin library; pass it with --plugins"):
        write_repository(engine, tmp_path / "repo", RepoOptions(pre_post="client"))
    assert not (tmp_path / "repo").exists()
    library = tmp_path / "libm2f_plugins.so"
    library.write_bytes(b"\x7fELF")
    repo = write_repository(engine, tmp_path / "repo", RepoOptions(pre_post="client", plugins=library))
    config = read_config(repo / "m2f" / "config.pbtxt")
    assert config["platform"] == "tensorrt_plan" and config["instance_group"][0]["kind"] == "KIND_GPU"
    assert (repo / "m2f" / "1" / "model.plan").read_bytes() == b"serialized engine bytes"
    assert (repo / "plugins" / "libm2f_plugins.so").exists()
    assert "--backend-config=tensorrt,plugins=/models/plugins/libm2f_plugins.so" in (repo / "README.md").read_text()


def test_refusals(bundled_onnx, tmp_path):
    from m2f.errors import ArgumentError
    from m2f.serving.repository import RepoOptions, read_metadata, write_repository

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(ArgumentError, match="exists and is not an empty folder"):
        write_repository(bundled_onnx, tmp_path / "full", RepoOptions())
    meta = read_metadata(bundled_onnx)
    engine = tmp_path / "b4.plan"
    engine.write_bytes(b"x")
    (tmp_path / "b4.plan.json").write_text(
        dataclasses.replace(meta, input=dataclasses.replace(meta.input, shape=(4, 192, 256, 3))).to_json())
    with pytest.raises(ArgumentError, match="static batch of 4, which one image per request cannot fill"):
        write_repository(engine, tmp_path / "repo", RepoOptions())
    assert not list(tmp_path.glob("*repo*"))


def test_check_flag_runs_the_repository(bundled_onnx, tmp_path, capsys):
    pytest.importorskip("pytriton", reason="the bundled tritonserver comes with nvidia-pytriton")
    from m2f.cli import main

    assert main(["triton-repo", str(bundled_onnx), "-o", str(tmp_path / "repo"), "--check", "--threads", "1"]) == 0
    assert "check passed: the served answer equals the in-process runtime's" in capsys.readouterr().out


def test_a_dynamic_engine_batches_up_to_its_profile(bundled_onnx):
    from m2f.errors import M2FWarning
    from m2f.serving.repository import RepoOptions, configs, read_metadata

    profiles = {"image": contract.ProfileShapes((1, 32, 32, 3), (2, 800, 1344, 3), (4, 1344, 1344, 3)),
                "valid_size": contract.ProfileShapes((1, 2), (2, 2), (4, 2))}
    engine = contract.EngineInfo(version="10.3.0", gpu="Orin", compute_capability="8.7", strongly_typed=True,
                                 builder_flags=(), profiles=profiles, flavor="portable", plugins=(),
                                 onnx=contract.FileRecord("m.onnx", "0" * 64))
    meta = dataclasses.replace(_dynamic(read_metadata(bundled_onnx)), tensorrt=engine)
    with pytest.warns(M2FWarning, match="takes batches up to 4.*m2f build --max-batch 8"):
        models = configs(meta, bundled_onnx.with_suffix(".engine"), RepoOptions(max_batch=8))
    assert {m["max_batch_size"] for m in models.values()} == {4}
    assert models["m2f_network"]["dynamic_batching"]["preferred_batch_size"] == [2, 4]
