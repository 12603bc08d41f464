"""A method from another installed package: declared in the ``selfsup.methods`` entry points, it trains
end to end through the CLI like a built-in one.

The package is written into a temporary directory with the metadata pip would install (a ``.dist-info``
folder with ``entry_points.txt``), so the real entry-point lookup finds it on ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

PACKAGE = '''
"""Alignment and uniformity on the hypersphere (Wang & Isola 2020, arXiv 2005.10242), as a plug-in."""
import torch
import torch.nn.functional as F

from selfsup.methods import MethodKind, MethodRecipe


def align_uniform_loss(z1, z2, t: float = 2.0):
    z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    align = (z1 - z2).pow(2).sum(1).mean()
    uniform = torch.pdist(torch.cat([z1, z2])).pow(2).mul(-t).exp().mean().log()
    return align + uniform


class FirstTwoViews(MethodKind):
    run_metrics = ("view_gap",)

    def loss(self, m, feats, views, index, transform):
        return m.recipe.criterion(m.projector(feats[0]), m.projector(feats[1]), **m.criterion_options)

    def monitor_metrics(self, m, z, batch_size):
        return {"view_gap": float((z[0] - z[1]).norm(dim=1).mean())}


RECIPE = MethodRecipe(
    name="align-uniform",
    kind=FirstTwoViews(),
    criterion=align_uniform_loss,
    projector="64-32",
    paper="Wang & Isola 2020, arXiv 2005.10242 (t = 2)",
    params={"t": 2.0},
)
'''

TINY = [
    "data.dataset=digits",
    "model.backbone=mlp",
    "model.backbone_args={hidden: '64-64'}",
    "train.batch_size=128",
    "data.monitor_size=256",
    "train.lidar_samples=32",
    "train.epochs=2",
    "train.name=plug",
]


@pytest.fixture
def plugin_path(tmp_path):
    (tmp_path / "mymethods").mkdir()
    (tmp_path / "mymethods" / "__init__.py").write_text(PACKAGE)
    info = tmp_path / "mymethods-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mymethods\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[selfsup.methods]\nalign-uniform = mymethods:RECIPE\n")
    return tmp_path


def _selfsup(args, path):
    env = {**os.environ, "PYTHONPATH": str(path)}
    return subprocess.run(
        [sys.executable, "-m", "selfsup.cli", *args], cwd=path, env=env, capture_output=True, text=True
    )


@pytest.mark.slow
def test_a_method_from_the_entry_points_trains_end_to_end(plugin_path):
    res = _selfsup(
        ["train", "--quiet", *TINY, "method.name=align-uniform", "method.params={t: 3.0}"], plugin_path
    )
    assert res.returncode == 0, res.stdout + res.stderr
    run = plugin_path / "runs" / "plug"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["method"] == "align-uniform" and summary["linear_acc"] > 0.5
    assert math.isfinite(summary["view_gap"])  # the kind's own run metric reaches the summary
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [e["loss"] for e in epochs if "loss" in e]
    assert len(losses) == 2 and losses[1] < losses[0]
    assert all("view_gap" in e for e in epochs if "backbone/rankme" in e)  # and each monitored epoch
    listed = _selfsup(["methods", "--json"], plugin_path)
    assert {"name": "align-uniform", "kind": "FirstTwoViews", "plugin": True} in [
        {k: m[k] for k in ("name", "kind", "plugin")} for m in json.loads(listed.stdout)
    ]


@pytest.mark.slow
def test_a_plugin_method_is_checked_and_named_in_hints(plugin_path):
    res = _selfsup(
        ["train", "--quiet", *TINY, "method.name=align-uniform", "method.params={tt: 3.0}"], plugin_path
    )
    assert res.returncode == 2 and res.stdout.count("error:") + res.stderr.count("error:") == 1
    assert "method 'align-uniform' has no option 'tt'" in res.stdout + res.stderr
    res = _selfsup(["train", "--quiet", *TINY, "method.name=align-unifrm"], plugin_path)
    assert res.returncode == 2 and "Did you mean 'align-uniform'" in res.stdout + res.stderr
    assert not (plugin_path / "runs").exists()
