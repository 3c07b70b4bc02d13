"""The PyTorch Mask2Former, its checkpoint loaders and the reference post-processing (imports torch; no onnx).

The names below are imported on first use, so the torch-free parts of this package (the configuration dataclasses
and the presets, ``m2f.model.config`` and ``m2f.model.presets``) can be read on a machine without torch.
"""
import importlib

_EXPORTS = {
    "LoadReport": "checkpoint", "load_checkpoint": "checkpoint",
    "Mask2FormerConfig": "config", "ResNetConfig": "config", "SwinConfig": "config",
    "load_d2_config": "d2_config", "Mask2Former": "mask2former", "get_preset": "presets", "preset_names": "presets",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'm2f.model' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
