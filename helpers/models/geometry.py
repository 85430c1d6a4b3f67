"""Receptive-field geometry derived from the layer stack (docs/metrics.md, "Unit -> image plane").

Unit i of a layer with cumulative stride s and centre c projects to pixel c + s * i. Walking the stack:
a conv or pool with kernel k, stride t and padding p moves the centre by ((k - 1) / 2 - p) * s and multiplies s by t;
the receptive field grows by (k - 1) * s. VGG-16: conv3_x s=4 c=1.5, conv4_x s=8 c=3.5, conv5_x s=16 c=7.5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class LayerGeometry:
    stride: float
    centre: float  # 0-based pixel index of unit 0's receptive-field centre
    field: float  # receptive-field size in pixels (theoretical)

    def to_image(self, index: torch.Tensor | float) -> torch.Tensor | float:
        """Unit index (along one axis) -> pixel coordinate of its receptive-field centre."""
        return self.centre + self.stride * index

    def grid(self, height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """(height * width, 2) image-plane (y, x) positions of a map's units, row-major."""
        ys = self.to_image(torch.arange(height, device=device, dtype=torch.float32))
        xs = self.to_image(torch.arange(width, device=device, dtype=torch.float32))
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        return torch.stack([grid_y.flatten(), grid_x.flatten()], dim=-1)


def _pair(value: int | tuple[int, ...]) -> int:
    if isinstance(value, tuple):
        if len(set(value)) != 1:
            raise ValueError(f"non-square kernels/strides are not supported by the geometry, got {value}")
        return int(value[0])
    return int(value)


def layer_geometry(stack: nn.Sequential, name: str) -> LayerGeometry:
    """Geometry of the output of layer ``name`` of a sequential stack (conv, pool, norm and activation layers)."""
    if name not in stack._modules:
        raise KeyError(f"no layer {name!r}; layers: {', '.join(stack._modules)}")
    stride, centre, field = 1.0, 0.0, 1.0
    for layer_name, module in stack.named_children():
        if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            kernel, step, pad = _pair(module.kernel_size), _pair(module.stride), _pair(module.padding)
            dilation = _pair(module.dilation) if hasattr(module, "dilation") else 1
            span = dilation * (kernel - 1)
            centre += (span / 2 - pad) * stride
            field += span * stride
            stride *= step
        elif isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten, nn.Linear)):
            raise ValueError(f"layer {layer_name!r} has no fixed geometry; ask for a layer before it")
        if layer_name == name:
            break
    return LayerGeometry(stride, centre, field)


def feature_size(stack: nn.Sequential, name: str, input_size: int) -> tuple[int, int]:
    """Spatial size of layer ``name``'s output for a square input (by a dry run on the meta device)."""
    with torch.device("meta"):
        x = torch.empty(1, _in_channels(stack), input_size, input_size)
    for layer_name, module in stack.named_children():
        x = _meta_forward(module, x)
        if layer_name == name:
            return int(x.shape[-2]), int(x.shape[-1])
    raise KeyError(f"no layer {name!r}")


def _in_channels(stack: nn.Sequential) -> int:
    for module in stack.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    return 3


def _meta_forward(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Output shape of ``module`` on ``x`` without touching its parameters."""
    if isinstance(module, nn.Conv2d):
        k, s, p, d = (_pair(module.kernel_size), _pair(module.stride), _pair(module.padding), _pair(module.dilation))
        side = lambda n: (n + 2 * p - d * (k - 1) - 1) // s + 1  # noqa: E731
        return torch.empty(x.shape[0], module.out_channels, side(x.shape[-2]), side(x.shape[-1]), device="meta")
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        k, s, p = _pair(module.kernel_size), _pair(module.stride), _pair(module.padding)
        rounding = math.ceil if getattr(module, "ceil_mode", False) else math.floor
        side = lambda n: rounding((n + 2 * p - k) / s) + 1  # noqa: E731
        return torch.empty(x.shape[0], x.shape[1], side(x.shape[-2]), side(x.shape[-1]), device="meta")
    return x
