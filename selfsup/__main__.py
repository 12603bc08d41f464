"""``python -m selfsup`` (and ``torchrun -m selfsup``) runs the ``selfsup`` command."""

from selfsup.cli import main

main()
