"""Batched torch renderer of unions of axis-aligned primitives: analytic ray casting, orthographic camera.

Why this way. A mesh rasteriser needs meshes and a z-buffer scatter that torch does not vectorise well on
a CPU; sphere tracing needs tens of distance evaluations per ray. A ray meets a box, an ellipsoid or a
finite cylinder in an interval that has a closed form, so one pass gives the exact nearest hit. With an
orthographic camera every ray of an image has the same direction, and its origin is affine in the pixel
coordinates ``(u, v)``; so for one image and one primitive the slab bounds of the interval are affine in
``(u, v)`` and the quadric's discriminant is quadratic in ``(u, v)``. Those coefficients are computed per
(image, primitive) and one matrix product with the pixel features ``(1, u, v, u^2, uv, v^2)`` evaluates them
at every ray of a chunk of images; the rest is a dozen element-wise passes over rays x primitives, with no
Python loop over rays or primitives.

Geometry. Object point -> camera point: ``p_cam = scale * R(q) p_obj + (pos_x, pos_y, 0)``, ``R`` from
:func:`selfsup.rotations.to_matrix`. The camera looks along ``-z``, image ``x`` right and ``y`` up, and shows
``[-HALF_WIDTH, HALF_WIDTH]^2`` (objects at scale 1 lie in the ball of radius 0.95). The ray through pixel
``(u, v)`` is ``p_cam = (u, v, -t)``, so ``t`` is depth (smaller is nearer) for every primitive alike.
Every primitive is the intersection of a quadric ``sum_i m_i ((p_i - c_i) / h_i)^2 <= 1`` over its quadric
axes ``m`` (ellipsoid: all three, cylinder: the two radial ones, box: none) and slabs ``|p_k - c_k| <= h_k``
over its slab axes (box: all three, cylinder: its own axis). The pad type has an empty quadric.

Shading: normal of the constraint the ray enters through (quadric: ``m (p - c) / h^2``; slab: the face),
rotated to the camera by ``R``; colour ``albedo * (0.3 + 0.7 max(0, n . light))``, the light a unit vector in
the camera frame; background a flat colour. Anti-aliasing: 2 x 2 supersampling then average pooling, the
exact box filter of the sub-samples (edges are where aliasing shows; a 3 x 3 grid costs 2.25 times more).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F

from selfsup.data.objects3d.shapes import PAD
from selfsup.errors import ConfigError
from selfsup.rotations import to_matrix

SIZES = (32, 64)
HALF_WIDTH = 1.05  # the view shows [-1.05, 1.05]^2 of the camera's image plane
AMBIENT, DIFFUSE = 0.3, 0.7
#: per type code (PAD, BOX, ELLIPSOID, CYL_X, CYL_Y, CYL_Z): the quadric's axes and the slabs' axes
QUADRIC_AXES = torch.tensor([[0, 0, 0], [0, 0, 0], [1, 1, 1], [0, 1, 1], [1, 0, 1], [1, 1, 0]])
SLAB_AXES = torch.tensor([[0, 0, 0], [1, 1, 1], [0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
_A_MIN = 1e-8  # floor of the quadric's t^2 coefficient: a ray parallel to a cylinder, or no quadric at all
_D_MIN = 1e-6  # floor of |direction| across a slab: a ray parallel to its faces
_FAR = 1e4  # the open bound of an axis without a slab
RAYS_PER_CHUNK = 2**17  # rays rendered at once: 32 images of 32 x 32 with 2 x 2 supersampling (fastest)


def check_size(image_size: int) -> int:
    if image_size not in SIZES:
        raise ConfigError(
            f"objects3d image_size must be one of {', '.join(map(str, SIZES))}, got {image_size!r}."
        )
    return int(image_size)


@functools.lru_cache(maxsize=4)
def pixel_grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ray coordinates ``P x 2`` (``u`` right, ``v`` up; row-major from the top-left pixel centre) of a
    ``size x size`` image, and their features ``P x 6``: ``(1, u, v, u^2, uv, v^2)``."""
    step = 2 * HALF_WIDTH / size
    centres = -HALF_WIDTH + step * (torch.arange(size, dtype=torch.float64) + 0.5)
    v, u = torch.meshgrid(centres.flip(0), centres, indexing="ij")
    u, v = u.reshape(-1), v.reshape(-1)
    feats = torch.stack((torch.ones_like(u), u, v, u * u, u * v, v * v), -1)
    return torch.stack((u, v), -1).float(), feats.float()


