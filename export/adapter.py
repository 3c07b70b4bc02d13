"""The graph contract of docs/architecture.md, as a module wrapped around a Mask2Former for tracing.

uint8 input:  image uint8 [N, H, W, 3] RGB + valid_size int32 [N, 2] (h, w of the image inside the canvas)
              -> cast, normalise with the model's mean/std, zero outside the valid region (exactly detectron2's
              normalise-then-zero-pad), NCHW.
float input:  pixel_values float32 [N, 3, H, W], already normalised and padded (HF's name); with a head, also
              valid_size.
Outputs: pred_logits float32 [N, Q, K+1], pred_masks float32 [N, Q, H/4, W/4], or a head's outputs
(``m2f.export.heads``).
"""
from __future__ import annotations

import torch
from torch import nn

from m2f import contract
from m2f.errors import ArgumentError
from m2f.model.mask2former import Mask2Former

from . import heads as heads_mod


def valid_region(valid_size: torch.Tensor, height, width) -> torch.Tensor:
    """bool [N, H, W]: True inside each image's (h, w) at the top-left of the canvas."""
    rows = torch.arange(height, device=valid_size.device, dtype=torch.int32)
    cols = torch.arange(width, device=valid_size.device, dtype=torch.int32)
    return (rows[None, :, None] < valid_size[:, 0, None, None]) & (cols[None, None, :] < valid_size[:, 1, None, None])


class GraphAdapter(nn.Module):
    """The model with the contract's inputs and outputs; with ``taps`` the stage taps follow the outputs."""

    def __init__(self, model: Mask2Former, input_kind: str = "uint8", head: str | None = None, taps: bool = False):
        super().__init__()
        if input_kind not in contract.INPUT_KINDS:
            raise ArgumentError(f"input must be 'uint8' or 'float', not {input_kind!r}")
        if head not in (None, *contract.HEADS):
            raise ArgumentError(f"head must be one of {', '.join(contract.HEADS)}, not {head!r}")
        self.model, self.input_kind, self.head, self.taps = model, input_kind, head, taps
        cfg = model.config
        self.register_buffer("mean", torch.tensor(cfg.pixel_mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(cfg.pixel_std, dtype=torch.float32).view(1, 3, 1, 1))

    @property
    def input_names(self) -> list[str]:
        return contract.input_names(self.input_kind, self.head)

    @property
    def output_names(self) -> list[str]:
        names = contract.output_names(self.head)
        if self.taps:
            names += [s.name for s in contract.tap_specs(self.model.config.dec_layers)]
        return names

    def forward(self, first: torch.Tensor, valid_size: torch.Tensor | None = None):
        if self.input_kind == "uint8":
            # cast before transposing: TensorRT takes UINT8 only as a network input or output (parser matrix)
            x = (first.to(torch.float32).permute(0, 3, 1, 2) - self.mean) / self.std
        else:
            x = first
        inside = valid_region(valid_size, x.shape[2], x.shape[3]) if valid_size is not None else None
        if self.input_kind == "uint8":
            x = x * inside[:, None].to(x.dtype)
        out = self.model(x, return_taps=self.taps)
        logits, masks = out[contract.PRED_LOGITS], out[contract.PRED_MASKS]
        if self.head is None:
            results = (logits, masks)
        else:
            results = tuple(heads_mod.run(self.head, logits, masks, inside, self.model.config))
        return results + tuple(out["taps"].values()) if self.taps else results
