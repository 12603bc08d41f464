"""``python -m selfsup`` (and ``torchrun -m selfsup``) runs the ``selfsup`` command."""

from selfsup.cli import app

app(prog_name="selfsup")
