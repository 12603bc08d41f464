"""The time-stepping protocol (selfsup.pde.stepping) and the initial-condition regression targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from selfsup.errors import ConfigError
from selfsup.pde.downstream import oracle_fraction
from selfsup.pde.equations import get_equation, initial_condition
from selfsup.pde.stepping import (
    CNNSolver,
    LPSDASolver,
    SolverSpec,
    Trajectories,
    bottleneck,
    drop_codes,
    make_optimizer,
    rollout,
    standardise,
    train_solver,
)


class _Fixed(torch.nn.Module):
    """A 'solver' that predicts a fixed function of its input: zeros, or the last input step repeated."""

    def __init__(self, kind: str, future: int):
        super().__init__()
        self.kind, self.future = kind, future

    def forward(self, u, cond=None, grid=None):
        if self.kind == "zeros":
            return torch.zeros(len(u), self.future, u.shape[-1])
        return u[:, -1:].expand(-1, self.future, -1)


def _lpsda_metric_numpy(u: np.ndarray, start: int, history: int, future: int) -> tuple[float, float]:
    """LPSDA's normalised unrolled loss for the persistence forecast, written out with numpy loops."""
    n, nt, _ = u.shape
    n_blocks = (nt - start - history) // future
    sums, err2, tot2 = [], 0.0, 0.0
    for i in range(n):
        last = u[i, start + history - 1]
        total = 0.0
        for k in range(start + history, start + history + n_blocks * future):
            e = (last - u[i, k]) ** 2
            total += e.mean() / (u[i, k] ** 2).mean()
            err2, tot2 = err2 + e.sum(), tot2 + (u[i, k] ** 2).sum()
        sums.append(total)
    return float(np.mean(sums)), err2 / tot2


def test_rollout_metrics_match_lpsda_formula():
    torch.manual_seed(0)
    u = torch.randn(5, 47, 16, dtype=torch.float64)
    spec = SolverSpec(history=4, future=6, start=3)  # (47 - 3 - 4) // 6 = 6 blocks, 36 predicted steps
    zeros = rollout(_Fixed("zeros", 6), Trajectories(u), spec, "cpu", batch=2)
    assert zeros["steps"] == 36
    assert zeros["nmse_sum"] == pytest.approx(36.0) and zeros["nmse_global"] == pytest.approx(1.0)
    # persistence: the rollout feeds the prediction back, so the last input step is repeated throughout
    got = rollout(_Fixed("last", 6), Trajectories(u), spec, "cpu", batch=3)
    want_sum, want_global = _lpsda_metric_numpy(u.numpy(), 3, 4, 6)
    assert got["nmse_sum"] == pytest.approx(want_sum, rel=1e-5)
    assert got["nmse_global"] == pytest.approx(want_global, rel=1e-5)
    with pytest.raises(ConfigError, match="start \\+ history \\+ future = 48"):
        rollout(_Fixed("zeros", 6), Trajectories(u), SolverSpec(history=4, future=6, start=38), "cpu")


def test_grid_channels_reach_both_solvers():
    torch.manual_seed(0)
    u, grid = torch.randn(2, 4, 32), torch.tensor([[0.0, 0.0], [1.0, -1.0]])
    for net in (CNNSolver(4, 3, width=8, depth=2, n_grid=2), LPSDASolver(4, 3, width=8, n_grid=2)):
        for p in net.parameters():
            torch.nn.init.normal_(p, std=0.3)
        same = net(u[[0, 0]], None, grid)
        assert not torch.allclose(same[0], same[1])  # only the grid differs between the two rows


def test_lpsda_solver_size_and_reach():
    # LPSDA's CNN with 20 history steps, dx and dt: about 1.0 M parameters (docs/pde-protocol.md), +-26 cells.
    net = LPSDASolver(history=20, future=20, n_grid=2)
    n_params = sum(p.numel() for p in net.parameters())
    assert 0.95e6 < n_params < 1.1e6 and net.receptive_field == 26
    u = torch.randn(1, 20, 128, requires_grad=True)
    net(u, None, torch.zeros(1, 2))[0, :, 64].sum().backward()
    reach = u.grad[0].abs().sum(0).nonzero().flatten()
    assert int(reach.min()) == 64 - 26 and int(reach.max()) == 64 + 26


def test_train_solver_keeps_the_best_validation_state():
    torch.manual_seed(0)
    x = torch.linspace(0, 2 * torch.pi, 33)[:-1]
    t = torch.arange(40.0)[:, None]
    u = torch.stack([torch.sin(x - 0.3 * t + p) for p in torch.rand(12) * 6])  # travelling waves
    train, valid = Trajectories(u[:8]), Trajectories(u[8:])
    spec = SolverSpec(steps=40, history=4, future=4, start=0, batch_size=8, lr=3e-3, checks=8)
    model, kept = train_solver(train, valid, spec, seed=0, device="cpu")
    assert kept["best_step"] in range(5, 41, 5)
    assert rollout(model, valid, spec, "cpu")["nmse_sum"] == pytest.approx(kept["valid_nmse"], rel=1e-6)
    last, none = train_solver(train, None, spec, seed=0, device="cpu")
    assert none == {"best_step": 40, "valid_nmse": None}


