"""View recipes: batched, per-sample random augmentations for images and 1-D signals.

>>> views = build_views("simclr", (3, 32, 32))          # an nn.Module
>>> v1, v2 = views(x), views(x)                         # two random views of a batch x: B x 3 x 32 x 32

Asymmetric recipes (``byol``, ``vicreg``) are built per view with ``view_index`` (0, 1), or all at once
with ``build_view_set``. Views draw from torch's global RNG: ``torch.manual_seed`` makes them reproducible;
``with batch_shard(offset, total):`` makes a process holding rows of a larger batch draw them as one process
holding the whole batch would (:mod:`selfsup.views.randomness`).
"""

from selfsup.views.image import ImageViews
from selfsup.views.pairs import TransformPairs, draw_views
from selfsup.views.randomness import batch_shard
from selfsup.views.recipes import (
    VIEW_RECIPES,
    ViewRecipe,
    build_pair_views,
    build_view_set,
    build_views,
    check_view_options,
    default_recipe,
    get_view_recipe,
    local_view_options,
)
from selfsup.views.signal import SignalViews

__all__ = [
    "VIEW_RECIPES",
    "ImageViews",
    "SignalViews",
    "batch_shard",
    "ViewRecipe",
    "build_pair_views",
    "build_view_set",
    "draw_views",
    "TransformPairs",
    "build_views",
    "check_view_options",
    "default_recipe",
    "get_view_recipe",
    "local_view_options",
]
