"""The Mask2Former model: backbone -> pixel decoder -> masked-attention transformer decoder.

Attribute names follow the original meta-architecture (``backbone``, ``sem_seg_head.pixel_decoder``,
``sem_seg_head.predictor``), so a detectron2 state dict maps onto ``state_dict()`` key for key.
"""
from __future__ import annotations

import torch
from torch import nn

from .config import Mask2FormerConfig, SwinConfig
from .pixel_decoder import MSDeformAttnPixelDecoder
from .resnet import ResNet
from .swin import SwinTransformer
from .transformer_decoder import MultiScaleMaskedTransformerDecoder


class SemSegHead(nn.Module):
    def __init__(self, cfg: Mask2FormerConfig, in_channels: tuple[int, int, int, int]):
        super().__init__()
        self.pixel_decoder = MSDeformAttnPixelDecoder(cfg, in_channels)
        self.predictor = MultiScaleMaskedTransformerDecoder(cfg, cfg.conv_dim)

    def forward(self, features: dict[str, torch.Tensor], return_aux: bool = False, taps: dict | None = None):
        mask_features, multi_scale = self.pixel_decoder(features)
        if taps is not None:
            taps.update({f"pixel_decoder.level{i}": x for i, x in enumerate(multi_scale)})
            taps["pixel_decoder.mask_features"] = mask_features
        out = self.predictor(multi_scale, mask_features, return_aux=return_aux or taps is not None)
        if taps is not None:
            stages = out["aux_outputs"] + [out]
            for name, pred in zip(["initial"] + [f"layer{i}" for i in range(len(stages) - 1)], stages):
                taps[f"decoder.{name}.logits"] = pred["pred_logits"]
                taps[f"decoder.{name}.masks"] = pred["pred_masks"]
            if not return_aux:
                out = {k: v for k, v in out.items() if k != "aux_outputs"}
        return out


class Mask2Former(nn.Module):
    """forward(pixel_values float32 [N, 3, H, W], normalised and zero-padded, H and W multiples of 32) ->
    {"pred_logits": float32 [N, Q, K+1] (last = no object), "pred_masks": float32 [N, Q, H/4, W/4]}.

    ``config`` carries the classes, thing ids, mean/std, resize policy and thresholds of the model.
    """

    def __init__(self, config: Mask2FormerConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.backbone = SwinTransformer(config.backbone) if isinstance(config.backbone, SwinConfig) \
            else ResNet(config.backbone)
        self.sem_seg_head = SemSegHead(config, self.backbone.out_channels)
        self.register_buffer("pixel_mean", torch.tensor(config.pixel_mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(config.pixel_std).view(-1, 1, 1), persistent=False)

    def forward(self, pixel_values: torch.Tensor, return_aux: bool = False,
                return_taps: bool = False) -> dict[str, torch.Tensor]:
        """With ``return_taps``, also "taps": the intermediate results of every stage in pipeline order, named as
        ``m2f.contract.tap_specs`` names them (without the "tap." prefix): backbone.res2..res5 [N, C_k, H/2^k,
        W/2^k], pixel_decoder.level0..2 [N, conv_dim, H/32|16|8, ...], pixel_decoder.mask_features [N, mask_dim,
        H/4, W/4], decoder.initial / decoder.layer{i} .logits [N, Q, K+1] and .masks [N, Q, H/4, W/4]."""
        features = self.backbone(pixel_values)
        taps = {f"backbone.{k}": features[k] for k in ("res2", "res3", "res4", "res5")} if return_taps else None
        out = self.sem_seg_head(features, return_aux=return_aux, taps=taps)
        if return_taps:
            out["taps"] = taps
        return out

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """RGB float 0..255 [N, 3, H, W] -> (x - mean) / std."""
        return (images - self.pixel_mean) / self.pixel_std
