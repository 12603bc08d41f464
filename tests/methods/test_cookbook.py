"""MoCo v2/v3, NNCLR, DINO and SwAV as methods: their state is saved and restored exactly, frozen heads
stay frozen, and bad settings are one error line before anything is written."""

from __future__ import annotations

import io

import pytest
import torch
from typer.testing import CliRunner

from selfsup.cli import app
from selfsup.methods import SSLModel, get_method
from selfsup.models import build_backbone

SMALL = {
    "mocov2": {"queue_size": 64},
    "mocov3": {},
    "nnclr": {"support_size": 64},
    "dino": {"n_prototypes": 16, "freeze_last_layer_epochs": 0.5},
    "swav": {"n_prototypes": 8, "freeze_prototypes_steps": 2, "queue_length": 64},
}


def _model(name: str) -> SSLModel:
    backbone = build_backbone("mlp", (1, 8, 8), hidden="32")
    return SSLModel(
        get_method(name), backbone, "32-16", "16-16", SMALL[name], batch_size=32, steps_per_epoch=4
    )


def _steps(model, opt, batches, first_step):
    losses = []
    for i, (x, noise) in enumerate(batches):
        loss, _ = model([x + noise[0], x + noise[1]], torch.arange(len(x)))
        opt.zero_grad()
        loss.backward()
        model.after_backward(first_step + i)
        opt.step()
        model.update_target(first_step + i + 1, 8)
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("name", sorted(SMALL))
def test_a_saved_and_reloaded_model_continues_exactly(name):
    g = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(32, 1, 8, 8, generator=g), 0.1 * torch.randn(2, 32, 1, 8, 8, generator=g))
        for _ in range(8)
    ]
    torch.manual_seed(0)
    full = _model(name)
    opt = torch.optim.AdamW(full.parameters(), lr=1e-2)
    expected = _steps(full, opt, batches, 0)

    torch.manual_seed(0)
    first = _model(name)
    opt = torch.optim.AdamW(first.parameters(), lr=1e-2)
    got = _steps(first, opt, batches[:4], 0)
    buffer = io.BytesIO()
    torch.save({"model": first.state_dict(), "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    torch.manual_seed(123)  # a fresh process: nothing but the checkpoint carries over
    resumed = _model(name)
    resumed.load_state_dict(state["model"])
    opt = torch.optim.AdamW(resumed.parameters(), lr=1e-2)
    opt.load_state_dict(state["opt"])
    got += _steps(resumed, opt, batches[4:], 4)
    assert got == expected
    for key, value in full.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


@pytest.mark.parametrize("name,frozen_steps", [("dino", 2), ("swav", 2)])
def test_the_prototypes_stay_frozen_for_their_first_steps(name, frozen_steps):
    torch.manual_seed(0)
    model = _model(name)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x = torch.randn(32, 1, 8, 8)
    batches = [(x, 0.1 * torch.randn(2, 32, 1, 8, 8)) for _ in range(4)]
    start = torch.nn.functional.normalize(model.prototypes.weight.detach().clone(), dim=1)
    _steps(model, opt, batches[:frozen_steps], 0)
    now = torch.nn.functional.normalize(model.prototypes.weight.detach(), dim=1)
    assert torch.allclose(now, start, atol=1e-6)  # SwAV renormalises them, nothing else
    _steps(model, opt, batches[frozen_steps:], frozen_steps)
    assert not torch.allclose(torch.nn.functional.normalize(model.prototypes.weight.detach(), dim=1), start)


def test_the_dino_centre_follows_the_teacher_and_moco_v2_fills_its_queue():
    torch.manual_seed(0)
    dino, moco = _model("dino"), _model("mocov2")
    x = torch.randn(32, 1, 8, 8)
    dino([x, x + 0.1], torch.arange(32))
    assert int(dino.train_step) == 1 and dino.center.abs().sum() > 0
    before = moco.queue.clone()
    moco([x, x + 0.1], torch.arange(32))
    assert int(moco.queue_ptr) == 32 and torch.equal(moco.queue[32:], before[32:])
    assert not torch.equal(moco.queue[:32], before[:32])
    moco.eval()
    moco([x, x + 0.1], torch.arange(32))
    assert int(moco.queue_ptr) == 32  # evaluation leaves the queue alone


TINY = [
    "data.dataset=digits",
    "model.backbone=mlp",
    "model.backbone_args={hidden: '32'}",
    "model.projector=32-16",
    "train.batch_size=128",
    "train.epochs=1",
    "train.name=r",
]


@pytest.mark.parametrize(
    "args,message",
    [
        (["method.name=mocov2", "method.params={queue_size: 100}"], "queue length 100 must be a multiple"),
        (["method.name=nnclr", "method.params={support_size: 200}"], "support length 200 must be a multiple"),
        (["method.name=swav", "method.params={queue_length: 64}"], "queue length 64 must be a multiple"),
        (
            ["method.name=swav", "method.params={sinkhorn_iterations: 0}"],
            "iterations must be an integer >= 1",
        ),
        (["method.name=swav", "method.params={epsilon: 0}"], "epsilon must be a finite number > 0"),
        (["method.name=dino", "method.params={teacher_temp: 0}"], "teacher_temp must be a finite number > 0"),
        (
            ["method.name=dino", "method.params={student_temp: -1}"],
            "student_temp must be a finite number > 0",
        ),
        (["method.name=dino", "method.params={center_momentum: 1.5}"], "center_momentum must be a number in"),
        (["method.name=mocov3", "method.ema_base=1.5"], "method.ema_base"),
        (["method.name=nnclr", "method.params={suport_size: 64}"], "Did you mean 'support_size'"),
    ],
)
def test_bad_settings_are_one_error_line_and_nothing_is_written(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["train", "--quiet", *TINY, *args])
    assert res.exit_code == 2, res.output
    assert res.output.count("error:") == 1 and message in res.output, res.output
    assert not (tmp_path / "runs").exists()
