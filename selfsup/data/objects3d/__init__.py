"""objects3d: a procedural 3-D object benchmark rendered in torch (an offline 3DIEBench).

Twelve classes of objects built from boxes, ellipsoids and cylinders (:mod:`.shapes`), ray cast by a
batched orthographic renderer (:mod:`.render`) under recorded factors of variation: rotation, position,
scale, object hue, background hue and light direction (:mod:`.generate`); cached and split by instance
(:mod:`.loader`).

>>> splits = load_dataset("objects3d", classes=3, instances=4, views=5)   # 60 images, 32 x 32
>>> splits.train.factors["quaternion"]            # the rotation object -> camera of every image
>>> shapes = make_shapes(3, 4, seed=0)            # re-render the same instances, one factor changed:
>>> f = dict(splits.train.factors, light=torch.tensor([0.0, 0.0, 1.0]).expand(len(splits.train), 3))
>>> images = render_views(shapes, f, image_size=32)
"""

from selfsup.data.objects3d.generate import (
    CANONICAL_FACTORS,
    DEFAULT_FACTORS,
    FACTOR_NAMES,
    canonical_pose,
    hsv_to_rgb,
    render_views,
    resolve_factors,
    sample_factors,
)
from selfsup.data.objects3d.loader import GENERATOR_VERSION, generate, load_objects3d, split_instances
from selfsup.data.objects3d.render import SIZES, render
from selfsup.data.objects3d.shapes import CLASSES, make_shapes

__all__ = [
    "CANONICAL_FACTORS",
    "CLASSES",
    "DEFAULT_FACTORS",
    "FACTOR_NAMES",
    "GENERATOR_VERSION",
    "SIZES",
    "canonical_pose",
    "generate",
    "hsv_to_rgb",
    "load_objects3d",
    "make_shapes",
    "render",
    "render_views",
    "resolve_factors",
    "sample_factors",
    "split_instances",
]
