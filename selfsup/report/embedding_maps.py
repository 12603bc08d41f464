"""Pictures of embeddings: 2-D maps (:func:`selfsup.embeddings.map_2d`) as scatter plots, coloured by label
when there are labels (the run report's "Embeddings" section and ``selfsup embed --plot``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from selfsup.report.html import figure_to_img, plt


def map_figure(maps: dict[str, np.ndarray], labels: np.ndarray | None = None):
    """One scatter plot per ``{title: N x 2}`` map, side by side; a legend of the classes (up to 20)."""
    fig, axes = plt.subplots(1, len(maps), figsize=(5.2 * len(maps), 4.6), squeeze=False)
    has_labels = labels is not None and len(labels) > 0
    classes = np.unique(labels) if has_labels else []
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for ax, (title, xy) in zip(axes[0], maps.items(), strict=True):
        if not has_labels:
            ax.scatter(xy[:, 0], xy[:, 1], s=4, alpha=0.6, color="#4a6fa5")
        for i, k in enumerate(classes):
            sel = labels == k
            ax.scatter(xy[sel, 0], xy[sel, 1], s=4, alpha=0.7, color=cmap(i % cmap.N), label=str(k))
        ax.set(title=title, xticks=[], yticks=[])
    if 0 < len(classes) <= 20:
        axes[0][-1].legend(
            title="label", markerscale=3, fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5)
        )
    fig.tight_layout()
    return fig


def embedding_section(run_dir: Path) -> str:
    """The run report's section from ``embedding_map.npz`` (empty when the run has none)."""
    path = run_dir / "embedding_map.npz"
    if not path.is_file():
        return ""
    with np.load(path, allow_pickle=False) as z:
        layers, labels = [str(v) for v in z["layers"]], z["labels"]
        maps = {
            f"backbone output ({layers[0]})": z["backbone_pca"],
            f"projector output ({layers[1]})": z["projector_pca"],
        }
    n = len(next(iter(maps.values())))
    what = "test samples, coloured by label" if len(labels) else "monitor samples (no labels)"
    return f"<h2>Embeddings</h2><p>2-D PCA of {n} {what}.</p>" + figure_to_img(map_figure(maps, labels))
