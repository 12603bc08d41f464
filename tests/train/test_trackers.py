"""``train.loggers``: TensorBoard, MLflow and W&B get what ``metrics.jsonl`` and ``summary.json`` hold, read
back with each library's own reader (TensorBoard's event accumulator, MLflow's client on its file store, W&B's
record definitions on its offline run file); a resumed run continues the same tracker runs; bad input is one
error line and writes nothing."""

from __future__ import annotations

import json
import os
import struct
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from selfsup.cli import app

runner = CliRunner()
TINY = [
    "data.dataset=digits",
    "model.backbone=mlp",
    "model.backbone_args={hidden: '64'}",
    "model.projector=64-64",
    "train.batch_size=128",
    "data.monitor_size=256",
    "train.lidar_samples=32",
    "train.monitor_every=1",
]


def wandb_records(path: Path) -> list:
    """The records of a W&B run file (``run-ID.wandb``): W&B's protobuf ``Record`` messages in the LevelDB
    log framing that W&B writes (a 7-byte ``:W&B`` header, then 32 KiB blocks of chunks with a 7-byte
    header: checksum, length, type full / first / middle / last)."""
    from wandb.proto import wandb_internal_pb2 as pb

    raw = path.read_bytes()
    assert struct.unpack("<4sHB", raw[:7])[:2] == (b":W&B", 0xBEE1)
    out, pos, chunks = [], 7, b""
    while pos + 7 <= len(raw):
        left = 32768 - pos % 32768
        _, length, kind = struct.unpack("<IHB", raw[pos : pos + 7])
        if left < 7 or (length == 0 and kind == 0):  # the padded end of a block
            pos += left
            continue
        chunks = (
            raw[pos + 7 : pos + 7 + length] if kind in (1, 2) else chunks + raw[pos + 7 : pos + 7 + length]
        )
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(chunks)
            out.append(record)
    return out


def _items(updates) -> dict:
    return {u.key or "/".join(u.nested_key): json.loads(u.value_json) for u in updates}


def _numbers(record: dict) -> dict:
    return {k: v for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


@pytest.mark.slow
def test_trackers_get_the_metrics_and_a_resume_continues_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    loggers = "train.loggers=[tensorboard,mlflow,wandb]"
    res = runner.invoke(app, ["train", "--quiet", *TINY, loggers, "train.epochs=2", "train.name=r"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["train", "--quiet", "--resume", "runs/r", "train.epochs=3"])
    assert res.exit_code == 0, res.output
    run = tmp_path / "runs" / "r"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((run / "summary.json").read_text())
    ids = json.loads((run / "trackers.json").read_text())
    keys = sorted(_numbers(records[0]).keys() & _numbers(records[-1]).keys())
    assert len(records) == 3 and "backbone/rankme" in keys and "online_probe_test_acc" in keys
    _check_mlflow(tmp_path / "runs" / "mlruns", ids["mlflow"], records, keys, summary)
    _check_wandb(tmp_path / "runs" / "wandb", ids["wandb"], records, summary)
    _check_tensorboard(run / "tensorboard", records, keys)


def _check_mlflow(store: Path, run_id: str, records: list, keys: list, summary: dict) -> None:
    from mlflow.tracking import MlflowClient

    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow 3's opt-in to its file store (set by the run)
    client = MlflowClient(tracking_uri=store.as_uri())
    (found,) = client.search_runs([client.get_experiment_by_name("selfsup").experiment_id])
    assert found.info.run_id == run_id and found.info.run_name == "r" and found.info.status == "FINISHED"
    for key in keys:  # one history, both sessions: the resume continued the same MLflow run
        history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
        assert history == [(r["epoch"], float(r[key])) for r in records], key
    assert found.data.params["optim.lr"] == "0.003" and found.data.params["data.dataset"] == "digits"
    assert found.data.metrics["summary/linear_acc"] == summary["linear_acc"]
    assert "report.html" in [a.path for a in client.list_artifacts(run_id)]


def _check_wandb(root: Path, run_id: str, records: list, summary: dict) -> None:
    files = sorted(root.glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
    assert len(files) == 2  # the first session and the resumed one, under the same run id
    history, final, config, artifacts = [], {}, {}, []
    for f in files:
        for rec in wandb_records(f):
            kind = rec.WhichOneof("record_type")
            if kind == "history":
                history.append({k: v for k, v in _items(rec.history.item).items() if not k.startswith("_")})
            elif kind == "summary":
                final.update(_items(rec.summary.update))
            elif kind == "run":
                config.update(_items(rec.run.config.update))
            elif kind == "artifact":
                artifacts.append(rec.artifact.type)
    assert history == [_numbers(r) for r in records]
    assert final["linear_acc"] == summary["linear_acc"] and final["knn_acc"] == summary["knn_acc"]
    assert config["optim"]["lr"] == 0.003 and "report" in artifacts


def _check_tensorboard(logdir: Path, records: list, keys: list) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logdir))
    events.Reload()
    for key in keys:  # TensorBoard keeps float32
        scalars = [(e.step, e.value) for e in events.Scalars(key)]
        assert scalars == [(r["epoch"], pytest.approx(r[key], rel=1e-6, abs=1e-30)) for r in records], key


@pytest.mark.parametrize(
    "args, message",
    [
        (["train.loggers=[mlflw]"], "unknown logger 'mlflw'. Did you mean 'mlflow'?"),
        (["train.loggers=[wandb]"], "needs the wandb package: pip install 'selfsup[wandb]'"),
        (["train.loggers=[mlflow]", "train.tracking_dir=taken/mlruns"], "train.tracking_dir"),
    ],
    ids=["unknown", "missing-extra", "unwritable"],
)
def test_bad_tracker_input_is_one_error_and_writes_nothing(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb fails: the extra is not installed
    (tmp_path / "taken").write_text("a file where a directory should be")
    res = runner.invoke(app, ["train", "--quiet", *TINY, *args, "train.epochs=1"])
    assert res.exit_code == 2 and message in res.output, res.output
    assert res.output.count("error:") == 1 and "Traceback" not in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
