"""mmdetection 3.x Mask2Former checkpoints (``{"meta": ..., "state_dict": ...}``) under m2f's (detectron2's) names.

The mapping is written from mmdetection 3.3.0's module structure:

- ``mmdet/models/backbones/resnet.py`` (ResNet, style "pytorch"): conv1/bn1, layer{1-4}.{b}.conv{k}/bn{k},
  downsample.0/1 -> detectron2's stem.conv1(.norm), res{2-5}.{b}.conv{k}(.norm), shortcut(.norm);
- ``mmdet/models/backbones/swin.py`` (SwinTransformer): patch_embed.projection, stages.{i}.blocks.{j}
  (attn.w_msa.{qkv, proj, relative_position_bias_table}, ffn.layers.0.0 / ffn.layers.1), stages.{i}.downsample,
  norm{i}. mmdetection's PatchMerging gathers each 2x2 patch with nn.Unfold, so its reduction weight and norm are
  stored in another channel order than the original Swin's (mmdet's ``swin2mmdet`` converter reorders them); the
  inverse reorder is applied here;
- ``mmdet/models/layers/msdeformattn_pixel_decoder.py`` (MSDeformAttnPixelDecoder): input_convs.{i}.conv/gn,
  encoder.layers.{i} (self_attn = mmcv's MultiScaleDeformableAttention with detectron2's parameter layout,
  ffn.layers.0.0 / ffn.layers.1, norms.0 / norms.1), level_encoding, lateral_convs.0 / output_convs.0 (.conv / .gn),
  mask_feature;
- ``mmdet/models/layers/transformer/mask2former_layers.py`` (Mask2FormerTransformerDecoderLayer: cross_attn,
  norms.0, self_attn, norms.1, ffn, norms.2 -- detectron2's cross / self / FFN layer order) and
  ``mmdet/models/dense_heads/mask2former_head.py`` (query_feat, query_embed, level_embed, cls_embed, mask_embed as
  a Sequential of Linear/ReLU, transformer_decoder.post_norm).

Verified against mmdetection's own forward (tools/mmdet_reference.py writes the fixtures of
tests/model/test_mmdet_format.py).
"""
from __future__ import annotations

import re

import torch

_HEAD = "sem_seg_head."
_PIXEL = _HEAD + "pixel_decoder."
_ENC = _PIXEL + "transformer.encoder.layers."
_PRED = _HEAD + "predictor."
# (mmdet name pattern, detectron2 name template); first match wins
_RULES = [(re.compile(p), r) for p, r in [
    # ResNet
    (r"backbone\.conv1\.weight", "backbone.stem.conv1.weight"),
    (r"backbone\.bn1\.(.+)", r"backbone.stem.conv1.norm.\1"),
    (r"backbone\.layer(\d)\.(\d+)\.conv(\d)\.weight", "RES:backbone.res{0}.{1}.conv{2}.weight"),
    (r"backbone\.layer(\d)\.(\d+)\.bn(\d)\.(.+)", "RES:backbone.res{0}.{1}.conv{2}.norm.{3}"),
    (r"backbone\.layer(\d)\.(\d+)\.downsample\.0\.weight", "RES:backbone.res{0}.{1}.shortcut.weight"),
    (r"backbone\.layer(\d)\.(\d+)\.downsample\.1\.(.+)", "RES:backbone.res{0}.{1}.shortcut.norm.{2}"),
    # Swin
    (r"backbone\.patch_embed\.projection\.(.+)", r"backbone.patch_embed.proj.\1"),
    (r"backbone\.patch_embed\.norm\.(.+)", r"backbone.patch_embed.norm.\1"),
    (r"backbone\.stages\.(\d+)\.blocks\.(\d+)\.attn\.w_msa\.(.+)", r"backbone.layers.\1.blocks.\2.attn.\3"),
    (r"backbone\.stages\.(\d+)\.blocks\.(\d+)\.ffn\.layers\.0\.0\.(.+)", r"backbone.layers.\1.blocks.\2.mlp.fc1.\3"),
    (r"backbone\.stages\.(\d+)\.blocks\.(\d+)\.ffn\.layers\.1\.(.+)", r"backbone.layers.\1.blocks.\2.mlp.fc2.\3"),
    (r"backbone\.stages\.(\d+)\.blocks\.(\d+)\.(norm[12])\.(.+)", r"backbone.layers.\1.blocks.\2.\3.\4"),
    (r"backbone\.stages\.(\d+)\.downsample\.(reduction|norm)\.(.+)", r"backbone.layers.\1.downsample.\2.\3"),
    (r"backbone\.(norm\d)\.(.+)", r"backbone.\1.\2"),
    # pixel decoder
    (r"panoptic_head\.pixel_decoder\.input_convs\.(\d+)\.conv\.(.+)", _PIXEL + r"input_proj.\1.0.\2"),
    (r"panoptic_head\.pixel_decoder\.input_convs\.(\d+)\.gn\.(.+)", _PIXEL + r"input_proj.\1.1.\2"),
    (r"panoptic_head\.pixel_decoder\.encoder\.layers\.(\d+)\.self_attn\.(.+)", _ENC + r"\1.self_attn.\2"),
    (r"panoptic_head\.pixel_decoder\.encoder\.layers\.(\d+)\.ffn\.layers\.0\.0\.(.+)", _ENC + r"\1.linear1.\2"),
    (r"panoptic_head\.pixel_decoder\.encoder\.layers\.(\d+)\.ffn\.layers\.1\.(.+)", _ENC + r"\1.linear2.\2"),
    (r"panoptic_head\.pixel_decoder\.encoder\.layers\.(\d+)\.norms\.0\.(.+)", _ENC + r"\1.norm1.\2"),
    (r"panoptic_head\.pixel_decoder\.encoder\.layers\.(\d+)\.norms\.1\.(.+)", _ENC + r"\1.norm2.\2"),
    (r"panoptic_head\.pixel_decoder\.level_encoding\.weight", _PIXEL + "transformer.level_embed"),
    (r"panoptic_head\.pixel_decoder\.lateral_convs\.0\.conv\.(.+)", _PIXEL + r"adapter_1.\1"),
    (r"panoptic_head\.pixel_decoder\.lateral_convs\.0\.gn\.(.+)", _PIXEL + r"adapter_1.norm.\1"),
    (r"panoptic_head\.pixel_decoder\.output_convs\.0\.conv\.(.+)", _PIXEL + r"layer_1.\1"),
    (r"panoptic_head\.pixel_decoder\.output_convs\.0\.gn\.(.+)", _PIXEL + r"layer_1.norm.\1"),
    (r"panoptic_head\.pixel_decoder\.mask_feature\.(.+)", _PIXEL + r"mask_features.\1"),
    # transformer decoder
    (r"panoptic_head\.transformer_decoder\.layers\.(\d+)\.cross_attn\.attn\.(.+)",
     _PRED + r"transformer_cross_attention_layers.\1.multihead_attn.\2"),
    (r"panoptic_head\.transformer_decoder\.layers\.(\d+)\.self_attn\.attn\.(.+)",
     _PRED + r"transformer_self_attention_layers.\1.self_attn.\2"),
    (r"panoptic_head\.transformer_decoder\.layers\.(\d+)\.ffn\.layers\.0\.0\.(.+)",
     _PRED + r"transformer_ffn_layers.\1.linear1.\2"),
    (r"panoptic_head\.transformer_decoder\.layers\.(\d+)\.ffn\.layers\.1\.(.+)",
     _PRED + r"transformer_ffn_layers.\1.linear2.\2"),
    (r"panoptic_head\.transformer_decoder\.layers\.(\d+)\.norms\.0\.(.+)",
     _PRED + r"transformer_cross_attention_layers.\1.norm.\2"),
    (r"panoptic_head\.transformer_decoder\.layers\.(\d+)\.norms\.1\.(.+)",
     _PRED + r"transformer_self_attention_layers.\1.norm.\2"),
    (r"panoptic_head\.transformer_decoder\.layers\.(\d+)\.norms\.2\.(.+)",
     _PRED + r"transformer_ffn_layers.\1.norm.\2"),
    (r"panoptic_head\.transformer_decoder\.post_norm\.(.+)", _PRED + r"decoder_norm.\1"),
    # prediction heads and queries
    (r"panoptic_head\.(query_feat|query_embed|level_embed)\.weight", _PRED + r"\1.weight"),
    (r"panoptic_head\.cls_embed\.(.+)", _PRED + r"class_embed.\1"),
    (r"panoptic_head\.mask_embed\.(\d)\.(.+)", "MLP:" + _PRED + "mask_embed.layers.{0}.{1}"),
]]
_UNUSED = re.compile(r".*num_batches_tracked|panoptic_head\.(criterion|loss_).*|data_preprocessor\..*")


