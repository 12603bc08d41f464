"""The main job's training step, part by part: each speed change against what it replaced, in one process.

Pairs are timed interleaved (A, B, A, B ... over several rounds; median of the rounds' means), on the main
job's own shapes (batch 128, two views, conv1d width 64, projector 1024-1024):

- the VICReg loss, forward + backward: the official code's K x K covariance vs ``vicreg_loss`` (N x N Gram);
- the optimiser step: torch's for-loop AdamW (its CPU default) vs the fused kernel ``build_optimizer`` picks;
- the whole step: float32, bfloat16 autocast with oneDNN's convolution backward, and with :class:`Conv1d`'s;
- one convolution layer, forward + backward under bfloat16: ``Conv1d``'s backward vs oneDNN's, per length.

    python -m benchmarks.speed.bench_step          # writes benchmarks/results/bench_step.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from benchmarks._common import write_result
from selfsup import config as C
from selfsup.criteria import vicreg_loss
from selfsup.criteria._common import off_diagonal  # the official code's flatten/view trick
from selfsup.models import backbones
from selfsup.train.components import build
from selfsup.train.optim import build_optimizer


def paired(fns: dict, rounds: int = 5, n: int = 20) -> dict[str, float]:
    """Median over ``rounds`` of the mean ms per call of each function, the functions interleaved."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            for _ in range(3):
                fn()
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            times[name].append((time.perf_counter() - t0) / n * 1000)
    return {k: round(statistics.median(v), 2) for k, v in times.items()}


def official_vicreg(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """facebookresearch/vicreg main_vicreg.py after the projector (single process), as the reference cost."""
    n, k = x.shape
    repr_loss = torch.nn.functional.mse_loss(x, y)
    x, y = x - x.mean(0), y - y.mean(0)
    std = torch.sqrt(x.var(0) + 1e-4), torch.sqrt(y.var(0) + 1e-4)
    std_loss = sum(torch.relu(1 - s).mean() for s in std) / 2
    cov = sum(off_diagonal((v.T @ v) / (n - 1)).pow(2).sum() / k for v in (x, y))
    return 25 * repr_loss + 25 * std_loss + cov


def loss_and_optimizer(c) -> dict:
    z1, z2 = (torch.randn(128, 1024, requires_grad=True) for _ in range(2))
    loss = paired(
        {
            "official K x K covariance": lambda: official_vicreg(z1, z2).backward(),
            "vicreg_loss (N x N Gram)": lambda: vicreg_loss(z1, z2).backward(),
        }
    )
    params = list(c.model.parameters())
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    groups = [{"params": [p for p in params if p.ndim > 1]}, {"params": [p for p in params if p.ndim <= 1]}]
    loop_adamw = torch.optim.AdamW(groups, lr=1e-4, foreach=False)
    fused = build_optimizer(params, c.cfg.optim)
    opt = paired({"AdamW for-loop": loop_adamw.step, "AdamW fused": fused.step})
    return {"vicreg_loss_fwd_bwd_ms": loss, "optimizer_step_ms": opt}


def whole_step(c) -> dict:
    opt = build_optimizer(list(c.model.parameters()), c.cfg.optim)
    x = c.data.train.x

    def step(amp: bool, custom: bool) -> None:
        backbones.MATMUL_BACKWARD_MAX_LENGTH = 32 if custom else 0
        idx = torch.randperm(len(x))[:128]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss, _ = c.model.loss([view(x[idx]) for view in c.views], idx)
        opt.zero_grad()
        loss.backward()
        opt.step()

    result = paired(
        {
            "float32": lambda: step(False, False),
            "bfloat16, oneDNN conv backward": lambda: step(True, False),
            "bfloat16, Conv1d matmul backward": lambda: step(True, True),
        },
        n=10,
    )
    backbones.MATMUL_BACKWARD_MAX_LENGTH = 32
    return {"step_ms": result}


def conv_layers() -> dict:
    out = {}
    for batch, ch, length in [(128, 64, 40), (128, 128, 20), (128, 256, 10), (16, 64, 2048)]:
        conv = backbones.Conv1d(ch, ch, 3, padding=1, bias=False)
        x = torch.randn(batch, ch, length, requires_grad=True)

        def run(custom: bool, conv=conv, x=x) -> None:
            backbones.MATMUL_BACKWARD_MAX_LENGTH = 10**9 if custom else 0
            with torch.autocast("cpu", dtype=torch.bfloat16):
                y = conv(x)
            y.backward(torch.ones_like(y))

        key = f"batch {batch}, {ch} channels, length {length}"
        out[key] = paired({"Conv1d matmul backward": lambda: run(True), "oneDNN": lambda: run(False)})
    backbones.MATMUL_BACKWARD_MAX_LENGTH = 32
    return {"conv_layer_bf16_fwd_bwd_ms": out}


def main() -> None:
    argparse.ArgumentParser(
        prog=f"python -m {__spec__.name}", description=__doc__.splitlines()[0]
    ).parse_args()
    torch.manual_seed(0)
    c = build(C.from_dict({"train": {"device": "cpu"}}))
    result = {"benchmark": "bench_step", **loss_and_optimizer(c), **whole_step(c), **conv_layers()}
    print(json.dumps(result, indent=1))
    write_result("bench_step.json", result)


if __name__ == "__main__":
    main()
