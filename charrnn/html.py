"""Self-contained HTML pages: the surprisal heat-map of a trace and a run's report.

Every symbol of the text is escaped and becomes one focusable <span>; its top predictions
show on hover or focus through CSS alone. Pages load nothing (a CSP forbids it) and run no
script, so they work offline and a corpus holding `<script>` stays text.
"""

from __future__ import annotations

import html
import json
import math
import unicodedata
from typing import TYPE_CHECKING

from charrnn.colours import (
    diverging_rgb,
    hex_colour,
    readable,
    surprisal_legend,
    surprisal_rgb,
)
from charrnn.lineage import lineage_line

if TYPE_CHECKING:
    from charrnn.inspect import Trace

CSS = """
.charrnn-heat{font-family:ui-monospace,Menlo,Consolas,"DejaVu Sans Mono",monospace;
 font-size:14px;line-height:1.6;white-space:pre-wrap;color:#000;background:#fff;padding:8px}
.charrnn-heat .s{position:relative;border-radius:2px}
.charrnn-heat .s:hover::after,.charrnn-heat .s:focus::after{content:attr(data-tip);
 position:absolute;left:0;top:1.5em;z-index:9;background:#222;color:#fff;padding:4px 8px;
 border-radius:4px;white-space:pre;font-size:12px;line-height:1.4}
.charrnn-heat .s:focus{outline:2px solid #0366d6}
.charrnn-legend span{display:inline-block;padding:0 6px;font:12px monospace}
body{font-family:system-ui,sans-serif;margin:24px;max-width:1100px;color:#111}
table.cfg td{padding:1px 10px 1px 0;font-size:13px}
pre.sample{background:#f6f8fa;padding:8px;white-space:pre-wrap}
"""
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def _in_text(symbol: str) -> str:
    """A symbol as it stands in running text: newline and tab kept, other controls escaped."""
    if "\n" in symbol:  # "\r\n" is one grapheme
        return "\n"
    if symbol == "\t" or not any(unicodedata.category(c)[0] == "C" for c in symbol):
        return symbol
    return symbol.encode("unicode_escape").decode("ascii")


def tip(trace: Trace, t: int) -> str:
    """The hover text of prediction t: the symbol, its probability and what the model expected."""
    symbol = trace.symbols[t + 1]
    lines = [
        f"{readable(symbol)}  p={trace.prob[t]:.3f}  {trace.bits[t]:.2f} bits",
        f"entropy {trace.entropy[t]:.2f} bits; expected:",
    ]
    lines += [f"  {readable(s)}  {p:.3f}" for s, p in trace.top(t)]
    return "\n".join(lines)


def symbol_spans(trace: Trace, values=None, diverging: bool = False) -> str:
    """One <span> per symbol, coloured by surprisal (or by `values` per symbol read, on the
    diverging palette), each carrying its predictions in data-tip."""
    e = html.escape
    parts = []
    for t, symbol in enumerate(trace.symbols):
        attrs = ""
        if values is not None:
            value = float(values[t]) if t < len(values) else math.nan
            if math.isfinite(value):
                attrs = f' style="background:{hex_colour(diverging_rgb(value))}"'
                attrs += f' data-value="{value:.3f}"'
        if t >= 1:
            p = t - 1
            if values is None:
                attrs += f' style="background:{hex_colour(surprisal_rgb(trace.bits[p]))}"'
            attrs += f' data-bits="{trace.bits[p]:.3f}" data-tip="{e(tip(trace, p))}"'
        parts.append(f'<span class="s" tabindex="0"{attrs}>{e(_in_text(symbol))}</span>')
    return "".join(parts)


def legend() -> str:
    cells = "".join(
        f'<span style="background:{hex_colour(rgb)}">{label}</span>'
        for label, rgb in surprisal_legend()
    )
    return f'<div class="charrnn-legend">surprisal, bits: {cells}</div>'


def surprises_table(trace: Trace, count: int = 10) -> str:
    e = html.escape
    head = "".join(f"<th>{e(name)}</th>" for name in SURPRISE_COLUMNS)
    rows = "".join(
        "<tr>" + "".join(f"<td>{e(cell)}</td>" for cell in row) + "</tr>"
        for row in surprise_rows(trace, count)
    )
    return f'<table class="cfg"><tr>{head}</tr>{rows}</table>'


SURPRISE_COLUMNS = ("position", "symbol", "p", "bits", "expected instead")


def surprise_rows(trace: Trace, count: int = 10) -> list[tuple[str, ...]]:
    """The `count` most surprising predictions as cells of SURPRISE_COLUMNS, for any view."""
    return [
        (
            str(t + 1),
            readable(trace.symbols[t + 1]),
            f"{trace.prob[t]:.3f}",
            f"{trace.bits[t]:.2f}",
            ", ".join(f"{readable(s)} {p:.2f}" for s, p in trace.top(t)[:3]),
        )
        for t in trace.surprises(count)
    ]


def heatmap_fragment(trace: Trace, values=None) -> str:
    """The heat-map as an HTML fragment with its own style (a notebook cell, a page); with
    `values` (per symbol read, -1..1) the colours are a unit's instead of surprisal."""
    scale = legend() if values is None else "<p>unit value: blue -1, white 0, red +1</p>"
    return (
        f"<div><style>{CSS}</style>{scale}"
        f"<p>{trace.bits_per_char:.4f} bits/char over {len(trace.bits):,} predictions "
        "(hover or focus a symbol for the model's predictions there)</p>"
        f'<div class="charrnn-heat">{symbol_spans(trace, values, values is not None)}</div></div>'
    )


