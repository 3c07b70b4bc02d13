"""``m2f triton-repo``: a Triton Inference Server model repository for a production server (no torch).

    REPO/
      README.md                 the server command, the plugin note, what each model does
      NAME/config.pbtxt, 1/     the ensemble clients call: encoded image -> JSON + PNGs (not with --pre-post client)
      NAME_preprocess/          Python backend: decode + m2f Preprocessor (1/model.py, 1/metadata.json)
      NAME_network/             the exported graph: onnxruntime_onnx (1/model.onnx) or tensorrt_plan (1/model.plan)
      NAME_postprocess/         Python backend: m2f's reference-exact post-processing (1/model.py, 1/metadata.json)
      plugins/                  the TensorRT plugin library an engine of the m2f flavor needs (the TensorRT
                                backend opens it: --backend-config=tensorrt,plugins=...)

With ``--pre-post client`` the network alone is written, named NAME, and clients do pre/post-processing themselves
(``m2f.runtime.HostSteps``). Every config.pbtxt is built as Triton's own ``ModelConfig`` protobuf (tritonclient ships
its schema) and written in protobuf text format; each carries the metadata as the ``m2f_metadata`` parameter.
Dynamic batching needs a graph with a dynamic batch (``m2f export --dynamic``); a static graph of batch 1 is served
one image at a time (max_batch_size 0), and a static graph of a larger batch cannot be fed one image per request.
"""
from __future__ import annotations

import json
import shutil
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

from m2f import contract
from m2f.errors import ArgumentError, M2FWarning, require
from m2f.onnx_graph import load_onnx

from . import DEFAULT_MAX_PIXELS, DEFAULT_MODEL_NAME, DEFAULT_QUEUE_DELAY_US, PRE_POST, check_model_name
from .server import preferred_batch_sizes

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
_DTYPES = {"uint8": "TYPE_UINT8", "int32": "TYPE_INT32", "float32": "TYPE_FP32", "int64": "TYPE_INT64",
           "bytes": "TYPE_STRING", "bool": "TYPE_BOOL"}
_MODEL_PY = '''"""A Triton Python-backend model from m2f triton-repo; the code is m2f's (pip install 'm2f[runtime]')."""
from m2f.serving.python_backend import {cls} as TritonPythonModel  # noqa: F401
'''


@dataclass
class RepoOptions:
    """name: the ensemble's name (the models are NAME_preprocess, NAME_network, NAME_postprocess).
    max_batch: largest batch of the dynamic batcher (dynamic-batch graphs only); instances: model instances of the
    network (and of the Python models); pre_post: "python" (ensemble) or "client"; plugins: the TensorRT plugin
    library for an engine that has m2f plugin nodes."""

    name: str = DEFAULT_MODEL_NAME
    max_batch: int = 8
    instances: int = 1
    pre_post: str = "python"
    queue_delay_us: int = DEFAULT_QUEUE_DELAY_US
    max_pixels: int = DEFAULT_MAX_PIXELS
    plugins: Path | None = None

    def __post_init__(self):
        check_model_name(self.name)


@dataclass
class Tensor:
    """A tensor of a model config: name, m2f dtype name, dims without the batch dimension (-1 = any)."""

    name: str
    dtype: str
    dims: list[int]


def read_metadata(model: Path) -> contract.Metadata:
    """The m2f metadata of an exported .onnx or of an engine's sidecar."""
    if model.suffix.lower() == ".onnx":
        require("onnx", "runtime", "reading an ONNX model's metadata")
        return contract.read_onnx(load_onnx(model, external_data=False), model.name)
    sidecar = contract.sidecar_path(model)
    return contract.parse(sidecar.read_text() if sidecar.exists() else None, f"{model.name} (sidecar {sidecar.name})")


