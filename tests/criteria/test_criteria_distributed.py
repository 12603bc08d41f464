"""gather_distributed=True on 2 CPU processes (gloo) against the single-process loss on the whole batch.

Gradient convention checked here. Every process returns the loss L of the concatenated (global)
batch. The gradient reaching a process's shard is world_size * dL/dshard: the gather's backward
all-reduces (SUMs) the gradients of all processes. DDP then averages the parameter gradients over the
processes (divides by world_size), which yields exactly the single-process gradient of L. A gather
whose backward returns only the local slice without the all-reduce (the bug of a popular library)
gives 1 * dL/dshard on the shard and, after DDP's averaging, a gradient world_size times too small;
these tests would catch it both on the raw shards and on the parameters of a DDP-wrapped model.

One spawn of 2 processes runs every case; each child writes its results to a file that the parent
compares with the single-process computation. An exception in a child fails the spawn, hence the test.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from selfsup.criteria import (
    barlow_twins_loss,
    dcl_loss,
    lejepa_loss,
    sie_loss,
    sigreg_loss,
    simclr_loss,
    spectral_contrastive_loss,
    vicreg_ctr_loss,
    vicreg_exp_loss,
    vicreg_loss,
)
from selfsup.errors import NonFiniteError

pytestmark = pytest.mark.slow  # every test reads the results of two spawned processes

WORLD = 2
N, K, IN = 8, 5, 6
SPLITS = {"even": [4, 4], "uneven": [5, 3]}  # rows per rank

CASES = {
    "simclr": lambda a, b, g: simclr_loss(a, b, 0.2, gather_distributed=g),
    "simclr_abs": lambda a, b, g: simclr_loss(a, b, 0.2, "abs", gather_distributed=g),
    "simclr_sq": lambda a, b, g: simclr_loss(a, b, 0.2, "sq", gather_distributed=g),
    "dcl": lambda a, b, g: dcl_loss(a, b, 0.2, gather_distributed=g),
    "spectral": lambda a, b, g: spectral_contrastive_loss(a, b, gather_distributed=g),
    "vicreg": lambda a, b, g: vicreg_loss(a, b, gather_distributed=g),
    "vicreg_exp": lambda a, b, g: vicreg_exp_loss(a, b, tau=0.5, gather_distributed=g),
    "vicreg_ctr": lambda a, b, g: vicreg_ctr_loss(a, b, tau=0.5, gather_distributed=g),
    "barlow": lambda a, b, g: barlow_twins_loss(a, b, gather_distributed=g),
    # SIE: the predictor's output (here a function of both views) is gathered too
    "sie": lambda a, b, g: sie_loss(a, b, (a * b)[:, 2:], 2, gather_distributed=g),
    # (views, batch, dim): each rank holds its rows of every view; the directions are seeded alike
    "sigreg": lambda a, b, g: sigreg_loss(torch.stack([a, b]), n_slices=64, seed=3, gather_distributed=g),
    "lejepa": lambda a, b, g: lejepa_loss(
        torch.stack([a, b, a * b]), n_global=2, lambd=0.3, n_slices=64, seed=3, gather_distributed=g
    ),
}


def _data() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1234)
    z1 = torch.randn(N, K, generator=g)
    return {
        "z1": z1,
        "z2": z1 + 0.3 * torch.randn(N, K, generator=g),
        "x1": torch.randn(N, IN, generator=g),
        "x2": torch.randn(N, IN, generator=g),
    }


def _model() -> torch.nn.Linear:
    torch.manual_seed(99)
    return torch.nn.Linear(IN, K)


def _rows(split: str, rank: int) -> slice:
    sizes = SPLITS[split]
    start = sum(sizes[:rank])
    return slice(start, start + sizes[rank])


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    if sys.platform.startswith("linux"):
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD, timeout=timedelta(seconds=60)
    )
    try:
        data = _data()
        results: dict[str, object] = {}
        for split in SPLITS:
            rows = _rows(split, rank)
            for name, f in CASES.items():
                a = data["z1"][rows].clone().requires_grad_()
                b = data["z2"][rows].clone().requires_grad_()
                loss = f(a, b, True)
                loss.backward()
                results[f"{split}/{name}"] = (loss.detach(), a.grad, b.grad)

            # end to end: parameter gradients of a DDP-wrapped model
            model = _model()
            ddp = torch.nn.parallel.DistributedDataParallel(model)
            for name, f in CASES.items():
                ddp.zero_grad()
                x = torch.cat([data["x1"][rows], data["x2"][rows]])
                za, zb = ddp(x).chunk(2)
                f(za, zb, True).backward()
                results[f"ddp-{split}/{name}"] = [p.grad.clone() for p in model.parameters()]
        for name, f in CASES.items():  # a NaN in rank 1's rows only: both ranks must refuse, none may wait
            a = data["z1"][_rows("even", rank)].clone()
            if rank == 1:
                a[0, 0] = float("nan")
            try:
                f(a, data["z2"][_rows("even", rank)], True)
                results[f"nan/{name}"] = torch.tensor(0)
            except NonFiniteError:
                results[f"nan/{name}"] = torch.tensor(1)
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> list[dict]:
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.fail("torch.distributed with the gloo backend is not available")
    tmp = tmp_path_factory.mktemp("ddp")
    torch.multiprocessing.spawn(_worker, args=(str(tmp / "init"), str(tmp)), nprocs=WORLD, join=True)
    return [torch.load(tmp / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def _single_process(name: str):
    data = _data()
    a = data["z1"].clone().requires_grad_()
    b = data["z2"].clone().requires_grad_()
    loss = CASES[name](a, b, False)
    loss.backward()
    return loss.detach(), a.grad, b.grad


def _atol(reference: torch.Tensor) -> float:
    # float32 summation-order noise, relative to the gradient's scale (entries that are exactly 0 in
    # theory, e.g. VICReg's bias gradient, come out as ~1e-6 roundoff)
    return 1e-5 * max(1.0, reference.abs().max().item())


@pytest.mark.parametrize("split", list(SPLITS))
@pytest.mark.parametrize("name", list(CASES))
def test_gathered_loss_and_shard_gradients(results, name, split):
    loss, g1, g2 = _single_process(name)
    for rank in range(WORLD):
        d_loss, d_g1, d_g2 = results[rank][f"{split}/{name}"]
        rows = _rows(split, rank)
        # every process sees the loss of the concatenated batch
        torch.testing.assert_close(d_loss, loss, rtol=1e-5, atol=1e-6)
        # world_size x the single-process gradient on the shard (DDP's averaging then divides by it)
        torch.testing.assert_close(d_g1, WORLD * g1[rows], rtol=1e-5, atol=_atol(g1))
        torch.testing.assert_close(d_g2, WORLD * g2[rows], rtol=1e-5, atol=_atol(g2))


@pytest.mark.parametrize("split", list(SPLITS))
@pytest.mark.parametrize("name", list(CASES))
def test_ddp_parameter_gradients_equal_single_process(results, name, split):
    data = _data()
    model = _model()
    za, zb = model(torch.cat([data["x1"], data["x2"]])).chunk(2)
    CASES[name](za, zb, False).backward()
    expected = [p.grad for p in model.parameters()]
    for rank in range(WORLD):
        for got, want in zip(results[rank][f"ddp-{split}/{name}"], expected, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=_atol(want))


@pytest.mark.parametrize("name", list(CASES))
def test_nan_on_one_rank_is_refused_by_every_rank(results, name):
    """The finiteness check of a gathering criterion is collective: the rank without NaN raises too,
    instead of waiting in the gather for a rank that has stopped."""
    assert [int(results[rank][f"nan/{name}"]) for rank in range(WORLD)] == [1, 1]
