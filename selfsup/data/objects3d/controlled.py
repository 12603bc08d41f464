"""Controlled test sets: the same objects with every factor canonical, or with one factor varied.

The "robustness limits" protocol (Ibrahim, Garrido, Morcos, Bouchacourt 2022) asks how much accuracy a
representation loses when one factor of variation (pose, position, size, background, lighting, colour)
changes at test time. :func:`controlled_set` renders the instances of a generated objects3d dataset (same
generator parameters, hence the same shapes) with every factor at its canonical value
(:data:`~selfsup.data.objects3d.generate.CANONICAL_FACTORS`: the 3/4 pose, centred, scale 1, orange object
on a light-blue background, light along the view axis), except, optionally, one factor drawn from its
:data:`VARIED` range. The factors of an image come from per-factor random streams, so a factor's set differs
from the canonical set in that factor only (checked on the recorded factors in
``tests/evaluate/test_robustness.py``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from selfsup.data.objects3d.generate import CANONICAL_FACTORS, render_views, sample_factors
from selfsup.data.objects3d.shapes import make_shapes
from selfsup.errors import ConfigError, unknown_name

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


#: ``data.load_args.diversity`` of objects3d: training data canonical but for ``factor``, varied for a
#: ``fraction`` of the images, of every class or only of the first half of the classes (``classes: half``).
DIVERSITY_DEFAULTS = {"factor": "pose", "fraction": 1.0, "classes": "all"}


def check_diversity(diversity: dict) -> dict:
    """``diversity`` completed with :data:`DIVERSITY_DEFAULTS` and checked (did-you-mean on names)."""
    if not isinstance(diversity, dict):
        raise ConfigError(
            f"objects3d diversity must be a mapping such as {{factor: pose, fraction: 0.5}}, "
            f"got {diversity!r}"
        )
    for key in diversity:
        if key not in DIVERSITY_DEFAULTS:
            raise unknown_name("objects3d diversity option", str(key), DIVERSITY_DEFAULTS)
    d = {**DIVERSITY_DEFAULTS, **diversity}
    factor_ranges(d["factor"])  # a known factor
    p = d["fraction"]
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
        raise ConfigError(f"objects3d diversity fraction must be in [0, 1], got {p!r}")
    if d["classes"] not in ("all", "half"):
        raise ConfigError(f"objects3d diversity classes must be 'all' or 'half', got {d['classes']!r}")
    return d


def diverse_factors(classes: int, instances: int, views: int, seed: int, diversity: dict) -> dict:
    """Factors of a training set that is canonical except ``diversity["factor"]``, drawn from its
    :data:`VARIED` range for a seeded ``fraction`` of the images (of the first ``classes // 2`` classes only
    with ``classes: half``). The extra factor ``varied`` (int64, 0/1) records which images vary."""
    d = check_diversity(diversity)
    base = sample_factors(classes, instances, views, seed, factor_ranges(None))
    varied = sample_factors(classes, instances, views, seed, factor_ranges(d["factor"]))
    n = len(base["instance"])
    chosen = torch.from_numpy(np.random.default_rng((int(seed), 2)).random(n) < d["fraction"])
    if d["classes"] == "half":
        chosen &= base["instance"] // instances < classes // 2
    out = {k: torch.where(chosen.view(-1, *[1] * (v.ndim - 1)), varied[k], v) for k, v in base.items()}
    return {**out, "varied": chosen.long()}
