"""Training engine: methods learn, the online probe is detached, kill/resume is exact, bad input exits 2."""

import copy
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from selfsup import rotations
from selfsup.cli import app
from selfsup.methods import METHODS, SSLModel, get_method
from selfsup.models import build_backbone

runner = CliRunner()
TINY = [
    "data.dataset=digits",
    "model.backbone=mlp",
    "model.backbone_args={hidden: '64-64'}",
    "model.projector=64-64",
    "model.predictor=32-64",
    "train.batch_size=128",
    "data.monitor_size=256",
    "train.lidar_samples=32",
]


VIT = {"img_size": 8, "patch_size": 2, "depth": 2, "embed_dim": 32, "num_heads": 2}
MASKED = {  # a 4 x 4 patch grid
    "mae": (VIT, {"decoder_dim": 16, "decoder_depth": 1, "decoder_heads": 2}),
    "ijepa": (
        {**VIT, "class_token": False, "global_pool": "avg", "fc_norm": False},
        {"predictor_dim": 16, "predictor_depth": 1, "predictor_heads": 2, "min_keep": 0},
    ),
}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_each_method_decreases_its_loss(name):
    torch.manual_seed(0)
    x = torch.randn(64, 1, 8, 8)
    views = [x + 0.1 * torch.randn_like(x), x + 0.1 * torch.randn_like(x)]
    backbone = build_backbone("mlp", (1, 8, 8), hidden="64-64")
    heads = ("64-64", "32-64")
    if name in MASKED:  # a ViT's patch tokens, no MLP heads
        backbone, heads = build_backbone("timm:vit_tiny_patch16_224", (1, 8, 8), **MASKED[name][0]), ("", "")
    idx = torch.arange(64)
    extra = {"train_labels": idx % 4}  # the supervised reference's classes
    transform = None
    if get_method(name).needs_transform:  # SIE: a relative rotation per pair
        extra["transform_identity"] = torch.tensor(rotations.IDENTITY)
        transform = rotations.canonical(torch.randn(64, 4))
    small = {"dino": {"n_prototypes": 256}, "nnclr": {"support_size": 256}}  # MoCo v2: a queue of
    # random keys (the paper's 65536): one small enough to fill with this repeated batch holds its positives
    small.update({k: v[1] for k, v in MASKED.items()})
    model = SSLModel(get_method(name), backbone, *heads, small.get(name), n_train=64, **extra)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for step in range(15):
        loss, _ = model.loss(views, idx, transform)
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.update_target(step, 15)
        losses.append(loss.item())
    assert all(np.isfinite(losses))
    assert losses[-1] < losses[0], losses


def test_online_probe_features_are_detached():
    torch.manual_seed(0)
    backbone = build_backbone("mlp", (1, 8, 8), hidden="32")
    model = SSLModel(get_method("vicreg"), backbone, "32-32")
    x = torch.randn(16, 1, 8, 8)
    _, feats = model.loss([x, x + 0.1], torch.arange(16))
    probe = torch.nn.Linear(feats.shape[1], 10)
    torch.nn.functional.cross_entropy(probe(feats), torch.randint(0, 10, (16,))).backward()
    assert probe.weight.grad is not None
    assert all(p.grad is None for p in model.parameters())


def test_ema_schedule_is_byol_cosine():
    from selfsup.methods import ema_momentum

    assert ema_momentum(0.99, 0, 100) == pytest.approx(0.99)
    assert ema_momentum(0.99, 50, 100) == pytest.approx(0.995)
    assert ema_momentum(0.99, 100, 100) == pytest.approx(1.0)


