"""Transformation-aware views: two renders of one object and the transformation between them.

Data with recorded factors (``objects3d``: several views per object instance, each with its rotation
quaternion and colours) is paired rather than augmented, as SIE's 3DIEBench loader does: each image of a
batch is the first view, a uniformly drawn *other* view of the same instance the second, and the
transformation vector ``t`` goes from the first to the second:

* ``t[:4]``: the relative rotation ``r = q2 q1^-1`` (``q2 = r q1``), canonical (``w >= 0``);
* with ``colour=True``, ``t[4:6]``: the shifts of the object hue and of the background hue, wrapped to
  ``[-0.5, 0.5)`` (as SIE's rotation + colour model, which adds the latent colour differences).

Methods that need ``t`` (``sie``, ``sie-nosplit``) receive it; the others (``vicreg``, ``simclr``...) train
on the same pairs and ignore it. No other augmentation is applied (SIE's public setting).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from selfsup import rotations
from selfsup.errors import ConfigError
from selfsup.views import randomness as R

#: The factors a dataset must record, one row per sample, for the ``pairs`` recipe.
REQUIRED_FACTORS = ("instance", "quaternion", "hue", "background_hue")


def pairs_options(sample_shape: Sequence[int], colour: bool = False) -> None:
    """The ``pairs`` recipe's options (``data.view_args``): ``colour`` adds the hue shifts to ``t``."""


class TransformPairs(nn.Module):
    """For a batch of sample indices: the second views (other views of the same instances) and ``t``.

    ``images``: every training sample (uint8 or float), kept on the module's device; ``factors``: the
    dataset's per-sample factors; ``to_float``: how stored samples become the model's input."""

    def __init__(self, images: torch.Tensor, factors: dict, to_float: Callable, colour: bool = False):
        super().__init__()
        instance = factors["instance"].long()
        order = torch.argsort(instance, stable=True)
        _, group, counts = torch.unique_consecutive(instance[order], return_inverse=True, return_counts=True)
        if counts.min() < 2:
            raise ConfigError("the 'pairs' views need at least 2 views of every instance; a dataset has 1")
        starts = torch.cumsum(counts, 0) - counts
        start, count = torch.empty_like(order), torch.empty_like(order)
        start[order], count[order] = starts[group], counts[group]
        position = torch.empty_like(order)
        position[order] = torch.arange(len(order)) - starts[group]
        for name, value in dict(
            images=images, order=order, start=start, count=count, position=position
        ).items():
            self.register_buffer(name, value, persistent=False)
        for name in REQUIRED_FACTORS[1:]:
            self.register_buffer(name, factors[name].float(), persistent=False)
        self.to_float = to_float
        self.colour = colour

    @property
    def transform_dim(self) -> int:
        return 6 if self.colour else 4

    def identity(self) -> torch.Tensor:
        """``t`` of a pair of identical views."""
        return torch.tensor([*rotations.IDENTITY, *([0.0, 0.0] if self.colour else [])])

    def partners(self, idx: torch.Tensor) -> torch.Tensor:
        """A uniformly drawn other view of each sample's instance."""
        count, position = self.count[idx], self.position[idx]
        j = (R.rand(len(idx), device=idx.device) * (count - 1)).long().clamp_max(count - 2)
        return self.order[self.start[idx] + j + (j >= position).long()]

    def transform(self, i1: torch.Tensor, i2: torch.Tensor) -> torch.Tensor:
        """``t`` from sample ``i1`` to sample ``i2`` (module docstring)."""
        t = rotations.relative(self.quaternion[i1], self.quaternion[i2])
        if self.colour:
            shifts = torch.stack(
                (self.hue[i2] - self.hue[i1], self.background_hue[i2] - self.background_hue[i1]), 1
            )
            t = torch.cat((t, torch.remainder(shifts + 0.5, 1.0) - 0.5), 1)
        return t

    def forward(self, x: torch.Tensor, idx: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``([x, x2], t)`` for the batch ``x`` of samples ``idx``."""
        idx = idx.to(self.order.device)
        partner = self.partners(idx)
        return [x, self.to_float(self.images[partner])], self.transform(idx, partner)


def build_pairs(train, to_float: Callable, n_views: int, local_views: int, **options) -> TransformPairs:
    """The ``pairs`` views of a training set (an ``ArrayDataset`` with ``factors``), checked."""
    if n_views != 2 or local_views:
        raise ConfigError(
            f"the 'pairs' views give 2 views (two renders of one object); set data.n_views=2 and "
            f"data.local_views=0 (got {n_views} and {local_views})"
        )
    missing = [k for k in REQUIRED_FACTORS if k not in (train.factors or {})]
    if missing:
        raise ConfigError(
            "the 'pairs' views need data that records each sample's instance, rotation and colours "
            f"(objects3d); this dataset lacks {', '.join(missing)}. Use data.dataset=objects3d, or another "
            "view recipe"
        )
    if not isinstance(train.x, torch.Tensor):
        raise ConfigError("the 'pairs' views need the images in memory; set data.stream=false")
    return TransformPairs(train.x, train.factors, to_float, **options)


def draw_views(
    views: nn.Module, x: torch.Tensor, idx: torch.Tensor
) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """The views of a batch and the transformations between them (None unless the views are pairs)."""
    if isinstance(views, TransformPairs):
        return views(x, idx)
    return [view(x) for view in views], None
