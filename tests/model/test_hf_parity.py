"""Our Mask2Former vs HuggingFace transformers' independent implementation, on random tiny Swin configs saved with
save_pretrained and read back through load_checkpoint (no hub access)."""
import pytest
import torch

transformers = pytest.importorskip("transformers", reason="transformers is a test dependency (pip install m2f[test])")

from safetensors.torch import load_file  # noqa: E402

from m2f.model.checkpoint import load_checkpoint  # noqa: E402
from m2f.plugins.masked_attention.reference import blocked_keys  # noqa: E402
from m2f.validate.compare import TOLERANCES  # noqa: E402

TOL = TOLERANCES["model_fp32_max_abs"]

CONFIGS = {
    # window 4: the 1/32 map of a 64x64 input (2x2) is smaller than the window, where HF must keep partitioning
    "swin-w4": dict(swin=dict(embed_dim=32, depths=[1, 2, 1, 1], num_heads=[1, 2, 4, 8], window_size=4),
                    num_labels=5, num_queries=7, hidden=64, enc_layers=1, dec_layers=3, heads=4, pre_norm=False),
    # window 3 never divides the maps: every block pads; 2 heads, deeper decoder, pre-norm decoder layers
    "swin-w3-prenorm": dict(swin=dict(embed_dim=24, depths=[2, 1, 2, 1], num_heads=[2, 2, 4, 4], window_size=3),
                            num_labels=9, num_queries=11, hidden=32, enc_layers=2, dec_layers=5, heads=2,
                            pre_norm=True),
}


def _save_random_hf(tmp_path, spec, seed=0):
    sc = transformers.SwinConfig(out_features=["stage1", "stage2", "stage3", "stage4"], **spec["swin"])
    cfg = transformers.Mask2FormerConfig(
        backbone_config=sc, num_labels=spec["num_labels"], num_queries=spec["num_queries"],
        hidden_dim=spec["hidden"], feature_size=spec["hidden"], mask_feature_size=spec["hidden"],
        encoder_layers=spec["enc_layers"], decoder_layers=spec["dec_layers"] + 1, dim_feedforward=96,
        encoder_feedforward_dim=80, num_attention_heads=spec["heads"], pre_norm=spec["pre_norm"],
    )
    torch.manual_seed(seed)
    model = transformers.Mask2FormerForUniversalSegmentation(cfg).eval()
    with torch.no_grad():  # HF initialises some tensors to 0/1 (bias tables, embeddings): make every path count
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(tmp_path)
    return model


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def pair(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param)
    hf_model = _save_random_hf(path, CONFIGS[request.param])
    return hf_model, load_checkpoint(path)