def network_tensors(meta: contract.Metadata) -> tuple[list[Tensor], list[Tensor], bool]:
    """(inputs, outputs, batching) of the exported graph as Triton sees it: dims after the batch dimension when the
    graph's batch is dynamic, else the full static shape."""
    dynamic = meta.input.dynamic
    sizes = contract.graph_sizes(meta.input.batch, meta.input.canvas, meta.num_queries, meta.num_classes,
                                 meta.test_topk_per_image)

    def tensor(spec) -> Tensor:
        dims = [d if isinstance(d, int) else -1 for d in contract.resolve_dims(spec, sizes)]
        return Tensor(spec.name, spec.dtype, dims[1:] if dynamic else dims)

    inputs = [tensor(s) for s in contract.input_specs(meta.input.kind, meta.head) if s.name in meta.input.names]
    outputs = [tensor(s) for s in contract.output_specs(meta.head)]
    return inputs, outputs, dynamic


def _check_servable(meta: contract.Metadata, model: Path, options: RepoOptions) -> None:
    if options.pre_post not in PRE_POST:
        raise ArgumentError(f"--pre-post must be one of {', '.join(PRE_POST)}, not {options.pre_post!r}")
    if not meta.input.dynamic and meta.input.batch != 1 and options.pre_post == "python":
        raise ArgumentError(f"{model.name} has a static batch of {meta.input.batch}, which one image per "
                            f"request cannot fill; export it with --batch 1, or --dynamic for dynamic batching")
    if model.suffix.lower() not in (".onnx", *ENGINE_SUFFIXES):
        raise ArgumentError(f"cannot tell what {model.name} is; give an .onnx file from 'm2f export' or a TensorRT "
                            f"engine ({', '.join(ENGINE_SUFFIXES)})")


def _config_text(config: dict) -> str:
    """A model config (dict in Triton's JSON form) -> protobuf text, validated against Triton's ModelConfig."""
    pb2 = require("tritonclient.grpc.model_config_pb2", "serve", "m2f triton-repo")
    from google.protobuf import json_format, text_format

    text = text_format.MessageToString(json_format.ParseDict(config, pb2.ModelConfig()))
    # proto3 leaves a zero out; Triton reads a missing max_batch_size as 0 too, but say it for the reader
    return text if config["max_batch_size"] else text + "max_batch_size: 0\n"


def _io(tensors: list[Tensor]) -> list[dict]:
    return [{"name": t.name, "data_type": _DTYPES[t.dtype], "dims": t.dims} for t in tensors]


def _base(name: str, meta: contract.Metadata, batching: bool, options: RepoOptions, kind: str) -> dict:
    config = {"name": name, "max_batch_size": options.max_batch if batching else 0,
              "parameters": {contract.METADATA_PARAMETER: {"string_value": meta.to_json()}}}
    if kind != "ensemble":
        config["instance_group"] = [{"count": options.instances, "kind": kind}]
    if batching and kind != "ensemble":
        config["dynamic_batching"] = {"preferred_batch_size": preferred_batch_sizes(options.max_batch),
                                      "max_queue_delay_microseconds": options.queue_delay_us}
    return config


def _unbatched(tensors: list[Tensor], batching: bool) -> list[Tensor]:
    """A non-batching model's dims carry the request's leading 1 (see python_backend)."""
    return tensors if batching else [Tensor(t.name, t.dtype, [1] + t.dims) for t in tensors]


def python_tensors(inputs: list[Tensor], outputs: list[Tensor], dynamic: bool
                   ) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """(pre-processing outputs, post-processing inputs, served outputs), dims after the batch dimension, from the
    network's tensors (``network_tensors``)."""
    graph_inputs = [Tensor(t.name, t.dtype, t.dims if dynamic else t.dims[1:])
                    for t in inputs if t.name != contract.VALID_SIZE]
    sizes = [Tensor(contract.VALID_SIZE, "int32", [2]), Tensor(contract.ORIGINAL_SIZE, "int32", [2]),
             Tensor(contract.FIT_SCALE, "float32", [1])]
    graph_outputs = [Tensor(t.name, t.dtype, t.dims if dynamic else t.dims[1:]) for t in outputs]
    served = [Tensor(n, "bytes", [1]) for n in contract.SERVED_OUTPUTS]
    return graph_inputs + sizes, graph_outputs + sizes, served


