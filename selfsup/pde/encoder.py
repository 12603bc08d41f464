"""The ``pde2d`` backbone: a small 2-D ResNet over PDE fields ``(t, x)``, circular in x.

Plugged into :mod:`selfsup.models` through the ``selfsup.backbones`` entry points (:mod:`selfsup.plugins`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.errors import ConfigError, ShapeError
from selfsup.models.backbones import BasicBlock, SmallResNet, positive_int

__all__ = ["PDE2dResNet"]


class _CircConv2d(nn.Conv2d):
    """Conv2d over (t, x) with circular padding in x (periodic domain) and zero padding in t."""

    def __init__(self, in_ch: int, out_ch: int, k: int, stride: int = 1) -> None:
        super().__init__(in_ch, out_ch, k, stride=stride, padding=(k // 2, 0), bias=False)
        self.pad_x = k // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad_x:
            x = F.pad(x, (self.pad_x, self.pad_x, 0, 0), mode="circular")
        return super().forward(x)


class _Block(BasicBlock):
    """:class:`~selfsup.models.backbones.BasicBlock` with circular-in-x 3x3 convolutions."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__(in_ch, out_ch, stride, dims=2, conv3=lambda i, o, s: _CircConv2d(i, o, 3, s))


class _Fields(nn.Module):
    """The first ``fields`` channels; the coordinate channels among them (all but the field ``u``) batch-
    normalised, without affine parameters, so raw coordinates (up to ~100) start on the scale of ``u``."""

    def __init__(self, fields: int) -> None:
        super().__init__()
        self.fields = fields
        self.coords = nn.BatchNorm2d(fields - 1, affine=False) if fields > 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, : self.fields]
        if self.coords is None:
            return x
        return torch.cat([x[:, :1], self.coords(x[:, 1:])], dim=1)


class PDE2dResNet(SmallResNet):
    """Small 2-D ResNet over PDE fields ``B x C x nt x nx``, circular in x, for ``pde:``/``pde-gen:`` data.

    :class:`~selfsup.models.SmallResNet` with circular-in-x 3x3 convolutions and a ``stem`` that reads only
    the first ``fields`` channels, then a 5x5 conv of stride ``stem_stride``, BN, ReLU; ``out_dim =
    4*width``. With the ``pde:``/``pde-gen:`` layout ``(u, t, x)``, ``fields=1`` (default) reads the field
    only: the encoder is blind to the grid ``dx``, ``dt``; ``fields=3`` also reads the coordinates (as the
    public SSL code's Navier-Stokes encoder), batch-normalised without affine parameters. Any field size
    is accepted (crops at training, whole fields at evaluation).
    """

    def __init__(
        self,
        sample_shape: tuple[int, ...],
        width: int = 16,
        blocks: int | Sequence[int] = 1,
        fields: int = 1,
        stem_stride: int = 2,
    ) -> None:
        shape = tuple(sample_shape)
        if len(shape) != 3:
            raise ShapeError(
                f"backbone 'pde2d' takes samples shaped (channels, nt, nx), got sample_shape={shape}"
            )
        width = positive_int(width, "pde2d width")
        fields = positive_int(fields, "pde2d fields")
        stem_stride = positive_int(stem_stride, "pde2d stem_stride")
        if fields > shape[0]:
            raise ConfigError(f"pde2d: fields={fields} but samples have {shape[0]} channel(s)")
        stem = nn.Sequential(
            _Fields(fields), _CircConv2d(fields, width, 5, stem_stride), nn.BatchNorm2d(width), nn.ReLU(True)
        )
        super().__init__("pde2d", shape, stem, width, blocks, _Block)
