"""One self-contained HTML page that generates text in the browser: the weights (PyTorch's
layout, float16 by default), the vocabulary and charrnn/data/page.js, a small forward pass and
sampler. It loads nothing: a Content-Security-Policy allows only its own script, by hash.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from importlib import resources
from typing import TYPE_CHECKING

import numpy as np

from charrnn import layouts
from charrnn.errors import ExportError
from charrnn.html import page as page_shell

if TYPE_CHECKING:
    from charrnn.checkpoint import Run

FLOAT16_MAX = float(np.finfo(np.float16).max)
CSS = """
body{font-family:system-ui,sans-serif;margin:24px;max-width:900px;color:#111}
form{display:grid;grid-template-columns:max-content 1fr;gap:6px 12px;align-items:center}
textarea,input{font:14px ui-monospace,Menlo,Consolas,monospace}
#output{background:#f6f8fa;padding:8px;white-space:pre-wrap;min-height:4em}
.about{color:#444;font-size:14px}
"""


def weights_blob(run: Run, dtype: str) -> tuple[str, list]:
    """The torch-layout tensors (layouts.to_torch) packed into one base64 string of `dtype`
    values, and per tensor [name, offset in values, shape]."""
    m = run.model
    tensors = layouts.to_torch(m.params, m.cell, m.layers)
    if dtype == "float16":
        for name, array in tensors.items():
            if np.abs(array).max(initial=0) > FLOAT16_MAX:
                raise ExportError(f"{name} holds weights beyond float16's range; use --float32")
    manifest, offset = [], 0
    for name, array in tensors.items():
        manifest.append([name, offset, list(array.shape)])
        offset += array.size
    little_endian = np.dtype(dtype).newbyteorder("<")
    flat = np.concatenate([a.ravel() for a in tensors.values()]).astype(little_endian)
    return base64.b64encode(flat.tobytes()).decode("ascii"), manifest


def _json_in_html(data: dict) -> str:
    """JSON safe inside a <script> data block: no `<` can end the block."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")


def about_line(meta: dict[str, str]) -> str:
    """The run's name, model, corpus, step and validation loss, for the page's header."""
    config = json.loads(meta["charrnn.config"])
    line = (
        f"{config['cell']}, {config['layers']} x {config['hidden_size']}, "
        f"{config['vocab_size']} symbols; trained on {meta['charrnn.corpus']}"
    )
    if meta["charrnn.step"]:
        line += f" for {int(meta['charrnn.step']):,} steps"
    if meta["charrnn.val_loss"]:
        nats = float(meta["charrnn.val_loss"])
        line += f"; validation loss {nats:.4f} nats/char ({nats / np.log(2):.4f} bits/char)"
    return line + f"; started from: {meta['charrnn.lineage_line']}"


def page(run: Run, meta: dict[str, str], dtype: str = "float16") -> str:
    """The complete page for `run`; `meta` is the export metadata (exporters.metadata)."""
    weights, manifest = weights_blob(run, dtype)
    model = {
        "config": json.loads(meta["charrnn.config"]),
        "vocab": json.loads(meta["charrnn.vocab"]),
        "dtype": dtype,
        "tensors": manifest,
        "weights": weights,
    }
    script = resources.files("charrnn.data").joinpath("page.js").read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    csp = (
        f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; "
        "form-action 'none'; base-uri 'none'"
    )
    e, name = html.escape, meta["charrnn.run"]
    body = (
        f'<h1 id="run">{e(name)}</h1><p class="about" id="about">{e(about_line(meta))}; '
        f"weights {dtype}.</p>"
        '<form id="form">'
        '<label for="prime">prime</label><textarea id="prime" rows="3"></textarea>'
        '<label for="temperature">temperature</label>'
        '<input id="temperature" type="number" min="0" max="100" step="any" value="0.8">'
        '<label for="top_k">top-k (0: all)</label>'
        '<input id="top_k" type="number" min="0" step="1" value="0">'
        '<label for="length">length</label>'
        '<input id="length" type="number" min="0" step="1" value="500">'
        '<label for="seed">seed</label><input id="seed" type="text" value="1">'
        '<span></span><button id="generate" type="submit">Generate</button></form>'
        '<p id="status"></p><pre id="output"></pre>'
        f'<script type="application/json" id="model">{_json_in_html(model)}</script>'
        f"<script>{script}</script>"
    )
    return page_shell(f"{name}: charrnn", body, csp=csp, css=CSS)