@pytest.mark.parametrize("batch,height,width", [(1, 64, 64), (1, 96, 160), (2, 128, 96)])
def test_outputs_match_hf(pair, batch, height, width):
    hf_model, ours = pair
    x = torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(height * width))
    with torch.no_grad():
        ref = hf_model(pixel_values=x)
        out = ours(x)
    assert out["pred_logits"].shape == ref.class_queries_logits.shape
    assert out["pred_masks"].shape == (batch, ours.config.num_queries, height // 4, width // 4)
    torch.testing.assert_close(out["pred_logits"], ref.class_queries_logits, atol=TOL, rtol=0)
    torch.testing.assert_close(out["pred_masks"], ref.masks_queries_logits, atol=TOL, rtol=0)


def test_masks_are_partially_blocked(pair):
    """The parity case above is only meaningful if masked attention actually masks: check some keys are blocked
    and some are not, at some decoder layer (using our own intermediate predictions)."""
    _, ours = pair
    x = torch.randn(1, 3, 96, 160, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = ours(x, return_aux=True)
    masks = [a["pred_masks"] for a in out["aux_outputs"]]
    fractions = torch.stack([(torch.sigmoid(m) < 0.5).float().mean() for m in masks])
    assert (fractions > 0.05).any() and (fractions < 0.95).any(), fractions


def test_empty_masks_match_hf_and_are_finite(tmp_path):
    """Every query's mask negative everywhere -> every attention row fully blocked -> the empty-row rule decides
    the result at every layer. Must equal HF and never be NaN."""
    hf_model = _save_random_hf(tmp_path, CONFIGS["swin-w4"], seed=3)
    sd = hf_model.state_dict()
    with torch.no_grad():  # mask features = +1 constant channel; mask embedding of that channel = -50
        proj_w = "model.pixel_level_module.decoder.mask_projection.weight"
        sd[proj_w].zero_()
        sd["model.pixel_level_module.decoder.mask_projection.bias"].zero_()[0] = 1.0
        sd["model.transformer_module.decoder.mask_predictor.mask_embedder.2.0.bias"].zero_()[0] = -50.0
        sd["model.transformer_module.decoder.mask_predictor.mask_embedder.2.0.weight"].zero_()
    hf_model.load_state_dict(sd)
    hf_model.save_pretrained(tmp_path)
    ours = load_checkpoint(tmp_path)
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = hf_model(pixel_values=x)
        out = ours(x)
    assert torch.isfinite(out["pred_logits"]).all() and torch.isfinite(out["pred_masks"]).all()
    assert (out["pred_masks"] < 0).all()
    level = torch.nn.functional.interpolate(out["pred_masks"], size=(2, 3), mode="bilinear").flatten(2)
    assert not blocked_keys(level).any()  # all blocked -> the rule unblocks every row
    torch.testing.assert_close(out["pred_logits"], ref.class_queries_logits, atol=TOL, rtol=0)
    torch.testing.assert_close(out["pred_masks"], ref.masks_queries_logits, atol=TOL, rtol=0)


def test_hf_class_names_travel(tmp_path):
    spec = dict(CONFIGS["swin-w4"])
    hf_model = _save_random_hf(tmp_path, spec)
    hf_model.config.id2label = {i: f"thing{i}" for i in range(spec["num_labels"])}
    hf_model.save_pretrained(tmp_path)
    ours = load_checkpoint(tmp_path)
    assert ours.config.class_names == [f"thing{i}" for i in range(spec["num_labels"])]
    assert ours.load_report.format == "huggingface" and ours.load_report.unused_keys == []


def test_hf_panoptic_postprocess_deviation_is_known():
    """Documented deviation (README "Differences from HuggingFace"): when no query is kept, HF's
    post_process_panoptic_segmentation returns a map of -1, the original (and m2f) a map of 0 = void."""
    from types import SimpleNamespace

    from m2f.model.presets import get_preset
    from m2f.model.postprocess import panoptic_inference

    q, k = 5, 3
    logits = torch.full((1, q, k + 1), -10.0)
    logits[..., -1] = 10.0  # every query says no-object
    masks = torch.randn(1, q, 24, 32)
    processor = transformers.Mask2FormerImageProcessorPil()  # the default one needs torchvision
    hf = processor.post_process_panoptic_segmentation(
        SimpleNamespace(class_queries_logits=logits, masks_queries_logits=masks), target_sizes=[(96, 128)])[0]
    cfg = get_preset("coco-panoptic-r50")
    cfg.num_classes = k
    ours, segments = panoptic_inference(logits[0], masks[0], cfg)
    assert (hf["segmentation"] == -1).all() and hf["segments_info"] == []
    assert (ours == 0).all() and segments == []


@pytest.mark.parametrize("layout", ["pytorch_model.bin", "sharded-safetensors"])
def test_other_hf_weight_layouts(tmp_path, layout):
    hf_model = _save_random_hf(tmp_path / "ref", CONFIGS["swin-w4"])
    target = tmp_path / layout
    if layout == "pytorch_model.bin":
        target.mkdir()
        (target / "config.json").write_text((tmp_path / "ref" / "config.json").read_text())
        torch.save(load_file(str(tmp_path / "ref" / "model.safetensors")), target / "pytorch_model.bin")
    else:
        hf_model.save_pretrained(target, max_shard_size="100KB")
        assert (target / "model.safetensors.index.json").exists()
    ours = load_checkpoint(target)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(ours(x)["pred_masks"], hf_model(pixel_values=x).masks_queries_logits,
                                   atol=TOL, rtol=0)
