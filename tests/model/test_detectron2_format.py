"""detectron2 checkpoints: official key names, .pkl/.pth round trips, strict key accounting, safe loading."""
import os
import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch

from m2f.errors import CheckpointError
from m2f.model.mask2former import Mask2Former
from m2f.model.presets import get_preset
from m2f.model.checkpoint import load_checkpoint
from m2f.model.checkpoint_io import save_detectron2_pkl

from .helpers import random_model, tiny_config

# Names and shapes from the official COCO panoptic R50 checkpoint layout (docs/model.md §4).
OFFICIAL_R50 = {
    "backbone.stem.conv1.weight": (64, 3, 7, 7),
    "backbone.stem.conv1.norm.running_var": (64,),
    "backbone.res2.0.shortcut.weight": (256, 64, 1, 1),
    "backbone.res2.0.shortcut.norm.bias": (256,),
    "backbone.res4.5.conv2.weight": (256, 256, 3, 3),
    "backbone.res5.2.conv3.norm.weight": (2048,),
    "sem_seg_head.pixel_decoder.input_proj.0.0.weight": (256, 2048, 1, 1),
    "sem_seg_head.pixel_decoder.input_proj.2.1.bias": (256,),
    "sem_seg_head.pixel_decoder.transformer.level_embed": (3, 256),
    "sem_seg_head.pixel_decoder.transformer.encoder.layers.5.self_attn.sampling_offsets.weight": (192, 256),
    "sem_seg_head.pixel_decoder.transformer.encoder.layers.0.self_attn.attention_weights.weight": (96, 256),
    "sem_seg_head.pixel_decoder.transformer.encoder.layers.0.linear1.weight": (1024, 256),
    "sem_seg_head.pixel_decoder.adapter_1.weight": (256, 256, 1, 1),
    "sem_seg_head.pixel_decoder.adapter_1.norm.weight": (256,),
    "sem_seg_head.pixel_decoder.layer_1.weight": (256, 256, 3, 3),
    "sem_seg_head.pixel_decoder.mask_features.bias": (256,),
    "sem_seg_head.predictor.transformer_self_attention_layers.8.self_attn.in_proj_weight": (768, 256),
    "sem_seg_head.predictor.transformer_cross_attention_layers.0.multihead_attn.out_proj.weight": (256, 256),
    "sem_seg_head.predictor.transformer_ffn_layers.3.linear1.weight": (2048, 256),
    "sem_seg_head.predictor.decoder_norm.weight": (256,),
    "sem_seg_head.predictor.query_feat.weight": (100, 256),
    "sem_seg_head.predictor.query_embed.weight": (100, 256),
    "sem_seg_head.predictor.level_embed.weight": (3, 256),
    "sem_seg_head.predictor.class_embed.weight": (134, 256),
    "sem_seg_head.predictor.mask_embed.layers.2.bias": (256,),
}


def test_state_dict_uses_official_names():
    with torch.device("meta"):
        sd = Mask2Former(get_preset("coco-panoptic-r50")).state_dict()
    for name, shape in OFFICIAL_R50.items():
        assert name in sd, name
        assert tuple(sd[name].shape) == shape, name
    assert not any("relative_position_index" in k or k.startswith("pixel_") for k in sd)
    assert "sem_seg_head.predictor.transformer_ffn_layers.9.linear1.weight" not in sd  # 9 layers, not 10


def test_swin_names():
    with torch.device("meta"):
        sd = Mask2Former(get_preset("coco-panoptic-swin-l")).state_dict()
    assert tuple(sd["backbone.layers.2.blocks.17.attn.relative_position_bias_table"].shape) == (23 * 23, 24)
    assert tuple(sd["backbone.layers.2.blocks.17.attn.qkv.weight"].shape) == (3 * 768, 768)
    assert tuple(sd["backbone.layers.0.downsample.reduction.weight"].shape) == (384, 768)
    assert tuple(sd["backbone.norm3.weight"].shape) == (1536,)
    assert tuple(sd["sem_seg_head.predictor.query_feat.weight"].shape) == (200, 256)


def _official_style(model):
    """State dict as a model-zoo .pkl holds it: numpy arrays, int64 Swin index buffers, criterion weight,
    state-dict version metadata on the OrderedDict."""
    arrays = OrderedDict((k, v.numpy()) for k, v in model.state_dict().items())
    for name, module in model.named_modules():
        if hasattr(module, "relative_position_index"):
            arrays[f"{name}.relative_position_index"] = module.relative_position_index.numpy()
    arrays["criterion.empty_weight"] = np.ones(model.config.num_classes + 1, np.float32)
    arrays._metadata = OrderedDict({"": {"version": 1}})
    return {"model": arrays, "__author__": "Mask2Former"}


def _forward(model, seed=0):
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("numpy_module", ["numpy._core.multiarray", "numpy.core.multiarray"])
def test_pkl_round_trip(tiny_model, tmp_path, numpy_module):
    data = pickle.dumps(_official_style(tiny_model), protocol=2)  # GLOBAL opcodes carry module names as text
    data = data.replace(b"numpy._core.multiarray", numpy_module.encode())
    path = tmp_path / "model_final.pkl"
    path.write_bytes(data)
    loaded = load_checkpoint(path, config=tiny_model.config)
    ref, out = _forward(tiny_model), _forward(loaded)
    assert torch.equal(ref["pred_logits"], out["pred_logits"]) and torch.equal(ref["pred_masks"], out["pred_masks"])
    assert loaded.load_report.format == "detectron2-pkl" and loaded.load_report.unused_keys == []


