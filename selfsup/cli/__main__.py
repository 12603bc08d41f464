"""``python -m selfsup.cli`` runs the ``selfsup`` command."""

from selfsup.cli import main

main()
