"""The one EMA teacher of BYOL, MoCo and DINO: a momentum copy of some of the model's modules.

``make_teacher(m, ("backbone", "projector"))`` puts frozen copies in ``m.target`` (a ModuleDict, saved with
the model); after every optimiser step ``update_teacher(m, tau)`` moves each teacher parameter to
``tau * teacher + (1 - tau) * online`` and copies the online buffers (BatchNorm statistics), the update of
BYOL (Grill et al. 2020, sec. 3.1), MoCo (He et al. 2020, eq. 2) and DINO (Caron et al. 2021, sec. 3.1).
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn


def ema_momentum(base: float, step: int, total_steps: int) -> float:
    """BYOL's cosine schedule: tau_k = 1 - (1 - base) (cos(pi k / K) + 1) / 2 (Grill et al., sec. 3.2)."""
    return 1.0 - (1.0 - base) * (math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)) + 1) / 2


def make_teacher(m: nn.Module, names: Sequence[str]) -> None:
    """``m.target``: frozen copies of ``m``'s modules ``names``, in that order."""
    m.target = nn.ModuleDict({name: copy.deepcopy(getattr(m, name)) for name in names}).requires_grad_(False)


@torch.no_grad()
def teacher_projection(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The teacher's projection of ``x`` (its backbone, then its projector), without gradient."""
    return m.target["projector"](m.target["backbone"](x))


@torch.no_grad()
def update_teacher(m: nn.Module, tau: float) -> None:
    """One EMA step of ``m.target`` towards the online modules of the same names."""
    names = list(m.target.keys())
    online = [p for name in names for p in getattr(m, name).parameters()]
    teacher = [p for name in names for p in m.target[name].parameters()]
    torch._foreach_lerp_(teacher, online, 1.0 - tau)
    online_buffers = itertools.chain.from_iterable(getattr(m, name).buffers() for name in names)
    for t, o in zip(m.target.buffers(), online_buffers, strict=True):
        t.copy_(o)