def page(title: str, body: str, csp: str = CSP, css: str = CSS) -> str:
    """A complete offline page: UTF-8, by default a CSP that loads nothing and runs no script
    (the exported page's allows its own script) and the report pages' style."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        f"<title>{html.escape(title)}</title><style>{css}</style></head>"
        f"<body>{body}</body></html>\n"
    )


def heatmap_page(trace: Trace, title: str, values=None) -> str:
    """`charrnn show --html`: the heat-map, bits/char and the ten biggest surprises."""
    return page(
        title,
        f"<h1>{html.escape(title)}</h1>{heatmap_fragment(trace, values)}"
        f"<h2>Most surprising</h2>{surprises_table(trace)}",
    )


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]."""
    span = (high - low) or 1.0
    step = 10 ** math.floor(math.log10(span / count))
    step *= next(m for m in (1, 2, 5, 10) if span / (step * m) <= count)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def curves_svg(records: list[dict], width: int = 720, height: int = 300) -> str:
    """Training and validation loss (nats/char) over steps, as inline SVG."""
    series = {
        name: [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
        for name, key in (("train", "train_loss"), ("validation", "val_loss"))
    }
    points = [p for s in series.values() for p in s if math.isfinite(p[1])]
    if not points:
        return "<p>No evaluations recorded yet.</p>"
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 0.1)
    left, right, top, bottom = 56, 16, 16, 40
    W, H = width - left - right, height - top - bottom

    def X(x):
        return left + (x - x0) / (x1 - x0) * W

    def Y(y):
        return top + (1 - (y - y0) / (y1 - y0)) * H

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="curves" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" '
        'font-size="11" role="img"><title>loss over steps</title>',
        f'<rect x="{left}" y="{top}" width="{W}" height="{H}" fill="#fff" stroke="#999"/>',
    ]
    for y in _ticks(y0, y1):
        parts.append(
            f'<line x1="{left}" x2="{left + W}" y1="{Y(y):.1f}" y2="{Y(y):.1f}" stroke="#eee"/>'
            f'<text x="{left - 4}" y="{Y(y) + 4:.1f}" text-anchor="end">{y:g}</text>'
        )
    for x in _ticks(x0, x1):
        parts.append(f'<text x="{X(x):.1f}" y="{top + H + 14}" text-anchor="middle">{x:g}</text>')
    parts.append(
        f'<text x="{left + W / 2}" y="{height - 6}" text-anchor="middle">step</text>'
        f'<text x="12" y="{top + H / 2}" transform="rotate(-90 12 {top + H / 2})" '
        'text-anchor="middle">loss, nats/char</text>'
    )
    for (name, pts), colour, row in zip(
        series.items(), ("#1f77b4", "#ff7f0e"), (0, 1), strict=False
    ):
        if not pts:
            continue
        line = " ".join(f"{X(x):.1f},{Y(y):.1f}" for x, y in pts)
        parts.append(
            f'<polyline class="{name}" fill="none" stroke="{colour}" stroke-width="2" '
            f'points="{line}"/>'
        )
        parts += [
            f'<circle cx="{X(x):.1f}" cy="{Y(y):.1f}" r="2.5" fill="{colour}"/>' for x, y in pts
        ]
        ly = top + 14 + 16 * row
        parts.append(
            f'<line x1="{left + W - 110}" x2="{left + W - 90}" y1="{ly - 4}" y2="{ly - 4}" '
            f'stroke="{colour}" stroke-width="2"/>'
            f'<text x="{left + W - 84}" y="{ly}">{name}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def config_table(meta: dict) -> str:
    """The run's metadata as a two-column table (nested objects flattened one level)."""
    e = html.escape
    rows = []
    for key in ("model", "train", "corpus", "metrics"):
        for k, v in (meta.get(key) or {}).items():
            if k not in ("sample", "sha256"):
                rows.append((f"{key} {k}", v))
    rows += [("step", meta.get("step")), ("elapsed (s)", meta.get("elapsed"))]
    lineage = lineage_line(meta)
    if lineage is not None:
        rows.insert(0, ("started from", lineage))

    def show(v) -> str:
        return f"{v:.4f}" if isinstance(v, float) else (v if isinstance(v, str) else json.dumps(v))

    body = "".join(f"<tr><td>{e(k)}</td><td>{e(show(v))}</td></tr>" for k, v in rows)
    return f'<table class="cfg">{body}</table>'


def report_page(
    title: str,
    meta: dict,
    records: list[dict],
    trace: Trace | None,
    novelty: dict[int, str] | None = None,
) -> str:
    """`charrnn report`: configuration, loss curves, each evaluation's sample (with how much
    of it the training text holds, from `novelty` by step), a heat-map."""
    e = html.escape
    novelty = novelty or {}
    samples = "".join(
        f'<h3>step {r["step"]:,}</h3><pre class="sample">{e(r["sample"])}</pre>'
        + (f'<p class="novelty">{e(novelty[r["step"]])}</p>' if r["step"] in novelty else "")
        for r in records
        if isinstance(r.get("sample"), str)
    )
    body = f"<h1>{e(title)}</h1><h2>Loss</h2>{curves_svg(records)}"
    if trace is not None:
        body += f"<h2>Surprisal</h2>{heatmap_fragment(trace)}{surprises_table(trace)}"
    body += (
        f"<h2>Samples</h2>{samples or '<p>No samples recorded.</p>'}"
        f"<h2>Configuration</h2>{config_table(meta)}"
    )
    return page(title, body)
