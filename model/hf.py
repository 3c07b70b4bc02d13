"""HuggingFace ``Mask2FormerForUniversalSegmentation``: config translation and weight names -> ours (detectron2's).

HF's released Mask2Former checkpoints all use a Swin backbone (its converter is Swin-only); a HF directory with
another backbone is refused with a message. Both the on-disk names (``attention.self.query``) and the in-memory
names of transformers 5 (``attention.q_proj``) are accepted.
"""
from __future__ import annotations

import re

import torch

from m2f.errors import CheckpointError

from .config import Mask2FormerConfig, SwinConfig

_BB = r"model\.pixel_level_module\.encoder\.(?:swin\.)?"
_BLOCK = _BB + r"encoder\.layers\.(\d+)\.blocks\.(\d+)\."
_PD = r"model\.pixel_level_module\.decoder\."
_TM = r"model\.transformer_module\."
_DL = _TM + r"decoder\.layers\.(\d+)\."

# (pattern, replacement) applied with re.fullmatch, first match wins. q/k/v pieces are renamed to a temporary
# "<target>#q" name and packed afterwards.
_RULES = [
    (_BB + r"embeddings\.patch_embeddings\.projection\.(\w+)", r"backbone.patch_embed.proj.\1"),
    (_BB + r"embeddings\.norm\.(\w+)", r"backbone.patch_embed.norm.\1"),
    (_BLOCK + r"layernorm_before\.(\w+)", r"backbone.layers.\1.blocks.\2.norm1.\3"),
    (_BLOCK + r"layernorm_after\.(\w+)", r"backbone.layers.\1.blocks.\2.norm2.\3"),
    (_BLOCK + r"attention\.(?:self\.)?(?:relative_position_bias\.)?relative_position_bias_table",
     r"backbone.layers.\1.blocks.\2.attn.relative_position_bias_table"),
    (_BLOCK + r"attention\.(?:self\.)?relative_position_index",
     r"backbone.layers.\1.blocks.\2.attn.relative_position_index"),
    (_BLOCK + r"attention\.self\.(query|key|value)\.(\w+)", r"backbone.layers.\1.blocks.\2.attn.qkv.\4#\3"),
    (_BLOCK + r"attention\.([qkv])_proj\.(\w+)", r"backbone.layers.\1.blocks.\2.attn.qkv.\4#\3"),
    (_BLOCK + r"attention\.(?:output\.dense|o_proj)\.(\w+)", r"backbone.layers.\1.blocks.\2.attn.proj.\3"),
    (_BLOCK + r"(?:intermediate\.dense|mlp\.fc1)\.(\w+)", r"backbone.layers.\1.blocks.\2.mlp.fc1.\3"),
    (_BLOCK + r"(?:output\.dense|mlp\.fc2)\.(\w+)", r"backbone.layers.\1.blocks.\2.mlp.fc2.\3"),
    (_BB + r"encoder\.layers\.(\d+)\.downsample\.(reduction|norm)\.(\w+)", r"backbone.layers.\1.downsample.\2.\3"),
    (r"model\.pixel_level_module\.encoder\.hidden_states_norms\.stage(\d)\.(\w+)", None),  # stage k -> norm k-1
    (_PD + r"input_projections\.(\d+)\.([01])\.(\w+)", r"sem_seg_head.pixel_decoder.input_proj.\1.\2.\3"),
    (_PD + r"level_embed", r"sem_seg_head.pixel_decoder.transformer.level_embed"),
    (_PD + r"encoder\.layers\.(\d+)\.self_attn\.(\w+)\.(\w+)",
     r"sem_seg_head.pixel_decoder.transformer.encoder.layers.\1.self_attn.\2.\3"),
    (_PD + r"encoder\.layers\.(\d+)\.self_attn_layer_norm\.(\w+)",
     r"sem_seg_head.pixel_decoder.transformer.encoder.layers.\1.norm1.\2"),
    (_PD + r"encoder\.layers\.(\d+)\.fc([12])\.(\w+)",
     r"sem_seg_head.pixel_decoder.transformer.encoder.layers.\1.linear\2.\3"),
    (_PD + r"encoder\.layers\.(\d+)\.final_layer_norm\.(\w+)",
     r"sem_seg_head.pixel_decoder.transformer.encoder.layers.\1.norm2.\2"),
    (_PD + r"(adapter|layer)_(\d+)\.0\.weight", r"sem_seg_head.pixel_decoder.\1_\2.weight"),
    (_PD + r"(adapter|layer)_(\d+)\.1\.(\w+)", r"sem_seg_head.pixel_decoder.\1_\2.norm.\3"),
    (_PD + r"mask_projection\.(\w+)", r"sem_seg_head.pixel_decoder.mask_features.\1"),
    (_TM + r"queries_embedder\.weight", r"sem_seg_head.predictor.query_embed.weight"),
    (_TM + r"queries_features\.weight", r"sem_seg_head.predictor.query_feat.weight"),
    (_TM + r"level_embed\.weight", r"sem_seg_head.predictor.level_embed.weight"),
    (_TM + r"input_projections\.(\d+)\.(\w+)", r"sem_seg_head.predictor.input_proj.\1.\2"),
    (_DL + r"self_attn\.([qkv])_proj\.(\w+)",
     r"sem_seg_head.predictor.transformer_self_attention_layers.\1.self_attn.in_proj_\3#\2"),
    (_DL + r"self_attn\.out_proj\.(\w+)",
     r"sem_seg_head.predictor.transformer_self_attention_layers.\1.self_attn.out_proj.\2"),
    (_DL + r"self_attn_layer_norm\.(\w+)", r"sem_seg_head.predictor.transformer_self_attention_layers.\1.norm.\2"),
    (_DL + r"cross_attn\.(in_proj_weight|in_proj_bias)",
     r"sem_seg_head.predictor.transformer_cross_attention_layers.\1.multihead_attn.\2"),
    (_DL + r"cross_attn\.out_proj\.(\w+)",
     r"sem_seg_head.predictor.transformer_cross_attention_layers.\1.multihead_attn.out_proj.\2"),
    (_DL + r"cross_attn_layer_norm\.(\w+)", r"sem_seg_head.predictor.transformer_cross_attention_layers.\1.norm.\2"),
    (_DL + r"fc([12])\.(\w+)", r"sem_seg_head.predictor.transformer_ffn_layers.\1.linear\2.\3"),
    (_DL + r"final_layer_norm\.(\w+)", r"sem_seg_head.predictor.transformer_ffn_layers.\1.norm.\2"),
    (_TM + r"decoder\.layernorm\.(\w+)", r"sem_seg_head.predictor.decoder_norm.\1"),
    (_TM + r"decoder\.mask_predictor\.mask_embedder\.(\d)\.0\.(\w+)",
     r"sem_seg_head.predictor.mask_embed.layers.\1.\2"),
    (r"class_predictor\.(\w+)", r"sem_seg_head.predictor.class_embed.\1"),
]
_COMPILED = [(re.compile(p), r) for p, r in _RULES]
# Stored by HF but unused at inference (the Swin classification head norm, the loss's class weights).
_UNUSED = re.compile(_BB + r"layernorm\.\w+|criterion\.empty_weight")
_QKV_ORDER = {"query": 0, "key": 1, "value": 2, "q": 0, "k": 1, "v": 2}


