"""Tiny random Mask2Formers for tests (seconds on a CPU, every code path of the full model)."""
import torch

from m2f.model.mask2former import Mask2Former

from m2f.model.config import Mask2FormerConfig, ResNetConfig, SwinConfig


def tiny_config(kind: str, num_classes: int = 6) -> Mask2FormerConfig:
    backbone = (ResNetConfig(depth=50, stem_out_channels=8, res2_out_channels=32, width_per_group=8)
                if kind == "resnet" else
                SwinConfig(embed_dim=16, depths=(1, 2, 1, 1), num_heads=(1, 2, 2, 4), window_size=5))
    return Mask2FormerConfig(backbone=backbone, num_classes=num_classes, num_queries=8, hidden_dim=32, num_heads=4,
                             dim_feedforward=48, dec_layers=3, conv_dim=32, mask_dim=32, enc_layers=1,
                             enc_ffn_dim=40, thing_ids=[0, 1, 2], panoptic_on=True, instance_on=True)


def random_model(cfg: Mask2FormerConfig, seed: int = 0) -> Mask2Former:
    """Default init plus noise on every parameter and BN statistic (running_var kept positive)."""
    torch.manual_seed(seed)
    model = Mask2Former(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.add_(torch.rand_like(b) * 0.1)
            elif name.endswith("running_mean"):
                b.add_(torch.randn_like(b) * 0.05)
    return model
