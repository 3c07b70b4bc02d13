"""Regenerate m2f/assets/detectron2_config_keys.json: every key of detectron2's ``get_cfg()`` plus
``add_deeplab_config`` and Mask2Former's ``add_maskformer2_config``, with its default value — the schema of the
``config.yaml`` every detectron2 training run dumps. detectron2 is not a dependency of m2f; this script is run by hand
with the three source files at hand and yacs/fvcore installed:

    python tools/detectron2_config_keys.py DETECTRON2_DIR MASK2FORMER_DIR > m2f/assets/detectron2_config_keys.json

(detectron2/config/defaults.py, projects/DeepLab/deeplab/config.py, mask2former/config.py are executed with fvcore's
CfgNode; nothing else of detectron2 is imported.)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def _run(path: Path, cfg_node) -> dict:
    source = path.read_text().replace("from .config import CfgNode as CN", "").replace(
        "from detectron2.config import CfgNode as CN", "")
    namespace = {"CN": cfg_node}
    exec(compile(source, str(path), "exec"), namespace)  # noqa: S102 - the user's own detectron2 checkout
    return namespace


def _flatten(node, cfg_node, prefix: str = "") -> dict:
    out = {}
    for key, value in node.items():
        if isinstance(value, cfg_node):
            out.update(_flatten(value, cfg_node, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return out


def main() -> None:
    from fvcore.common.config import CfgNode

    detectron2, mask2former = Path(sys.argv[1]), Path(sys.argv[2])
    cfg = _run(detectron2 / "detectron2/config/defaults.py", CfgNode)["_C"].clone()
    _run(detectron2 / "projects/DeepLab/deeplab/config.py", CfgNode)["add_deeplab_config"](cfg)
    _run(mask2former / "mask2former/config.py", CfgNode)["add_maskformer2_config"](cfg)
    json.dump(_flatten(cfg, CfgNode), sys.stdout, indent=0, sort_keys=True, default=str)
    print()


if __name__ == "__main__":
    main()
