"""objects3d factors of variation, drawn per view, and the images rendered from them.

Every image records its factors (:func:`sample_factors`), and :func:`render_views` renders from nothing
but those factors and the instances' primitives, so a caller can render the same instances with one factor
changed (the robustness study: a canonical set, then one factor varied at a time).

Factors, following 3DIEBench's generator (extrinsic x-y-z Tait-Bryan angles, each U[-pi/2, pi/2]; light
theta U[0, pi/4] from the camera axis, phi U[0, 2 pi]; hues U[0, 1]), each a range set by the ``factors``
option (defaults :data:`DEFAULT_FACTORS`, canonical values :data:`CANONICAL_FACTORS`):

- ``rotation``: max |angle| (radians) of the three angles; the applied, recorded rotation (object ->
  camera) is ``q = from_euler_xyz(angles) * q0``, ``q0`` the 3/4 canonical pose :func:`canonical_pose`
  (so 0 gives ``q0``);
- ``position``: max |offset| of the image-plane position, each coordinate uniform (0: centred);
- ``scale``: ``[lo, hi]`` uniform (or one number: fixed; 1 fits the view);
- ``hue``: ``[lo, hi]`` uniform object hue (HSV with saturation 0.7, value 0.9), or one number;
- ``background``: ``[lo, hi]`` uniform background hue (saturation 0.35, value 0.8), or one number;
- ``light``: max angle theta (radians) of the light from the view axis, phi uniform (0: along the view).

The draws of instance ``i`` of class ``c`` come from ``numpy.random.default_rng((seed, c, i, f))``, one
stream per factor ``f``: an instance's first views do not depend on how many views or instances there are.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from rich.progress import Progress

from selfsup.data.objects3d.render import render
from selfsup.data.objects3d.shapes import CLASSES
from selfsup.errors import ConfigError, SelfsupError, unknown_name
from selfsup.rotations import axis_angle, canonical, from_euler_xyz, multiply

CANONICAL_ELEVATION, CANONICAL_AZIMUTH = 20.0, 30.0  # degrees: q0 shows the top, the front and the +x side
OBJECT_SV, BACKGROUND_SV = (0.7, 0.9), (0.35, 0.8)  # HSV saturation and value of objects, backgrounds
CANONICAL_HUE, CANONICAL_BACKGROUND_HUE = 0.08, 0.58  # orange on light blue
DEFAULT_FACTORS: dict[str, float | tuple[float, float]] = {
    "rotation": math.pi / 2,
    "position": 0.0,
    "scale": (1.0, 1.0),
    "hue": (0.0, 1.0),
    "background": (0.0, 1.0),
    "light": math.pi / 4,
}
CANONICAL_FACTORS: dict[str, float | tuple[float, float]] = {
    "rotation": 0.0,
    "position": 0.0,
    "scale": (1.0, 1.0),
    "hue": (CANONICAL_HUE, CANONICAL_HUE),
    "background": (CANONICAL_BACKGROUND_HUE, CANONICAL_BACKGROUND_HUE),
    "light": 0.0,
}
#: the per-image factors, in the order they are stored (instance and view int64, the rest float32)
FACTOR_NAMES = (
    "instance",
    "view",
    "quaternion",
    "position",
    "scale",
    "hue",
    "light",
    "background",
    "background_hue",
)


def canonical_pose() -> torch.Tensor:
    """``q0`` (float64, w first): turn the object by the azimuth about its up axis (its +x side towards the
    camera), then tilt it by the elevation about the camera's x axis (its top towards the camera)."""
    eye = torch.eye(3, dtype=torch.float64)
    turn = axis_angle(eye[1], eye.new_tensor(-math.radians(CANONICAL_AZIMUTH)))
    tilt = axis_angle(eye[0], eye.new_tensor(math.radians(CANONICAL_ELEVATION)))
    return canonical(multiply(tilt, turn))


