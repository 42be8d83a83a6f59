"""ConvNeXt backbone for MMDetection (Liu et al., "A ConvNet for the 2020s", 2022).

mmpretrain ships the reference OpenMMLab implementation, but it cannot be
imported here (it pulls in torchvision), so this is a small stand-alone
version. Module and parameter names follow mmpretrain's ``ConvNeXt`` so that
published mmpretrain/mmdet ConvNeXt checkpoints load unchanged::

    downsample_layers.0.{0: Conv2d stem, 1: LayerNorm2d}
    downsample_layers.{1,2,3}.{0: LayerNorm2d, 1: Conv2d 2x2/2}
    stages.{i}.{j}.{depthwise_conv, norm, pointwise_conv1, pointwise_conv2}
    stages.{i}.{j}.gamma          (layer scale, when enabled)
    norm{i}                       (one output norm per entry of out_indices)

Registered in mmdet's ``MODELS`` as ``'ConvNeXt'``.
"""

from __future__ import annotations

from itertools import chain
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.bricks import DropPath
from mmdet.registry import MODELS
from mmengine.model import BaseModule, ModuleList, Sequential

# depths: blocks per stage; channels: width of each stage.
ARCHS: dict[str, dict[str, list[int]]] = {
    "tiny": {"depths": [3, 3, 9, 3], "channels": [96, 192, 384, 768]},
    "small": {"depths": [3, 3, 27, 3], "channels": [96, 192, 384, 768]},
    "base": {"depths": [3, 3, 27, 3], "channels": [128, 256, 512, 1024]},
    "large": {"depths": [3, 3, 27, 3], "channels": [192, 384, 768, 1536]},
    "xlarge": {"depths": [3, 3, 27, 3], "channels": [256, 512, 1024, 2048]},
}


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel dimension of an NCHW (or NHWC) tensor.

    A plain ``nn.LayerNorm`` subclass, so its parameters are ``weight`` and
    ``bias`` as in mmpretrain's ``LayerNorm2d``.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__(num_channels, eps=eps)

    def forward(self, x: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
        if channels_last:
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """Residual block: 7x7 depthwise conv -> LN -> 1x1 (4x) -> GELU -> 1x1 -> scale.

    With ``linear_pw_conv`` the two pointwise convs are ``nn.Linear`` layers
    applied in NHWC layout (as in the official code and the published
    checkpoints); otherwise they are 1x1 ``nn.Conv2d`` layers in NCHW.
    """

    def __init__(
        self,
        channels: int,
        mlp_ratio: float = 4.0,
        linear_pw_conv: bool = True,
        drop_path_rate: float = 0.0,
        layer_scale_init_value: float = 1e-6,
    ) -> None:
        super().__init__()
        hidden = int(mlp_ratio * channels)
        self.linear_pw_conv = linear_pw_conv
        self.depthwise_conv = nn.Conv2d(channels, channels, kernel_size=7, padding=3, groups=channels)
        self.norm = LayerNorm2d(channels)
        if linear_pw_conv:
            self.pointwise_conv1: nn.Module = nn.Linear(channels, hidden)
            self.pointwise_conv2: nn.Module = nn.Linear(hidden, channels)
        else:
            self.pointwise_conv1 = nn.Conv2d(channels, hidden, kernel_size=1)
            self.pointwise_conv2 = nn.Conv2d(hidden, channels, kernel_size=1)
        self.act = nn.GELU()
        self.gamma: nn.Parameter | None = None
        if layer_scale_init_value > 0:
            self.gamma = nn.Parameter(torch.full((channels,), float(layer_scale_init_value)))
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.depthwise_conv(x)
        if self.linear_pw_conv:
            y = y.permute(0, 2, 3, 1)  # NCHW -> NHWC
            y = self.norm(y, channels_last=True)
            y = self.pointwise_conv2(self.act(self.pointwise_conv1(y)))
            y = y.permute(0, 3, 1, 2)  # NHWC -> NCHW
        else:
            y = self.norm(y)
            y = self.pointwise_conv2(self.act(self.pointwise_conv1(y)))
        if self.gamma is not None:
            y = y * self.gamma.view(1, -1, 1, 1)
        return x + self.drop_path(y)


@MODELS.register_module()
class ConvNeXt(BaseModule):
    """ConvNeXt backbone returning multi-scale NCHW features for a neck (FPN).

    Args:
        arch: one of ``ARCHS`` ('tiny', 'small', 'base', 'large', 'xlarge') or
            a dict with ``depths`` and ``channels`` lists of equal length.
        in_channels: input image channels.
        stem_patch_size: kernel and stride of the patchify stem conv.
        drop_path_rate: final stochastic-depth rate (linearly increased
            from 0 over all blocks).
        layer_scale_init_value: initial layer-scale value; 0 disables
            layer scale (no ``gamma`` parameters).
        out_indices: stages whose (normed) outputs are returned; negative
            values count from the end.
        frozen_stages: freeze the stem/downsample layer and blocks of the
            first ``frozen_stages`` stages (params fixed, kept in eval mode).
        gap_before_final_norm: global-average-pool each output before its
            norm, returning (N, C) vectors (classification only).
        linear_pw_conv: pointwise convs as ``nn.Linear`` (checkpoint layout).
        init_cfg: mmengine init config, e.g. ``dict(type='Pretrained',
            checkpoint=URL, prefix='backbone.')``.
    """

    arch_settings = ARCHS

    def __init__(
        self,
        arch: str | dict = "tiny",
        in_channels: int = 3,
        stem_patch_size: int = 4,
        drop_path_rate: float = 0.0,
        layer_scale_init_value: float = 1e-6,
        out_indices: int | Sequence[int] = (0, 1, 2, 3),
        frozen_stages: int = 0,
        gap_before_final_norm: bool = False,
        linear_pw_conv: bool = True,
        init_cfg: dict | list[dict] | None = (
            dict(type="TruncNormal", layer=["Conv2d", "Linear"], std=0.02, bias=0.0),
            dict(type="Constant", layer=["LayerNorm"], val=1.0, bias=0.0),
        ),
    ) -> None:
        if isinstance(init_cfg, tuple):
            init_cfg = list(init_cfg)
        super().__init__(init_cfg=init_cfg)

        if isinstance(arch, str):
            if arch not in ARCHS:
                raise ValueError(f"Unknown ConvNeXt arch {arch!r}; choose from {sorted(ARCHS)} or pass a dict")
            arch = ARCHS[arch]
        if "depths" not in arch or "channels" not in arch or len(arch["depths"]) != len(arch["channels"]):
            raise ValueError(f"arch dict needs equal-length 'depths' and 'channels', got {arch}")
        self.depths: list[int] = list(arch["depths"])
        self.channels: list[int] = list(arch["channels"])
        self.num_stages = len(self.depths)

        if isinstance(out_indices, int):
            out_indices = [out_indices]
        self.out_indices: list[int] = []
        for idx in out_indices:
            idx = idx + self.num_stages if idx < 0 else idx
            if not 0 <= idx < self.num_stages:
                raise ValueError(f"Invalid out index {idx} for {self.num_stages} stages")
            self.out_indices.append(idx)
        self.frozen_stages = frozen_stages
        self.gap_before_final_norm = gap_before_final_norm

        # Stem (patchify conv + LN), then LN + 2x2/2 conv before stages 1..n-1.
        self.downsample_layers = ModuleList()
        self.downsample_layers.append(
            nn.Sequential(
                nn.Conv2d(in_channels, self.channels[0], kernel_size=stem_patch_size, stride=stem_patch_size),
                LayerNorm2d(self.channels[0]),
            )
        )
        for i in range(1, self.num_stages):
            self.downsample_layers.append(
                nn.Sequential(
                    LayerNorm2d(self.channels[i - 1]),
                    nn.Conv2d(self.channels[i - 1], self.channels[i], kernel_size=2, stride=2),
                )
            )

        # Stochastic depth grows linearly over all blocks of all stages.
        rates = torch.linspace(0, drop_path_rate, sum(self.depths)).tolist()
        self.stages = ModuleList()
        first = 0
        for i, (depth, width) in enumerate(zip(self.depths, self.channels)):
            blocks = [
                ConvNeXtBlock(
                    width,
                    linear_pw_conv=linear_pw_conv,
                    drop_path_rate=rates[first + j],
                    layer_scale_init_value=layer_scale_init_value,
                )
                for j in range(depth)
            ]
            self.stages.append(Sequential(*blocks))
            first += depth
            if i in self.out_indices:
                self.add_module(f"norm{i}", LayerNorm2d(width))

        self._freeze_stages()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = []
        for i in range(self.num_stages):
            x = self.stages[i](self.downsample_layers[i](x))
            if i in self.out_indices:
                norm = getattr(self, f"norm{i}")
                if self.gap_before_final_norm:
                    outs.append(norm(x.mean((-2, -1), keepdim=True)).flatten(1))
                else:
                    outs.append(norm(x))
        return tuple(outs)

    def _freeze_stages(self) -> None:
        for i in range(self.frozen_stages):
            for module in (self.downsample_layers[i], self.stages[i]):
                module.eval()
            for param in chain(self.downsample_layers[i].parameters(), self.stages[i].parameters()):
                param.requires_grad = False

    def train(self, mode: bool = True) -> "ConvNeXt":
        super().train(mode)
        self._freeze_stages()
        return self