def _cli(args, cwd):
    return subprocess.Popen(
        [sys.executable, "-m", "selfsup.cli", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


IJEPA = [
    "method.name=ijepa",
    "model.projector=null",
    "model.predictor=null",
    "model.backbone=timm:vit_tiny_patch16_224",
    "model.backbone_args={img_size: 8, patch_size: 2, depth: 2, embed_dim: 32, num_heads: 2, "
    "class_token: false, global_pool: avg, fc_norm: false}",
    "method.params={predictor_dim: 16, predictor_depth: 1, predictor_heads: 2, min_keep: 0}",
]


@pytest.mark.slow
@pytest.mark.parametrize(  # bfloat16 steps (a CPU with AMX) and float32 steps, on any CPU; DINO's state
    "amx,method",
    [
        ("1", []),
        ("0", []),
        ("0", ["method.name=dino", "method.params={n_prototypes: 64, freeze_last_layer_epochs: 1}"]),
        ("0", IJEPA),  # its block masks and its EMA target
    ],
    ids=["bf16", "fp32", "dino", "ijepa"],
)
def test_kill_and_resume_matches_uninterrupted(tmp_path, monkeypatch, amx, method):
    monkeypatch.setenv("SELFSUP_AMX", amx)  # the processes started below inherit it
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the uninterrupted run beside the killed one, a core each
    args = ["train", "--quiet", *TINY, *method, "train.epochs=6", "train.deterministic=true", "train.seed=3"]
    full = _cli([*args, "train.name=full"], tmp_path)
    killed = _cli([*args, "train.name=killed"], tmp_path)
    ckdir = tmp_path / "runs" / "killed" / "checkpoints"
    deadline = time.time() + 120
    while not (ckdir / "epoch-00001.ckpt").exists():  # kill during the third epoch
        assert time.time() < deadline and killed.poll() is None, killed.communicate()[0]
        time.sleep(0.005)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not (tmp_path / "runs" / "killed" / "summary.json").exists()

    resumed = _cli(["train", "--quiet", "--resume", "runs/killed"], tmp_path)
    for done in (full, resumed):
        out, _ = done.communicate(timeout=300)
        assert done.returncode == 0, out
    a = json.loads((tmp_path / "runs/full/summary.json").read_text())
    b = json.loads((tmp_path / "runs/killed/summary.json").read_text())
    assert (a["linear_acc"], a["knn_acc"], a["rankme_backbone"]) == (
        b["linear_acc"],
        b["knn_acc"],
        b["rankme_backbone"],
    )
    la, lb = (
        [json.loads(line)["loss"] for line in (tmp_path / "runs" / r / "metrics.jsonl").open()]
        for r in ("full", "killed")
    )
    assert la == lb and len(la) == 6
    assert a["train_precision"] == b["train_precision"] == ("bfloat16" if amx == "1" else "float32")


@pytest.mark.slow
def test_short_run_writes_everything_and_beats_chance(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["train", "--quiet", *TINY, "train.epochs=3", "train.name=r"])
    assert res.exit_code == 0, res.output
    run = tmp_path / "runs" / "r"
    for f in ("config.yaml", "metrics.jsonl", "summary.json", "report.html"):
        assert (run / f).is_file(), f
    assert len(list((run / "checkpoints").glob("*.ckpt"))) == 2  # last two kept
    s = json.loads((run / "summary.json").read_text())
    assert s["linear_acc"] > 0.5 and s["knn_acc"] > 0.5  # chance is 0.1 on digits
    rec = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert rec["backbone/rankme"] > 1 and "backbone/lidar" in rec and rec["monitor_time"] > 0
    # embed and probe reuse the run
    res = runner.invoke(app, ["embed", str(run), "--split", "test", "-o", str(tmp_path / "e.npy")])
    assert res.exit_code == 0, res.output
    assert np.load(tmp_path / "e.npy").shape == (360, 64)
    res = runner.invoke(
        app, ["embed", str(run), "--split", "test", "--layer", "projector", "-o", str(tmp_path / "e.npz")]
    )
    assert res.exit_code == 0, res.output
    with np.load(tmp_path / "e.npz") as z:  # no pickles: numpy reads it as it is
        assert z["embeddings"].shape == (360, 64) and z["ids"].tolist() == list(range(360))
        assert str(z["layer"]) == "proj2"
    res = runner.invoke(app, ["quality", str(tmp_path / "e.npz"), "--json"])  # the matrix, not the ids
    assert res.exit_code == 0 and json.loads(res.output)["n"] == 360, res.output
    res = runner.invoke(app, ["probe", str(run), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["linear_acc"] == pytest.approx(s["linear_acc"], abs=1e-6)
    res = runner.invoke(app, ["train", "--resume", str(run), "optim.lr=0.5"])
    assert res.exit_code == 2 and "different configuration" in res.output
    res = runner.invoke(app, ["embed", str(run), "--layer", "fc9", "-o", str(tmp_path / "x.npy")])
    assert res.exit_code == 2 and "unknown layer 'fc9'" in res.output


@pytest.mark.slow
def test_diverging_run_stops_cleanly(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(
        app,
        [
            "train",
            "--quiet",
            *TINY,
            "train.epochs=2",
            "optim.lr=1e30",
            "optim.warmup_epochs=0",
            "train.name=d",
        ],
    )
    assert res.exit_code == 2, res.output
    assert "non-finite loss" in res.output and "Lower optim.lr" in res.output


def _bad(tmp_path):
    (tmp_path / "empty").mkdir()
    np.savez(tmp_path / "nan.npz", x=np.full((20, 1, 16), np.nan, np.float32))
    np.savez(tmp_path / "badlab.npz", x=np.zeros((20, 1, 16), np.float32), y=np.zeros(7, np.int64))
    return [
        (["data.dataset=folder:/no/such/dir"], "does not exist"),
        ([f"data.dataset=folder:{tmp_path / 'empty'}"], "no images"),
        ([f"data.dataset=arrays:{tmp_path / 'nan.npz'}"], "NaN"),
        ([f"data.dataset=arrays:{tmp_path / 'badlab.npz'}"], "7 labels but there are 20 samples"),
        (["method.name=vicrge"], "Did you mean 'vicreg'"),
        (["model.backbone=resnet19"], "Did you mean 'resnet18'"),
        (["train.epohcs=3"], "Did you mean 'train.epochs'"),
        (
            ["data.dataset=digits", "model.backbone=mlp", "train.batch_size=5000"],
            "larger than the training set",
        ),
    ]


def test_bad_input_exits_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for args, msg in _bad(tmp_path):
        res = runner.invoke(app, ["train", "--quiet", *args])
        assert res.exit_code == 2, (args, res.output)
        assert msg.lower() in res.output.lower(), (args, res.output)
        assert "Traceback" not in res.output


def test_resume_needs_a_run_dir(tmp_path):
    res = runner.invoke(app, ["train", "--resume", str(tmp_path)])
    assert res.exit_code == 2 and "not a run directory" in res.output


def _probes(monkeypatch, supported, permitted, name="_is_amx_tile_supported"):
    """torch's AMX probes answer ``supported`` / ``permitted`` (None: that probe is absent)."""
    for probe in ("_is_amx_tile_supported", "_is_cpu_support_amx_tile", "_init_amx"):
        monkeypatch.delattr(torch.cpu, probe, raising=False)
    if supported is not None:
        monkeypatch.setattr(torch.cpu, name, lambda: supported, raising=False)
    if permitted is not None:
        monkeypatch.setattr(torch.cpu, "_init_amx", lambda: permitted, raising=False)


def test_amp_applies_on_cuda_and_on_amx_cpus_only(monkeypatch):
    # decided by the probes patched here, whatever the CPU under the test has
    from selfsup.train.components import use_amp

    monkeypatch.delenv("SELFSUP_AMX", raising=False)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert use_amp(True, cuda) and not use_amp(False, cuda)
    assert not use_amp(True, torch.device("mps"))
    _probes(monkeypatch, supported=True, permitted=True)
    assert use_amp(True, cpu) and not use_amp(False, cpu)
    _probes(monkeypatch, supported=False, permitted=True)
    assert not use_amp(True, cpu)
    _probes(monkeypatch, supported=None, permitted=None)  # an older torch, or no x86 probe at all
    assert not use_amp(True, cpu)
    _probes(monkeypatch, True, permitted=False, name="_is_cpu_support_amx_tile")  # the OS refuses the tiles
    assert not use_amp(True, cpu)
    _probes(monkeypatch, True, permitted=True, name="_is_cpu_support_amx_tile")  # the name before torch 2.4
    assert use_amp(True, cpu)
    _probes(monkeypatch, True, permitted=None, name="_is_cpu_support_amx_tile")  # no OS probe: trusted
    assert use_amp(True, cpu)


def test_a_bad_selfsup_amx_is_one_error_line_before_the_run_dir_exists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SELFSUP_AMX", "yes")
    res = runner.invoke(app, ["train", "--quiet", *TINY, "train.epochs=1", "train.name=r"])
    assert res.exit_code == 2 and "error: SELFSUP_AMX='yes': use 1" in res.output
    assert not (tmp_path / "runs").exists()


def test_selfsup_amx_overrides_the_probes_on_the_cpu_only(monkeypatch):
    from selfsup.errors import ConfigError
    from selfsup.train.components import use_amp

    cpu = torch.device("cpu")
    _probes(monkeypatch, supported=False, permitted=False)
    monkeypatch.setenv("SELFSUP_AMX", "1")
    assert use_amp(True, cpu) and not use_amp(False, cpu) and not use_amp(True, torch.device("mps"))
    _probes(monkeypatch, supported=True, permitted=True)
    monkeypatch.setenv("SELFSUP_AMX", "0")
    assert not use_amp(True, cpu) and use_amp(True, torch.device("cuda"))
    monkeypatch.setenv("SELFSUP_AMX", "")  # empty: the probes decide
    assert use_amp(True, cpu)
    monkeypatch.setenv("SELFSUP_AMX", "yes")
    with pytest.raises(ConfigError, match="SELFSUP_AMX='yes': use 1"):
        use_amp(True, cpu)


@pytest.mark.slow
@pytest.mark.parametrize("amx", ["1", "0"])
def test_forced_amx_runs_the_training_forward_under_bfloat16_autocast(tmp_path, monkeypatch, amx):
    # every training forward pass records whether autocast was on and what dtype its layers returned
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SELFSUP_AMX", amx)
    seen = []

    def record(module, args, out):
        if module.training and torch.is_grad_enabled() and isinstance(out, torch.Tensor):
            seen.append((torch.is_autocast_enabled("cpu"), out.dtype))

    args = [*TINY, "train.epochs=1", "train.online_probe=false", "train.name=r"]  # the probe is float32
    hook = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        res = runner.invoke(app, ["train", "--quiet", *args])
    finally:
        hook.remove()
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "runs/r/summary.json").read_text())
    assert summary["train_precision"] == ("bfloat16" if amx == "1" else "float32")
    autocast, dtypes = {a for a, _ in seen}, {d for _, d in seen}
    if amx == "1":
        assert autocast == {True} and torch.bfloat16 in dtypes
    else:
        assert autocast == {False} and dtypes == {torch.float32}


def test_peak_memory_is_read_in_the_unit_of_each_platform(monkeypatch):
    import resource

    from selfsup.train import loop

    monkeypatch.setattr(resource, "getrusage", lambda who: type("U", (), {"ru_maxrss": 3 * 2**20})())
    monkeypatch.setattr(sys, "platform", "linux")  # KiB
    assert loop.peak_rss_mb() == 3 * 2**10
    monkeypatch.setattr(sys, "platform", "darwin")  # bytes
    assert loop.peak_rss_mb() == 3


def test_fused_adamw_gives_the_same_steps_as_the_reference_adamw():
    # torch's fused kernel against its for-loop AdamW, weight decay on matrices only (build_optimizer)
    from selfsup.config import OptimConfig
    from selfsup.train.optim import build_optimizer, fusable

    torch.manual_seed(0)
    # no BatchNorm after a biased layer: that bias's gradient is 0, Adam would amplify its rounding noise
    nets = [torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))]
    nets.append(copy.deepcopy(nets[0]))
    params = [list(n.parameters()) for n in nets]
    assert fusable(params[0])
    fused = build_optimizer(params[0], OptimConfig(lr=1e-2, weight_decay=0.1))
    assert fused.defaults["fused"]
    groups = [{"params": [p for p in params[1] if p.ndim > 1], "weight_decay": 0.1}]
    groups.append({"params": [p for p in params[1] if p.ndim <= 1], "weight_decay": 0.0})
    reference = torch.optim.AdamW(groups, lr=1e-2, foreach=False)
    x = torch.randn(32, 8)
    for _ in range(5):
        for net, opt in zip(nets, (fused, reference), strict=True):
            opt.zero_grad()
            net(x).square().mean().backward()
            opt.step()
    for a, b in zip(params[0], params[1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_resume_on_a_machine_of_another_precision_warns(tmp_path, monkeypatch):
    # the checkpoint records the steps' dtype; resuming on a CPU with AMX after one without says so
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SELFSUP_AMX", "0")
    res = runner.invoke(app, ["train", "--quiet", *TINY, "train.epochs=1", "train.name=r"])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "runs/r/summary.json").read_text())
    assert summary["train_precision"] == "float32"
    monkeypatch.setenv("SELFSUP_AMX", "1")
    res = runner.invoke(app, ["train", "--quiet", "--resume", "runs/r", "train.epochs=2"])
    assert res.exit_code == 0, res.output
    assert "trained with float32 steps, this machine runs bfloat16" in " ".join(res.output.split())
    summary = json.loads((tmp_path / "runs/r/summary.json").read_text())
    assert summary["train_precision"] == "bfloat16"


@pytest.mark.slow
def test_kornia_views_train_in_one_process(tmp_path):
    """The kornia backend cannot share a batch between processes, and one process never shards (regression:
    the loop sharded every batch, so kornia views stopped a single-process run)."""
    args = ["train", "--quiet", *TINY, "train.epochs=1", f"train.out_dir={tmp_path}", "train.name=k"]
    result = runner.invoke(app, [*args, "data.view_args={backend: kornia}"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "k" / "summary.json").is_file()


def test_a_datasets_own_default_views_are_the_ones_trained_with(monkeypatch):
    """The entry's ``default_views`` (what the config check validated ``data.view_args`` against) wins over
    the shape's default when the loaded data does not name one."""
    from selfsup import config as C
    from selfsup.data import DataSplits, load_dataset
    from selfsup.train import components

    digits = load_dataset("digits")
    data = DataSplits("digits", "image", digits.train, None, 10, digits.sample_shape)  # no info
    used = []
    monkeypatch.setattr(components, "build_view_set", lambda recipe, *a, **k: used.append(recipe))
    monkeypatch.setattr(components, "dataset_default_views", lambda spec: "byol")  # an entry's own choice
    components.build_views_of(C.resolve(None, TINY), data)
    assert used == ["byol"]  # not "small-image", the default for 8 x 8 samples