def _number(name: str, value, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise ConfigError(f"objects3d factor '{name}' must be a number in [{lo:g}, {hi:g}], got {value!r}.")
    return float(value)


def _range(name: str, value, lo: float, hi: float) -> tuple[float, float]:
    """A ``[lo, hi]`` pair (or one number: a fixed value) inside ``[lo, hi]``."""
    pair = [value, value] if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    if not isinstance(pair, (list, tuple)) or len(pair) != 2:
        raise ConfigError(f"objects3d factor '{name}' must be a number or a pair [low, high], got {value!r}.")
    a, b = (_number(name, v, lo, hi) for v in pair)
    if a > b:
        raise ConfigError(f"objects3d factor '{name}' must be [low, high] with low <= high, got {value!r}.")
    return a, b


#: the accepted values of each factor option: (low, high) of the number, or of both ends of a range
FACTOR_BOUNDS = {
    "rotation": (0.0, math.pi),
    "position": (0.0, 1.0),
    "scale": (0.05, 2.0),
    "hue": (-1.0, 2.0),
    "background": (-1.0, 2.0),
    "light": (0.0, math.pi / 2),
}


def resolve_factors(factors: dict | None) -> dict[str, float | tuple[float, float]]:
    """:data:`DEFAULT_FACTORS` updated by ``factors``, validated; unknown names raise with a did-you-mean."""
    if factors is not None and not isinstance(factors, dict):
        raise ConfigError(
            f"objects3d factors must be a mapping such as {{'rotation': 0.5}}, got {factors!r}."
        )
    out = dict(DEFAULT_FACTORS)
    for name, value in (factors or {}).items():
        if name not in DEFAULT_FACTORS:
            raise unknown_name("objects3d factor", str(name), DEFAULT_FACTORS)
        check = _range if isinstance(DEFAULT_FACTORS[name], tuple) else _number
        out[name] = check(name, value, *FACTOR_BOUNDS[name])
    return out


def check_counts(classes: int, instances: int, views: int) -> None:
    n = len(CLASSES)
    if isinstance(classes, bool) or not isinstance(classes, int) or not 2 <= classes <= n:
        raise ConfigError(f"objects3d has {n} classes; classes must be 2..{n}, got {classes!r}.")
    for name, value in (("instances", instances), ("views", views)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"objects3d {name} must be a positive integer, got {value!r}.")


def _draw_instance(key: tuple[int, int, int], views: int, f: dict) -> list[np.ndarray]:
    """The draws of instance ``key = (seed, class, i)``, one stream each: angles, position, scale, hue,
    background hue, light theta, light phi."""
    g = [np.random.default_rng((*key, stream)) for stream in range(7)]
    rot, pos = f["rotation"], f["position"]
    return [
        g[0].uniform(-rot, rot, (views, 3)),
        g[1].uniform(-pos, pos, (views, 2)),
        g[2].uniform(*f["scale"], views),
        g[3].uniform(*f["hue"], views),
        g[4].uniform(*f["background"], views),
        g[5].uniform(0.0, f["light"], views),
        g[6].uniform(0.0, 2 * math.pi, views),
    ]


def hsv_to_rgb(hue: torch.Tensor, saturation: float, value: float) -> torch.Tensor:
    """RGB ``... x 3`` in [0, 1] of hues ``...`` (taken modulo 1) at a fixed saturation and value."""
    k = (torch.tensor([5.0, 3.0, 1.0], dtype=hue.dtype) + hue[..., None].remainder(1.0) * 6) % 6
    return value - value * saturation * torch.minimum(k, 4 - k).clamp(0.0, 1.0)


def sample_factors(
    classes: int, instances: int, views: int, seed: int = 0, factors: dict | None = None
) -> dict[str, torch.Tensor]:
    """The factors of ``classes x instances x views`` images, class-major then instance then view: a dict
    of tensors with one row per image (see :data:`FACTOR_NAMES`; ``quaternion`` ``N x 4`` canonical,
    ``position`` ``N x 2``, ``light`` ``N x 3`` unit, ``background`` ``N x 3`` RGB)."""
    check_counts(classes, instances, views)
    f = resolve_factors(factors)
    draws = [_draw_instance((int(seed), c, i), views, f) for c in range(classes) for i in range(instances)]
    angles, pos, scale, hue, bg_hue, theta, phi = (
        torch.from_numpy(np.concatenate(d)) for d in zip(*draws, strict=True)
    )
    quat = canonical(multiply(from_euler_xyz(angles), canonical_pose().expand(len(angles), 4)))
    light = torch.stack((theta.sin() * phi.cos(), theta.sin() * phi.sin(), theta.cos()), -1)
    n_inst = classes * instances
    out = {
        "instance": torch.arange(n_inst, dtype=torch.int64).repeat_interleave(views),
        "view": torch.arange(views, dtype=torch.int64).repeat(n_inst),
        "quaternion": quat,
        "position": pos,
        "scale": scale,
        "hue": hue.remainder(1.0),
        "light": light,
        "background": hsv_to_rgb(bg_hue.remainder(1.0), *BACKGROUND_SV),
        "background_hue": bg_hue.remainder(1.0),
    }
    return {k: v if v.dtype == torch.int64 else v.float() for k, v in out.items()}


def labels_of(classes: int, instances: int, views: int) -> torch.Tensor:
    """Class labels (int64) of :func:`sample_factors`' images."""
    return torch.arange(classes, dtype=torch.int64).repeat_interleave(instances * views)


def render_views(
    shapes: torch.Tensor,
    factors: dict[str, torch.Tensor],
    image_size: int = 32,
    supersample: int = 2,
    progress: bool = False,
) -> torch.Tensor:
    """uint8 images ``N x 3 x H x W`` of the instances ``shapes[factors["instance"]]`` (``shapes`` from
    :func:`~selfsup.data.objects3d.shapes.make_shapes`) under ``factors``: ``quaternion``, ``position``,
    ``scale``, ``hue``, ``light`` and ``background_hue`` are used (``background`` RGB, ``view`` are records).
    ``progress`` shows a rich progress bar."""
    need = ("instance", "quaternion", "position", "scale", "hue", "light", "background_hue")
    missing = [k for k in need if k not in factors]
    if missing:
        raise SelfsupError(f"render_views needs the factors {', '.join(need)}; missing {', '.join(missing)}.")
    n = len(factors["instance"])
    if any(len(factors[k]) != n for k in need):
        raise SelfsupError("render_views: every factor must have one row per image.")
    inst = factors["instance"].long()
    if n and (inst.min() < 0 or inst.max() >= len(shapes)):
        raise SelfsupError(f"render_views: instance ids must lie in [0, {len(shapes)}), the shapes given.")
    args = (
        shapes[inst],
        factors["quaternion"],
        factors["position"],
        factors["scale"],
        hsv_to_rgb(factors["hue"].float(), *OBJECT_SV),
        factors["light"],
        hsv_to_rgb(factors["background_hue"].float(), *BACKGROUND_SV),
    )
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("objects3d: rendering", total=n)
        return render(
            *args, image_size=image_size, supersample=supersample, on_chunk=lambda k: bar.advance(task, k)
        )
