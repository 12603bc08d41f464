"""The result files share one schema, and the tables of docs/results/ (and the README's headline) are
exactly what the renderer makes of them."""

from __future__ import annotations

import json

import pytest

from benchmarks import render
from benchmarks._common import RESULTS, SCHEMA, write_result


def _result_files():
    return sorted([*RESULTS.glob("*.json"), *RESULTS.glob("selection/**/summary.json")])


@pytest.mark.parametrize("path", _result_files(), ids=lambda p: str(p.relative_to(RESULTS)))
def test_every_result_file_has_the_one_schema(path):
    doc = json.loads(path.read_text())
    assert tuple(doc) == SCHEMA
    assert doc["date"][:4].isdigit() and doc["command"] and isinstance(doc["machine"], dict)


def test_the_generated_tables_equal_a_fresh_render(capsys):
    assert render.main(["--check"]) == 0, capsys.readouterr().err


def test_a_stale_or_unknown_table_is_found():
    fresh, changed = render.render_page("<!-- render: layers -->\nold\n<!-- /render -->\n", "page.md")
    assert changed == ["layers"] and "| layer | dim |" in fresh
    assert render.render_page(fresh, "page.md") == (fresh, [])  # rendering twice changes nothing
    with pytest.raises(SystemExit, match="unknown table 'layer'"):
        render.render_page("<!-- render: layer -->\n<!-- /render -->\n", "page.md")


def test_write_result_writes_the_schema(tmp_path):
    path = write_result(tmp_path / "r.json", {"ratio": 2.0}, command="python -m x", machine={"cpus": 2})
    doc = json.loads(path.read_text())
    assert tuple(doc) == SCHEMA and doc["results"] == {"ratio": 2.0} and doc["command"] == "python -m x"
