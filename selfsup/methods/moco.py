"""Contrastive methods with a memory or a momentum encoder: MoCo v2 (a queue of keys), MoCo v3 (a
momentum encoder and a predictor, keys of the global batch), NNCLR (nearest neighbours from a support set
as positives)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from selfsup import criteria
from selfsup.methods.ema import make_teacher, teacher_projection
from selfsup.methods.kind import HeadOptions, MethodKind, MethodRecipe, build_predictor
from selfsup.methods.memory import make_queue, push
from selfsup.models import head_output_dim
from selfsup.options import int_at_least


def _unit_rows(*shape: int) -> torch.Tensor:
    return F.normalize(torch.randn(*shape), dim=1)


class QueueContrast(MethodKind):
    """MoCo v2: the query of view 1 against the key of view 2 (momentum encoder, constant momentum
    ``ema_base``) and a queue of the keys of earlier batches (one direction, as the public code)."""

    @staticmethod
    def options(queue_size: int = 65536) -> dict:
        return {"queue_size": int_at_least("queue_size", queue_size, 1)}

    def build_heads(self, m, opts: HeadOptions) -> None:
        make_teacher(m, ("backbone", "projector"))
        dim = head_output_dim(m.projector, m.backbone.out_dim)
        make_queue(m, "queue", (m.options["queue_size"], dim), opts.batch_size, init=_unit_rows)

    def momentum(self, m, step: int, total_steps: int) -> float:
        return m.ema_base

    def dummy_inputs(self, g: torch.Generator) -> tuple:
        return (*super().dummy_inputs(g), torch.randn(8, 3, generator=g))

    def features(self, m, views: list[torch.Tensor]) -> list[torch.Tensor]:
        return [m.backbone(views[0])]  # view 2 only goes through the momentum encoder

    def loss(self, m, feats, views, index, transform) -> torch.Tensor:
        k = teacher_projection(m, views[1])
        loss = m.recipe.criterion(m.projector(feats[0]), k, m.queue.clone(), **m.criterion_options)
        push(m, "queue", F.normalize(k.float(), dim=1))
        return loss


class MomentumContrast(MethodKind):
    """MoCo v3: predictions of the online encoder against the momentum encoder's keys of the other view,
    both directions, the global batch as negatives; cosine momentum schedule from ``ema_base``."""

    def build_heads(self, m, opts: HeadOptions) -> None:
        m.predictor = build_predictor(m, opts, last_bias=False)
        make_teacher(m, ("backbone", "projector"))

    def loss(self, m, feats, views, index, transform) -> torch.Tensor:
        q1, q2 = (m.predictor(m.projector(h)) for h in feats[:2])
        k1, k2 = (teacher_projection(m, v) for v in views[:2])
        fn, options = m.recipe.criterion, m.criterion_options
        return fn(q1, k2, **options) + fn(q2, k1, **options)


class NearestNeighbourContrast(MethodKind):
    """NNCLR: the nearest neighbour in a support set of past projections replaces each view's projection
    as the anchor; the positive is the prediction of the other view; symmetrised. The support set takes
    the projections of view 1 after each step."""

    @staticmethod
    def options(support_size: int = 98304) -> dict:
        return {"support_size": int_at_least("support_size", support_size, 1)}

    def build_heads(self, m, opts: HeadOptions) -> None:
        m.predictor = build_predictor(m, opts)
        proj_dim = head_output_dim(m.projector, m.backbone.out_dim)
        make_queue(m, "support", (m.options["support_size"], proj_dim), opts.batch_size, init=_unit_rows)

    def loss(self, m, feats, views, index, transform) -> torch.Tensor:
        z1, z2 = (m.projector(h) for h in feats[:2])
        support = m.support.clone()
        nn1, nn2 = criteria.nearest_neighbour(z1, support), criteria.nearest_neighbour(z2, support)
        fn, options = m.recipe.criterion, m.criterion_options
        loss = (fn(nn1, m.predictor(z2), **options) + fn(nn2, m.predictor(z1), **options)) / 2
        push(m, "support", F.normalize(z1.detach().float(), dim=1))
        return loss


RECIPES = [
    MethodRecipe(
        name="mocov2",
        kind=QueueContrast(),
        criterion=criteria.moco_v2_loss,
        projector="2048-128",
        paper="Chen, Fan, Girshick & He 2020, arXiv 2003.04297 (MoCo v2: MLP head 2048-128, tau 0.2, "
        "queue 65536, momentum 0.999; public code facebookresearch/moco)",
        params={"temperature": 0.2},
        ema_base=0.999,
    ),
    MethodRecipe(
        name="mocov3",
        kind=MomentumContrast(),
        criterion=criteria.moco_v3_loss,
        projector="4096-4096-256",
        paper="Chen, Xie & He 2021, arXiv 2104.02057 (MoCo v3: projector 4096-256, predictor 4096-256, "
        "tau 1.0 for ResNets, momentum 0.99 -> 1 cosine; public code facebookresearch/moco-v3)",
        params={"temperature": 1.0},
        predictor="4096-256",
        ema_base=0.99,
    ),
    MethodRecipe(
        name="nnclr",
        kind=NearestNeighbourContrast(),
        criterion=criteria.nnclr_loss,
        projector="2048-2048-256",
        paper="Dwibedi et al. 2021, arXiv 2104.14548 (NNCLR: support set 98304, tau 0.1, projector "
        "2048-2048-256, predictor 4096-256)",
        params={"temperature": 0.1},
        predictor="4096-256",
    ),
]
