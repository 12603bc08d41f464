"""The objects3d classes: each object is a union of axis-aligned primitives in its own frame.

A primitive is a row ``(type, cx, cy, cz, hx, hy, hz)``: a type code, a centre and half-extents. Types:
``BOX``; ``ELLIPSOID`` (semi-axes ``h``); ``CYL_X``/``CYL_Y``/``CYL_Z``, a finite elliptic cylinder along
that axis (half-length ``h`` on the axis, radii ``h`` on the other two); ``PAD`` fills the rows of an
object with fewer primitives than the tensor has and never hits a ray (see :mod:`.render`).

Frame: ``+y`` up, ``+x`` the object's length (the car's front, the table's drawer side), ``+z`` its front
(a chair's backrest is at ``-z``). Every instance is centred on its bounding box and scaled so that its
bounding boxes fit in a ball of radius :data:`RADIUS`, so scale 1 fits the view. Proportions vary per
instance (a ``numpy`` Generator seeded per instance). No class is rotation-symmetric: each has a part that
no rotation maps onto the rest (a drawer on one side, a cabin offset to the back, a handle, a tail fin...),
so the rotation of every view is identifiable from the image.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

PAD, BOX, ELLIPSOID, CYL_X, CYL_Y, CYL_Z = range(6)
RADIUS = 0.95  # instances fit in this ball (the view's half-width is 1.05)

Row = tuple[float, ...]


def box(c, h) -> Row:
    return (BOX, *c, *h)


def ellipsoid(c, h) -> Row:
    return (ELLIPSOID, *c, *h)


def cylinder(axis: str, c, h) -> Row:
    """Finite cylinder along ``axis`` ('x', 'y' or 'z'): ``h`` holds the half-length on that axis and the
    radii on the other two."""
    return ({"x": CYL_X, "y": CYL_Y, "z": CYL_Z}[axis], *c, *h)


def chair(g: np.random.Generator) -> list[Row]:
    w, d, leg_h = g.uniform(0.8, 1.1), g.uniform(0.8, 1.1), g.uniform(0.8, 1.1)
    seat_t, back_h, leg = g.uniform(0.08, 0.14), g.uniform(0.8, 1.3), g.uniform(0.05, 0.08)
    top = leg_h + seat_t
    rows = [box((0, leg_h + seat_t / 2, 0), (w / 2, seat_t / 2, d / 2))]
    rows += [
        box((sx * (w / 2 - leg), leg_h / 2, sz * (d / 2 - leg)), (leg, leg_h / 2, leg)) for sx, sz in _CORNERS
    ]
    return rows + [box((0, top + back_h / 2, -d / 2 + 0.05), (w / 2, back_h / 2, 0.05))]


def table(g: np.random.Generator) -> list[Row]:
    w, d, h = g.uniform(1.5, 2.0), g.uniform(0.8, 1.2), g.uniform(0.9, 1.2)
    t, leg, dh = g.uniform(0.07, 0.11), g.uniform(0.05, 0.08), g.uniform(0.15, 0.25)
    legs = [
        cylinder("y", (sx * (w / 2 - 2 * leg), (h - t) / 2, sz * (d / 2 - 2 * leg)), (leg, (h - t) / 2, leg))
        for sx, sz in _CORNERS
    ]
    drawer_x, drawer_y, front = w * g.uniform(0.15, 0.25), h - t - dh / 2, d / 2 - leg
    return [
        box((0, h - t / 2, 0), (w / 2, t / 2, d / 2)),
        *legs,
        box((drawer_x, drawer_y, 0), (w * 0.18, dh / 2, front)),  # a drawer under one half
        ellipsoid((drawer_x, drawer_y, front), (0.06, 0.04, 0.05)),  # its knob
    ]


def car(g: np.random.Generator) -> list[Row]:
    length, width, body_h = g.uniform(1.8, 2.4), g.uniform(0.8, 1.0), g.uniform(0.35, 0.5)
    wheel, cab_h, cab_l = g.uniform(0.2, 0.27), g.uniform(0.3, 0.42), length * g.uniform(0.22, 0.3)
    y0 = wheel * 0.7
    wheels = [
        cylinder("z", (sx * length * 0.31, wheel, sz * width / 2), (wheel, wheel, 0.09))
        for sx, sz in _CORNERS
    ]
    return [
        box((0, y0 + body_h / 2, 0), (length / 2, body_h / 2, width / 2)),
        box((-length * g.uniform(0.1, 0.18), y0 + body_h + cab_h / 2, 0), (cab_l, cab_h / 2, width * 0.42)),
        *wheels,
        ellipsoid((length / 2, y0 + body_h * 0.6, 0), (0.05, body_h * 0.2, width * 0.35)),  # front bumper
    ]


def airplane(g: np.random.Generator) -> list[Row]:
    length, r, span = g.uniform(1.8, 2.2), g.uniform(0.12, 0.17), g.uniform(1.6, 2.1)
    chord, fin_h, wx = g.uniform(0.25, 0.4), g.uniform(0.3, 0.45), length * g.uniform(-0.02, 0.08)
    tail = -length * 0.42
    return [
        ellipsoid((0, 0, 0), (length / 2, r, r)),
        box((wx, -r * 0.3, 0), (chord / 2, 0.03, span / 2)),
        box((tail, 0, 0), (0.1, 0.02, span * 0.2)),
        box((tail - 0.03, r * 0.5 + fin_h / 2, 0), (0.13, fin_h / 2, 0.025)),  # tail fin, up
        cylinder("x", (wx + 0.05, -r * 0.9, span * 0.22), (chord * 0.4, 0.06, 0.06)),  # engines
        cylinder("x", (wx + 0.05, -r * 0.9, -span * 0.22), (chord * 0.4, 0.06, 0.06)),
    ]


def mug(g: np.random.Generator) -> list[Row]:
    r, h, hw, t = g.uniform(0.35, 0.5), g.uniform(0.75, 1.1), g.uniform(0.2, 0.3), 0.06
    top, bottom = h * g.uniform(0.75, 0.85), h * g.uniform(0.2, 0.3)
    return [
        cylinder("y", (0, h / 2, 0), (r, h / 2, r)),
        cylinder("y", (0, 0.03, 0), (r * 1.08, 0.03, r * 1.08)),  # foot
        box((r + hw / 2, top, 0), (hw / 2, t / 2, t)),  # handle, on +x
        box((r + hw / 2, bottom, 0), (hw / 2, t / 2, t)),
        box((r + hw, (top + bottom) / 2, 0), (t / 2, (top - bottom) / 2 + t / 2, t)),
    ]


def lamp(g: np.random.Generator) -> list[Row]:
    rb, pole_h, arm = g.uniform(0.28, 0.38), g.uniform(1.0, 1.4), g.uniform(0.5, 0.8)
    shade_r, shade_h = g.uniform(0.2, 0.28), g.uniform(0.1, 0.15)
    px = -rb * 0.5  # the pole stands off-centre, the arm reaches over the base's far side
    top = 0.08 + pole_h
    return [
        cylinder("y", (0, 0.04, 0), (rb, 0.04, rb)),
        cylinder("y", (px, 0.08 + pole_h / 2, 0), (0.04, pole_h / 2, 0.04)),
        box((px + arm / 2, top, 0), (arm / 2, 0.035, 0.035)),
        ellipsoid((px + arm, top - shade_h * 0.5, 0), (shade_r, shade_h, shade_r)),  # shade
        ellipsoid((px, top, 0), (0.06, 0.06, 0.06)),  # joint
    ]


def sofa(g: np.random.Generator) -> list[Row]:
    w, d, seat_h = g.uniform(1.8, 2.4), g.uniform(0.8, 1.0), g.uniform(0.35, 0.45)
    back_h, arm_h, arm_w, bt = g.uniform(0.4, 0.6), g.uniform(0.15, 0.3), g.uniform(0.12, 0.18), 0.22
    arms = [
        box((sx * (w / 2 - arm_w / 2), seat_h + arm_h / 2, 0), (arm_w / 2, arm_h / 2, d / 2))
        for sx in (-1, 1)
    ]
    cushion = (w / 2 - arm_w) / 2
    return [
        box((0, seat_h / 2, 0), (w / 2, seat_h / 2, d / 2)),
        box((0, seat_h + back_h / 2, -d / 2 + bt / 2), (w / 2, back_h / 2, bt / 2)),  # backrest
        *arms,
        *[
            box((sx * cushion, seat_h + 0.05, bt / 2), (cushion * 0.95, 0.05, d / 2 - bt / 2))
            for sx in (-1, 1)
        ],
    ]


def guitar(g: np.random.Generator) -> list[Row]:
    a1, t, neck = g.uniform(0.38, 0.46), g.uniform(0.09, 0.12), g.uniform(0.75, 0.95)
    a2 = a1 * g.uniform(0.7, 0.8)
    y_up = a1 * 1.05 + a2 * 0.5
    y_neck = y_up + a2 * 0.6 + neck / 2
    y_head = y_up + a2 * 0.6 + neck + 0.1
    return [
        ellipsoid((0, 0, 0), (a1, a1 * 1.05, t)),  # lower lobe
        ellipsoid((0, y_up, 0), (a2, a2, t)),  # upper lobe
        box((0, y_neck, t * 0.3), (0.05, neck / 2, 0.035)),
        box((0.02, y_head, t * 0.3), (0.08, 0.1, 0.03)),  # head
        cylinder("x", (0.12, y_head + 0.02, t * 0.3), (0.04, 0.02, 0.02)),  # tuning pegs, one side
        box((0, -a1 * 0.35, t * 0.95), (a1 * 0.35, 0.035, 0.03)),  # bridge, on the front
    ]


def boat(g: np.random.Generator) -> list[Row]:
    length, width, hull_h = g.uniform(1.8, 2.2), g.uniform(0.5, 0.7), g.uniform(0.25, 0.35)
    cab_l, cab_h, mast_h = g.uniform(0.35, 0.5), g.uniform(0.2, 0.3), g.uniform(0.8, 1.2)
    mast_x = length * g.uniform(0.0, 0.1)
    deck = hull_h / 2
    return [
        box((-length * 0.1, 0, 0), (length * 0.4, hull_h / 2, width / 2)),
        ellipsoid((length * 0.3, 0, 0), (length * 0.2, hull_h / 2, width / 2)),  # bow, pointed front
        box((-length * 0.3, deck + cab_h / 2, 0), (cab_l / 2, cab_h / 2, width * 0.35)),  # cabin, aft
        cylinder("y", (mast_x, deck + mast_h / 2, 0), (0.03, mast_h / 2, 0.03)),
        box((mast_x - 0.22, deck + mast_h * 0.55, 0), (0.2, mast_h * 0.38, 0.01)),  # sail, behind the mast
    ]


def bed(g: np.random.Generator) -> list[Row]:
    length, width, frame_h = g.uniform(1.8, 2.2), g.uniform(1.0, 1.5), g.uniform(0.25, 0.35)
    matt, head_h, foot_h = g.uniform(0.12, 0.2), g.uniform(0.8, 1.1), g.uniform(0.35, 0.5)
    top = frame_h + matt
    return [
        box((0, frame_h / 2, 0), (length / 2, frame_h / 2, width / 2)),
        box((0, frame_h + matt / 2, 0), (length / 2 * 0.97, matt / 2, width / 2 * 0.97)),
        box((-length / 2 - 0.04, head_h / 2, 0), (0.04, head_h / 2, width / 2)),  # headboard
        box((length / 2 + 0.03, foot_h / 2, 0), (0.03, foot_h / 2, width / 2)),  # footboard
        ellipsoid((-length / 2 + 0.25, top + 0.05, 0), (0.15, 0.07, width * 0.3)),  # pillow
    ]


def bookshelf(g: np.random.Generator) -> list[Row]:
    w, h, d, t = g.uniform(0.8, 1.2), g.uniform(1.4, 2.0), g.uniform(0.3, 0.42), 0.04
    plinth, n_shelves, book_h = g.uniform(0.09, 0.14), int(g.integers(2, 4)), g.uniform(0.15, 0.25)
    shelf_y = np.linspace(plinth, h - t, n_shelves + 2)[1:-1]
    rows = [
        box((0, h / 2, -d / 2 + t / 2), (w / 2, h / 2, t / 2)),  # back panel
        *[box((sx * (w / 2 - t / 2), h / 2, 0), (t / 2, h / 2, d / 2)) for sx in (-1, 1)],
        box((0, h - t / 2, 0), (w / 2, t / 2, d / 2)),
        box((0, plinth / 2, 0), (w / 2, plinth / 2, d / 2)),  # plinth, thicker than the top
        *[box((0, y, 0), (w / 2, t / 2, d / 2)) for y in shelf_y],
    ]
    return rows + [box((-w * 0.2, plinth + book_h / 2, 0), (w * 0.22, book_h / 2, d * 0.4))]  # books


def teapot(g: np.random.Generator) -> list[Row]:
    r, spout = g.uniform(0.42, 0.52), g.uniform(0.3, 0.45)
    bh = r * g.uniform(0.75, 0.9)
    return [
        ellipsoid((0, bh, 0), (r, bh, r)),
        cylinder("y", (0, 2 * bh - 0.05, 0), (r * 0.45, 0.04, r * 0.45)),  # lid
        ellipsoid((0, 2 * bh + 0.02, 0), (0.07, 0.06, 0.07)),  # knob
        cylinder("x", (r + spout / 2 - 0.12, bh * 1.2, 0), (spout / 2, 0.05, 0.05)),  # spout, +x, raised
        box((-r - 0.1, bh * 1.3, 0), (0.12, 0.04, 0.05)),  # handle, -x
        box((-r - 0.18, bh, 0), (0.04, bh * 0.34, 0.05)),
        box((-r - 0.1, bh * 0.7, 0), (0.12, 0.04, 0.05)),
    ]


_CORNERS = ((-1, -1), (-1, 1), (1, -1), (1, 1))

BUILDERS: dict[str, Callable[[np.random.Generator], list[Row]]] = {
    f.__name__: f
    for f in (chair, table, car, airplane, mug, lamp, sofa, guitar, boat, bed, bookshelf, teapot)
}
CLASSES: tuple[str, ...] = tuple(BUILDERS)


def fit_unit_ball(rows: list[Row]) -> np.ndarray:
    """The primitives as a ``k x 7`` array, centred on their bounding box and scaled so that every
    primitive's bounding box lies in the ball of radius :data:`RADIUS`."""
    a = np.asarray(rows, dtype=np.float64)
    lo, hi = (a[:, 1:4] - a[:, 4:7]).min(0), (a[:, 1:4] + a[:, 4:7]).max(0)
    a[:, 1:4] -= (lo + hi) / 2
    radius = np.linalg.norm(np.abs(a[:, 1:4]) + a[:, 4:7], axis=1).max()
    a[:, 1:7] *= RADIUS / radius
    return a


def make_shapes(classes: int, instances: int, seed: int) -> torch.Tensor:
    """Primitives of ``classes x instances`` objects, class-major (global instance id
    ``class * instances + i``): a float32 tensor ``n x K x 7`` padded with :data:`PAD` rows.

    Instance ``i`` of class ``c`` draws its proportions from ``numpy.random.default_rng((seed, c, i))``,
    so it is the same object whatever the number of instances or classes."""
    objects = [
        fit_unit_ball(BUILDERS[name](np.random.default_rng((int(seed), c, i))))
        for c, name in enumerate(CLASSES[:classes])
        for i in range(instances)
    ]
    k = max(len(o) for o in objects)
    out = np.zeros((len(objects), k, 7), dtype=np.float32)
    out[:, :, 4:7] = 1.0  # pad rows: type PAD, unit extents (never hit, harmless to divide by)
    for n, o in enumerate(objects):
        out[n, : len(o)] = o
    return torch.from_numpy(out)
