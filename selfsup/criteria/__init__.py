"""Criteria: pure loss functions of embeddings, one module per family.

Every criterion validates its inputs (raising :class:`~selfsup.errors.ShapeError` /
:class:`~selfsup.errors.SelfsupError` with a message naming the argument), computes in float32 even
under autocast, and returns a scalar tensor. Those with a batch-level statistic take
``gather_distributed=False``; with ``True`` they use the embeddings of all torch.distributed
processes, with gradients such that DDP's averaging gives the single-process gradient of the
loss on the concatenated batch (see :mod:`selfsup.criteria._common`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch

from selfsup.criteria._common import gather, set_finite_check
from selfsup.criteria.barlow import barlow_twins_loss
from selfsup.criteria.byol import byol_loss
from selfsup.criteria.contrastive import dcl_loss, simclr_loss, spectral_contrastive_loss
from selfsup.criteria.diet import diet_loss
from selfsup.criteria.vicreg import duality_criteria, vicreg_ctr_loss, vicreg_exp_loss, vicreg_loss
from selfsup.errors import unknown_name

#: name -> criterion. Two-view criteria take (z1, z2, **hyper_parameters); byol/simsiam take (p, z);
#: diet takes (logits, index).
CRITERIA: dict[str, Callable[..., torch.Tensor]] = {
    "simclr": simclr_loss,
    "simclr_abs": partial(simclr_loss, variant="abs"),
    "simclr_sq": partial(simclr_loss, variant="sq"),
    "dcl": dcl_loss,
    "spectral_contrastive": spectral_contrastive_loss,
    "vicreg": vicreg_loss,
    "vicreg_exp": vicreg_exp_loss,
    "vicreg_ctr": vicreg_ctr_loss,
    "barlow_twins": barlow_twins_loss,
    "byol": byol_loss,
    "simsiam": byol_loss,
    "diet": diet_loss,
}


def get_criterion(name: str) -> Callable[..., torch.Tensor]:
    """The criterion registered under ``name``; a ConfigError lists the valid names otherwise."""
    try:
        return CRITERIA[name]
    except KeyError:
        raise unknown_name("criterion", name, CRITERIA) from None


__all__ = [
    "CRITERIA",
    "barlow_twins_loss",
    "byol_loss",
    "dcl_loss",
    "diet_loss",
    "duality_criteria",
    "gather",
    "get_criterion",
    "set_finite_check",
    "simclr_loss",
    "spectral_contrastive_loss",
    "vicreg_ctr_loss",
    "vicreg_exp_loss",
    "vicreg_loss",
]
