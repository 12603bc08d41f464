"""The ``objects3d`` dataset: generated once per parameter set, cached on disk, split by instance.

3DIEBench's layout: ``instances`` objects per class, ``views`` images of each (defaults 10 x 50 x 40 =
20,000 images), a seeded split of each class's instances into train and test (no instance in both). The
images depend on the generator parameters only (``data_seed``, ``classes``, ``instances``, ``views``,
``image_size``, ``factors``), not on the run's seed, so every run and every sweep trial sees the same
benchmark; they are cached as ``cache_dir()/objects3d/<hash>.npz`` with a ``<hash>.json`` manifest, the hash
covering the parameters and :data:`GENERATOR_VERSION`. The split is drawn at load time (``test_fraction``
and ``data_seed``), so one cache file serves every split.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from selfsup.data.core import ArrayDataset, DataSplits, save_npz_atomic
from selfsup.data.objects3d.controlled import check_diversity, diverse_factors
from selfsup.data.objects3d.generate import (
    FACTOR_NAMES,
    check_counts,
    labels_of,
    render_views,
    resolve_factors,
    sample_factors,
)
from selfsup.data.objects3d.render import check_size
from selfsup.data.objects3d.shapes import CLASSES, make_shapes
from selfsup.errors import ConfigError
from selfsup.paths import cache_dir

#: factors some sets record besides FACTOR_NAMES (``varied``: the diversity option's varied images)
EXTRA_FACTORS = ("varied",)
GENERATOR_VERSION = 1  # bump when shapes, factor draws or the renderer change what is generated
PROGRESS_ABOVE = 4000  # a progress bar when rendering more images than this


def _factors_or_diversity(factors: dict | None, diversity: dict | None) -> None:
    if diversity is not None and factors is not None:
        raise ConfigError("objects3d takes factors= or diversity=, not both (diversity sets every factor)")


def generate(
    classes: int = 10,
    instances: int = 50,
    views: int = 40,
    image_size: int = 32,
    factors: dict | None = None,
    seed: int = 0,
    progress: bool | None = None,
    diversity: dict | None = None,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Render the whole set, nothing cached: uint8 images ``N x 3 x H x W``, int64 labels and the factors
    (:func:`~selfsup.data.objects3d.generate.sample_factors`), class-major, then instance, then view.
    ``progress=None``: a progress bar above :data:`PROGRESS_ABOVE` images. ``diversity``: the factors of
    :func:`~selfsup.data.objects3d.controlled.diverse_factors` instead (``factors`` must then be None)."""
    check_counts(classes, instances, views)
    check_size(image_size)
    shapes = make_shapes(classes, instances, seed)
    _factors_or_diversity(factors, diversity)
    if diversity is not None:
        f = diverse_factors(classes, instances, views, seed, diversity)
    else:
        f = sample_factors(classes, instances, views, seed, factors)
    n = len(f["instance"])
    x = render_views(shapes, f, image_size, progress=n > PROGRESS_ABOVE if progress is None else progress)
    return x, labels_of(classes, instances, views), f


def generator_parameters(data_seed, image_size, classes, instances, views, factors, diversity=None) -> dict:
    """Everything the images depend on, as JSON values (the cache key, recorded in the manifest)."""
    extra = {"diversity": check_diversity(diversity)} if diversity is not None else {}
    return {
        **extra,
        "generator_version": GENERATOR_VERSION,
        "data_seed": int(data_seed),
        "image_size": int(image_size),
        "classes": int(classes),
        "instances": int(instances),
        "views": int(views),
        "factors": {k: list(v) if isinstance(v, tuple) else v for k, v in resolve_factors(factors).items()},
    }


