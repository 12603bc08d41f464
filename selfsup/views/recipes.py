"""View recipes: a name -> a batched, per-sample random augmentation module.

``build_views(recipe, sample_shape, view_index=0, **options)`` returns an ``nn.Module`` whose forward maps
a batch ``B x ...`` to a fresh random view of the same shape. Call it once per view.

Asymmetric recipes (BYOL, VICReg: strong blur on the first view, solarisation on the second) are built
per view: pass ``view_index=0`` for the first view, ``1`` for the second (indices beyond wrap around).
``build_view_set(recipe, sample_shape, n_views)`` returns the list ``[view 0, view 1, ...]`` at once; its
``local_views`` makes the last views local crops (multi-crop, LeJEPA).

A recipe (:class:`ViewRecipe`) is a builder plus the class whose constructor takes its options. The built-in
recipes are the table :data:`VIEW_RECIPES`; others come from the ``selfsup.views`` entry points
(:mod:`selfsup.plugins`, e.g. ``pde`` from :mod:`selfsup.pde.views`).

Randomness: every module draws from torch's global generator of the batch's device, so
``torch.manual_seed(seed)`` makes the views reproducible.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import nn

from selfsup.errors import ConfigError, ShapeError, unknown_name
from selfsup.options import check_options
from selfsup.plugins import load_plugin, plugin_names
from selfsup.views.image import ImageViews
from selfsup.views.pairs import build_pairs, pairs_options
from selfsup.views.signal import SignalViews

#: Images smaller than this (min side, pixels) drop the Gaussian blur by default, as SimCLR does on CIFAR-10.
SMALL_IMAGE_BLUR_CUTOFF = 64


@dataclass(frozen=True)
class ViewRecipe:
    """``build(sample_shape, view_index=0, **options) -> nn.Module``; the options are the keyword
    parameters of ``options`` (a class or function; ``sample_shape`` excluded), checked before building."""

    build: Callable[..., nn.Module]
    options: Callable
    #: Built from the training set rather than a sample shape: ``build(train, to_float, n_views, local_views,
    #: **options)`` (the ``pairs`` recipe: renders of one object and the transformation between them).
    paired: bool = False


def _image_shape(recipe: str, sample_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in sample_shape)
    if len(shape) != 3:
        hint = " Use the 'signal' recipe for 1-D signals (C, L)." if len(shape) == 2 else ""
        raise ShapeError(f"view recipe '{recipe}' is for images (C, H, W), got sample shape {shape}.{hint}")
    return shape  # type: ignore[return-value]


def _image(sample_shape, params: dict, overrides: dict) -> ImageViews:
    return ImageViews(sample_shape, **{**params, **overrides})


def _default_blur(sample_shape, paper_p: float) -> float:
    return paper_p if min(sample_shape[1:]) >= SMALL_IMAGE_BLUR_CUTOFF else 0.0


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
    return _image(shape, params, overrides)


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
    return _image(shape, params, overrides)


def byol_views(sample_shape: Sequence[int], view_index: int = 0, **overrides) -> ImageViews:
    """BYOL (Grill et al. 2020, arXiv 2006.07733, Table 6), asymmetric: build one module per view.

    Random resized crop (area 0.08-1), flip p = 0.5, colour jitter (brightness 0.4, contrast 0.4,
    saturation 0.2, hue 0.1) with p = 0.8, grayscale p = 0.2, Gaussian blur sigma U(0.1, 2.0) with
    p = 1.0 on view 0 and p = 0.1 on view 1, solarisation p = 0.0 on view 0 and p = 0.2 on view 1.
    Images with a side under 64 px get no blur by default (CIFAR setting); override with ``blur_p``.
    """
    return _byol_like("byol", sample_shape, view_index, overrides)


def vicreg_views(sample_shape: Sequence[int], view_index: int = 0, **overrides) -> ImageViews:
    """VICReg (Bardes, Ponce, LeCun 2022, arXiv 2105.04906, Appendix; official ``augmentations.py``).

    The BYOL protocol: crop (0.08-1), flip 0.5, jitter (0.4, 0.4, 0.2, 0.1) p = 0.8, grayscale 0.2,
    blur p = 1.0 / 0.1 and solarisation p = 0.0 / 0.2 on views 0 / 1. Small images (side < 64 px) get no
    blur by default; override with ``blur_p``.
    """
    return _byol_like("vicreg", sample_shape, view_index, overrides)


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
    return _image(shape, params, overrides)


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
    return SignalViews(**overrides)


def identity_views(sample_shape: Sequence[int], view_index: int = 0, **overrides) -> nn.Module:
    """No augmentation: each view is a copy of the input (baselines, debugging)."""
    return _Identity()


class _Identity(nn.Module):
    def forward(self, x):
        return x.clone()


VIEW_RECIPES: dict[str, ViewRecipe] = {
    "simclr": ViewRecipe(simclr_views, ImageViews),
    "byol": ViewRecipe(byol_views, ImageViews),
    "vicreg": ViewRecipe(vicreg_views, ImageViews),
    "small-image": ViewRecipe(small_image_views, ImageViews),
    "signal": ViewRecipe(signal_views, SignalViews),
    "identity": ViewRecipe(identity_views, _Identity),
    "pairs": ViewRecipe(build_pairs, pairs_options, paired=True),
}


def get_view_recipe(name: str) -> ViewRecipe:
    """A built-in recipe or one declared in the ``selfsup.views`` entry points."""
    recipe = VIEW_RECIPES.get(name) or load_plugin("selfsup.views", name)
    if recipe is None:
        raise unknown_name("view recipe", name, [*VIEW_RECIPES, *plugin_names("selfsup.views")])
    return recipe


def check_view_options(recipe: str, options: dict) -> None:
    """Unknown or ill-typed options of a view recipe raise :class:`ConfigError` (did-you-mean)."""
    check_options(f"view recipe '{recipe}'", options, get_view_recipe(recipe).options, skip=("sample_shape",))


def build_views(recipe: str, sample_shape: Sequence[int], view_index: int = 0, **options) -> nn.Module:
    """Build the augmentation module of view ``view_index`` for samples of shape ``sample_shape``.

    ``options`` replace the recipe's parameters (e.g. ``blur_p=0.5``, ``noise_std=0.1``); unknown names
    raise :class:`ConfigError`. Unknown recipes raise :class:`ConfigError` listing the valid ones.
    """
    check_view_options(recipe, options)
    if get_view_recipe(recipe).paired:
        raise ConfigError(
            f"view recipe '{recipe}' pairs samples of a dataset: build it with build_pair_views"
        )
    return get_view_recipe(recipe).build(tuple(sample_shape), view_index=view_index, **options)


#: LeJEPA's local views: the crop range of a recipe's ``crop_scale`` option for views beyond the global ones.
#: Images: the multi-crop local range 0.05-0.3 of the area (DINO, LeJEPA); tiny images and 1-D signals keep
#: more (a 3-pixel crop of an 8 x 8 digit, or 2 samples of a 40-sample signal, carry nothing).
LOCAL_CROP_SCALE = {"signal": (0.3, 0.6), "small-image": (0.25, 0.5)}
_LOCAL_CROP_SCALE_IMAGES = (0.05, 0.3)


def local_view_options(recipe: str, given: dict | None = None) -> dict:
    """The options that make a recipe's view a local one: ``given`` when not empty, else a smaller
    ``crop_scale``, resized to the full sample shape (so every backbone takes it). A recipe without
    ``crop_scale`` has no default."""
    if given:
        return dict(given)
    if recipe in LOCAL_CROP_SCALE:
        return {"crop_scale": LOCAL_CROP_SCALE[recipe]}
    if get_view_recipe(recipe).options is ImageViews:
        return {"crop_scale": _LOCAL_CROP_SCALE_IMAGES}
    raise ConfigError(
        f"view recipe '{recipe}' has no default for local views (no crop_scale); set data.local_view_args "
        "to the options of a local view, or data.local_views=0"
    )


def build_view_set(
    recipe: str,
    sample_shape: Sequence[int],
    n_views: int = 2,
    local_views: int = 0,
    local_options: dict | None = None,
    **options,
) -> nn.ModuleList:
    """The ``n_views`` per-view modules of a recipe, ``[build_views(recipe, shape, view_index=i) ...]``.

    The last ``local_views`` of them are local views (multi-crop): the recipe with ``options``, then
    :func:`local_view_options` (unless ``local_options`` is given), then ``local_options``.
    """
    if int(n_views) < 1:
        raise ConfigError(f"n_views must be >= 1, got {n_views}.")
    if not 0 <= int(local_views) < int(n_views):
        raise ConfigError(f"local_views must be in [0, n_views); got {local_views} of {n_views} views.")
    n_global = int(n_views) - int(local_views)
    local = dict(options)
    if local_views:
        local.update(local_view_options(recipe, local_options))
    return nn.ModuleList(
        build_views(recipe, sample_shape, view_index=i, **(options if i < n_global else local))
        for i in range(n_views)
    )


def build_pair_views(
    recipe: str, train, to_float: Callable, n_views: int = 2, local_views: int = 0, **options
):
    """The views of a paired recipe (``pairs``) over a training set (an ``ArrayDataset`` with factors)."""
    check_view_options(recipe, options)
    return get_view_recipe(recipe).build(train, to_float, n_views, local_views, **options)


def default_recipe(sample_shape: Sequence[int]) -> str:
    """The default recipe for a sample shape: 'signal' for (C, L), 'small-image' for images with a side
    under 16 px (digits), 'simclr' for other images."""
    shape = tuple(int(s) for s in sample_shape)
    if len(shape) == 2:
        return "signal"
    if len(shape) == 3:
        return "small-image" if min(shape[1:]) < 16 else "simclr"
    raise ShapeError(f"no default view recipe for samples of shape {shape}; expected (C, L) or (C, H, W).")