def is_mmdet(state_dict: dict) -> bool:
    return any(k.startswith("panoptic_head.") for k in state_dict)


def _target(name: str) -> str | None:
    for rule, template in _RULES:
        m = rule.fullmatch(name)
        if m is None:
            continue
        if template.startswith("RES:"):  # mmdet's layer1..4 are detectron2's res2..res5
            groups = list(m.groups())
            groups[0] = str(int(groups[0]) + 1)
            return template[4:].format(*groups)
        if template.startswith("MLP:"):  # Sequential(Linear, ReLU, Linear, ReLU, Linear): Linear i at index 2i
            return template[4:].format(int(m.group(1)) // 2, m.group(2))
        return m.expand(template)
    return None


def _original_merge_order(tensor: torch.Tensor) -> torch.Tensor:
    """Undo mmdetection's PatchMerging channel order (nn.Unfold's) for the reduction weight [out, 4C] or the norm's
    weight/bias [4C]: back to the original Swin's concatenation of the (0,0), (1,0), (0,1), (1,1) pixels."""
    if tensor.dim() == 2:
        out, four_c = tensor.shape
        return tensor.reshape(out, four_c // 4, 4).transpose(1, 2)[:, [0, 2, 1, 3], :].reshape(out, four_c)
    return tensor.reshape(-1, 4).transpose(0, 1)[[0, 2, 1, 3], :].reshape(-1)


def to_detectron2_names(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """mmdet weights -> m2f's names. Returns (weights, names not recognised)."""
    out, unknown = {}, []
    for name, tensor in tensors.items():
        if _UNUSED.fullmatch(name):
            continue
        target = _target(name)
        if target is None:
            unknown.append(name)
            continue
        if ".downsample." in target and target.startswith("backbone.layers."):
            tensor = _original_merge_order(tensor)
        out[target] = tensor
    return out, unknown


def class_split(meta: dict | None, num_classes: int) -> tuple[list[str], list[int]]:
    """(class names, thing ids) from a checkpoint's ``meta`` (mmdet 3.x ``dataset_meta``, or 2.x ``CLASSES``) when
    they fit ``num_classes``; ([], []) otherwise. mmdetection orders panoptic classes things first, then stuff."""
    meta = meta or {}
    dataset = meta.get("dataset_meta") or {}
    names = list(dataset.get("classes") or meta.get("CLASSES") or [])
    if len(names) != num_classes:
        return [], []
    things = set(dataset.get("thing_classes") or [])
    thing_ids = [i for i, n in enumerate(names) if n in things] if things else list(range(num_classes))
    return [str(n) for n in names], thing_ids