def engine_max_batch(meta: contract.Metadata, requested: int) -> int:
    """The largest batch Triton may send a dynamic engine: ``requested``, capped by its optimisation profile (said
    once, with the fix)."""
    profiles = meta.tensorrt.profiles if meta.tensorrt else {}
    limits = [p.max[0] for p in profiles.values()]
    if limits and min(limits) < requested:
        warnings.warn(f"the engine's optimisation profile takes batches up to {min(limits)}, so Triton batches up to "
                      f"that; build it with 'm2f build --max-batch {requested}' to batch up to {requested}",
                      M2FWarning, stacklevel=3)
        return max(1, min(limits))
    return requested


def configs(meta: contract.Metadata, model: Path, options: RepoOptions) -> dict[str, dict]:
    """{model name: config (Triton's JSON form)} of every model in the repository."""
    inputs, outputs, batching = network_tensors(meta)
    engine = model.suffix.lower() in ENGINE_SUFFIXES
    if engine and batching:
        options = replace(options, max_batch=engine_max_batch(meta, options.max_batch))
    name = options.name if options.pre_post == "client" else f"{options.name}_network"
    network = _base(name, meta, batching, options, "KIND_GPU" if engine else "KIND_AUTO")
    network.update({"platform": "tensorrt_plan" if engine else "onnxruntime_onnx",
                    "input": _io(inputs), "output": _io(outputs)})
    if options.pre_post == "client":
        return {name: network}
    pre_out, post_in, served = python_tensors(inputs, outputs, batching)
    image = [Tensor(contract.SERVED_IMAGE, "bytes", [1])]
    pre = _base(f"{options.name}_preprocess", meta, batching, options, "KIND_CPU")
    pre.update({"backend": "python", "input": _io(_unbatched(image, batching)),
                "output": _io(_unbatched(pre_out, batching)),
                "parameters": {**pre["parameters"], "max_pixels": {"string_value": str(options.max_pixels)}}})
    post = _base(f"{options.name}_postprocess", meta, batching, options, "KIND_CPU")
    post.update({"backend": "python", "input": _io(_unbatched(post_in, batching)),
                 "output": _io(_unbatched(served, batching))})
    ensemble = _base(options.name, meta, batching, options, "ensemble")
    ensemble.update({"platform": "ensemble", "input": _io(_unbatched(image, batching)),
                     "output": _io(_unbatched(served, batching)),
                     "ensemble_scheduling": {"step": _steps(options.name, [t.name for t in inputs],
                                                            [t.name for t in outputs])}})
    return {ensemble["name"]: ensemble, pre["name"]: pre, network["name"]: network, post["name"]: post}


def _steps(name: str, graph_inputs: list[str], graph_outputs: list[str]) -> list[dict]:
    """The ensemble's data flow: encoded_image -> preprocess -> network -> postprocess -> served outputs."""
    sizes = (contract.VALID_SIZE, contract.ORIGINAL_SIZE, contract.FIT_SCALE)
    pre_outputs = sorted(set(graph_inputs) | set(sizes))
    return [
        {"model_name": f"{name}_preprocess", "model_version": -1,
         "input_map": {contract.SERVED_IMAGE: contract.SERVED_IMAGE},
         "output_map": {n: f"pre.{n}" for n in pre_outputs}},
        {"model_name": f"{name}_network", "model_version": -1,
         "input_map": {n: f"pre.{n}" for n in graph_inputs},
         "output_map": {n: f"net.{n}" for n in graph_outputs}},
        {"model_name": f"{name}_postprocess", "model_version": -1,
         "input_map": {**{n: f"net.{n}" for n in graph_outputs}, **{n: f"pre.{n}" for n in sizes}},
         "output_map": {n: n for n in contract.SERVED_OUTPUTS}},
    ]


