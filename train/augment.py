"""Large-scale jitter (LSJ) as Mask2Former's COCO recipe applies it, in numpy + torch, on one sample at a time.

detectron2's ``RandomFlip`` -> ``ResizeScale(min_scale, max_scale, target_height, target_width)`` ->
``FixedSizeCrop(target)``: flip left-right with probability 0.5, draw s in [min_scale, max_scale], resize the
image (bilinear) and masks (nearest) by min(s * TH / H, s * TW / W) keeping the aspect ratio, crop a random TH x TW
window where the result is larger, pad at the bottom/right where it is smaller (image with 128, masks with nothing:
padding is void). Segments that vanish are dropped.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class LSJ:
    height: int = 192  # target canvas (TH, TW)
    width: int = 256
    min_scale: float = 0.1
    max_scale: float = 2.0
    flip: bool = True
    pad_value: float = 128.0

    def __call__(self, image: np.ndarray, masks: np.ndarray, rng: np.random.Generator):
        """image uint8 [H, W, 3], masks bool [G, H, W] -> (image float32 [3, TH, TW] 0..255, masks bool [G', TH, TW],
        keep bool [G]: which input segments survive, (h, w) of the valid (non-padded) region)."""
        if self.flip and rng.random() < 0.5:
            image, masks = image[:, ::-1], masks[:, :, ::-1]
        h, w = image.shape[:2]
        s = rng.uniform(self.min_scale, self.max_scale)
        factor = min(s * self.height / h, s * self.width / w)
        nh, nw = max(int(round(h * factor)), 1), max(int(round(w * factor)), 1)
        img = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float()
        img = F.interpolate(img, size=(nh, nw), mode="bilinear", align_corners=False)[0]
        msk = F.interpolate(torch.from_numpy(np.array(masks))[None].to(torch.uint8), size=(nh, nw), mode="nearest")[0]
        top = int(rng.integers(0, nh - self.height + 1)) if nh > self.height else 0
        left = int(rng.integers(0, nw - self.width + 1)) if nw > self.width else 0
        img = img[:, top:top + self.height, left:left + self.width]
        msk = msk[:, top:top + self.height, left:left + self.width]
        vh, vw = img.shape[1:]
        canvas = torch.full((3, self.height, self.width), self.pad_value)
        canvas[:, :vh, :vw] = img
        out_masks = torch.zeros((msk.shape[0], self.height, self.width), dtype=torch.bool)
        out_masks[:, :vh, :vw] = msk.bool()
        keep = out_masks.flatten(1).any(1)
        return canvas.numpy(), out_masks[keep].numpy(), keep.numpy(), (vh, vw)