def cache_paths(params: dict) -> tuple[Path, Path]:
    """The ``.npz`` and manifest ``.json`` of a parameter set."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    folder = cache_dir() / "objects3d"
    return folder / f"{digest}.npz", folder / f"{digest}.json"


def _read_cache(path: Path, params: dict):
    n = params["classes"] * params["instances"] * params["views"]
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {
                k: torch.from_numpy(z[k]) for k in ("x", "y", *FACTOR_NAMES, *EXTRA_FACTORS) if k in z.files
            }
    except (OSError, KeyError, ValueError):
        return None
    size = params["image_size"]
    if data["x"].shape != (n, 3, size, size) or data["x"].dtype != torch.uint8:
        return None
    if any(len(v) != n for v in data.values()) or not set(FACTOR_NAMES) <= set(data):
        return None
    return data.pop("x"), data.pop("y"), data


def _write_json_atomic(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def _manifest(params: dict, npz: Path, seconds: float | None) -> dict:
    n_inst = params["classes"] * params["instances"]
    return {
        "dataset": "objects3d",
        "generator_version": GENERATOR_VERSION,
        "parameters": params,
        "class_names": list(CLASSES[: params["classes"]]),
        "counts": {"classes": params["classes"], "instances": n_inst, "images": n_inst * params["views"]},
        "generation_seconds": seconds,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "file": npz.name,
    }


def cached_generate(params: dict) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], dict]:
    """Images, labels, factors and manifest of ``params`` (:func:`generator_parameters`): from the cache,
    or generated and cached (a read-only cache folder: a warning, the data is still returned)."""
    npz, manifest_path = cache_paths(params)
    hit = _read_cache(npz, params) if npz.exists() else None
    if hit is not None:
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            manifest = _manifest(params, npz, None)
        return (*hit, manifest)
    t0 = time.perf_counter()
    keys = ("classes", "instances", "views", "image_size")
    diversity = params.get("diversity")
    factors = None if diversity else params["factors"]
    x, y, f = generate(
        **{k: params[k] for k in keys}, factors=factors, seed=params["data_seed"], diversity=diversity
    )
    manifest = _manifest(params, npz, round(time.perf_counter() - t0, 2))
    try:
        save_npz_atomic(npz, x=x.numpy(), y=y.numpy(), **{k: v.numpy() for k, v in f.items()})
        _write_json_atomic(manifest_path, manifest)
    except OSError as err:
        warnings.warn(
            f"could not cache objects3d at {npz}: {err}; set SELFSUP_CACHE to a writable folder.",
            stacklevel=3,
        )
    return x, y, f, manifest


def split_instances(classes: int, instances: int, test_fraction: float, seed: int) -> np.ndarray:
    """Global ids of the test instances: ``round(test_fraction * instances)`` of each class (at least one,
    at most all but one), drawn with ``numpy.random.default_rng((seed, 1))``; empty for 0."""
    if (
        isinstance(test_fraction, bool)
        or not isinstance(test_fraction, (int, float))
        or not 0 <= test_fraction < 1
    ):
        raise ConfigError(f"objects3d test_fraction must be in [0, 1), got {test_fraction!r}.")
    if test_fraction == 0:
        return np.zeros(0, dtype=np.int64)
    if instances < 2:
        raise ConfigError(
            f"objects3d needs instances >= 2 to split them (test_fraction > 0), got {instances}."
        )
    n_test = min(max(round(test_fraction * instances), 1), instances - 1)
    rng = np.random.default_rng((int(seed), 1))
    return np.sort(
        np.concatenate([c * instances + rng.permutation(instances)[:n_test] for c in range(classes)])
    )


def load_objects3d(
    seed: int = 0,
    image_size: int = 32,
    classes: int = 10,
    instances: int = 50,
    views: int = 40,
    test_fraction: float = 0.2,
    factors: dict | None = None,
    data_seed: int = 0,
    diversity: dict | None = None,
) -> DataSplits:
    """objects3d: procedural 3-D objects (offline 3DIEBench), uint8 ``3 x image_size x image_size`` RGB.

    ``classes`` (the first n of :data:`~selfsup.data.objects3d.shapes.CLASSES`), ``instances`` per class,
    ``views`` per instance, ``factors`` (ranges, see :mod:`~selfsup.data.objects3d.generate`), ``data_seed``
    (shapes, factors and split). ``seed`` (the run's) is unused: the benchmark stays fixed across runs.
    Train/test split by instance, ``test_fraction`` of each class's instances to test. Every split carries
    its images' factors in ``ArrayDataset.factors``; ``info["manifest"]`` describes the generation.
    ``diversity`` (the robustness study's training sets, :func:`~selfsup.data.objects3d.controlled.
    diverse_factors`): every factor canonical but one, varied for a fraction of the images."""
    check_size(image_size)
    check_counts(classes, instances, views)
    test_ids = split_instances(classes, instances, test_fraction, data_seed)
    _factors_or_diversity(factors, diversity)
    params = generator_parameters(data_seed, image_size, classes, instances, views, factors, diversity)
    x, y, f, manifest = cached_generate(params)
    is_test = torch.from_numpy(np.isin(f["instance"].numpy(), test_ids))

    def part(mask: torch.Tensor) -> ArrayDataset:
        return ArrayDataset(x[mask], y[mask], factors={k: v[mask] for k, v in f.items()})

    return DataSplits(
        name="objects3d",
        modality="image",
        train=part(~is_test),
        test=part(is_test) if len(test_ids) else None,
        num_classes=classes,
        sample_shape=(3, image_size, image_size),
        class_names=list(CLASSES[:classes]),
        info={
            "default_views": "pairs",
            "manifest": manifest,
            "cache": str(cache_paths(params)[0]),
            "split": {
                "test_fraction": test_fraction,
                "test_instances": test_ids.tolist(),
                "data_seed": data_seed,
            },
        },
    )
