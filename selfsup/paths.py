"""Where selfsup writes: output locations checked before any work starts (a file we may create, a directory
we may fill), and the cache of generated datasets.

Each check tries what the work will do (create an entry in the directory, then remove it): permission bits
do not tell the truth for root or for pseudo file systems such as /proc.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from selfsup.errors import SelfsupError


def cache_dir() -> Path:
    """Directory for generated datasets: ``$SELFSUP_CACHE`` if set, else ``~/.cache/selfsup``."""
    env = os.environ.get("SELFSUP_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "selfsup"


def _can_create_in(directory: Path) -> str | None:
    """None when an entry can be created in ``directory``; else the reason."""
    try:
        fd, name = tempfile.mkstemp(prefix=".selfsup-probe-", dir=directory)
    except OSError as err:
        return err.strerror or str(err)
    os.close(fd)
    os.unlink(name)
    return None


def check_output_file(path: str | Path, suffix: str | None = None, what: str = "output file") -> Path:
    """``path`` can be written: not a directory, the right suffix (``np.save`` would silently append
    ``.npy``), and its parent an existing directory we may create files in."""
    path = Path(path)
    if path.is_dir():
        raise SelfsupError(f"{what} '{path}' is a directory; give a file name inside it")
    if suffix is not None and path.suffix != suffix:  # np.save appends .npy to ".NPY" too
        raise SelfsupError(f"{what} '{path}' must end in {suffix}, e.g. '{path.with_suffix(suffix)}'")
    parent = path.parent
    if not parent.is_dir():
        raise SelfsupError(f"{what} '{path}': the directory '{parent}' does not exist; create it first")
    reason = _can_create_in(parent)
    if reason:
        raise SelfsupError(f"{what} '{path}': cannot write in '{parent}' ({reason})")
    return path


def check_output_dir(path: str | Path, what: str = "output directory") -> Path:
    """``path`` is, or can be created as, a directory we may write into: its nearest existing ancestor is
    a directory we may create entries in."""
    path = Path(path)
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise SelfsupError(f"{what} '{path}': '{existing}' is a file, not a directory")
    reason = _can_create_in(existing)
    if reason:
        raise SelfsupError(f"{what} '{path}': cannot write in '{existing}' ({reason})")
    return path
