"""Atomic, verified, safely-loaded checkpoints.

File layout: ``SELFSUP-CKPT-1\\n`` + sha256 hex of the payload + ``\\n`` + a ``torch.save`` payload.
Writes go to a temporary file that is fsync'ed and renamed, so a crash leaves the old file intact.
Loads check the digest (truncation, corruption) and use ``torch.load(weights_only=True)``, which refuses
arbitrary pickled objects, so a crafted checkpoint cannot execute code.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import warnings
from pathlib import Path

import torch

from selfsup.errors import CheckpointError
from selfsup.models.exported import is_export, read_export, read_state_dict

MAGIC = b"SELFSUP-CKPT-1\n"
#: ``epoch-00002.ckpt``: after epoch index 2 (the third epoch); ``epoch-00002-batch-000015.ckpt``: after the
#: 15th batch of that epoch (a stop mid-epoch, :mod:`selfsup.train.preempt`), older than the epoch's end.
_NAME = re.compile(r"^epoch-(\d+)(?:-batch-(\d+))?\.ckpt$")


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Write ``state`` atomically (temp file, fsync, rename) with an integrity digest."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getbuffer()  # no copy of the (tens of MB) payload
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n")
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk, an interrupt: the previous checkpoints stay, the half file goes
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load and verify one checkpoint; raise :class:`CheckpointError` when it cannot be trusted."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"cannot read checkpoint '{path}': {err}") from None
    header = len(MAGIC) + 65
    if not raw.startswith(MAGIC) or len(raw) < header:
        raise CheckpointError(f"'{path}' is not a selfsup checkpoint (bad header or truncated)")
    digest, payload = raw[len(MAGIC) : header - 1].decode(errors="replace"), raw[header:]
    if hashlib.sha256(payload).hexdigest() != digest:
        raise CheckpointError(f"checkpoint '{path}' is truncated or corrupted (digest mismatch)")
    try:
        return torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except Exception as err:  # weights_only refuses pickled code; anything else is corruption
        raise CheckpointError(f"checkpoint '{path}' was refused by the safe loader: {err}") from None


def checkpoint_path(directory: str | Path, epoch: int, batches: int | None = None) -> Path:
    """The file of the checkpoint at the end of epoch index ``epoch``, or after its first ``batches``."""
    part = "" if batches is None else f"-batch-{batches:06d}"
    return Path(directory) / f"epoch-{epoch:05d}{part}.ckpt"


def list_checkpoints(directory: str | Path, partial: bool = True) -> list[Path]:
    """Checkpoints in ``directory``, newest first; ``partial=False``: those at the end of an epoch only."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for p in directory.iterdir():
        if (m := _NAME.match(p.name)) and (partial or m.group(2) is None):
            at_end = m.group(2) is None
            found.append(((int(m.group(1)), at_end, int(m.group(2) or 0)), p))
    return [p for _, p in sorted(found, reverse=True)]


def epoch_checkpoints(directory: str | Path) -> dict[int, Path]:
    """The checkpoints kept at the end of an epoch, by epoch number (1 = the first epoch)."""
    return {int(_NAME.match(p.name).group(1)) + 1: p for p in list_checkpoints(directory, partial=False)}


def load_latest(
    directory: str | Path, map_location: str | torch.device = "cpu", partial: bool = False
) -> tuple[dict, Path]:
    """Newest checkpoint that verifies (``partial``: a mid-epoch one counts, for a resume); broken newer ones
    are reported and skipped."""
    paths = list_checkpoints(directory, partial)
    if not paths:
        raise CheckpointError(f"no checkpoint in '{directory}'; was the run started?")
    for path in paths:
        try:
            return load_checkpoint(path, map_location), path
        except CheckpointError as err:
            warnings.warn(f"{err}; falling back to the previous checkpoint", stacklevel=2)
    raise CheckpointError(f"every checkpoint in '{directory}' is unreadable: {[p.name for p in paths]}")


def remove_temp_files(directory: str | Path) -> None:
    """Delete the temp files of checkpoint writes that never finished (a process killed mid-write)."""
    directory = Path(directory)
    if directory.is_dir():
        for tmp in directory.glob(".epoch-*.ckpt.tmp-*"):
            tmp.unlink(missing_ok=True)


def prune(directory: str | Path, keep: int) -> None:
    """Keep the ``keep`` newest end-of-epoch checkpoints, and no mid-epoch one older than the newest of
    those (a resume starts from it)."""
    ends = list_checkpoints(directory, partial=False)
    every = list_checkpoints(directory)
    older = every[every.index(ends[0]) + 1 :] if ends else []
    for path in ends[keep:] + [p for p in older if p not in ends]:
        path.unlink(missing_ok=True)


def _backbone_state(source: Path) -> dict:
    """The backbone weights in a run directory (its newest good checkpoint), an export directory
    (``selfsup export``), or a file: a selfsup checkpoint, a ``.safetensors`` file, or a state dict saved with
    ``torch.save`` (keys with or without the ``backbone.`` prefix)."""
    if is_export(source):
        state = read_export(source)[0]
    elif source.is_dir():
        state = load_latest(source / "checkpoints")[0]["model"]
    elif source.suffix == ".safetensors":
        state = read_state_dict(source)
    elif source.read_bytes()[: len(MAGIC)] == MAGIC:
        state = load_checkpoint(source)["model"]
    else:
        try:
            state = torch.load(source, map_location="cpu", weights_only=True)
        except Exception as err:  # weights_only refuses pickled code; anything else is not a state dict
            raise CheckpointError(f"'{source}' is not a state dict the safe loader accepts: {err}") from None
        state = state.get("model", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"'{source}' holds no state dict of tensors")
    if any(k.startswith("backbone.") for k in state):
        state = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    return state


def init_backbone(backbone: torch.nn.Module, source: str | Path) -> None:
    """``model.init_from``: load the backbone's weights from a run directory or a file before training;
    every key must match the configured backbone (names and shapes), or one error says which do not."""
    path = Path(source).expanduser()
    if not path.exists():
        raise CheckpointError(
            f"model.init_from '{source}' does not exist; give a run directory or a weights file"
        )
    state = _backbone_state(path)
    own = backbone.state_dict()
    if all(k.startswith("net.") for k in own) and not any(k.startswith("net.") for k in state):
        state = {f"net.{k}": v for k, v in state.items()}  # a library's own file for a library backbone
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = [
            f"{what} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for what, keys in (("missing", missing), ("unexpected", unexpected), ("other shape", wrong))
            if keys
        ]
        raise CheckpointError(
            f"model.init_from '{source}' does not fit model.backbone ({'; '.join(parts)}); train with the "
            "backbone and backbone_args the weights were made with"
        )
    backbone.load_state_dict(state)
