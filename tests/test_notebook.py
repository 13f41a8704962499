"""charrnn in a real Jupyter kernel (nbclient runs a notebook on ipykernel, over the loopback):
training shows rich's progress in the cell, and a Run and a Trace show as HTML."""

from __future__ import annotations

import json
import re

import nbformat
from conftest import english_like
from nbclient import NotebookClient

WIDGET = "application/vnd.jupyter.widget-view+json"


def texts(outputs: list[dict], mime: str) -> str:
    """Everything of one MIME type the outputs of a cell hold, joined."""
    found = [o.get("text", "") for o in outputs if o.get("output_type") == "stream"]
    found = found if mime == "stream" else []
    for o in outputs:
        data = o.get("data", {})
        if mime in data:
            found.append(data[mime] if isinstance(data[mime], str) else json.dumps(data[mime]))
    return "\n".join(found)


def test_training_and_inspection_in_a_notebook(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(english_like(4000), encoding="utf-8")
    cells = [
        "import charrnn\n"
        f"text = open({str(corpus)!r}, encoding='utf-8').read()\n"
        "config = charrnn.TrainConfig(hidden=16, batch=4, seq_len=8, steps=40, eval_every=20,\n"
        "                             sample_length=20)\n"
        "result = charrnn.train(text, config, 'run')",
        "run = charrnn.load('run')\nrun",
        "charrnn.trace(run.model, run.vocab, text[:120])",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    client = NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    train, load, trace = (cell.outputs for cell in notebook.cells)

    assert not [o for o in train if o.get("output_type") == "error"], train
    # rich's live progress: an ipywidgets Output displayed in the cell
    assert WIDGET in {key for o in train for key in o.get("data", {})}, train
    # the evaluation lines, printed by rich into the cell
    shown = texts(train, "text/plain")
    assert "eval at step 20:" in shown and "eval at step 40:" in shown, shown
    assert re.search(r"validation \d\.\d{4} nats/char", shown), shown

    html = texts(load, "text/html")
    assert "<svg" in html and "validation" in html, load
    heat = texts(trace, "text/html")
    assert heat.count('<span class="s" tabindex="0"') == 120, trace  # one per symbol
    assert "bits/char over 119 predictions" in heat
