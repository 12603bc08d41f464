"""Self-distillation and clustering losses over prototype scores: DINO (a centred, sharpened teacher) and
SwAV (Sinkhorn-Knopp assignments swapped between views)."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from selfsup.criteria._common import check_positive, float32_math, is_distributed
from selfsup.errors import ShapeError
from selfsup.options import int_at_least

__all__ = ["dino_loss", "global_batch_mean", "sinkhorn", "swav_loss"]


def _check_scores(x: object, name: str, ndim: int = 3) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim != ndim or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ShapeError(f"{name} must be a floating tensor of {ndim} dimensions (views, N, K); got {shape}.")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ShapeError(f"{name} needs at least one view and one sample; got shape {tuple(x.shape)}.")
    return x.float()


def dino_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    center: torch.Tensor,
    student_temp: float = 0.1,
    teacher_temp: float = 0.04,
) -> torch.Tensor:
    """DINO's loss (Caron et al. 2021, arXiv 2104.14294, eq. 1; public code ``main_dino.py``, ``DINOLoss``):
    the cross-entropy between the teacher's centred, sharpened distribution of each global view and the
    student's distribution of every other view, averaged over those pairs and the samples::

        P_t = softmax((t - c) / teacher_temp),  P_s = softmax(s / student_temp)
        loss = mean over (g, v), v != g, of mean_n sum_k -P_t[g, n, k] log P_s[v, n, k]

    Args:
        student: (V, N, K) student scores of all V views (the first G global).
        teacher: (G, N, K) teacher scores of the G global views (no gradient).
        center: (K,) or (1, K) the running centre of the teacher's scores.
        student_temp, teacher_temp: > 0 (the public code's 0.1 and 0.04, 0.07 after warm-up on ViTs).
    """
    s, t = _check_scores(student, "student"), _check_scores(teacher, "teacher").detach()
    if s.shape[1:] != t.shape[1:] or t.shape[0] > s.shape[0] or (s.shape[0] == 1):
        raise ShapeError(
            f"student (V, N, K) and teacher (G, N, K) must share N and K with 1 <= G <= V and V >= 2; got "
            f"{tuple(s.shape)} and {tuple(t.shape)}."
        )
    ts, tt = check_positive("student_temp", student_temp), check_positive("teacher_temp", teacher_temp)
    with float32_math(s.device):
        p_t = F.softmax((t - center.detach().float().reshape(1, 1, -1)) / tt, dim=-1)
        log_p_s = F.log_softmax(s / ts, dim=-1)
        terms = [
            (-p_t[g] * log_p_s[v]).sum(-1).mean()
            for g in range(t.shape[0])
            for v in range(s.shape[0])
            if v != g
        ]
        return sum(terms) / len(terms)


@torch.no_grad()
def global_batch_mean(x: torch.Tensor, gather_distributed: bool = False) -> torch.Tensor:
    """The mean of ``x`` over its rows and, with ``gather_distributed``, over every process's rows (DINO's
    ``update_center``: an all-reduce of the sum, divided by the global count)."""
    x = x.detach().float().reshape(-1, x.shape[-1])
    total = torch.cat([x.sum(0), x.new_tensor([x.shape[0]])])
    if gather_distributed and is_distributed():
        dist.all_reduce(total)
    return total[:-1] / total[-1]


@torch.no_grad()
def sinkhorn(
    scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3, gather_distributed: bool = False
) -> torch.Tensor:
    """SwAV's soft assignments (Caron et al. 2020, arXiv 2006.09882, sec. 3.1; public code ``main_swav.py``,
    ``distributed_sinkhorn``): ``Q = exp(scores / epsilon)`` made doubly stochastic over the global batch by
    ``iterations`` Sinkhorn-Knopp steps (each prototype 1/K of the mass, each sample 1/B), returned as
    (B_local, K) rows that sum to 1.

    Args:
        scores: (B, K) prototype scores (cosines), no gradient.
        epsilon: > 0, the entropy weight (0.05).
        iterations: >= 1 (3).
        gather_distributed: normalise over every process's rows (the all-reduces of the public code).
    """
    if not isinstance(scores, torch.Tensor) or scores.ndim != 2:
        raise ShapeError(f"scores must be a (B, K) tensor; got {getattr(scores, 'shape', type(scores))}.")
    eps, n_iter = check_positive("epsilon", epsilon), int_at_least("iterations", iterations, 1)
    distributed = gather_distributed and is_distributed()
    with float32_math(scores.device):
        q = torch.exp(scores.float() / eps).T  # K x B
        b = q.shape[1]
        if distributed:  # the global count: processes may hold different numbers of rows (a queue)
            count = torch.tensor([float(b)], device=q.device)
            dist.all_reduce(count)
            b = int(count.item())
        k = q.shape[0]
        total = q.sum()
        if distributed:
            dist.all_reduce(total)
        q = q / total
        for _ in range(n_iter):
            rows = q.sum(dim=1, keepdim=True)
            if distributed:
                dist.all_reduce(rows)
            q = q / rows / k
            q = q / q.sum(dim=0, keepdim=True) / b
        return (q * b).T


def swav_loss(
    scores: torch.Tensor,
    n_assign: int,
    queue_scores: torch.Tensor | None,
    temperature: float = 0.1,
    epsilon: float = 0.05,
    sinkhorn_iterations: int = 3,
    gather_distributed: bool = False,
) -> torch.Tensor:
    """SwAV's swapped prediction (Caron et al. 2020, eq. 3; public code ``main_swav.py``, ``train``): the
    Sinkhorn assignment of each of the first ``n_assign`` views is predicted from every other view::

        loss = mean_{a < n_assign} mean_{v != a} mean_n sum_k -q_a[n, k] log softmax(s_v / T)[n, k]

    Args:
        scores: (V, N, K) scores of the L2-normalised embeddings against the normalised prototypes.
        n_assign: the views whose assignments are computed (the two global crops).
        queue_scores: (n_assign, M, K) scores of queued embeddings of earlier batches, prepended to each
            assigned view's batch for Sinkhorn only (the public code's queue), or None. With
            ``gather_distributed`` the queue (the same on every process) enters once, on the first process.
        temperature: T > 0 (0.1).
        epsilon, sinkhorn_iterations: of :func:`sinkhorn`.
        gather_distributed: Sinkhorn over every process's rows.
    """
    s = _check_scores(scores, "scores")
    n_assign = int_at_least("n_assign", n_assign, 1)
    if not 1 <= n_assign <= s.shape[0] or s.shape[0] < 2:
        raise ShapeError(f"n_assign must be in [1, V] with V >= 2 views; got {n_assign} of {s.shape[0]}.")
    tau = check_positive("temperature", temperature)
    with float32_math(s.device):
        log_p = F.log_softmax(s / tau, dim=-1)
        total = s.new_zeros(())
        for a in range(n_assign):
            out = s[a].detach()
            if queue_scores is not None and not (gather_distributed and is_distributed() and dist.get_rank()):
                out = torch.cat([queue_scores[a].detach().float(), out])
            q = sinkhorn(out, epsilon, sinkhorn_iterations, gather_distributed)[-s.shape[1] :]
            others = [(-q * log_p[v]).sum(-1).mean() for v in range(s.shape[0]) if v != a]
            total = total + sum(others) / len(others)
        return total / n_assign
