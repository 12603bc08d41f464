"""Unit quaternions for 3-D rotations, batched in torch: the one place for rotation algebra.

Convention: ``q = (w, x, y, z)`` (scalar first), Hamilton product, active rotations of column vectors
(``v' = R(q) v``), and ``q`` and ``-q`` the same rotation; :func:`canonical` picks ``w >= 0``.
Checked against ``scipy.spatial.transform.Rotation`` (scalar last) in ``tests/methods/test_sie.py``.

The objects3d generator records the quaternion that maps an object's frame to the camera's, and the
transformation-aware views give the relative rotation ``r = q2 q1^-1`` (so ``q2 = r q1``, in the camera
frame). SIE's public code uses the body-frame ``q1^-1 q2`` instead; both determine each other given ``q1``.
"""

from __future__ import annotations

import torch


def multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product ``a b`` of quaternions ``... x 4`` (the rotation ``b`` first, then ``a``)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        (
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ),
        -1,
    )


def conjugate(q: torch.Tensor) -> torch.Tensor:
    """``q^-1`` of unit quaternions."""
    return q * q.new_tensor([1.0, -1.0, -1.0, -1.0])


def canonical(q: torch.Tensor) -> torch.Tensor:
    """Unit quaternions with ``w >= 0`` (``q`` and ``-q`` are one rotation; a regression target must pick)."""
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def relative(q1: torch.Tensor, q2: torch.Tensor) -> torch.Tensor:
    """The rotation ``r`` with ``q2 = r q1``: ``r = q2 q1^-1``, canonical."""
    return canonical(multiply(q2, conjugate(q1)))


def to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``... x 3 x 3`` of unit quaternions ``... x 4``."""
    w, x, y, z = (q / q.norm(dim=-1, keepdim=True)).unbind(-1)
    rows = (
        (1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)),
        (2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)),
        (2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)),
    )
    return torch.stack([torch.stack(r, -1) for r in rows], -2)


def axis_angle(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Quaternions of rotations by ``angle`` (radians, ``...``) about unit ``axis`` (``... x 3``)."""
    half = angle[..., None] / 2
    axis = axis / axis.norm(dim=-1, keepdim=True)
    return torch.cat((torch.cos(half), torch.sin(half) * axis), -1)


def from_euler_xyz(angles: torch.Tensor) -> torch.Tensor:
    """Extrinsic x-y-z Tait-Bryan angles ``... x 3`` (rotate about the fixed x axis, then y, then z; the
    3DIEBench convention, scipy's ``from_euler("xyz")``) as canonical quaternions."""
    eye = torch.eye(3, dtype=angles.dtype, device=angles.device)
    qx, qy, qz = (axis_angle(eye[i].expand(*angles.shape[:-1], 3), angles[..., i]) for i in range(3))
    return canonical(multiply(qz, multiply(qy, qx)))


IDENTITY = (1.0, 0.0, 0.0, 0.0)
