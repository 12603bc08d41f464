"""Experiment trackers: what a run logs to TensorBoard, MLflow or Weights & Biases (``train.loggers``).

Each tracker gets the configuration, every epoch's record (loss, lr, RankMe / alpha-ReQ / LiDAR of each
monitored layer, the online probe), the final summary and the run report as an artifact; the same numbers
as ``metrics.jsonl`` and ``summary.json``, at step = epoch. Only rank 0 logs. The trackers are optional
extras (``pip install 'selfsup[mlflow]'``, ``[wandb]``, ``[tensorboard]``), imported when asked for.

Where their records go: TensorBoard in ``RUN_DIR/tensorboard``; MLflow in its file store
``TRACKING_DIR/mlruns`` (``train.tracking_dir``, default ``train.out_dir``; MLflow 3 keeps it behind
``MLFLOW_ALLOW_FILE_STORE=true``, which is set for it), or the store or server of
``$MLFLOW_TRACKING_URI``; W&B in offline mode in ``TRACKING_DIR/wandb`` (``wandb sync`` uploads it;
``WANDB_MODE=online`` logs live). ``train.experiment`` names the MLflow experiment and the W&B project and
group (a sweep names it after itself, so its trials are grouped). A resumed run continues the same tracker
runs: their ids are kept in ``RUN_DIR/trackers.json``.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import time
from pathlib import Path

from selfsup import config as C
from selfsup.errors import SelfsupError, Stopped
from selfsup.paths import check_output_dir
from selfsup.train.rundir import flat_config

#: The package each tracker needs, and the extra that installs it.
PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}


def tracking_dir(cfg: C.RunConfig) -> Path:
    return Path(cfg.train.tracking_dir or cfg.train.out_dir)


def check(cfg: C.RunConfig) -> None:
    """Before anything is written: every tracker asked for is installed, and its directory writable."""
    for name in cfg.train.loggers:
        try:
            importlib.import_module(PACKAGES[name])
        except ImportError:
            raise SelfsupError(
                f"train.loggers has {name}, which needs the {PACKAGES[name]} package: "
                f"pip install 'selfsup[{name}]'"
            ) from None
    if set(cfg.train.loggers) & {"mlflow", "wandb"}:
        check_output_dir(tracking_dir(cfg), "train.tracking_dir")


def _numbers(record: dict) -> dict[str, float]:
    """The finite numbers of a record (what a tracker plots)."""
    return {
        k: float(v)
        for k, v in record.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }


def _params(cfg: C.RunConfig) -> dict[str, str]:
    """The configuration as tracker parameters: dotted keys, values as text (JSON but for strings)."""
    flat = flat_config(cfg.model_dump(mode="json"))
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in flat.items()}


class TensorBoard:
    """Scalars in ``RUN_DIR/tensorboard`` (a resume drops the events of the epochs it redoes)."""

    def __init__(self, cfg: C.RunConfig, run_dir: Path, ids: dict, start_epoch: int):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_epoch + 1)
        if start_epoch == 0:
            self.writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in _params(cfg).items()))

    def log_epoch(self, numbers: dict, epoch: int) -> None:
        for k, v in numbers.items():
            self.writer.add_scalar(k, v, epoch)

    def finish(self, summary: dict, report: Path | None, step: int, status: str) -> None:
        for k, v in summary.items():
            self.writer.add_scalar(f"summary/{k}", v, step)
        if report is not None:
            self.writer.add_text("report", str(report))
        self.writer.close()


class MLflow:
    """A run of the experiment ``train.experiment`` in MLflow's file store (or ``$MLFLOW_TRACKING_URI``)."""

    def __init__(self, cfg: C.RunConfig, run_dir: Path, ids: dict, start_epoch: int):
        from mlflow.entities import Param, RunStatus
        from mlflow.tracking import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:  # the local file store, which MLflow 3 keeps working behind this opt-in
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            uri = (tracking_dir(cfg) / "mlruns").resolve().as_uri()
        self.client = MlflowClient(tracking_uri=uri)
        if "mlflow" in ids:  # resumed: the same MLflow run goes on
            self.run_id = ids["mlflow"]
            self.client.update_run(self.run_id, status=RunStatus.to_string(RunStatus.RUNNING))
            return
        exp = self.client.get_experiment_by_name(cfg.train.experiment)
        exp_id = exp.experiment_id if exp else self.client.create_experiment(cfg.train.experiment)
        self.run_id = self.client.create_run(exp_id, run_name=run_dir.name).info.run_id
        params = [Param(k, v[:6000]) for k, v in _params(cfg).items()]
        for i in range(0, len(params), 100):  # MLflow takes 100 parameters per call
            self.client.log_batch(self.run_id, params=params[i : i + 100])
        ids["mlflow"] = self.run_id

    def log_epoch(self, numbers: dict, epoch: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, epoch) for k, v in numbers.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def finish(self, summary: dict, report: Path | None, step: int, status: str) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(f"summary/{k}", v, now, step) for k, v in summary.items()]
        self.client.log_batch(self.run_id, metrics=metrics)
        if report is not None:
            self.client.log_artifact(self.run_id, str(report))
        self.client.set_terminated(self.run_id, status)


