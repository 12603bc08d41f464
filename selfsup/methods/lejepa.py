"""LeJEPA (Balestriero & LeCun 2025): the views' projections predict the mean of the global views'
(prediction term), while SIGReg pulls every view's embedding distribution toward an isotropic Gaussian."""

from __future__ import annotations

import torch

from selfsup import criteria
from selfsup.criteria import lejepa_mix, lejepa_terms
from selfsup.methods.kind import HeadOptions, MethodKind, MethodRecipe


class GlobalLocal(MethodKind):
    """The criterion of the stacked projections of all views (V x N x K), the first ``n_global`` global,
    after one backbone forward of all views (as the authors' code). SIGReg's directions are seeded with the
    model's step counter ``sigreg_step`` (a buffer: the same on every process, saved with the model)."""

    accepts_paired_views = False
    min_global_views = 2
    run_metrics = ("lejepa_loss", "lejepa_prediction", "lejepa_sigreg")

    def build_heads(self, m, opts: HeadOptions) -> None:
        m.register_buffer("sigreg_step", torch.zeros((), dtype=torch.long))

    def features(self, m, views: list[torch.Tensor]) -> list[torch.Tensor]:
        return list(m.backbone(torch.cat(views)).chunk(len(views)))

    def loss(self, m, feats, views, index, transform) -> torch.Tensor:
        z = torch.stack([m.projector(h) for h in feats])
        seed = int(m.sigreg_step)  # a host sync of one scalar per step on an accelerator
        if m.training and torch.is_grad_enabled():
            m.sigreg_step += 1
        return m.recipe.criterion(z, m.n_global, seed=seed, **m.criterion_options)

    def dummy_inputs(self, g: torch.Generator) -> tuple:
        return torch.randn(2, 4, 3, generator=g), 2

    def monitor_metrics(self, m, z: torch.Tensor, batch_size: int) -> dict[str, float]:
        """The loss and its two terms as the mean over batches of ``batch_size`` samples (the statistic's
        N, as in training), SIGReg's directions seeded by the batch's index, so that they compare across
        epochs and runs."""
        options = {k: v for k, v in m.params.items() if k != "lambd"}
        n_batches = max(1, z.shape[1] // batch_size)
        batches = [z[:, i * batch_size : (i + 1) * batch_size] for i in range(n_batches)]
        terms = [lejepa_terms(zb, m.n_global, **options, seed=i) for i, zb in enumerate(batches)]
        prediction, sigreg = (sum(float(t[j]) for t in terms) / n_batches for j in (0, 1))
        return {
            "lejepa_loss": lejepa_mix(prediction, sigreg, m.params["lambd"]),
            "lejepa_prediction": prediction,
            "lejepa_sigreg": sigreg,
        }


RECIPES = [
    MethodRecipe(
        name="lejepa",
        kind=GlobalLocal(),
        criterion=criteria.lejepa_loss,
        projector="2048-2048-128",
        paper="Balestriero & LeCun 2025, arXiv 2511.08544 ((1 - lambda) prediction + lambda SIGReg, lambda "
        "0.05, 1024 directions; 2 global + 6 local views; authors' MINIMAL.md: 2048-2048 MLP, AdamW)",
        params={"lambd": 0.05},
    ),
]
