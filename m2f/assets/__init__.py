"""Files bundled with the package: the default model's weights and a few synthetic sample images (no torch here)."""
from pathlib import Path

ASSETS = Path(__file__).parent
DEFAULT_PRESET = "synthetic-r50-lite"
DEFAULT_WEIGHTS = ASSETS / "synthetic-r50-lite.pth"


def sample_images() -> list[Path]:
    """The bundled synthetic sample images (PNG, RGB), sorted by name."""
    return sorted(ASSETS.glob("sample-*.png"))