def _rename(name: str) -> str | None:
    for pattern, repl in _COMPILED:
        m = pattern.fullmatch(name)
        if m:
            if repl is None:  # hidden_states_norms.stageK -> backbone.norm{K-1}
                return f"backbone.norm{int(m.group(1)) - 1}.{m.group(2)}"
            return m.expand(repl)
    return None


def to_detectron2_names(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """HF weights -> our (detectron2) names, q/k/v packed in q, k, v order. Returns (weights, unrecognised names)."""
    out: dict[str, torch.Tensor] = {}
    pieces: dict[str, dict[int, torch.Tensor]] = {}
    unknown = []
    for name, t in tensors.items():
        if _UNUSED.fullmatch(name):
            continue
        new = _rename(name)
        if new is None:
            unknown.append(name)
        elif "#" in new:
            target, which = new.split("#")
            pieces.setdefault(target, {})[_QKV_ORDER[which]] = t
        else:
            out[new] = t
    for target, parts in pieces.items():
        if len(parts) != 3:
            unknown.append(f"{target} (only {len(parts)} of q/k/v)")
            continue
        out[target] = torch.cat([parts[0], parts[1], parts[2]], dim=0)
    return out, unknown


def config_from_hf(hf: dict) -> Mask2FormerConfig:
    """Translate a HF config.json (dict) into our config; class names from id2label."""
    bb = hf.get("backbone_config") or {}
    if bb.get("model_type") != "swin":
        raise CheckpointError(
            f"this HuggingFace Mask2Former uses a '{bb.get('model_type') or hf.get('backbone')}' backbone; m2f reads "
            f"HuggingFace checkpoints with a Swin backbone (all official ones); use the detectron2 release instead"
        )
    if bb.get("use_absolute_embeddings"):
        raise CheckpointError("Swin with absolute position embeddings is not supported (no official model uses it)")
    id2label = hf.get("id2label") or {}
    num_classes = len(id2label) if id2label else int(hf["num_labels"])
    names = [id2label[str(i)] if str(i) in id2label else id2label.get(i, f"class_{i}") for i in range(num_classes)]
    if all(re.fullmatch(r"LABEL_\d+", n) for n in names):
        names = []
    for key, expected in (("common_stride", 4), ("feature_strides", [4, 8, 16, 32])):
        if hf.get(key, expected) != expected:
            raise CheckpointError(f"HuggingFace config sets {key}={hf[key]}; only {expected} is supported")
    return Mask2FormerConfig(
        backbone=SwinConfig(
            embed_dim=bb["embed_dim"], depths=tuple(bb["depths"]), num_heads=tuple(bb["num_heads"]),
            window_size=bb["window_size"], mlp_ratio=bb.get("mlp_ratio", 4.0), patch_size=bb.get("patch_size", 4),
            qkv_bias=bb.get("qkv_bias", True), pretrain_img_size=bb.get("image_size", 224),
        ),
        num_classes=num_classes,
        num_queries=hf["num_queries"],
        hidden_dim=hf["hidden_dim"],
        num_heads=hf["num_attention_heads"],
        dim_feedforward=hf["dim_feedforward"],
        dec_layers=hf["decoder_layers"] - 1,
        pre_norm=hf.get("pre_norm", False),
        enforce_input_proj=hf.get("enforce_input_projection", False),
        conv_dim=hf["feature_size"],
        mask_dim=hf["mask_feature_size"],
        enc_layers=hf["encoder_layers"],
        enc_ffn_dim=hf.get("encoder_feedforward_dim", 1024),
        class_names=names,
    )
