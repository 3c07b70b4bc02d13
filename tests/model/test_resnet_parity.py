"""Our detectron2-style ResNet vs HF transformers' ResNetBackbone (torchvision layout: stride on the 3x3 conv, as
detectron2 with STRIDE_IN_1X1 False), weights mapped by name: an independent check of res2..res5."""
import re

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="transformers is a test dependency (pip install m2f[test])")

from m2f.model.config import ResNetConfig  # noqa: E402
from m2f.model.resnet import ResNet  # noqa: E402

_RULES = [
    (r"embedder\.embedder\.convolution\.weight", "stem.conv1.weight"),
    (r"embedder\.embedder\.normalization\.(\w+)", r"stem.conv1.norm.\1"),
    (r"encoder\.stages\.(\d)\.layers\.(\d+)\.shortcut\.convolution\.weight", None),
    (r"encoder\.stages\.(\d)\.layers\.(\d+)\.shortcut\.normalization\.(\w+)", None),
    (r"encoder\.stages\.(\d)\.layers\.(\d+)\.layer\.(\d)\.convolution\.weight", None),
    (r"encoder\.stages\.(\d)\.layers\.(\d+)\.layer\.(\d)\.normalization\.(\w+)", None),
]


def _our_name(hf_name: str) -> str | None:
    if hf_name.endswith("num_batches_tracked"):
        return None
    for pattern, repl in _RULES:
        m = re.fullmatch(pattern, hf_name)
        if not m:
            continue
        if repl is not None:
            return m.expand(repl)
        g = m.groups()
        block = f"res{int(g[0]) + 2}.{g[1]}"
        if "shortcut" in hf_name:
            return f"{block}.shortcut.weight" if len(g) == 2 else f"{block}.shortcut.norm.{g[2]}"
        return f"{block}.conv{int(g[2]) + 1}.weight" if len(g) == 3 else f"{block}.conv{int(g[2]) + 1}.norm.{g[3]}"
    raise AssertionError(f"unmapped HF name {hf_name}")


@pytest.mark.parametrize("depths,depth", [([3, 4, 6, 3], 50), ([3, 4, 23, 3], 101)])
def test_resnet_matches_hf_backbone(depths, depth):
    hf_cfg = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[32, 64, 128, 256], depths=depths,
                                       layer_type="bottleneck", out_features=["stage1", "stage2", "stage3", "stage4"])
    torch.manual_seed(0)
    hf = transformers.ResNetBackbone(hf_cfg).eval()
    with torch.no_grad():
        for name, t in hf.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(torch.rand_like(t) + 0.5)
            elif t.is_floating_point():
                t.add_(torch.randn_like(t) * 0.1)
    ours = ResNet(ResNetConfig(depth=depth, stem_out_channels=8, res2_out_channels=32, width_per_group=8)).eval()
    mapped = {_our_name(k): v for k, v in hf.state_dict().items() if _our_name(k) is not None}
    assert mapped.keys() == ours.state_dict().keys()
    ours.load_state_dict(mapped)
    # float64: random weights let activations grow to ~1e6 by res5, where float32 rounding alone exceeds 1e-4
    x = torch.randn(2, 3, 96, 160, dtype=torch.float64)
    with torch.no_grad():
        ref = hf.double()(x).feature_maps
        out = ours.double()(x)
    for i, name in enumerate(("res2", "res3", "res4", "res5")):
        assert out[name].shape == ref[i].shape
        torch.testing.assert_close(out[name], ref[i], atol=1e-9, rtol=1e-10)
