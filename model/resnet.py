"""detectron2's ResNet backbone (build_resnet_backbone), with its module names so checkpoints load as they are.

Outputs a dict res2..res5 of float32 [N, C_i, H/s, W/s] with strides 4, 8, 16, 32 and C_i = 256, 512, 1024, 2048
for the standard widths. Stride sits on the 3x3 conv (STRIDE_IN_1X1 False, torchvision style).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from m2f.errors import ConfigError

from .config import ResNetConfig


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics and affine parameters:
    y = x * w / sqrt(rv + eps) + (b - rm * w / sqrt(rv + eps))."""

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features) - eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        bias = self.bias - self.running_mean * scale
        return x * scale.reshape(1, -1, 1, 1).to(x.dtype) + bias.reshape(1, -1, 1, 1).to(x.dtype)


def make_norm(kind: str, channels: int) -> nn.Module:
    # At inference BN and SyncBN compute exactly what FrozenBN computes (running statistics, eps 1e-5), and
    # FrozenBN's buffers have the same names, so one module serves all three (num_batches_tracked is ignored).
    if kind in ("FrozenBN", "BN", "SyncBN", "naiveSyncBN"):
        return FrozenBatchNorm2d(channels)
    if kind == "GN":
        return nn.GroupNorm(32, channels)
    raise ConfigError(f"unsupported norm {kind!r}; use FrozenBN, BN, SyncBN or GN")


class ConvNorm(nn.Conv2d):
    """detectron2's Conv2d wrapper: a conv whose ``norm`` (and optional ReLU) live under the conv's own name."""

    def __init__(self, *args, norm: nn.Module | None = None, relu: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.norm = norm
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if self.norm is not None:
            x = self.norm(x)
        return F.relu(x) if self.relu else x


class BasicStem(nn.Module):
    def __init__(self, out_channels: int, norm: str):
        super().__init__()
        self.conv1 = ConvNorm(3, out_channels, 7, stride=2, padding=3, bias=False,
                              norm=make_norm(norm, out_channels), relu=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(self.conv1(x), kernel_size=3, stride=2, padding=1)


class BottleneckBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, bottleneck: int, stride: int, groups: int, dilation: int, norm: str):
        super().__init__()
        self.shortcut = (
            ConvNorm(in_ch, out_ch, 1, stride=stride, bias=False, norm=make_norm(norm, out_ch))
            if in_ch != out_ch else None
        )
        self.conv1 = ConvNorm(in_ch, bottleneck, 1, bias=False, norm=make_norm(norm, bottleneck), relu=True)
        self.conv2 = ConvNorm(bottleneck, bottleneck, 3, stride=stride, padding=dilation, dilation=dilation,
                              groups=groups, bias=False, norm=make_norm(norm, bottleneck), relu=True)
        self.conv3 = ConvNorm(bottleneck, out_ch, 1, bias=False, norm=make_norm(norm, out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return F.relu(self.conv3(self.conv2(self.conv1(x))) + shortcut)


class ResNet(nn.Module):
    def __init__(self, cfg: ResNetConfig):
        super().__init__()
        self.stem = BasicStem(cfg.stem_out_channels, cfg.norm)
        in_ch = cfg.stem_out_channels
        bottleneck = cfg.num_groups * cfg.width_per_group
        self.stage_names = ("res2", "res3", "res4", "res5")
        for i, (name, n_blocks, out_ch) in enumerate(zip(self.stage_names, cfg.num_blocks, cfg.out_channels)):
            dilation = cfg.res5_dilation if name == "res5" else 1
            first_stride = 1 if i == 0 or dilation > 1 else 2
            blocks = []
            for b in range(n_blocks):
                blocks.append(BottleneckBlock(in_ch, out_ch, bottleneck, first_stride if b == 0 else 1,
                                              cfg.num_groups, dilation, cfg.norm))
                in_ch = out_ch
            self.add_module(name, nn.Sequential(*blocks))
            bottleneck *= 2
        self.out_channels = cfg.out_channels

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x: float32 [N, 3, H, W] normalised -> {res2..res5: [N, C_i, H/4 .. H/32, W/4 .. W/32]}."""
        out = {}
        x = self.stem(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
            out[name] = x
        return out
