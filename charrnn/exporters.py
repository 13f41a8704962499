"""Taking a model out of charrnn: an ONNX model, PyTorch-named safetensors, or one HTML page
that writes by itself (webpage.py). Every writer takes its weights through `layouts`, so the
formats cannot drift apart; `onnx` and `safetensors` are optional packages, imported on use.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import numpy as np

from charrnn import checkpoint, corpus, layouts, webpage
from charrnn.checkpoint import Run
from charrnn.choices import EXPORT_FORMATS as FORMATS
from charrnn.errors import ExportError
from charrnn.files import atomic_write_bytes
from charrnn.lineage import lineage_line
from charrnn.version import __version__

SUFFIXES = {".onnx": "onnx", ".safetensors": "safetensors", ".html": "html", ".htm": "html"}
NEEDS_PACKAGE = ("onnx", "safetensors")  # formats whose package (of that name) is an extra
PAGE_DTYPES = ("float16", "float32")
ONNX_OPSET = 17  # Squeeze/Unsqueeze take axes as an input from 13; onnxruntime 1.12+ runs 17
ONNX_IR_VERSION = 8  # the oldest IR of opset 17, so older runtimes load the model too


def export(
    run: Run | str | os.PathLike,
    path: str | os.PathLike,
    format: str | None = None,
    page_dtype: str = "float16",
) -> Path:
    """Write `run` (a loaded Run, a run directory or an .npz) to `path` as ONNX, safetensors
    or an HTML page (its weights in `page_dtype`, float16 or float32); the format follows
    path's suffix unless given. Returns the path."""
    path = Path(path)
    format = check_format(path, format)
    if page_dtype not in PAGE_DTYPES:
        raise ExportError(f"page weights are float16 or float32, not {page_dtype!r}")
    if not isinstance(run, Run):
        run = checkpoint.load(run)
    if format == "onnx":
        data = onnx_bytes(run)
    elif format == "safetensors":
        data = safetensors_bytes(run)
    else:
        data = webpage.page(run, metadata(run), page_dtype).encode("utf-8")
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise ExportError(f"cannot write {path} ({exc.strerror or exc})") from None
    return path


def check_format(path: Path, format: str | None) -> str:
    """The format to write: `format`, else the one path's suffix names; and its package
    importable. Raises ExportError otherwise, before any model is read."""
    format = format or SUFFIXES.get(Path(path).suffix.lower())
    if format not in FORMATS:
        raise ExportError(
            f"unknown export format {format or Path(path).suffix or str(path)!r}; choose one of "
            f"{', '.join(FORMATS)} (--format, or an output ending in .onnx, .safetensors, .html)"
        )
    if format in NEEDS_PACKAGE:
        require(format)
    return format


def require(package: str):
    """Import an optional package, or raise ExportError saying what to install."""
    try:
        return importlib.import_module(package)
    except ImportError:
        raise ExportError(
            f'exporting this format needs the {package} package: pip install "charrnn[export]" '
            f"(or pip install {package})"
        ) from None


def run_name(run: Run) -> str:
    """A run's name: its directory for a checkpoint inside one, else the file's stem."""
    if run.path.name in ("best.npz", "latest.npz"):
        return run.path.resolve().parent.name
    return run.path.stem


def metadata(run: Run) -> dict[str, str]:
    """What every format carries besides the weights, as strings (JSON where structured): the
    vocabulary, the model's settings and the run's lineage, corpus, step and validation loss."""
    meta, m = run.config, run.model
    metrics = meta.get("metrics") or {}
    val_loss = metrics.get("best_val_loss", metrics.get("val_loss"))
    return {
        "charrnn.version": __version__,
        "charrnn.run": run_name(run),
        "charrnn.vocab": json.dumps(run.vocab.to_json(), ensure_ascii=False),
        "charrnn.config": json.dumps(
            {
                "cell": m.cell,
                "layers": m.layers,
                "hidden_size": m.hidden_size,
                "vocab_size": m.vocab_size,
                "state_shape": ["L", "S", "B", "H"],
                "state_size": m.state_size,
            }
        ),
        "charrnn.corpus": corpus.describe(meta.get("corpus")),
        "charrnn.step": str(meta.get("step", "")),
        "charrnn.val_loss": "" if val_loss is None else f"{val_loss:.6f}",
        "charrnn.lineage": json.dumps(meta.get("init_from")),
        "charrnn.lineage_line": lineage_line(meta) or "trained from random weights",
    }


def float32_params(run: Run) -> dict[str, np.ndarray]:
    """The run's weights as float32, the type every exported format stores."""
    return {k: np.asarray(v, np.float32) for k, v in run.model.params.items()}


def safetensors_bytes(run: Run) -> bytes:
    """The weights under torch's names (layouts.to_torch), the metadata in the header."""
    st = require("safetensors.numpy")
    m = run.model
    return st.save(layouts.to_torch(float32_params(run), m.cell, m.layers), metadata(run))