def test_bottleneck_is_pca_of_the_standardised_code():
    torch.manual_seed(0)
    z_tr, z_te = torch.randn(200, 6) @ torch.randn(6, 6), torch.randn(50, 6)
    a_tr, a_te = bottleneck(z_tr, z_te, dim=3)
    s_tr, s_te = standardise(z_tr.double(), z_te.double())
    pca = PCA(3).fit(s_tr.numpy())  # scikit-learn as the independent reference (signs may differ)
    ref = pca.transform(s_te.numpy())
    ref = (ref - pca.transform(s_tr.numpy()).mean(0)) / pca.transform(s_tr.numpy()).std(0, ddof=1)
    for j in range(3):
        assert abs(np.corrcoef(a_te[:, j].numpy(), ref[:, j])[0, 1]) > 0.9999
    assert torch.allclose(a_tr.std(0), torch.ones(3), atol=1e-5)
    full = bottleneck(z_tr, z_te, dim=None)
    assert full[0].shape == (200, 6) and torch.allclose(full[1], s_te.float(), atol=1e-6)
    const = standardise(torch.ones(5, 1) * 3, torch.ones(2, 1) * 4)
    assert torch.equal(const[1], torch.zeros(2, 1))  # a constant column carries nothing


def testoracle_fraction():
    vals = {
        "baseline": {"nmse_sum": [10.0, 12.0]},
        "oracle": {"nmse_sum": [5.0, 7.0]},
        "ssl_conditioned": {"nmse_sum": [8.0, 9.0]},  # mean 8.5: (11 - 8.5) / (11 - 6) = 0.5
    }
    assert oracle_fraction(vals) == pytest.approx({"oracle": 1.0, "ssl_conditioned": 0.5})
    vals["oracle"] = {"nmse_sum": [12.0, 13.0]}  # the oracle is worse than the baseline: nothing to share
    assert oracle_fraction(vals) == {"oracle": None, "ssl_conditioned": None}


@pytest.mark.parametrize("name", ["kdv", "ks"])
def test_initial_condition_amplitudes_are_its_fourier_modes(name):
    eq = get_equation(name)
    params = eq.resolve({})
    draws = eq.sample(16, params, torch.Generator().manual_seed(1))
    u0 = initial_condition(draws, params["nx"]).numpy()
    modes = np.abs(np.fft.rfft(u0, axis=-1)) * 2 / params["nx"]  # numpy's FFT as the reference
    np.testing.assert_allclose(draws["u0_k1"].numpy(), modes[:, 1], rtol=1e-10)
    np.testing.assert_allclose(draws["u0_k2"].numpy(), modes[:, 2], rtol=1e-10)
    assert eq.coeffs == ("L", "T", "u0_k1", "u0_k2")


def test_code_dropout_zeroes_whole_codes():
    cond = torch.randn(4000, 5) + 3.0
    out = drop_codes(cond, 0.3, torch.Generator().manual_seed(0))
    kept = (out == cond).all(1)
    assert torch.equal(kept | (out == 0).all(1), torch.ones(4000, dtype=torch.bool))  # all or nothing per row
    assert abs(float((~kept).float().mean()) - 0.3) < 0.03
    assert drop_codes(cond, 0.0, torch.Generator()) is cond


def test_lpsda_optimizer_reproduces_its_epoch_schedule():
    """With 20 steps standing for LPSDA's 20 epochs: AdamW (weight decay 0.01) at 0.4 x 1e-4 from the start
    (its milestone 0 fires when MultiStepLR is built), x 0.4 at epochs 5, 10, 15 (docs/pde-protocol.md)."""
    spec = SolverSpec(arch="lpsda", steps=20)
    assert (spec.optimizer, spec.lr, spec.batch_size) == ("lpsda", 1e-4, 16)
    opt, schedule = make_optimizer(torch.nn.Linear(2, 2), spec)
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["weight_decay"] == 0.01
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    expected = [4e-5] * 5 + [1.6e-5] * 5 + [6.4e-6] * 5 + [2.56e-6] * 5
    assert np.allclose(lrs, expected, rtol=1e-12)
    # LPSDA's own construction run by torch: AdamW(lr=1e-4), MultiStepLR([0, 5, 10, 15], 0.4), a step an epoch
    ref = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters(), lr=1e-4)
    ref_schedule = torch.optim.lr_scheduler.MultiStepLR(ref, milestones=[0, 5, 10, 15], gamma=0.4)
    ref_lrs = []
    for _ in range(20):
        ref_lrs.append(ref.param_groups[0]["lr"])
        ref.step()
        ref_schedule.step()
    assert np.allclose(lrs, ref_lrs, rtol=1e-12)
    small = SolverSpec()  # ours: Adam 1e-3, constant
    assert (small.optimizer, small.lr, small.batch_size) == ("adam", 1e-3, 32)
    opt, schedule = make_optimizer(torch.nn.Linear(2, 2), small)
    assert type(opt) is torch.optim.Adam
    for _ in range(5):
        opt.step()
        schedule.step()
    assert opt.param_groups[0]["lr"] == 1e-3
    with pytest.raises(ConfigError, match="adam, lpsda"):
        SolverSpec(optimizer="sgd")
