"""The backbone registry: the built-in table, ``torchvision:NAME`` and ``timm:NAME``
(:mod:`selfsup.models.library`), then
the ``selfsup.backbones`` entry points (:mod:`selfsup.plugins`)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch

from selfsup.errors import unknown_name
from selfsup.models.backbones import (
    Backbone,
    Conv1dResNet,
    ConvNet,
    MLPBackbone,
    _as_shape,
    _resnet18,
    _resnet50,
)
from selfsup.models.library import (
    PREFIX,
    TIMM_PREFIX,
    TimmBackbone,
    TorchvisionBackbone,
    check_timm,
    check_torchvision,
)
from selfsup.options import accepted_options, check_options
from selfsup.plugins import load_plugin, plugin_names

BACKBONES: dict[str, Callable[..., Backbone]] = {
    "conv1d": Conv1dResNet,
    "convnet": ConvNet,
    "resnet18": _resnet18,
    "resnet50": _resnet50,
    "mlp": MLPBackbone,
}


def get_backbone(name: str) -> Callable[..., Backbone]:
    """A built-in backbone, ``torchvision:NAME``, or one declared in the ``selfsup.backbones`` entry points
    (e.g. ``pde2d``)."""
    if name.startswith(PREFIX):
        return functools.partial(TorchvisionBackbone, name=name[len(PREFIX) :])
    if name.startswith(TIMM_PREFIX):
        return functools.partial(TimmBackbone, name=name[len(TIMM_PREFIX) :])
    builder = BACKBONES.get(name) or load_plugin("selfsup.backbones", name)
    if builder is None:
        raise unknown_name("backbone", name, [*BACKBONES, *plugin_names("selfsup.backbones")])
    return builder


def backbone_options(name: str) -> dict[str, object]:
    """Keyword options of backbone ``name`` with their defaults (besides ``sample_shape``)."""
    params = accepted_options(get_backbone(name), skip=("sample_shape",))
    return {k: p.default for k, p in params.items()}


def check_backbone_options(name: str, options: dict) -> None:
    """Unknown or ill-typed options of backbone ``name`` raise :class:`ConfigError` (did-you-mean); a
    library's model is checked by that library (its constructor's signature)."""
    if name.startswith(PREFIX):
        return check_torchvision(name[len(PREFIX) :], options)
    if name.startswith(TIMM_PREFIX):
        return check_timm(name[len(TIMM_PREFIX) :], options)
    check_options(f"backbone '{name}'", options, get_backbone(name), skip=("sample_shape",))


def build_backbone(name: str, sample_shape: Sequence[int] | torch.Size, **kwargs: object) -> Backbone:
    """Build backbone ``name`` for samples of ``sample_shape`` (one sample, no batch dimension).

    Unknown names and options raise :class:`ConfigError` (with did-you-mean); a ``sample_shape`` with the
    wrong number of dimensions for the backbone raises :class:`ShapeError`.
    """
    check_backbone_options(name, kwargs)
    return get_backbone(name)(_as_shape(sample_shape, name), **kwargs)
