"""View recipes: a name -> a batched, per-sample random augmentation module.

``build_views(recipe, sample_shape, view_index=0, **overrides)`` returns an ``nn.Module`` whose forward maps
a batch ``B x ...`` to a fresh random view of the same shape. Call it once per view.

Asymmetric recipes (BYOL, VICReg: strong blur on the first view, solarisation on the second) are built
per view: pass ``view_index=0`` for the first view, ``1`` for the second (indices beyond wrap around).
``build_view_set(recipe, sample_shape, n_views)`` returns the list ``[view 0, view 1, ...]`` at once.

Randomness: every module draws from torch's global generator of the batch's device, so
``torch.manual_seed(seed)`` makes the views reproducible.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

from torch import nn

from selfsup.errors import ConfigError, ShapeError, did_you_mean, unknown_name
from selfsup.views.image import ImageViews
from selfsup.views.signal import SignalViews

#: Images smaller than this (min side, pixels) drop the Gaussian blur by default, as SimCLR does on CIFAR-10.
SMALL_IMAGE_BLUR_CUTOFF = 64

ViewBuilder = Callable[..., nn.Module]
VIEW_RECIPES: dict[str, ViewBuilder] = {}


def register_view_recipe(name: str) -> Callable[[ViewBuilder], ViewBuilder]:
    """Decorator adding ``builder(sample_shape, view_index=0, **overrides) -> nn.Module`` to VIEW_RECIPES."""

    def deco(fn: ViewBuilder) -> ViewBuilder:
        VIEW_RECIPES[name] = fn
        return fn

    return deco


def _image_shape(recipe: str, sample_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in sample_shape)
    if len(shape) != 3:
        hint = " Use the 'signal' recipe for 1-D signals (C, L)." if len(shape) == 2 else ""
        raise ShapeError(f"view recipe '{recipe}' is for images (C, H, W), got sample shape {shape}.{hint}")
    return shape  # type: ignore[return-value]


def _check_overrides(recipe: str, cls: type, overrides: dict) -> None:
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "sample_shape")]
    for key in overrides:
        if key not in allowed:
            raise ConfigError(
                f"view recipe '{recipe}' has no option '{key}'.{did_you_mean(key, allowed)} "
                f"Options: {', '.join(allowed)}."
            )


def _image(recipe: str, sample_shape, params: dict, overrides: dict) -> ImageViews:
    _check_overrides(recipe, ImageViews, overrides)
    params = {**params, **overrides}
    return ImageViews(sample_shape, **params)


def _default_blur(sample_shape, paper_p: float) -> float:
    return paper_p if min(sample_shape[1:]) >= SMALL_IMAGE_BLUR_CUTOFF else 0.0


@register_view_recipe("simclr")
def simclr_views(sample_shape: Sequence[int], view_index: int = 0, **overrides) -> ImageViews:
    """SimCLR (Chen et al. 2020, arXiv 2002.05709, Appendix A), symmetric in the two views.

    Random resized crop (area 0.08-1, aspect 3/4-4/3), horizontal flip p = 0.5, colour jitter with strength
    s = 1 (brightness 0.8, contrast 0.8, saturation 0.8, hue 0.2) applied with p = 0.8, grayscale p = 0.2,
    Gaussian blur p = 0.5 with sigma U(0.1, 2.0) and a kernel of 10 % of the image side.
    Blur: images with a side under 64 px get ``blur_p = 0`` by default, the paper's CIFAR-10 setting
    (Appendix B.9); pass ``blur_p=0.5`` to keep it.
    """
    shape = _image_shape("simclr", sample_shape)
    params = dict(
        crop_scale=(0.08, 1.0),
        flip_p=0.5,
        jitter=(0.8, 0.8, 0.8, 0.2),
        jitter_p=0.8,
        grayscale_p=0.2,
        blur_p=_default_blur(shape, 0.5),
        blur_sigma=(0.1, 2.0),
    )
    return _image("simclr", shape, params, overrides)


def _byol_like(recipe: str, sample_shape, view_index: int, overrides: dict) -> ImageViews:
    shape = _image_shape(recipe, sample_shape)
    second = int(view_index) % 2 == 1
    params = dict(
        crop_scale=(0.08, 1.0),
        flip_p=0.5,
        jitter=(0.4, 0.4, 0.2, 0.1),
        jitter_p=0.8,
        grayscale_p=0.2,
        blur_p=_default_blur(shape, 0.1 if second else 1.0),
        blur_sigma=(0.1, 2.0),
        solarize_p=0.2 if second else 0.0,
    )
    return _image(recipe, shape, params, overrides)


@register_view_recipe("byol")
def byol_views(sample_shape: Sequence[int], view_index: int = 0, **overrides) -> ImageViews:
    """BYOL (Grill et al. 2020, arXiv 2006.07733, Table 6), asymmetric: build one module per view.

    Random resized crop (area 0.08-1), flip p = 0.5, colour jitter (brightness 0.4, contrast 0.4,
    saturation 0.2, hue 0.1) with p = 0.8, grayscale p = 0.2, Gaussian blur sigma U(0.1, 2.0) with
    p = 1.0 on view 0 and p = 0.1 on view 1, solarisation p = 0.0 on view 0 and p = 0.2 on view 1.
    Images with a side under 64 px get no blur by default (CIFAR setting); override with ``blur_p``.
    """
    return _byol_like("byol", sample_shape, view_index, overrides)


@register_view_recipe("vicreg")
def vicreg_views(sample_shape: Sequence[int], view_index: int = 0, **overrides) -> ImageViews:
    """VICReg (Bardes, Ponce, LeCun 2022, arXiv 2105.04906, Appendix; official ``augmentations.py``).

    The BYOL protocol: crop (0.08-1), flip 0.5, jitter (0.4, 0.4, 0.2, 0.1) p = 0.8, grayscale 0.2,
    blur p = 1.0 / 0.1 and solarisation p = 0.0 / 0.2 on views 0 / 1. Small images (side < 64 px) get no
    blur by default; override with ``blur_p``.
    """
    return _byol_like("vicreg", sample_shape, view_index, overrides)


@register_view_recipe("small-image")
def small_image_views(sample_shape: Sequence[int], view_index: int = 0, **overrides) -> ImageViews:
    """Tiny grey images such as scikit-learn's 8 x 8 digits (the ``digits`` default).

    Random resized crop of 50-100 % of the area (small images cannot lose more), a shift of up to 10 % of the
    side (about one pixel on 8 x 8) with zero padding, no flip (digits are not mirror-symmetric), additive
    Gaussian noise of std 0.05. No colour operations.
    """
    shape = _image_shape("small-image", sample_shape)
    params = dict(
        crop_scale=(0.5, 1.0),
        flip_p=0.0,
        translate=0.1,
        noise_std=0.05,
        padding_mode="zeros",
    )
    return _image("small-image", shape, params, overrides)


@register_view_recipe("signal")
def signal_views(sample_shape: Sequence[int], view_index: int = 0, **overrides) -> SignalViews:
    """1-D signals ``(C, L)``: shift, crop-and-resize, time warp, amplitude, trend, noise, masking.

    Defaults are tuned for MNIST-1D (see :class:`selfsup.views.signal.SignalViews`).
    """
    shape = tuple(int(s) for s in sample_shape)
    if len(shape) != 2:
        raise ShapeError(
            f"view recipe 'signal' is for 1-D signals (C, L), got sample shape {shape}; "
            "use an image recipe ('simclr', 'vicreg', 'byol', 'small-image') for images (C, H, W)."
        )
    _check_overrides("signal", SignalViews, overrides)
    return SignalViews(**overrides)


@register_view_recipe("identity")
def identity_views(sample_shape: Sequence[int], view_index: int = 0, **overrides) -> nn.Module:
    """No augmentation: each view is a copy of the input (baselines, debugging)."""
    if overrides:
        raise ConfigError(f"view recipe 'identity' takes no options, got {sorted(overrides)}.")
    return _Identity()


class _Identity(nn.Module):
    def forward(self, x):
        return x.clone()


def build_views(recipe: str, sample_shape: Sequence[int], view_index: int = 0, **overrides) -> nn.Module:
    """Build the augmentation module of view ``view_index`` for samples of shape ``sample_shape``.

    ``overrides`` replace the recipe's parameters (e.g. ``blur_p=0.5``, ``noise_std=0.1``); unknown names
    raise :class:`ConfigError`. Unknown recipes raise :class:`ConfigError` listing the valid ones.
    """
    if recipe not in VIEW_RECIPES:
        raise unknown_name("view recipe", recipe, VIEW_RECIPES)
    return VIEW_RECIPES[recipe](tuple(sample_shape), view_index=view_index, **overrides)


def build_view_set(recipe: str, sample_shape: Sequence[int], n_views: int = 2, **overrides) -> nn.ModuleList:
    """The ``n_views`` per-view modules of a recipe, ``[build_views(recipe, shape, view_index=i) ...]``."""
    if int(n_views) < 1:
        raise ConfigError(f"n_views must be >= 1, got {n_views}.")
    return nn.ModuleList(build_views(recipe, sample_shape, view_index=i, **overrides) for i in range(n_views))


def default_recipe(sample_shape: Sequence[int]) -> str:
    """The default recipe for a sample shape: 'signal' for (C, L), 'small-image' for images with a side
    under 16 px (digits), 'simclr' for other images."""
    shape = tuple(int(s) for s in sample_shape)
    if len(shape) == 2:
        return "signal"
    if len(shape) == 3:
        return "small-image" if min(shape[1:]) < 16 else "simclr"
    raise ShapeError(f"no default view recipe for samples of shape {shape}; expected (C, L) or (C, H, W).")
