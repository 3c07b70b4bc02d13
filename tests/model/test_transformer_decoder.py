"""The decoder's attention masks from the pixels their resize reads: bit for bit the official formula (mask logits
of every pixel by einsum, then a bilinear resize; docs/model.md §1.4), and the guard that keeps traced dynamic graphs
on the full computation where canvases may give other ratios."""
import warnings

import pytest
import torch
import torch.nn.functional as F

from m2f.model.transformer_decoder import resize_support

from .helpers import random_model, tiny_config


def _official(embed, features, size):
    """Mask2Former's attention-mask logits: einsum over every pixel, then the bilinear resize."""
    logits = torch.einsum("bqc,bchw->bqhw", embed, features)
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


@pytest.mark.parametrize("full,size,kept", [
    ((200, 336), (25, 42), (50, 84)),  # 1/4 -> 1/32 of an 800x1344 canvas: k = 8 on both axes
    ((200, 336), (50, 84), (100, 168)),  # k = 4
    ((200, 336), (100, 168), (200, 336)),  # k = 2 reads every pixel
    ((64, 96), (16, 12), (32, 24)),  # k = 4 on rows, 8 on columns
    ((60, 90), (20, 30), (60, 90)),  # k = 3 (odd): one row with weight 1, kept whole
    ((100, 90), (30, 30), (100, 90)),  # 10/3 and 3: kept whole
    ((48, 90), (6, 30), (12, 90)),  # k = 8 on rows only
])
def test_support_resizes_to_the_official_values_bit_for_bit(full, size, kept):
    torch.manual_seed(0)
    features, embed = torch.randn(2, 16, *full), torch.randn(2, 7, 16)
    support = resize_support(features, size)
    assert tuple(support.shape) == (2, 16, *kept)
    ours = F.interpolate(torch.einsum("bqc,bchw->bqhw", embed, support), size=size, mode="bilinear",
                         align_corners=False)
    assert torch.equal(ours, _official(embed, features, size))


@pytest.mark.parametrize("kind", ["resnet", "swin"])
def test_model_outputs_equal_the_path_that_keeps_every_prediction(kind):
    """return_aux computes every intermediate prediction at full size and resizes it (the official code path)."""
    model = random_model(tiny_config(kind))
    x = torch.randn(1, 3, 128, 192)
    with torch.no_grad():
        fast, full = model(x), model(x, return_aux=True)
    assert torch.equal(fast["pred_masks"], full["pred_masks"])
    assert torch.equal(fast["pred_logits"], full["pred_logits"])


def _decoder_inputs(model, sides):
    """Random pixel-decoder outputs for canvas sides (H, W): three levels at 1/32, 1/16, 1/8, mask features at 1/4
    (sizes rounded up, as strided convolutions round them on canvases that are not multiples of 32)."""
    c = model.config.conv_dim
    h, w = sides
    levels = [torch.randn(1, c, -(-h // s), -(-w // s)) for s in (32, 16, 8)]
    return levels, torch.randn(1, model.config.mask_dim, -(-h // 4), -(-w // 4))


def test_a_trace_without_the_canvas_guarantee_keeps_every_pixel():
    """Traced at ratios 8, 4, 2 with size_divisibility 0, the graph must still be right where the ratios differ."""
    model = random_model(tiny_config("resnet"))
    decoder = model.sem_seg_head.predictor
    decoder.size_divisibility = 0

    class Masks(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.decoder = decoder

        def forward(self, levels, mask_features):
            return self.decoder(levels, mask_features)["pred_masks"]

    run = Masks()
    torch.manual_seed(0)
    with torch.no_grad(), warnings.catch_warnings():  # the tracer of torch.onnx's TorchScript exporter
        warnings.simplefilter("ignore")  # its deprecation, and constants it notes where the model means them
        traced = torch.jit.trace(run, _decoder_inputs(model, (128, 192)), check_trace=False)
    levels, mask_features = _decoder_inputs(model, (200, 104))  # 1/4 = 50x26 against 7x4, 13x7, 25x13
    with torch.no_grad():
        torch.testing.assert_close(traced(levels, mask_features), run(levels, mask_features), rtol=0, atol=1e-5)
