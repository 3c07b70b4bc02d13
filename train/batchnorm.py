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


def unfreeze_batchnorm(model: nn.Module) -> nn.Module:
    """In place: FrozenBatchNorm2d -> nn.BatchNorm2d (momentum 0.1, eps 1e-5) with the same statistics/affine."""

    def convert(m):
        if not isinstance(m, FrozenBatchNorm2d):
            return m
        bn = nn.BatchNorm2d(m.weight.numel(), eps=m.eps).to(m.weight.device)
        with torch.no_grad():
            bn.weight.copy_(m.weight)
            bn.bias.copy_(m.bias)
            bn.running_mean.copy_(m.running_mean)
            bn.running_var.copy_(m.running_var)
        return bn

    _swap(model, convert)
    return model


def freeze_batchnorm(model: nn.Module) -> nn.Module:
    """In place: nn.BatchNorm2d -> FrozenBatchNorm2d holding its running statistics and affine parameters."""

    def convert(m):
        if not isinstance(m, nn.BatchNorm2d):
            return m
        frozen = FrozenBatchNorm2d(m.num_features, eps=m.eps).to(m.weight.device)
        with torch.no_grad():
            frozen.weight.copy_(m.weight)
            frozen.bias.copy_(m.bias)
            frozen.running_mean.copy_(m.running_mean)
            frozen.running_var.copy_(m.running_var)
        return frozen

    _swap(model, convert)
    return model
