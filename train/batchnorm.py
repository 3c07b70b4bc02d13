"""Trainable BatchNorm for backbones configured with norm "BN"/"SyncBN", and back.

The model builds every BN kind as ``FrozenBatchNorm2d`` (identical at inference, and it loads every checkpoint).
detectron2 trains "BN" backbones with real batch statistics, so training swaps those modules for
``nn.BatchNorm2d`` initialised from the frozen buffers, and ``freeze_batchnorm`` turns them back (the state-dict
names are the same; ``num_batches_tracked`` is dropped). "FrozenBN" backbones stay frozen, as in detectron2.
"""
from __future__ import annotations

import torch
from torch import nn

from m2f.model.resnet import FrozenBatchNorm2d


def _swap(module: nn.Module, convert) -> None:
    for name, child in module.named_children():
        new = convert(child)
        if new is not child:
            setattr(module, name, new)
        else:
            _swap(child, convert)


def _copy_state(src: nn.Module, dst: nn.Module) -> nn.Module:
    """dst with src's affine parameters and running statistics (the names both BatchNorm kinds share)."""
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(dst, name).copy_(getattr(src, name))
    return dst


def unfreeze_batchnorm(model: nn.Module) -> nn.Module:
    """In place: FrozenBatchNorm2d -> nn.BatchNorm2d (momentum 0.1, eps 1e-5) with the same statistics/affine."""

    def convert(m):
        if not isinstance(m, FrozenBatchNorm2d):
            return m
        return _copy_state(m, nn.BatchNorm2d(m.weight.numel(), eps=m.eps).to(m.weight.device))

    _swap(model, convert)
    return model


def freeze_batchnorm(model: nn.Module) -> nn.Module:
    """In place: nn.BatchNorm2d -> FrozenBatchNorm2d holding its running statistics and affine parameters."""

    def convert(m):
        if not isinstance(m, nn.BatchNorm2d):
            return m
        return _copy_state(m, FrozenBatchNorm2d(m.num_features, eps=m.eps).to(m.weight.device))

    _swap(model, convert)
    return model
