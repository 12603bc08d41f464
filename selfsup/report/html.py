"""A tiny static HTML writer: a title, tables and inline PNG figures (no server, no JavaScript)."""

from __future__ import annotations

import base64
import html
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# A table scrolls sideways in its own box (.scroll) rather than widening the page; numeric columns (.n) are
# right-aligned, text columns left-aligned; pictures shrink to the page's width.
STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
.scroll{overflow-x:auto;margin:1em 0}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#f3f3f3;white-space:nowrap}.n{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;height:auto}h2{margin-top:1.6em}.warn{color:#a40}"""


def figure_to_img(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


class Html(str):
    """A table cell that is HTML already (a link): :func:`table` puts it in as it is, not escaped."""


def link(href: str, text: str) -> Html:
    """``<a href=...>text</a>``, both escaped."""
    return Html(f'<a href="{html.escape(href, quote=True)}">{html.escape(text)}</a>')


def table(rows: list[dict], columns: list[str] | None = None) -> str:
    """An HTML table of ``rows`` (dicts; the columns are the first row's keys unless given). Cells are
    escaped text (floats to 4 significant digits), except :class:`Html` cells. A column of numbers is
    right-aligned; a table wider than the page scrolls in its own box."""
    if not rows:
        return "<p>(nothing)</p>"
    columns = columns or list(rows[0])
    cls = {c: " class='n'" if _numeric([r.get(c) for r in rows]) else "" for c in columns}
    head = "".join(f"<th{cls[c]}>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td{cls[c]}>{_cell(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows
    )
    return f"<div class='scroll'><table><tr>{head}</tr>{body}</table></div>"


def _numeric(values: list) -> bool:
    """Numbers (None cells aside), not booleans."""
    given = [v for v in values if v is not None]
    return bool(given) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in given)


def _cell(v) -> str:
    return v if isinstance(v, Html) else html.escape(_fmt(v))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def page(title: str, sections: list[str]) -> str:
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{''.join(sections)}</body></html>"
    )