def ray_frames(quaternion, position, scale) -> tuple[torch.Tensor, ...]:
    """Per image, the object-frame ray ``p_obj = o + u a_u + v a_v + t d`` of camera pixel ``(u, v)``:
    ``(R, o, a_u, a_v, d)``, float64. ``R^T e_i`` is row ``i`` of ``R``."""
    rot = to_matrix(quaternion.double())
    rows = rot / scale.double()[:, None, None]
    a_u, a_v = rows[:, 0], rows[:, 1]
    pos = position.double()
    return rot, -pos[:, :1] * a_u - pos[:, 1:] * a_v, a_u, a_v, -rows[:, 2]


def _square(lin: torch.Tensor) -> torch.Tensor:
    """The quadratic form ``(c + a u + b v)^2`` as coefficients of ``(1, u, v, u^2, uv, v^2)``."""
    c, a, b = lin.unbind(-1)
    return torch.stack((c * c, 2 * c * a, 2 * c * b, a * a, 2 * a * b, b * b), -1)


def _quadratic(lin: torch.Tensor) -> torch.Tensor:
    return torch.cat((lin, torch.zeros_like(lin)), -1)


def interval_forms(prims: torch.Tensor, o, a_u, a_v, d) -> torch.Tensor:
    """Coefficients ``B x 8 x K x 6`` over ``(1, u, v, u^2, uv, v^2)`` of, per image and primitive:
    the slab bounds ``lo_x, lo_y, lo_z, hi_x, hi_y, hi_z`` (t entering / leaving each slab), the quadric's
    interval centre ``tc`` and squared half-width ``hw2`` (negative: the ray misses)."""
    kind, c, h = prims[..., 0].long(), prims[..., 1:4].double(), prims[..., 4:7].double()
    qm, sm = QUADRIC_AXES[kind].double(), SLAB_AXES[kind].bool()
    ones = torch.ones_like(c)
    off = torch.stack((o[:, None] - c, a_u[:, None] * ones, a_v[:, None] * ones), -1)  # B,K,3 axes,3 terms
    dd = d[:, None] * ones
    dd = torch.where(dd.abs() < _D_MIN, torch.full_like(dd, _D_MIN).copysign(dd), dd)
    mid, half = -off / dd[..., None], (h / dd).abs()
    open_lo = torch.tensor([-_FAR, 0.0, 0.0], dtype=c.dtype)
    lo = torch.where(sm[..., None], mid - _unit(half), open_lo)
    hi = torch.where(sm[..., None], mid + _unit(half), -open_lo)
    on, dn = off * (qm / h)[..., None], dd * qm / h  # the quadric in its unit-sphere coordinates
    a = (dn * dn).sum(-1).clamp_min(_A_MIN)[..., None]
    b = (on * dn[..., None]).sum(-2)  # B,K,3 terms: the ray's t coefficient (half of it)
    cc = _square(on).sum(-2)
    cc[..., 0] += torch.where(kind == PAD, 1.0, -1.0)  # pad: |o''|^2 + 1 > 0 everywhere, never inside
    tc, hw2 = _quadratic(-b / a), (_square(b) - a * cc) / (a * a)
    forms = torch.cat((_quadratic(lo).movedim(2, 1), _quadratic(hi).movedim(2, 1)), 1)  # B,6,K,6
    return torch.cat((forms, tc[:, None], hw2[:, None]), 1)


def _unit(half: torch.Tensor) -> torch.Tensor:
    """``half`` as the constant term of an affine form ``(half, 0, 0)``."""
    return torch.stack((half, torch.zeros_like(half), torch.zeros_like(half)), -1)


