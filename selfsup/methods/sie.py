"""Split invariant-equivariant representations (SIE, Garrido, Najman & LeCun 2023) and its baseline
without a split: a predictor maps one view's equivariant embedding and the transformation between the
views to the other view's."""

from __future__ import annotations

import torch

from selfsup import criteria
from selfsup.errors import ConfigError
from selfsup.methods.kind import HeadOptions, MethodKind, MethodRecipe
from selfsup.models import ConcatPredictor, HyperPredictor, SplitHead, build_mlp, head_output_dim


class PredictTransformed(MethodKind):
    """The predictor maps view 1's equivariant embedding and the transformation ``t`` to view 2's (one
    direction, as the public code). ``split=True`` (SIE): the projector is a :class:`SplitHead` whose first
    ``m.n_inv`` output dimensions are invariant, the predictor a hypernetwork; ``split=False``: every
    dimension equivariant, the predictor an MLP of ``[z, t]``."""

    needs_transform = True

    def __init__(self, split: bool):
        self.split = split

    def build_projector(self, m, spec: str, opts: HeadOptions):
        if not self.split:
            return build_mlp(m.backbone.out_dim, spec, batch_norm=opts.head_batch_norm)
        out_dim = m.backbone.out_dim
        eq_dim = out_dim // 2 if opts.equivariant_dim is None else opts.equivariant_dim  # paper: half
        if not 1 <= eq_dim < out_dim:
            raise ConfigError(
                f"model.equivariant_dim={eq_dim} must leave both parts non-empty: 1 to {out_dim - 1} of "
                f"the backbone's {out_dim} dimensions (default half)"
            )
        head = SplitHead(out_dim, eq_dim, spec, batch_norm=opts.head_batch_norm)
        m.n_inv = head.inv_out
        return head

    def build_heads(self, m, opts: HeadOptions) -> None:
        t_identity = opts.transform_identity
        if t_identity is None:
            raise ConfigError(
                f"method '{m.recipe.name}' needs the transformation between its two views: use "
                "data.views=pairs on a dataset that records it (data.dataset=objects3d)"
            )
        dim = head_output_dim(m.projector, m.backbone.out_dim) - m.n_inv
        if self.split:
            m.predictor = HyperPredictor(dim, t_identity, opts.predictor or "")
        else:
            m.predictor = ConcatPredictor(dim, len(t_identity), opts.predictor or "")

    def loss(self, m, feats, views, index, transform) -> torch.Tensor:
        z1, z2 = m.projector(feats[0]), m.projector(feats[1])
        pred = m.predictor(z1[:, m.n_inv :], transform)
        return m.recipe.criterion(z1, z2, pred, m.n_inv, **m.criterion_options)

    def dummy_inputs(self, g: torch.Generator) -> tuple:
        z1, z2 = super().dummy_inputs(g)
        return z1, z2, torch.randn(4, 2, generator=g), 1


RECIPES = [
    MethodRecipe(
        name="sie",
        kind=PredictTransformed(split=True),
        criterion=criteria.sie_loss,
        projector="2048-2048-2048",
        paper="Garrido, Najman & LeCun 2023, arXiv 2302.02964 (split invariant | equivariant halves, "
        "hypernetwork predictor; public config: sim 10, equivariant 0.45 x sim, std 10 (+ on the "
        "predictor), cov 1)",
    ),
    MethodRecipe(
        name="sie-nosplit",
        kind=PredictTransformed(split=False),
        criterion=criteria.sie_loss,
        projector="2048-2048-2048",
        paper="SIE's baseline without a split: every dimension equivariant, predictor an MLP of [z, t] "
        "(EquiMod-style, Devillers & Lefort 2023); SIE's loss without the invariance term, the "
        "prediction term at full weight (public code, SIEOnlyEqui)",
        params={"equi_factor": 1.0},
    ),
]
