"""Optimisers (AdamW, SGD, LARS) and the warm-up + cosine learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from selfsup.config import OptimConfig


class LARS(torch.optim.Optimizer):
    """LARS (You et al. 2017, arXiv 1708.03888) as in the official VICReg / Barlow Twins code.

    Weight decay and the trust ratio ``eta * ||w|| / ||g + wd w||`` apply to weight matrices only;
    biases and normalisation parameters (1-D) get plain momentum SGD.
    """

    def __init__(
        self, params, lr: float, weight_decay: float = 0.0, momentum: float = 0.9, eta: float = 0.001
    ):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum, eta=eta))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                dp = p.grad
                if p.ndim > 1:
                    dp = dp.add(p, alpha=g["weight_decay"])
                    p_norm, d_norm = torch.norm(p), torch.norm(dp)
                    one = torch.ones_like(p_norm)
                    q = torch.where(p_norm > 0, torch.where(d_norm > 0, g["eta"] * p_norm / d_norm, one), one)
                    dp = dp.mul(q)
                state = self.state[p]
                if "mu" not in state:
                    state["mu"] = torch.zeros_like(p)
                mu = state["mu"]
                mu.mul_(g["momentum"]).add_(dp)
                p.add_(mu, alpha=-g["lr"])
        return loss


def build_optimizer(params: list[nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    """Weight decay on weight matrices only (biases and norm parameters excluded), as the papers do."""
    decay = [p for p in params if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in params if p.requires_grad and p.ndim <= 1]
    if cfg.name == "lars":
        return LARS(
            params=[p for p in params if p.requires_grad],
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            momentum=cfg.momentum,
        )
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    return torch.optim.AdamW(groups, lr=cfg.lr, fused=fusable(params))


def fusable(params: list[nn.Parameter]) -> bool:
    """Whether torch's fused Adam/AdamW kernel (every tensor updated in one kernel) applies: floating
    parameters, all on the CPU or all on CUDA. A resumed run keeps the optimiser setting saved in its
    checkpoint."""
    devices = {p.device.type for p in params}
    return len(devices) == 1 and devices <= {"cpu", "cuda"} and all(p.is_floating_point() for p in params)


def lr_factor(step: int, cfg: OptimConfig, steps_per_epoch: int, total_steps: int) -> float:
    """Linear warm-up over ``warmup_epochs``, then cosine decay to ``min_lr_ratio`` (SGDR, 2017)."""
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    if step < warmup:
        return (step + 1) / warmup
    if cfg.schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(total_steps - warmup, 1)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr
