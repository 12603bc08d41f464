"""What selfsup offers: the ``datasets`` and ``methods`` it can train on and with."""

from __future__ import annotations

import json

import typer
from rich.markup import escape
from rich.table import Table

from selfsup.cli.boundary import show, user_errors


@user_errors
def datasets(as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table")):
    """List the built-in datasets with sizes and shapes."""
    from selfsup.data import list_datasets

    rows = list_datasets()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    t = Table(title="datasets")
    for col in rows[0]:
        t.add_column(col)
    for r in rows:
        t.add_row(*[escape(str(v)) for v in r.values()])
    show(t)


@user_errors
def methods(as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table")):
    """List the methods (built-in and installed plug-ins) with their kind, projector and source."""
    from selfsup.methods import METHODS, get_method
    from selfsup.plugins import plugin_names

    names = [*METHODS, *(n for n in plugin_names("selfsup.methods") if n not in METHODS)]
    rows = []
    for name in names:
        r = get_method(name)
        kind = type(r.kind).__name__
        rows.append({"name": name, "kind": kind, "projector": r.projector or "-", "paper": r.paper})
        rows[-1]["plugin"] = name not in METHODS
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    t = Table(title="methods")
    for col in ("name", "kind", "projector", "paper"):
        t.add_column(col, overflow="fold")
    for r in rows:
        name = r["name"] + (" (plug-in)" if r["plugin"] else "")
        t.add_row(name, r["kind"], r["projector"], escape(r["paper"]))
    show(t)
