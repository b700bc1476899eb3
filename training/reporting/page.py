"""A self-contained HTML page for one training run: inline CSS, PNGs as base64 data URIs, a
header (model, version, created), tables of metrics, parameters and the data snapshot, then the
kind's sections.  Figures are matplotlib ``Figure`` objects drawn by the Agg canvas (no pyplot,
no global state); ``figure`` renders one and clears it."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Any, TypedDict

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from training.fraud.registry import flatten

DPI = 100
PNG_URI = "data:image/png;base64,"
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:72rem;
color:#1f2328;padding:0 1rem}
header{border-bottom:2px solid #d0d7de;margin-bottom:1rem}
h1{font-size:1.6rem;margin:0 0 .3rem}h2{font-size:1.25rem;margin-top:2rem;
border-bottom:1px solid #d0d7de}
.meta{color:#57606a;margin:0 0 .8rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.9rem}
th,td{border:1px solid #d0d7de;padding:.25rem .6rem;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
th{background:#f6f8fa}
figure{margin:.5rem 0 1rem}img{max-width:100%;height:auto}
figcaption{color:#57606a;font-size:.85rem}
p.note{background:#fff8c5;border:1px solid #d4a72c;padding:.4rem .7rem;border-radius:4px}
"""


class Header(TypedDict, total=False):
    """What a report says above its sections; every key is optional.

    ``title``: the model's name (each report has its own default); ``version``: the registered
    version; ``created``: when (default: now); ``metrics`` and ``params``: name -> value,
    nested mappings shown with dotted names; ``snapshot``: what the run was trained on
    (``training.snapshot.snapshot``)."""

    title: str
    version: str | None
    created: datetime | None
    metrics: Mapping[str, float] | None
    params: Mapping[str, Any] | None
    snapshot: Mapping[str, Any] | None


@dataclass
class Section:
    """A heading and its HTML fragments (from ``figure``, ``table``, ``note``, ``paragraph``)."""

    title: str
    body: list[str] = field(default_factory=list)

    def add(self, *fragments: str) -> Section:
        self.body.extend(fragments)
        return self


def new_figure(width: float = 6.0, height: float = 4.0) -> Figure:
    """A figure on its own Agg canvas."""
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def png(fig: Figure) -> bytes:
    """The figure as PNG bytes; the figure is cleared afterwards (its artists freed)."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    finally:
        fig.clear()
    return buffer.getvalue()


def figure(fig: Figure, caption: str) -> str:
    """``<figure>`` with the PNG embedded as a data URI."""
    data = base64.b64encode(png(fig)).decode("ascii")
    text = escape(caption)
    return (
        f'<figure><img src="{PNG_URI}{data}" alt="{text}"><figcaption>{text}</figcaption></figure>'
    )


def note(text: str) -> str:
    """A highlighted remark: what could not be drawn, and why."""
    return f'<p class="note">{escape(text)}</p>'


def paragraph(text: str) -> str:
    return f"<p>{escape(text)}</p>"


def fmt(value: Any) -> str:
    """Whole numbers as integers, other numbers to 4 significant digits, NaN and None as
    "n/a", the rest as text."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        if value.is_integer() and abs(value) < 1e15:  # counts logged as floats
            return str(int(value))
        return f"{value:.4g}"
    return str(value)


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """An HTML table; numbers right-aligned and formatted by ``fmt``."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for value in row:
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            cls = ' class="num"' if numeric else ""
            cells.append(f"<td{cls}>{escape(fmt(value))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def key_values(values: Mapping[str, Any], header: tuple[str, str] = ("name", "value")) -> str:
    flat = flatten(values)
    return table(header, sorted(flat.items()))


def render(sections: Sequence[Section], header: Header, *, default_title: str) -> str:
    """The whole page: the header's title, version and time, its metrics, parameters and data
    snapshot (each only when given), then ``sections`` in order."""
    created = header.get("created") or datetime.now(UTC)
    when = created.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    title, version = header.get("title", default_title), header.get("version")
    name = f"{title} — version {version}" if version else title
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(name)}</title><style>{_CSS}</style></head><body>",
        f"<header><h1>{escape(name)}</h1>",
        f'<p class="meta">Training report · created {escape(when)}</p></header>',
    ]
    fixed = [
        ("Metrics", header.get("metrics"), ("metric", "value")),
        ("Parameters", header.get("params"), ("parameter", "value")),
        ("Data snapshot", header.get("snapshot"), ("field", "value")),
    ]
    for heading, values, columns in fixed:
        if values:
            parts.append(f"<section><h2>{heading}</h2>{key_values(values, columns)}</section>")
    for section in sections:
        parts.append(f"<section><h2>{escape(section.title)}</h2>{''.join(section.body)}</section>")
    parts.append("</body></html>")
    return "\n".join(parts)
