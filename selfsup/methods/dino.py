"""DINO (Caron et al. 2021): a student matches the centred, sharpened prototype distribution of an EMA
teacher across views (global views for the teacher, every view for the student)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from selfsup import criteria
from selfsup.errors import SelfsupError
from selfsup.methods.ema import make_teacher
from selfsup.methods.kind import HeadOptions, MethodKind, MethodRecipe
from selfsup.models import head_output_dim
from selfsup.options import int_at_least, number_in


def prototype_scores(prototypes: nn.Linear, z: torch.Tensor) -> torch.Tensor:
    """Cosines of the L2-normalised ``z`` with the normalised prototype vectors (DINO's weight-normalised
    last layer with its norm fixed at 1, ``norm_last_layer=True``)."""
    return F.linear(F.normalize(z, dim=-1), F.normalize(prototypes.weight, dim=1))


class SelfDistillation(MethodKind):
    """DINO: the student's scores of all views against the teacher's (EMA of backbone, projector and
    prototypes, cosine momentum from ``ema_base``) of the first ``n_global`` views; the centre is an EMA
    of the teacher's mean score over the global batch; the teacher temperature warms up linearly over
    ``warmup_teacher_temp_epochs``; the prototypes are frozen for ``freeze_last_layer_epochs``."""

    @staticmethod
    def options(
        n_prototypes: int = 65536,
        center_momentum: float = 0.9,
        warmup_teacher_temp: float = 0.04,
        warmup_teacher_temp_epochs: float = 0.0,
        freeze_last_layer_epochs: float = 1.0,
    ) -> dict:
        if not number_in("warmup_teacher_temp", warmup_teacher_temp, 0.0) > 0:
            raise SelfsupError(f"warmup_teacher_temp must be a number > 0; got {warmup_teacher_temp!r}")
        return {
            "n_prototypes": int_at_least("n_prototypes", n_prototypes, 2),
            "center_momentum": number_in("center_momentum", center_momentum, 0.0, 1.0),
            "warmup_teacher_temp": float(warmup_teacher_temp),
            "warmup_teacher_temp_epochs": number_in(
                "warmup_teacher_temp_epochs", warmup_teacher_temp_epochs, 0.0
            ),
            "freeze_last_layer_epochs": number_in("freeze_last_layer_epochs", freeze_last_layer_epochs, 0.0),
        }

    def build_heads(self, m, opts: HeadOptions) -> None:
        dim = head_output_dim(m.projector, m.backbone.out_dim)
        m.prototypes = nn.Linear(dim, m.options["n_prototypes"], bias=False)
        make_teacher(m, ("backbone", "projector", "prototypes"))
        m.register_buffer("center", torch.zeros(1, m.options["n_prototypes"]))
        m.register_buffer("train_step", torch.zeros((), dtype=torch.long))
        m.steps_per_epoch = opts.steps_per_epoch or 1

    def teacher_temp(self, m, step: int) -> float:
        """The public code's per-epoch schedule: linear from ``warmup_teacher_temp`` to ``teacher_temp``
        over the warm-up epochs, then constant."""
        final, o = m.params.get("teacher_temp", 0.04), m.options
        warmup, epoch = o["warmup_teacher_temp_epochs"], step // m.steps_per_epoch
        if epoch >= warmup or warmup <= 1:
            return final if epoch >= warmup else o["warmup_teacher_temp"]
        return o["warmup_teacher_temp"] + (final - o["warmup_teacher_temp"]) * epoch / (int(warmup) - 1)

    def loss(self, m, feats, views, index, transform) -> torch.Tensor:
        student = torch.stack([prototype_scores(m.prototypes, m.projector(h)) for h in feats])
        with torch.no_grad():
            t = m.target
            teacher = torch.stack(
                [
                    prototype_scores(t["prototypes"], t["projector"](t["backbone"](v)))
                    for v in views[: m.n_global]
                ]
            )
        step = int(m.train_step)  # a host sync of one scalar per step on an accelerator
        options = {**m.criterion_options, "teacher_temp": self.teacher_temp(m, step)}
        options.pop("gather_distributed", None)
        loss = m.recipe.criterion(student, teacher, m.center.clone(), **options)
        if m.training and torch.is_grad_enabled():
            m.train_step += 1
            batch_center = criteria.global_batch_mean(teacher, m.gather_distributed)
            mom = m.options["center_momentum"]
            m.center.mul_(mom).add_(batch_center.reshape(1, -1), alpha=1 - mom)
        return loss

    def after_backward(self, m, step: int) -> None:
        if step < m.options["freeze_last_layer_epochs"] * m.steps_per_epoch:
            m.prototypes.weight.grad = None

    def dummy_inputs(self, g: torch.Generator) -> tuple:
        return torch.randn(3, 4, 5, generator=g), torch.randn(2, 4, 5, generator=g), torch.zeros(5)


RECIPES = [
    MethodRecipe(
        name="dino",
        kind=SelfDistillation(),
        criterion=criteria.dino_loss,
        projector="2048-2048-256",
        paper="Caron et al. 2021, arXiv 2104.14294 (DINO: head 2048-2048-256 then 65536 weight-normalised "
        "prototypes, student temp 0.1, teacher temp 0.04 (0.07 after warm-up for ViTs), centre momentum "
        "0.9, teacher momentum 0.996 -> 1 cosine, last layer frozen 1 epoch; public code "
        "facebookresearch/dino main_dino.py)",
        params={"student_temp": 0.1, "teacher_temp": 0.04},
        ema_base=0.996,
    ),
]
