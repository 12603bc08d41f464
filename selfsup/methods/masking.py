"""The masks of masked prediction and the fixed 2-D position embedding of its heads.

Every draw goes through the run's generators (``torch``'s default CPU generator, whose state the checkpoint
holds, and the view draws of :mod:`selfsup.views.randomness`), so a resumed run masks exactly as an
uninterrupted one; under several processes each draws the masks of the whole global batch and keeps its
rows, so the masks are those of one process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from selfsup.errors import ConfigError
from selfsup.views.randomness import rand, shard_rows


def sincos_2d(dim: int, height: int, width: int) -> torch.Tensor:
    """``(height * width, dim)`` fixed sine-cosine embedding of the patch grid in raster order: the first
    half of the features encodes the column, the second the row (the authors' order), each as
    ``[sin(pos w_k), cos(pos w_k)]`` with ``w_k =
    10000^(-k / (dim / 4))`` (MAE's and I-JEPA's ``get_2d_sincos_pos_embed``)."""
    if dim % 4:
        raise ConfigError(f"a 2-D sine-cosine position embedding needs a width divisible by 4; got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))
    rows, cols = torch.meshgrid(
        torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64), indexing="ij"
    )

    def one_axis(pos: torch.Tensor) -> torch.Tensor:
        angles = pos.reshape(-1, 1) * omega
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([one_axis(cols), one_axis(rows)], dim=1).float()


def kept_tokens(n_tokens: int, ratio: float) -> int:
    """How many of ``n_tokens`` MAE keeps visible at mask ``ratio`` (the authors' ``int(L * (1 - r))``)."""
    return int(n_tokens * (1 - ratio))


def random_masking(b: int, n_tokens: int, ratio: float, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """MAE's per-sample random masking (``random_masking`` of the authors' ``models_mae.py``): uniform noise
    per token, sorted; the ``int(n_tokens * (1 - ratio))`` lowest are kept. Returns ``ids_shuffle`` (b x
    n_tokens: kept tokens first) and ``mask`` (b x n_tokens, 1 = removed) in the tokens' order."""
    keep = kept_tokens(n_tokens, ratio)
    noise = rand(b, n_tokens, device=device)
    ids_shuffle = noise.argsort(dim=1)
    mask = torch.ones(b, n_tokens, device=device)
    mask[:, :keep] = 0
    return ids_shuffle, mask.gather(1, ids_shuffle.argsort(dim=1))


def _blocks(top: torch.Tensor, left: torch.Tensor, h: int, w: int, height: int, width: int) -> torch.Tensor:
    """Boolean ``(*top.shape, height, width)`` masks of ``h x w`` blocks at ``(top, left)``."""
    r = torch.arange(height).view(*[1] * top.dim(), height, 1)
    c = torch.arange(width).view(*[1] * top.dim(), 1, width)
    t, lft = top[..., None, None], left[..., None, None]
    return (r >= t) & (r < t + h) & (c >= lft) & (c < lft + w)


@dataclass(frozen=True)
class BlockSampler:
    """I-JEPA's multi-block masks on a ``height x width`` patch grid (Assran et al. 2023, sec. 3; the
    authors' ``src/masks/multiblock.py``, defaults of their ImageNet configs).

    Per batch, one target-block size (scale in ``pred_scale`` and aspect ratio in ``aspect_ratio``, both
    from one uniform draw, as the authors do) and one context-block size (scale in ``enc_scale``, square);
    per sample, ``n_pred`` target blocks and one context block at uniform positions. Unless
    ``allow_overlap``, the context block loses the target patches; a placement keeping ``min_keep`` patches
    or fewer is redrawn, and after 20 tries one target block stops counting (the authors' relaxation).
    Every mask is cut to the batch's shortest, keeping the first patches in raster order. The draws have a
    fixed size (20 candidate placements per relaxation level, the first valid one taken): the same
    distribution as the authors' rejection loop, with the same random numbers whatever the masks.
    """

    height: int
    width: int
    n_pred: int = 4
    pred_scale: tuple[float, float] = (0.15, 0.2)
    enc_scale: tuple[float, float] = (0.85, 1.0)
    aspect_ratio: tuple[float, float] = (0.75, 1.5)
    min_keep: int = 10
    allow_overlap: bool = False
    tries: int = 20

    def block_size(
        self, u: float, scale: tuple[float, float], aspect: tuple[float, float]
    ) -> tuple[int, int]:
        """The authors' ``_sample_block_size`` for the uniform draw ``u``: ``int(H W s)`` patches at aspect
        ``a``, rounded, each side below the grid's."""
        keep = int(self.height * self.width * (scale[0] + u * (scale[1] - scale[0])))
        a = aspect[0] + u * (aspect[1] - aspect[0])
        h, w = int(round(math.sqrt(keep * a))), int(round(math.sqrt(keep / a)))
        return min(h, self.height - 1), min(w, self.width - 1)

    def check(self) -> None:
        """Refuse blocks that cannot fit the grid (the authors' loop would never end)."""
        grid = f"{self.height} x {self.width} patch grid"
        for u in torch.linspace(0, 1, 1001).tolist():
            for what, scale, aspect in (
                ("target", self.pred_scale, self.aspect_ratio),
                ("context", self.enc_scale, (1.0, 1.0)),
            ):
                h, w = self.block_size(u, scale, aspect)
                if min(h, w) < 1 or h * w <= self.min_keep:
                    raise ConfigError(
                        f"ijepa: the blocks cannot fit the {grid}: a {what} block of scale {scale} is "
                        f"{max(h, 0)} x {max(w, 0)} patches, which must be more than "
                        f"min_keep={self.min_keep}; "
                        "lower min_keep, raise the scales, or use smaller patches"
                    )

    def __call__(self, b: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(context, targets)`` patch indices of this process's ``b`` rows: ``b x K_ctx`` and
        ``b x n_pred x K_pred``, each row in raster order."""
        offset, total = shard_rows(b)  # drawn for the whole batch: the cut depends on every row
        H, W = self.height, self.width
        u = torch.rand(2)  # the batch's block sizes: the same numbers on every process
        ph, pw = self.block_size(float(u[0]), self.pred_scale, self.aspect_ratio)
        eh, ew = self.block_size(float(u[1]), self.enc_scale, (1.0, 1.0))
        r = torch.rand(total, self.n_pred, 2)
        targets = _blocks((r[..., 0] * (H - ph)).long(), (r[..., 1] * (W - pw)).long(), ph, pw, H, W)
        levels = 1 if self.allow_overlap else self.n_pred + 1
        r = torch.rand(total, levels, self.tries, 2)
        cand = _blocks((r[..., 0] * (H - eh)).long(), (r[..., 1] * (W - ew)).long(), eh, ew, H, W)
        if not self.allow_overlap:  # level t: the first n_pred - t target blocks are excluded
            covered = torch.stack([targets[:, : self.n_pred - t].any(1) for t in range(levels)], 1)
            cand = cand & ~covered[:, :, None]
        cand = cand.flatten(1, 2).flatten(2)  # total x (levels tries) x HW
        first = (cand.sum(-1) > self.min_keep).int().argmax(1)  # the last level is always valid (check)
        context = cand[torch.arange(total), first]
        keep = int(context.sum(1).min())
        order = torch.arange(H * W).expand(total, -1)
        ctx = torch.where(context, order, order + H * W).sort(dim=1).values[:, :keep]
        tgt = targets.flatten(2).nonzero()[:, 2].view(total, self.n_pred, ph * pw)
        rows = slice(offset, offset + b)
        return ctx[rows].to(device), tgt[rows].to(device)
