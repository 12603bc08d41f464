"""Controlled test sets: the same objects with every factor canonical, or with one factor varied.

The "robustness limits" protocol (Ibrahim, Garrido, Morcos, Bouchacourt 2022) asks how much accuracy a
representation loses when one factor of variation (pose, position, size, background, lighting, colour)
changes at test time. :func:`controlled_set` renders the instances of a generated objects3d dataset (same
generator parameters, hence the same shapes) with every factor at its canonical value
(:data:`~selfsup.data.objects3d.generate.CANONICAL_FACTORS`: the 3/4 pose, centred, scale 1, orange object
on a light-blue background, light along the view axis), except, optionally, one factor drawn from its
:data:`VARIED` range. The factors of an image come from per-factor random streams, so a factor's set differs
from the canonical set in that factor only (``tests/test_robustness.py`` checks the recorded factors).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from selfsup.data.objects3d.generate import CANONICAL_FACTORS, render_views, sample_factors
from selfsup.data.objects3d.shapes import make_shapes
from selfsup.errors import unknown_name

#: factor -> (the generator's option, the range it is drawn from when varied). Pose: 3DIEBench's angles;
#: position: up to a quarter of the half view (objects stay mostly in view); size: 0.4-1 of the canonical
#: scale; background and colour: every hue; lighting: up to 60 degrees from the view axis.
VARIED: dict[str, tuple[str, float | tuple[float, float]]] = {
    "pose": ("rotation", math.pi / 2),
    "position": ("position", 0.25),
    "size": ("scale", (0.4, 1.0)),
    "background": ("background", (0.0, 1.0)),
    "lighting": ("light", math.pi / 3),
    "colour": ("hue", (0.0, 1.0)),
}


def factor_ranges(factor: str | None) -> dict:
    """The generator's ``factors`` option of the canonical set (None) or of ``factor``'s set."""
    ranges = dict(CANONICAL_FACTORS)
    if factor is not None:
        if factor not in VARIED:
            raise unknown_name("controlled factor", factor, VARIED)
        option, varied = VARIED[factor]
        ranges[option] = varied
    return ranges


def controlled_set(
    params: dict, instance_ids: torch.Tensor, factor: str | None = None, views: int = 1
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Images (uint8), class labels and factors of ``views`` renders of each instance in ``instance_ids``.

    ``params``: the dataset's generator parameters (``info["manifest"]["parameters"]`` of objects3d:
    ``data_seed``, ``classes``, ``instances``, ``image_size``); ``factor``: None for the canonical set (its
    views are identical; one is enough), else a key of :data:`VARIED`."""
    classes, instances, seed = params["classes"], params["instances"], params["data_seed"]
    f = sample_factors(classes, instances, views, seed, factor_ranges(factor))
    keep = torch.from_numpy(np.isin(f["instance"].numpy(), np.asarray(instance_ids)))
    f = {k: v[keep] for k, v in f.items()}
    x = render_views(make_shapes(classes, instances, seed), f, params["image_size"])
    return x, f["instance"] // instances, f
