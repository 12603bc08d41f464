"""SwAV (Caron et al. 2020): online clustering; each global view's Sinkhorn-Knopp assignment to the
prototypes is predicted from the other views' scores."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from selfsup import criteria
from selfsup.methods.kind import HeadOptions, MethodKind, MethodRecipe
from selfsup.methods.memory import make_queue, push
from selfsup.models import head_output_dim
from selfsup.options import int_at_least


class SwappedAssignments(MethodKind):
    """SwAV: L2-normalised projections scored against L2-normalised prototypes (renormalised before every
    training step, as the public code); the assignments of the first ``n_global`` views, computed by
    Sinkhorn over the global batch (and, with ``queue_length``, the queued embeddings of earlier batches
    once the queue is full), are predicted from every other view; the prototypes get no update for the
    first ``freeze_prototypes_steps`` steps."""

    @staticmethod
    def options(n_prototypes: int = 3000, freeze_prototypes_steps: int = 313, queue_length: int = 0) -> dict:
        return {
            "n_prototypes": int_at_least("n_prototypes", n_prototypes, 2),
            "freeze_prototypes_steps": int_at_least("freeze_prototypes_steps", freeze_prototypes_steps, 0),
            "queue_length": int_at_least("queue_length", queue_length, 0),
        }

    def build_heads(self, m, opts: HeadOptions) -> None:
        dim = head_output_dim(m.projector, m.backbone.out_dim)
        m.prototypes = nn.Linear(dim, m.options["n_prototypes"], bias=False)
        if m.options["queue_length"]:
            make_queue(m, "queue", (m.options["queue_length"], m.n_global * dim), opts.batch_size)

    def loss(self, m, feats, views, index, transform) -> torch.Tensor:
        if m.training and torch.is_grad_enabled():
            with torch.no_grad():
                m.prototypes.weight.copy_(F.normalize(m.prototypes.weight, dim=1))
        z = torch.stack([F.normalize(m.projector(h), dim=-1) for h in feats])  # (V, N, D)
        scores = m.prototypes(z)
        queue_scores = None
        if m.options["queue_length"] and bool(m.queue[-1].any()):  # used once full, as the public code
            with torch.no_grad():
                queued = m.queue.clone().view(m.queue.shape[0], m.n_global, -1).transpose(0, 1)
                queue_scores = m.prototypes(queued)
        loss = m.recipe.criterion(scores, m.n_global, queue_scores, **m.criterion_options)
        if m.options["queue_length"]:
            push(m, "queue", z[: m.n_global].detach().transpose(0, 1).reshape(z.shape[1], -1))
        return loss

    def after_backward(self, m, step: int) -> None:
        if step < m.options["freeze_prototypes_steps"]:
            m.prototypes.weight.grad = None

    def dummy_inputs(self, g: torch.Generator) -> tuple:
        return torch.randn(3, 4, 5, generator=g), 2, None


RECIPES = [
    MethodRecipe(
        name="swav",
        kind=SwappedAssignments(),
        criterion=criteria.swav_loss,
        projector="2048-128",
        paper="Caron et al. 2020, arXiv 2006.09882 (SwAV: projector 2048-128, 3000 prototypes, temperature "
        "0.1, Sinkhorn epsilon 0.05 with 3 iterations, prototypes frozen for 313 iterations, queue 3840 "
        "from epoch 15 for small batches; public code facebookresearch/swav main_swav.py)",
        params={"temperature": 0.1, "epsilon": 0.05, "sinkhorn_iterations": 3},
    ),
]
