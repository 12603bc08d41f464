"""Self-distillation: a predictor on one view's projection regresses another view's projection taken
without gradient, from an EMA target network (BYOL) or the online network itself (SimSiam)."""

from __future__ import annotations

import itertools

import torch

from selfsup import criteria
from selfsup.methods.ema import make_teacher, teacher_projection
from selfsup.methods.kind import HeadOptions, MethodKind, MethodRecipe, build_predictor


class PredictTarget(MethodKind):
    """``criterion(p_i, z_j)``: the predictor's output of view i against the (stop-gradient) target
    projection of view j. Both directions of every pair are summed, as BYOL's symmetrised loss ``L + L~``
    (Grill et al. 2020, eq. 2), then averaged over the unordered pairs; for SimSiam this is 4 x its loss
    + 4, a constant rescaling. ``ema``: the target is a momentum copy of the backbone and projector."""

    def __init__(self, ema: bool):
        self.ema = ema

    def build_heads(self, m, opts: HeadOptions) -> None:
        m.predictor = build_predictor(m, opts)
        if self.ema:
            make_teacher(m, ("backbone", "projector"))

    def loss(self, m, feats, views, index, transform) -> torch.Tensor:
        z = [m.projector(h) for h in feats]
        preds = [m.predictor(zi) for zi in z]
        if m.target is not None:
            z = [teacher_projection(m, v) for v in views]
        pairs = list(itertools.permutations(range(len(z)), 2))
        n_unordered = len(pairs) // 2
        return sum(m.recipe.criterion(preds[i], z[j], **m.criterion_options) for i, j in pairs) / n_unordered


RECIPES = [
    MethodRecipe(
        name="byol",
        kind=PredictTarget(ema=True),
        criterion=criteria.byol_loss,
        projector="4096-256",
        paper="Grill et al. 2020, arXiv 2006.07733 (EMA target, momentum 0.996 -> 1, cosine)",
        predictor="4096-256",
        ema_base=0.99,
    ),
    MethodRecipe(
        name="simsiam",
        kind=PredictTarget(ema=False),
        criterion=criteria.byol_loss,
        projector="2048-2048-2048",
        paper="Chen & He 2021, arXiv 2011.10566 (stop-gradient, no EMA)",
        predictor="512-2048",
    ),
]
