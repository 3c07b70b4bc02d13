"""Maps the top-level stage folders into ONE installed namespace, ``m2f``.

The repository keeps each pipeline stage in a top-level folder (docs/architecture.md) while code always imports
``m2f.model``, ``m2f.runtime`` …, never a bare ``runtime`` that would clash in site-packages.
Metadata and dependencies live in pyproject.toml; only the folder mapping is here.
"""
from setuptools import setup

STAGES = ["model", "plugins", "export", "calib", "runtime", "serving", "train", "validate", "cli"]

setup(
    packages=["m2f", "m2f.assets", "m2f.datasets", "m2f.plugins.ms_deform_attn",
              "m2f.plugins.masked_attention"] + [f"m2f.{s}" for s in STAGES],
    package_dir={"m2f": "m2f", **{f"m2f.{s}": s for s in STAGES}},
    package_data={"m2f.model": ["presets/*.yaml"],
                  "m2f.plugins": ["CMakeLists.txt", "README.md", "common/*"],
                  "m2f.plugins.ms_deform_attn": ["*.cpp", "*.h", "README.md"],
                  "m2f.plugins.masked_attention": ["*.cpp", "*.h", "README.md"],
                  "m2f.serving": ["token_shim.c"],
                  "m2f.assets": ["*.pth", "*.md", "*.json", "samples/*.json", "samples/images/*.png",
                                 "samples/panoptic/*.png"]},
)
