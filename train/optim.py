"""Mask2Former's optimiser and schedules (docs/model.md §3): AdamW with a backbone learning-rate multiplier, no weight
decay on norm layers, embeddings and Swin's position tables; multi-step or poly decay; full-model gradient clipping."""
from __future__ import annotations

import math

import torch
from torch import nn

from m2f.errors import ArgumentError
from m2f.model.resnet import FrozenBatchNorm2d

NORM_TYPES = (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.SyncBatchNorm, FrozenBatchNorm2d)
NO_DECAY_NAMES = ("relative_position_bias_table", "absolute_pos_embed")


def param_groups(model: nn.Module, lr: float, weight_decay: float, backbone_multiplier: float) -> list[dict]:
    """One group per trainable parameter, as detectron2's build_optimizer for Mask2Former: lr * backbone_multiplier
    under ``backbone``; weight decay 0 for norm layers, nn.Embedding and the Swin tables."""
    groups, seen = [], set()
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            group = {"params": [param], "lr": lr, "weight_decay": weight_decay}
            if "backbone" in module_name:
                group["lr"] = lr * backbone_multiplier
            if isinstance(module, NORM_TYPES + (nn.Embedding,)) or name in NO_DECAY_NAMES:
                group["weight_decay"] = 0.0
            groups.append(group)
    return groups


def build_optimizer(model: nn.Module, lr: float = 1e-4, weight_decay: float = 0.05,
                    backbone_multiplier: float = 0.1) -> torch.optim.AdamW:
    optimizer = torch.optim.AdamW(param_groups(model, lr, weight_decay, backbone_multiplier), lr=lr)
    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"]
    return optimizer


COCO_STEPS = (327_778 / 368_750, 355_092 / 368_750)  # the COCO recipe's decay points, as fractions of the run


def lr_factor(iteration: int, total: int, schedule: str, steps: tuple[float, ...] = COCO_STEPS,
              gamma: float = 0.1, power: float = 0.9) -> float:
    """Multiplier of the base lr at ``iteration`` (0-based) of ``total``. "step": gamma at each fraction in ``steps``
    (COCO's 327,778 and 355,092 of 368,750); "poly": (1 - it / total) ** power (detectron2's WarmupPolyLR)."""
    if schedule == "step":
        return gamma ** sum(iteration >= round(f * total) for f in steps)
    if schedule == "poly":
        return (1.0 - iteration / total) ** power
    raise ArgumentError(f"unknown schedule {schedule!r}; use 'step' or 'poly'")


def set_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * factor


def clip_full_model(model: nn.Module, max_norm: float) -> float:
    """Clip the L2 norm of all gradients together (detectron2's CLIP_TYPE full_model); returns the norm before."""
    norm = torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], max_norm)
    return float(norm) if math.isfinite(float(norm)) else float("inf")
