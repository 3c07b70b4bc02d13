"""Files bundled with the package: the default model's weights and a few held-out sample images with their ground
truth (no torch here). See README.md beside this file for how each was made."""
from pathlib import Path

ASSETS = Path(__file__).parent
DEFAULT_PRESET = "synthetic-r50-lite"
DEFAULT_WEIGHTS = ASSETS / "synthetic-r50-lite.pth"
DETECTRON2_CONFIG_KEYS = ASSETS / "detectron2_config_keys.json"  # tools/detectron2_config_keys.py
# A COCO panoptic dataset of 3 images: `m2f synthetic -o m2f/assets/samples -n 3 --seed 2000` (the training set
# used seed 0 and the demo's held-out set seed 1000, so the model has never seen these).
SAMPLES = ASSETS / "samples"
SAMPLES_SEED = 2000
TRAINING_SEED = 0  # `m2f synthetic -n 2000 --seed 0`: the bundled model's training set (README)
HELD_OUT_SEED = 1000  # the demo's held-out set: a seed the training never used


def sample_images() -> list[Path]:
    """The bundled sample images (PNG, RGB), sorted by name."""
    return sorted((SAMPLES / "images").glob("*.png"))


def sample_annotations() -> Path:
    """The samples' ground truth: COCO panoptic json (panoptic PNGs in samples/panoptic/)."""
    return SAMPLES / "panoptic.json"