def onnx_bytes(run: Run) -> bytes:
    """An ONNX model: ids (T, B) int64 and state (L, S, B, H) -> logits (T, B, V) and the
    final state, one ONNX RNN/LSTM/GRU operator per layer over a one-hot input."""
    onnx = require("onnx")
    helper, m = onnx.helper, run.model
    L, S, H, V = m.layers, m.state_size, m.hidden_size, m.vocab_size
    params = float32_params(run)
    init = [
        onnx.numpy_helper.from_array(np.array(V, np.int64), "depth"),
        onnx.numpy_helper.from_array(np.array([0, 1], np.float32), "one_hot_values"),
        onnx.numpy_helper.from_array(np.array([1], np.int64), "axis_1"),
        onnx.numpy_helper.from_array(np.array([0], np.int64), "axis_0"),
        onnx.numpy_helper.from_array(params["W_hy"], "W_hy"),  # (H, V)
        onnx.numpy_helper.from_array(params["b_y"], "b_y"),  # (V,)
    ]
    nodes = [helper.make_node("OneHot", ["ids", "depth", "one_hot_values"], ["x0"], axis=-1)]
    below, finals = "x0", []  # x0: (T, B, V)
    for layer, weights in enumerate(layouts.to_onnx(params, m.cell, L)):
        layer_nodes, layer_init, below, final = _onnx_layer(onnx, m.cell, layer, S, H, below)
        nodes += layer_nodes
        finals.append(final)
        init += layer_init
        init += [onnx.numpy_helper.from_array(w, f"{k}{layer}") for k, w in weights.items()]
    nodes += [
        helper.make_node("Concat", finals, ["state_out"], axis=0),  # (L, S, B, H)
        helper.make_node("MatMul", [below, "W_hy"], ["y"]),  # (T, B, V)
        helper.make_node("Add", ["y", "b_y"], ["logits"]),
    ]
    f32 = onnx.TensorProto.FLOAT
    graph = helper.make_graph(
        nodes,
        f"charrnn_{m.cell}",
        [
            helper.make_tensor_value_info("ids", onnx.TensorProto.INT64, ["T", "B"]),
            helper.make_tensor_value_info("state", f32, [L, S, "B", H]),
        ],
        [
            helper.make_tensor_value_info("logits", f32, ["T", "B", V]),
            helper.make_tensor_value_info("state_out", f32, [L, S, "B", H]),
        ],
        init,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
        producer_name="charrnn",
        producer_version=__version__,
        doc_string=f"charrnn {m.layers} x {m.hidden_size} {m.cell}: ids (T, B) and state "
        "(L, S, B, H) -> logits (T, B, V) and state_out; metadata charrnn.vocab maps ids",
    )
    model.ir_version = ONNX_IR_VERSION
    helper.set_model_props(model, metadata(run))
    return model.SerializeToString()


def _onnx_layer(onnx, cell: str, layer: int, S: int, H: int, below: str):
    """One layer's nodes: its state sliced out of `state`, the RNN/LSTM/GRU operator over
    `below` (T, B, In), and its output (T, B, H) and final state (1, S, B, H) as names."""
    helper, int64, n = onnx.helper, onnx.TensorProto.INT64, f"l{layer}_"
    init = [helper.make_tensor(f"{n}index", int64, [], [layer])]
    nodes = [helper.make_node("Gather", ["state", f"{n}index"], [f"{n}state"], axis=0)]
    starts = []
    for k in range(S):  # h, and c for the LSTM: (1, B, H) each
        init += [
            helper.make_tensor(f"{n}start{k}", int64, [1], [k]),
            helper.make_tensor(f"{n}end{k}", int64, [1], [k + 1]),
        ]
        inputs = [f"{n}state", f"{n}start{k}", f"{n}end{k}", "axis_0"]
        nodes.append(helper.make_node("Slice", inputs, [f"{n}s0_{k}"]))
        starts.append(f"{n}s0_{k}")
    attrs = {"linear_before_reset": 1} if cell == "gru" else {}
    outputs = [f"{n}y", *(f"{n}sT_{k}" for k in range(S))]  # Y (T, 1, B, H), Y_h, Y_c
    nodes += [
        helper.make_node(
            layouts.ONNX_OPS[cell],
            [below, f"W{layer}", f"R{layer}", f"B{layer}", "", *starts],
            outputs,
            hidden_size=H,
            **attrs,
        ),
        helper.make_node("Squeeze", [f"{n}y", "axis_1"], [f"{n}out"]),  # (T, B, H)
        helper.make_node("Concat", outputs[1:], [f"{n}final"], axis=0),  # (S, B, H)
        helper.make_node("Unsqueeze", [f"{n}final", "axis_0"], [f"{n}final4"]),
    ]
    return nodes, init, f"{n}out", f"{n}final4"
