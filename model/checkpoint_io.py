"""Reading checkpoint files into a flat {name: float32 tensor} dict, safely by default.

Formats: detectron2 ``.pkl`` (pickled numpy under "model"), detectron2 / plain ``.pth`` (torch, under "model" or
flat), ``.safetensors``, and HuggingFace directories (config.json + model.safetensors / pytorch_model.bin, sharded
or not). A checkpoint is data: ``.pkl`` files go through an unpickler that admits only numpy arrays and plain
containers and ``.pth`` through ``torch.load(weights_only=True)``; ``trust=True`` lifts that for a trusted file.
"""
from __future__ import annotations

import json
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from m2f.errors import CheckpointError, first_line
from m2f.fileio import atomic_path

# Exactly what model-zoo pickles need (docs/model.md §4.1), under both numpy 1.x and 2.x module names.
_PICKLE_ALLOWED = {
    ("collections", "OrderedDict"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # bytes written by Python 2 pickles
}


class _DataOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _PICKLE_ALLOWED:
            return super().find_class(module, name)
        raise CheckpointError(
            f"refusing to unpickle {module}.{name}: a checkpoint should hold only arrays, and loading arbitrary "
            f"objects can run code; if you trust this file, pass trust=True (CLI: --trust-checkpoint)"
        )


@dataclass
class RawCheckpoint:
    """What a file holds: tensors under their stored names, the format, and a HuggingFace config if any."""

    tensors: dict[str, torch.Tensor]
    format: str  # "detectron2-pkl" | "torch" | "safetensors" | "huggingface" | "mmdetection"
    path: Path
    hf_config: dict | None = None
    m2f_config: dict | None = None  # Mask2FormerConfig.to_dict() saved by m2f train (torch files only)
    mmdet_meta: dict | None = None  # an mmdetection checkpoint's "meta" (classes in "dataset_meta")
    notes: list[str] = field(default_factory=list)


def _to_tensors(state: dict, path: Path) -> dict[str, torch.Tensor]:
    out = {}
    for name, value in state.items():
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(np.ascontiguousarray(value))
        if not isinstance(value, torch.Tensor):
            continue  # e.g. numpy scalars or strings next to the weights
        out[name] = value.float() if value.is_floating_point() else value
    if not out:
        raise CheckpointError(f"{path} holds no tensors; is it a model checkpoint?")
    return out


def _unwrap(obj, path: Path) -> dict:
    """A detectron2 file keeps the state dict under "model"; mmdetection and Lightning under "state_dict"."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} does not hold a dict of weights (found {type(obj).__name__})")
    if "model" in obj and isinstance(obj["model"], dict):
        return obj["model"]
    if "state_dict" in obj and isinstance(obj["state_dict"], dict):
        return obj["state_dict"]
    return obj


def _read_pkl(path: Path, trust: bool) -> dict:
    with open(path, "rb") as f:
        if trust:
            return pickle.load(f, encoding="latin1")
        try:
            return _DataOnlyUnpickler(f, encoding="latin1").load()
        except (pickle.UnpicklingError, EOFError, ValueError) as e:
            raise CheckpointError(f"{path} is not a readable pickle ({e})") from None


def _read_torch(path: Path, trust: bool) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as e:
        # torch names the refused global two ways: "Unsupported global: GLOBAL x.y", or "unsupported GLOBAL x.y
        # whose module x is blocked" (os, posix, subprocess ...: what a payload calls)
        found = re.search(r"[Uu]nsupported (?:global: )?GLOBAL ([\w.]+)", str(e))
        if found is None:
            raise CheckpointError(f"{path} is not a readable PyTorch file (it does not unpickle)") from None
        raise CheckpointError(
            f"{path} holds a {found.group(1)} object besides tensors; loading it could run code, so it is refused "
            f"for safety; "
            f"if you trust this file, pass trust=True (CLI: --trust-checkpoint)"
        ) from None
    except Exception as e:  # torch.load raises RuntimeError, EOFError, KeyError ... for files that are not its own
        raise CheckpointError(f"{path} is not a readable PyTorch file ({first_line(e, with_type=True)}); "
                              f"is it a complete checkpoint?") from None


def _read_safetensors(path: Path) -> dict:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{path} is not a readable safetensors file ({e})") from None


def _read_hf_dir(path: Path, trust: bool) -> RawCheckpoint:
    try:
        config = json.loads((path / "config.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path / 'config.json'} is not valid JSON ({e}); download it again") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path / 'config.json'} is not a HuggingFace config (a JSON object)")
    if config.get("model_type") != "mask2former":
        raise CheckpointError(
            f"{path} is a HuggingFace '{config.get('model_type')}' model, not 'mask2former'"
        )
    tensors: dict = {}
    for index_name, reader in (("model.safetensors.index.json", _read_safetensors),
                               ("pytorch_model.bin.index.json", lambda p: _read_torch(p, trust))):
        if (path / index_name).exists():
            shards = sorted(set(json.loads((path / index_name).read_text())["weight_map"].values()))
            for shard in shards:
                tensors.update(reader(path / shard))
            break
    else:
        if (path / "model.safetensors").exists():
            tensors = _read_safetensors(path / "model.safetensors")
        elif (path / "pytorch_model.bin").exists():
            tensors = _read_torch(path / "pytorch_model.bin", trust)
        else:
            raise CheckpointError(f"{path} has a config.json but no model.safetensors or pytorch_model.bin")
    return RawCheckpoint(_to_tensors(tensors, path), "huggingface", path, hf_config=config)


def read_checkpoint(path: str | Path, trust: bool = False) -> RawCheckpoint:
    """Read any supported checkpoint file or HuggingFace directory (format detected from the path)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_dir():
        if not (path / "config.json").exists():
            raise CheckpointError(f"{path} is a directory without config.json; give a HuggingFace model directory "
                                  f"or a checkpoint file (.pkl, .pth, .safetensors)")
        return _read_hf_dir(path, trust)
    suffix = path.suffix.lower()
    if suffix == ".pkl":
        return RawCheckpoint(_to_tensors(_unwrap(_read_pkl(path, trust), path), path), "detectron2-pkl", path)
    if suffix in (".pth", ".pt", ".bin", ".ckpt"):
        data = _read_torch(path, trust)
        own = data.get("m2f_config") if isinstance(data, dict) else None
        tensors = _to_tensors(_unwrap(data, path), path)
        if any(k.startswith("panoptic_head.") for k in tensors):
            meta = data.get("meta") if isinstance(data.get("meta"), dict) else None
            return RawCheckpoint(tensors, "mmdetection", path, mmdet_meta=meta)
        return RawCheckpoint(tensors, "torch", path, m2f_config=own if isinstance(own, dict) else None)
    if suffix == ".safetensors":
        return RawCheckpoint(_to_tensors(_read_safetensors(path), path), "safetensors", path)
    raise CheckpointError(
        f"cannot tell the format of {path}; expected a .pkl, .pth, .safetensors file or a HuggingFace directory"
    )


def save_detectron2_pkl(state_dict: dict[str, torch.Tensor], path: str | Path) -> Path:
    """Write weights as a model-zoo style ``.pkl`` ({"model": OrderedDict(name -> numpy)}), atomically."""
    from collections import OrderedDict

    path = Path(path)
    arrays = OrderedDict((k, v.detach().cpu().numpy()) for k, v in state_dict.items())
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        pickle.dump({"model": arrays, "__author__": "m2f"}, f, protocol=4)
    return path
