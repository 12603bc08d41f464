"""``selfsup objects3d``: look at the procedural 3-D object dataset.

Mounted by the main command as ``app.add_typer(objects3d_app, name="objects3d")``. torch and matplotlib are
imported inside the command so that ``selfsup --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

from selfsup.cli.boundary import console, user_errors
from selfsup.errors import ConfigError
from selfsup.paths import check_output_file

objects3d_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="objects3d: procedural 3-D objects rendered in torch (an offline 3DIEBench).",
)

MAX_VIEWS = 32


@objects3d_app.command()
@user_errors
def preview(
    output: Path = typer.Option(..., "-o", "--output", help="PNG file to write"),
    classes: int = typer.Option(10, "--classes", help="the first N classes (2..12)"),
    image_size: int = typer.Option(64, "--image-size", help="32 or 64"),
    seed: int = typer.Option(0, "--seed", help="data seed (the dataset's data_seed)"),
    n: int = typer.Option(8, "--n", help="views shown per class"),
):
    """Draw a grid: one row per class (its first instance), one column per view, default factors.

    The images are those of the dataset with the same data seed (instance 0 of each class, its first N
    views); only what is drawn is rendered."""
    from selfsup.data.objects3d import CLASSES, make_shapes, render_views, sample_factors
    from selfsup.data.objects3d.generate import check_counts
    from selfsup.data.objects3d.render import check_size

    check_size(image_size)
    check_counts(classes, 1, n)
    if n > MAX_VIEWS:
        raise ConfigError(f"--n must be at most {MAX_VIEWS} views per class, got {n}.")
    check_output_file(output, suffix=".png", what="--output")
    images = render_views(make_shapes(classes, 1, seed), sample_factors(classes, 1, n, seed), image_size)
    _draw_grid(images.view(classes, n, 3, image_size, image_size), CLASSES[:classes], output)
    console.print(f"wrote {output} ({classes} classes x {n} views, {image_size} x {image_size})")


def _draw_grid(images, row_names, output: Path) -> None:
    """A matplotlib grid of uint8 images ``rows x cols x 3 x H x W`` with the row names on the left."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = images.shape[:2]
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1 + 1.0, rows * 1.1), squeeze=False)
    for r in range(rows):
        for c in range(cols):
            ax = axes[r][c]
            ax.imshow(images[r, c].permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r][0].set_ylabel(row_names[r], rotation=0, ha="right", va="center")
    fig.tight_layout()
    fig.savefig(output, dpi=100)
    plt.close(fig)