def write_repository(model: str | Path, out: str | Path, options: RepoOptions) -> Path:
    """Write the repository for ``model`` into ``out`` (created; an existing non-empty folder is refused); returns
    ``out``. Everything is written to a temporary folder beside it first, then renamed."""
    model, out = Path(model), Path(out)
    if not model.exists():
        raise ArgumentError(f"model {model} does not exist")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ArgumentError(f"{out} exists and is not an empty folder; give a new folder for the repository")
    meta = read_metadata(model)
    _check_servable(meta, model, options)
    library = _plugin_library(meta, model, options)
    models = configs(meta, model, options)
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for name, config in models.items():
            folder = tmp / name / "1"
            folder.mkdir(parents=True)
            (tmp / name / "config.pbtxt").write_text(_config_text(config))
            _write_version(folder, name, config, model, meta, options)
        if library is not None:
            (tmp / "plugins").mkdir()
            shutil.copy2(library, tmp / "plugins" / library.name)
        (tmp / "README.md").write_text(repository_readme(models, options, library))
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write_version(folder: Path, name: str, config: dict, model: Path, meta: contract.Metadata,
                   options: RepoOptions) -> None:
    """The files of version 1 of one model."""
    if config.get("backend") == "python":
        cls = "PreprocessModel" if name.endswith("_preprocess") else "PostprocessModel"
        (folder / "model.py").write_text(_MODEL_PY.format(cls=cls))
        (folder / "metadata.json").write_text(json.dumps(meta.to_dict(), indent=1, sort_keys=True))
    elif config.get("platform") == "onnxruntime_onnx":
        shutil.copy2(model, folder / "model.onnx")
        if (model.parent / f"{model.name}.data").exists():  # weights stored outside the graph travel with it
            shutil.copy2(model.parent / f"{model.name}.data", folder / f"{model.name}.data")
    elif config.get("platform") == "tensorrt_plan":
        shutil.copy2(model, folder / "model.plan")


def _plugin_library(meta: contract.Metadata, model: Path, options: RepoOptions) -> Path | None:
    """The plugin library an engine with m2f plugin nodes needs (None for ONNX models and plugin-free engines)."""
    if model.suffix.lower() not in ENGINE_SUFFIXES or meta.op_flavor != "m2f":
        return None
    if options.plugins is None:
        raise ArgumentError(f"{model.name} was built from the m2f flavor and needs m2f's TensorRT plugin library; "
                            f"pass it with --plugins (m2f plugins build writes it)")
    if not Path(options.plugins).is_file():
        raise ArgumentError(f"plugin library {options.plugins} does not exist; build it with 'm2f plugins build'")
    return Path(options.plugins)


def repository_readme(models: dict[str, dict], options: RepoOptions, library: Path | None) -> str:
    """How to serve the repository (written into it)."""
    plugins = f" --backend-config=tensorrt,plugins=/models/plugins/{library.name}" if library else ""
    lines = [f"# Triton model repository for {options.name} (written by m2f triton-repo)", "",
             "Models: " + ", ".join(f"`{n}`" for n in models) + ".", "",
             "Serve it with NVIDIA's Triton container (the Python models need m2f's runtime in it):", "", "```",
             "docker run --rm --gpus all -p 8000:8000 -p 8001:8001 -p 8002:8002 -v $PWD:/models \\",
             "  nvcr.io/nvidia/tritonserver:<yy.mm>-py3 bash -c \\",
             f"  \"pip install 'm2f[runtime]' && tritonserver --model-repository=/models{plugins}\"", "```", ""]
    if library:
        lines += [f"`plugins/{library.name}` holds the TensorRT plugins the engine needs. Triton's TensorRT backend "
                  "opens it (its `plugins` backend option above) after loading TensorRT, and the library registers "
                  "its plugins then. LD_PRELOAD does not work: at preload time there is no TensorRT to register with. "
                  "Build the engine and the library with the TensorRT version of the container.", ""]
    lines += ["Clients send an encoded image (`encoded_image`, BYTES) to the ensemble and receive `result_json`, "
              "`panoptic_png` and `semantic_png`; `Predictor('http://HOST:8000/" + options.name + "')` and "
              "`m2f infer http://HOST:8000/" + options.name + " …` do that. Health: `/v2/health/ready`; "
              "Prometheus metrics: port 8002, `/metrics`.", "",
              "Kubernetes: Triton's Helm chart (server repository, deploy/k8s-onprem) mounts a repository like this "
              "one from a volume or object store.", ""]
    return "\n".join(lines)