class WandB:
    """A W&B run in project and group ``train.experiment``, offline unless ``$WANDB_MODE`` says otherwise."""

    def __init__(self, cfg: C.RunConfig, run_dir: Path, ids: dict, start_epoch: int):
        import wandb

        self.wandb = wandb
        self.run = wandb.init(
            project=cfg.train.experiment,
            group=cfg.train.experiment,
            name=run_dir.name,
            id=ids.get("wandb"),  # None: a new run
            resume="allow",
            dir=str(tracking_dir(cfg)),
            mode=os.environ.get("WANDB_MODE", "offline"),
            config=cfg.model_dump(mode="json"),
            settings=wandb.Settings(console="off", x_disable_stats=True, silent=True),
        )
        ids["wandb"] = self.run.id

    def log_epoch(self, numbers: dict, epoch: int) -> None:
        self.run.log(numbers, step=epoch)

    def finish(self, summary: dict, report: Path | None, step: int, status: str) -> None:
        self.run.summary.update(summary)
        if report is not None:
            artifact = self.wandb.Artifact(f"report-{self.run.id}", type="report")
            artifact.add_file(str(report))
            self.run.log_artifact(artifact)
        self.run.finish(exit_code=0 if status == "FINISHED" else 1)


KINDS = {"tensorboard": TensorBoard, "mlflow": MLflow, "wandb": WandB}


class Trackers:
    """The trackers of ``train.loggers`` for one run, opened (or, on resume, continued) in order; none on
    the processes other than rank 0 (``enabled=False``). As a context manager, an exception ends the
    tracker runs as failed (killed, for a scheduler's stop)."""

    def __init__(self, cfg: C.RunConfig, run_dir: Path, start_epoch: int, enabled: bool = True):
        self.last_epoch = cfg.train.epochs
        self.ids_file = run_dir / "trackers.json"
        ids = json.loads(self.ids_file.read_text()) if enabled and self.ids_file.is_file() else {}
        names = cfg.train.loggers if enabled else []
        self.open = [KINDS[name](cfg, run_dir, ids, start_epoch) for name in names]
        if ids:
            tmp = self.ids_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(ids, indent=2))
            os.replace(tmp, self.ids_file)

    def log_epoch(self, record: dict) -> None:
        """The numbers of an epoch's record, at step = its epoch."""
        numbers = _numbers(record)
        for t in self.open:
            t.log_epoch(numbers, record["epoch"])

    def finish(self, summary: dict, report: Path | None = None, status: str = "FINISHED") -> None:
        """The summary (at step = the last epoch) and the report; then the tracker runs end."""
        opened, self.open = self.open, []
        for t in opened:
            t.finish(_numbers(summary), report, self.last_epoch, status)

    def __enter__(self) -> Trackers:
        return self

    def __exit__(self, kind, err, tb) -> None:
        if kind is not None:
            self.finish({}, status="KILLED" if issubclass(kind, Stopped) else "FAILED")