def nearest_hit(forms: torch.Tensor, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Depth ``B x P`` (``inf``: background) and index of the nearest primitive hit by every ray."""
    b, q, k, f = forms.shape
    vals = (forms.float().transpose(0, 1).reshape(-1, f) @ feats.T).view(q, b, k, -1)  # rays innermost
    lo = torch.maximum(torch.maximum(vals[0], vals[1]), vals[2])
    hi = torch.minimum(torch.minimum(vals[3], vals[4]), vals[5])
    hw = vals[7].abs().sqrt_().copysign_(vals[7])  # negative where the ray misses: an empty interval
    near = torch.maximum(lo, vals[6] - hw)
    far = torch.minimum(hi, vals[6].add_(hw))
    near.masked_fill_(near > far, float("inf"))
    return near.min(1)


def surface_normals(prims, idx, depth, uv, o, a_u, a_v, d) -> torch.Tensor:
    """Object-frame normals ``B x P x 3`` (not normalised) at the hit points of the primitives ``idx``."""
    kind = prims[..., 0].long()
    table = torch.cat((prims[..., 1:7], QUADRIC_AXES[kind].float(), SLAB_AXES[kind].float()), -1)
    c, h, qm, sm = table.gather(1, idx[..., None].expand(-1, -1, 12)).split(3, -1)  # B,P,3 each
    t = torch.where(torch.isfinite(depth), depth, 0.0)[..., None]
    ray = torch.cat((uv.expand(len(t), -1, -1), t), -1)  # B,P,3: (u, v, t)
    p = torch.baddbmm(o.float()[:, None], ray, torch.stack((a_u, a_v, d), 1).float())
    q = (p - c) / h  # the hit in the primitive's unit coordinates
    radial, slab = (q * q * qm).sum(-1).sqrt_(), q.abs().mul_(sm)
    face = F.one_hot(slab.argmax(-1), 3).float().mul_(torch.sign(q))
    return torch.where((radial >= slab.amax(-1))[..., None], qm * q / h, face)


def render_chunk(prims, quaternion, position, scale, albedo, light, background, size) -> torch.Tensor:
    """Float images ``B x 3 x size x size`` in [0, 1] (no anti-aliasing) of one chunk."""
    uv, feats = pixel_grid(size)
    rot, o, a_u, a_v, d = ray_frames(quaternion, position, scale)
    depth, idx = nearest_hit(interval_forms(prims, o, a_u, a_v, d), feats)
    normal = surface_normals(prims, idx, depth, uv, o, a_u, a_v, d) @ rot.float().transpose(1, 2)
    lambert = (normal * light.float()[:, None]).sum(-1).div_(normal.norm(dim=-1).clamp_min_(1e-12))
    colour = albedo.float()[:, None] * (AMBIENT + DIFFUSE * lambert.clamp_min_(0.0))[..., None]
    colour = torch.where(torch.isfinite(depth)[..., None], colour, background.float()[:, None])
    return colour.transpose(1, 2).reshape(-1, 3, size, size)


def render(
    prims: torch.Tensor,
    quaternion: torch.Tensor,
    position: torch.Tensor,
    scale: torch.Tensor,
    albedo: torch.Tensor,
    light: torch.Tensor,
    background: torch.Tensor,
    image_size: int = 32,
    supersample: int = 2,
    chunk: int | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Render ``N`` objects: uint8 images ``N x 3 x image_size x image_size``.

    ``prims`` ``N x K x 7`` (see :mod:`.shapes`), ``quaternion`` ``N x 4`` (object -> camera, w first),
    ``position`` ``N x 2`` (image-plane offset), ``scale`` ``N``, ``albedo`` and ``background`` ``N x 3``
    RGB in [0, 1], ``light`` ``N x 3`` unit vectors in the camera frame. Rendered ``chunk`` images at a
    time (default: :data:`RAYS_PER_CHUNK` rays) at ``supersample`` times the size, then average-pooled;
    ``on_chunk(n)`` is called after each chunk."""
    size = check_size(image_size)
    if isinstance(supersample, bool) or not isinstance(supersample, int) or not 1 <= supersample <= 4:
        raise ConfigError(
            f"objects3d supersample must be 1, 2, 3 or 4 (rays per pixel side), got {supersample!r}."
        )
    chunk = chunk or max(RAYS_PER_CHUNK // (size * supersample) ** 2, 1)
    out = torch.empty(len(prims), 3, size, size, dtype=torch.uint8)
    for lo in range(0, len(prims), chunk):
        sl = slice(lo, lo + chunk)
        k = max(int((prims[sl, :, 0] != PAD).sum(1).max()), 1)  # drop the chunk's all-pad columns
        img = render_chunk(
            prims[sl, :k],
            quaternion[sl],
            position[sl],
            scale[sl],
            albedo[sl],
            light[sl],
            background[sl],
            size * supersample,
        )
        out[sl] = F.avg_pool2d(img, supersample).mul_(255).round_().clamp_(0, 255).to(torch.uint8)
        if on_chunk is not None:
            on_chunk(len(img))
    return out