def test_pth_round_trip_and_fp16(tiny_model, tmp_path):
    sd = {k: v.half() if v.is_floating_point() else v for k, v in tiny_model.state_dict().items()}
    torch.save({"model": sd, "iteration": 5}, tmp_path / "model.pth")
    loaded = load_checkpoint(tmp_path / "model.pth", config=tiny_model.config)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    expected = sd["sem_seg_head.predictor.query_feat.weight"].float()
    assert torch.equal(loaded.state_dict()["sem_seg_head.predictor.query_feat.weight"], expected)


def test_architecture_inferred_without_config(tiny_model, tmp_path):
    save_detectron2_pkl(tiny_model.state_dict(), tmp_path / "m.pkl")
    loaded = load_checkpoint(tmp_path / "m.pkl")
    cfg, want = loaded.config, tiny_model.config
    for field in ("num_classes", "num_queries", "hidden_dim", "num_heads", "dim_feedforward", "dec_layers",
                  "conv_dim", "mask_dim", "enc_layers", "enc_ffn_dim"):
        assert getattr(cfg, field) == getattr(want, field), field
    assert cfg.backbone == want.backbone
    assert torch.equal(_forward(tiny_model)["pred_masks"], _forward(loaded)["pred_masks"])


def test_renamed_key_is_named(tmp_path):
    model = random_model(tiny_config("resnet"))
    sd = model.state_dict()
    sd["sem_seg_head.predictor.decoder_norm_renamed.weight"] = sd.pop("sem_seg_head.predictor.decoder_norm.weight")
    save_detectron2_pkl(sd, tmp_path / "m.pkl")
    with pytest.raises(CheckpointError, match=r"lacks 1 weight.*decoder_norm\.weight.*decoder_norm_renamed"):
        load_checkpoint(tmp_path / "m.pkl", config=model.config)


def test_missing_key_is_named(tmp_path):
    model = random_model(tiny_config("swin"))
    sd = model.state_dict()
    del sd["backbone.layers.1.blocks.1.mlp.fc2.bias"]
    save_detectron2_pkl(sd, tmp_path / "m.pkl")
    with pytest.raises(CheckpointError, match=r"backbone\.layers\.1\.blocks\.1\.mlp\.fc2\.bias"):
        load_checkpoint(tmp_path / "m.pkl", config=model.config)


def test_shape_mismatch_names_key_and_shapes(tmp_path):
    model = random_model(tiny_config("resnet"))
    sd = model.state_dict()
    sd["sem_seg_head.pixel_decoder.mask_features.bias"] = torch.zeros(31)
    save_detectron2_pkl(sd, tmp_path / "m.pkl")
    with pytest.raises(CheckpointError, match=r"mask_features\.bias' has shape \[31\] but the model expects \[32\]"):
        load_checkpoint(tmp_path / "m.pkl", config=model.config)


def test_class_count_mismatch_with_preset(tmp_path):
    with torch.device("meta"):
        sd = Mask2Former(get_preset("coco-instance-r50")).state_dict()
    torch.save({"model": {k: torch.zeros(v.shape) for k, v in sd.items()}}, tmp_path / "inst.pth")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path / "inst.pth", preset="coco-panoptic-r50")
    msg = str(e.value)
    assert "80 classes where the config has 133" in msg and "coco-instance-r50" in msg
    assert "\n" not in msg


def test_malicious_pickle_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"model": {"x": Exploit()}}))
    with pytest.raises(CheckpointError, match=r"refusing to unpickle .*system.*trust"):
        load_checkpoint(path)
    assert not marker.exists()


def test_torch_file_with_objects_needs_trust(tmp_path):
    torch.save({"model": {"w": torch.zeros(1)}, "cfg": Exploitless()}, tmp_path / "obj.pth")
    with pytest.raises(CheckpointError, match="trust"):
        load_checkpoint(tmp_path / "obj.pth")


class Exploitless:
    """A harmless custom object: enough to be refused by weights_only loading."""


def test_backbone_only_file_is_explained(tmp_path):
    save_detectron2_pkl({"stem.conv1.weight": torch.zeros(64, 3, 7, 7)}, tmp_path / "R-50.pkl")
    with pytest.raises(CheckpointError, match="only backbone weights"):
        load_checkpoint(tmp_path / "R-50.pkl")


@pytest.mark.parametrize("name,content,match", [
    ("x.onnx", b"\x08\x07", "cannot tell the format"),
    ("x.pkl", b"not a pickle", "not a readable pickle"),
    ("x.pth", b"garbage", "not a readable PyTorch file"),
    ("x.safetensors", b"garbage", "not a readable safetensors file"),
])
def test_unreadable_files(tmp_path, name, content, match):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(tmp_path / name)


def test_missing_path_and_foreign_hf_dir(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pkl")
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(CheckpointError, match="'bert' model, not 'mask2former'"):
        load_checkpoint(tmp_path)


def test_legacy_static_query_name(tmp_path):
    model = random_model(tiny_config("resnet"))
    sd = model.state_dict()
    sd["sem_seg_head.predictor.static_query.weight"] = sd.pop("sem_seg_head.predictor.query_feat.weight")
    save_detectron2_pkl(sd, tmp_path / "old.pkl")
    loaded = load_checkpoint(tmp_path / "old.pkl", config=model.config)
    assert torch.equal(loaded.state_dict()["sem_seg_head.predictor.query_feat.weight"],
                       model.state_dict()["sem_seg_head.predictor.query_feat.weight"])
