"""The decoder's attention-mask logits: the embedding dotted with the mask features resized to each level, where the
official code resizes the full-size logits (docs/model.md section 1.4). Both orders are one linear map, so they agree
to 1e-12 in float64 and within a dot product's rounding bound in float32; the model's outputs match those of the
official order's path (``return_aux``) on the tiny models, and a trace follows other canvas sizes."""
import warnings

import pytest
import torch
import torch.nn.functional as F

from m2f.model.transformer_decoder import _mask_logits, _to_level

from .helpers import random_model, tiny_config

SIZES = [
    ((200, 336), (25, 42)),  # 1/4 -> 1/32 of an 800x1344 canvas: k = 8 on both axes
    ((200, 336), (50, 84)),  # k = 4
    ((200, 336), (100, 168)),  # k = 2
    ((64, 96), (16, 12)),  # k = 4 on rows, 8 on columns
    ((60, 90), (20, 30)),  # k = 3
    ((100, 90), (30, 30)),  # 10/3 and 3
    ((50, 26), (7, 4)),  # a canvas off the multiples of 32: 1/4 = 50x26 against 1/32 = 7x4
]


def _official(embed, features, size):
    """Mask2Former's attention-mask logits: einsum over every pixel, then the bilinear resize."""
    logits = torch.einsum("bqc,bchw->bqhw", embed, features)
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


@pytest.mark.parametrize("full,size", SIZES)
def test_level_logits_equal_the_official_order_in_float64(full, size):
    torch.manual_seed(0)
    features, embed = torch.randn(2, 16, *full, dtype=torch.float64), torch.randn(2, 7, 16, dtype=torch.float64)
    ours = _mask_logits(embed, _to_level(features, size))
    torch.testing.assert_close(ours, _official(embed, features, size), rtol=0, atol=1e-12)


@pytest.mark.parametrize("full,size", SIZES)
def test_level_logits_in_float32_are_within_the_dot_products_rounding(full, size):
    """Either order sums C products and at most 4 resize terms (non-negative weights summing to 1): each is within
    (C + 4) u sum|e||f| of the exact value (the standard dot-product bound, u = 2^-24), so they are within twice that
    of each other; |f| resized bounds the weighted sums of |f|."""
    torch.manual_seed(0)
    features, embed = torch.randn(2, 16, *full), torch.randn(2, 7, 16)
    ours = _mask_logits(embed, _to_level(features, size))
    official = _official(embed, features, size)
    scale = _official(embed.double().abs(), features.double().abs(), size)
    bound = 2 * (16 + 4) * 2.0 ** -24 * scale
    assert ((ours.double() - official.double()).abs() <= bound).all()


@pytest.mark.parametrize("kind", ["resnet", "swin"])
def test_model_outputs_match_the_path_that_keeps_every_prediction(kind):
    """return_aux computes every intermediate prediction at full size and resizes it (the official code path). The
    logits only block keys through sigmoid < 0.5, so unless one lies within rounding of 0 the outputs are equal."""
    model = random_model(tiny_config(kind))
    x = torch.randn(1, 3, 128, 192)
    with torch.no_grad():
        fast, full = model(x), model(x, return_aux=True)
    torch.testing.assert_close(fast["pred_masks"], full["pred_masks"], rtol=0, atol=1e-5)
    torch.testing.assert_close(fast["pred_logits"], full["pred_logits"], rtol=0, atol=1e-5)


def _decoder_inputs(model, sides):
    """Random pixel-decoder outputs for canvas sides (H, W): three levels at 1/32, 1/16, 1/8, mask features at 1/4
    (sizes rounded up, as strided convolutions round them on canvases that are not multiples of 32)."""
    c = model.config.conv_dim
    h, w = sides
    levels = [torch.randn(1, c, -(-h // s), -(-w // s)) for s in (32, 16, 8)]
    return levels, torch.randn(1, model.config.mask_dim, -(-h // 4), -(-w // 4))


def test_a_trace_follows_other_canvas_sizes():
    """Traced at one canvas (level ratios 8, 4, 2), the graph must be right on a canvas with other sizes and ratios."""
    model = random_model(tiny_config("resnet"))
    decoder = model.sem_seg_head.predictor

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
