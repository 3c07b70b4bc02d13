"""The PyTorch Mask2Former, its checkpoint loaders and the reference post-processing (imports torch; no onnx)."""
from .checkpoint import LoadReport, load_checkpoint
from .config import Mask2FormerConfig, ResNetConfig, SwinConfig
from .d2_config import load_d2_config
from .mask2former import Mask2Former
from .presets import get_preset, preset_names

__all__ = [
    "LoadReport", "Mask2Former", "Mask2FormerConfig", "ResNetConfig", "SwinConfig", "get_preset", "load_checkpoint",
    "load_d2_config", "preset_names",
]
