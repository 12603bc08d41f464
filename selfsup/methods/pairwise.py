"""Methods whose loss compares two projected views: contrastive (SimCLR and its variants, DCL, spectral)
and canonical-correlation (VICReg and its variants, Barlow Twins)."""

from __future__ import annotations

import itertools

import torch

from selfsup import criteria
from selfsup.methods.kind import MethodKind, MethodRecipe


class SymmetricPairs(MethodKind):
    """``criterion(z_i, z_j)`` of the projected views, averaged over the unordered pairs of views."""

    def loss(self, m, feats, views, index, transform) -> torch.Tensor:
        z = [m.projector(h) for h in feats]
        pairs = list(itertools.combinations(range(len(z)), 2))
        return sum(m.recipe.criterion(z[i], z[j], **m.criterion_options) for i, j in pairs) / len(pairs)


PAIRS = SymmetricPairs()
_GARRIDO = "Garrido et al. 2022, arXiv 2206.02574"

RECIPES = [
    MethodRecipe(
        name="simclr",
        kind=PAIRS,
        criterion=criteria.simclr_loss,
        projector="2048-128",
        paper="Chen et al. 2020, arXiv 2002.05709 (NT-Xent, tau 0.1 at batch 4096, 0.5 on CIFAR)",
        params={"temperature": 0.1},
    ),
    MethodRecipe(
        name="simclr-abs",
        kind=PAIRS,
        criterion=criteria.simclr_loss,
        projector="2048-128",
        paper=f"{_GARRIDO} (negatives enter as |cos|)",
        params={"temperature": 0.1, "variant": "abs"},
    ),
    MethodRecipe(
        name="simclr-sq",
        kind=PAIRS,
        criterion=criteria.simclr_loss,
        projector="2048-128",
        paper=f"{_GARRIDO} (negatives enter as cos^2)",
        params={"temperature": 0.1, "variant": "sq"},
    ),
    MethodRecipe(
        name="dcl",
        kind=PAIRS,
        criterion=criteria.dcl_loss,
        projector="2048-128",
        paper="Yeh et al. 2022, arXiv 2110.06848 (decoupled contrastive loss)",
        params={"temperature": 0.1},
    ),
    MethodRecipe(
        name="spectral",
        kind=PAIRS,
        criterion=criteria.spectral_contrastive_loss,
        projector="2048-2048-128",
        paper="HaoChen et al. 2021, arXiv 2106.04156 (spectral contrastive loss)",
    ),
    MethodRecipe(
        name="vicreg",
        kind=PAIRS,
        criterion=criteria.vicreg_loss,
        projector="8192-8192-8192",
        paper="Bardes et al. 2022, arXiv 2105.04906 (official code: 25/25/1)",
        params={"sim_coeff": 25.0, "std_coeff": 25.0, "cov_coeff": 1.0},
    ),
    MethodRecipe(
        name="vicreg-exp",
        kind=PAIRS,
        criterion=criteria.vicreg_exp_loss,
        projector="8192-8192-8192",
        paper=f"{_GARRIDO} (VICReg with exponential covariance term)",
    ),
    MethodRecipe(
        name="vicreg-ctr",
        kind=PAIRS,
        criterion=criteria.vicreg_ctr_loss,
        projector="8192-8192-8192",
        paper=f"{_GARRIDO} (VICReg-exp on the transposed embeddings)",
    ),
    MethodRecipe(
        name="barlow",
        kind=PAIRS,
        criterion=criteria.barlow_twins_loss,
        projector="8192-8192-8192",
        paper="Zbontar et al. 2021, arXiv 2103.03230 (lambda 0.0051)",
        params={"lambd": 0.0051},
    ),
]
