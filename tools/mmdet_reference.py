"""Write the mmdetection reference fixtures of tests/model/test_mmdet_format.py: a tiny randomly initialised
mmdetection 3.x Mask2Former (a narrow ResNet-50 or a small Swin, the official config's structure), saved as
mmdetection saves checkpoints ({"meta": ..., "state_dict": ...}), and its own forward on a random input.

Run with mmdet 3.3.0 + mmengine 0.10.7 + mmcv-lite 2.1.0 (no compiled ops: tools/mmdet_shim.py provides mmcv's own
pure-PyTorch deformable attention), on CPU:

    python tools/mmdet_reference.py OUT_DIR
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import mmdet_shim  # noqa: E402,F401  (before mmdet)

THINGS, STUFF = ["robot", "person", "cart"], ["floor", "wall"]
FEAT = 32  # pixel decoder and transformer width (GroupNorm 32 needs a multiple of 32)


def _head(in_channels: list[int]) -> dict:
    attn = dict(embed_dims=FEAT, num_heads=4, dropout=0.0, batch_first=True)
    return dict(
        type="Mask2FormerHead", in_channels=in_channels, strides=[4, 8, 16, 32], feat_channels=FEAT,
        out_channels=FEAT, num_things_classes=len(THINGS), num_stuff_classes=len(STUFF), num_queries=7,
        num_transformer_feat_level=3,
        pixel_decoder=dict(
            type="MSDeformAttnPixelDecoder", num_outs=3, norm_cfg=dict(type="GN", num_groups=32),
            act_cfg=dict(type="ReLU"),
            encoder=dict(num_layers=2, layer_cfg=dict(
                self_attn_cfg=dict(embed_dims=FEAT, num_heads=4, num_levels=3, num_points=4, dropout=0.0,
                                   batch_first=True),
                ffn_cfg=dict(embed_dims=FEAT, feedforward_channels=48, num_fcs=2, ffn_drop=0.0,
                             act_cfg=dict(type="ReLU", inplace=True)))),
            positional_encoding=dict(num_feats=FEAT // 2, normalize=True)),
        enforce_decoder_input_project=False, positional_encoding=dict(num_feats=FEAT // 2, normalize=True),
        transformer_decoder=dict(return_intermediate=True, num_layers=3, layer_cfg=dict(
            self_attn_cfg=attn, cross_attn_cfg=attn,
            ffn_cfg=dict(embed_dims=FEAT, feedforward_channels=64, num_fcs=2, ffn_drop=0.0,
                         act_cfg=dict(type="ReLU", inplace=True))), init_cfg=None),
        loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=2.0, reduction="mean",
                      class_weight=[1.0] * (len(THINGS) + len(STUFF)) + [0.1]),
        loss_mask=dict(type="CrossEntropyLoss", use_sigmoid=True, reduction="mean", loss_weight=5.0),
        loss_dice=dict(type="DiceLoss", use_sigmoid=True, activate=True, reduction="mean", naive_dice=True, eps=1.0,
                       loss_weight=5.0))


BACKBONES = {
    "r50": (dict(type="ResNet", depth=50, base_channels=8, stem_channels=8, num_stages=4, out_indices=(0, 1, 2, 3),
                 frozen_stages=-1, norm_cfg=dict(type="BN", requires_grad=False), norm_eval=True, style="pytorch"),
            [32, 64, 128, 256]),
    "swin": (dict(type="SwinTransformer", embed_dims=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8], window_size=7,
                  mlp_ratio=4, qkv_bias=True, qk_scale=None, drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.0,
                  patch_norm=True, out_indices=(0, 1, 2, 3), with_cp=False, convert_weights=True),
             [16, 32, 64, 128]),
}


def _randomise(model: torch.nn.Module, seed: int) -> None:
    """Every parameter and BN statistic random (zero-initialised biases would hide mapping mistakes)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                noise = torch.randn(tensor.shape, generator=gen) * 0.2
                tensor.copy_(noise.abs() + 0.5 if name.endswith("running_var") else noise)


def main() -> None:
    from mmengine.config import ConfigDict
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmdet.utils import register_all_modules

    register_all_modules()
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for index, (name, (backbone, channels)) in enumerate(BACKBONES.items()):
        model = MODELS.build(ConfigDict(type="Mask2Former", backbone=backbone, panoptic_head=_head(channels),
                                        panoptic_fusion_head=dict(type="MaskFormerFusionHead",
                                                                  num_things_classes=len(THINGS),
                                                                  num_stuff_classes=len(STUFF), loss_panoptic=None),
                                        train_cfg=None, test_cfg=None)).eval()
        _randomise(model, seed=index)
        pixel_values = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(100 + index))
        with torch.no_grad():
            cls_preds, mask_preds = model.panoptic_head(model.extract_feat(pixel_values), [DetDataSample()])
        meta = {"mmdet_version": "3.3.0", "dataset_meta": {"classes": tuple(THINGS + STUFF),
                                                           "thing_classes": tuple(THINGS),
                                                           "stuff_classes": tuple(STUFF)}}
        torch.save({"meta": meta, "state_dict": model.state_dict()}, out / f"mmdet_{name}.pth")
        np.savez_compressed(out / f"mmdet_{name}_forward.npz", pixel_values=pixel_values.numpy(),
                            pred_logits=cls_preds[-1].numpy(), pred_masks=mask_preds[-1].numpy())
        print(name, sum(t.numel() for t in model.state_dict().values()), "values;",
              tuple(cls_preds[-1].shape), tuple(mask_preds[-1].shape))


if __name__ == "__main__":
    main()
