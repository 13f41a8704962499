"""`charrnn export`: the layout mapping, ONNX against the NumPy forward, safetensors under
PyTorch's names, the HTML page in a real browser against `charrnn sample`, and the errors."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import threading
from html.parser import HTMLParser
from http.server import ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_usage_error, cli_env, run_cli
from test_inspect import CHROMIUM, Recorder, chromium

import charrnn
from charrnn import checkpoint, exporters, layouts
from charrnn.model import CharRNN

README = Path(__file__).resolve().parent.parent / "README.md"
CELLS = ("rnn", "lstm", "gru")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)"
)


def random_params(cell: str, layers: int, V: int = 11, H: int = 6, seed: int = 0) -> dict:
    """A model's params with every entry random and non-zero (biases too). W_hh's spectral
    radius is about 0.8, so the recurrence contracts as a trained one does: a chaotic one
    would grow float32 rounding alone without bound over 1,000 steps."""
    rng = np.random.default_rng(seed)
    model = CharRNN(V, H, seed=seed, cell=cell, layers=layers)
    scale = {k: 0.8 / np.sqrt(H) if k.startswith("W_hh") else 0.5 for k in model.params}
    return {k: rng.normal(0, scale[k], v.shape).astype(np.float32) for k, v in model.params.items()}


def save_run(directory: Path, params: dict, cell: str, symbols: str, val_loss=None) -> Path:
    """A run directory holding `params` as its best.npz, as training would write it."""
    directory.mkdir(parents=True, exist_ok=True)
    model = CharRNN.from_params(params, cell)
    meta = {
        "format": checkpoint.FORMAT,
        "format_version": checkpoint.FORMAT_VERSION,
        "model": {
            "cell": cell,
            "layers": model.layers,
            "hidden_size": model.hidden_size,
            "vocab_size": model.vocab_size,
            "dtype": "float32",
        },
        "vocab": charrnn.Vocab(list(symbols)).to_json(),
        "step": 120,
    }
    if val_loss is not None:
        meta["metrics"] = {"step": 120, "val_loss": val_loss, "best_val_loss": val_loss}
    checkpoint.save_npz(directory / "best.npz", checkpoint.pack_arrays(params), meta)
    return directory


# ---- the one mapping ------------------------------------------------------------------------


@pytest.mark.parametrize("cell", CELLS)
def test_layouts_round_trip_and_gate_orders(cell):
    params, H = random_params(cell, 2), 6
    torch_layout = layouts.to_torch(params, cell, 2)
    onnx_layout = layouts.to_onnx(params, cell, 2)
    for back in (
        layouts.from_torch(torch_layout, cell, 2),
        layouts.from_onnx(onnx_layout, params["W_hy"], params["b_y"], cell),
    ):
        assert back.keys() == params.keys()
        for name, value in params.items():
            np.testing.assert_array_equal(back[name], value, err_msg=name)
    kinds = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    names = {f"rnn.{kind}_l{k}" for kind in kinds for k in (0, 1)}
    assert set(torch_layout) == names | {"head.weight", "head.bias"}
    # the facts each format documents, block by block (charrnn: i f g o, r z n)
    W_xh, b_h = params["W_xh2"], params["b_h2"]  # (H, G*H), (G*H,)
    block = {gate: slice(k * H, (k + 1) * H) for k, gate in enumerate(layouts.CHARRNN_GATES[cell])}
    onnx_W, onnx_B = onnx_layout[1]["W"][0], onnx_layout[1]["B"][0]  # (G*H, H), (2*G*H,)
    for k, gate in enumerate({"rnn": "h", "lstm": "iofg", "gru": "zrn"}[cell]):
        np.testing.assert_array_equal(onnx_W[k * H : (k + 1) * H], W_xh[:, block[gate]].T)
        np.testing.assert_array_equal(onnx_B[k * H : (k + 1) * H], b_h[block[gate]])
    np.testing.assert_array_equal(torch_layout["rnn.weight_ih_l1"], W_xh.T)
    np.testing.assert_array_equal(torch_layout["head.weight"], params["W_hy"].T)
    bias_hh = torch_layout["rnn.bias_hh_l1"]
    expected_hh = np.zeros_like(bias_hh)
    if cell == "gru":  # the n block of the hidden bias stays inside r's product
        expected_hh[2 * H :] = params["b_hn2"]
        np.testing.assert_array_equal(onnx_B[len(b_h) + 2 * H :], params["b_hn2"])
    np.testing.assert_array_equal(bias_hh, expected_hh)


# ---- ONNX -----------------------------------------------------------------------------------


@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("cell", CELLS)
def test_onnxruntime_gives_the_numpy_logits_over_1000_steps(cell, layers, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    symbols = "abcdefghijk"
    params = random_params(cell, layers, V=len(symbols), H=12, seed=layers)
    run_dir = save_run(tmp_path / "run", params, cell, symbols)
    path = charrnn.export(run_dir, tmp_path / "m.onnx")
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    ops = [node.op_type for node in model.graph.node]
    assert ops.count(layouts.ONNX_OPS[cell]) == layers  # ONNX's own operator for each layer
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["charrnn.vocab"])["symbols"] == list(symbols)
    assert json.loads(meta["charrnn.config"])["layers"] == layers
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])

    numpy_model = charrnn.load(run_dir).model
    B, T = 3, 1000
    rng = np.random.default_rng(1)
    ids = rng.integers(0, len(symbols), (T, B))
    state0 = rng.normal(0, 0.5, numpy_model.state_shape(B)).astype(np.float32)
    expected, state = np.empty((T, B, len(symbols)), np.float32), state0
    for t in range(T):
        expected[t], state = numpy_model.step(ids[t], state)
    got, carried = [], state0
    for start in range(0, T, 250):  # four calls, the state carried from one to the next
        logits, carried = session.run(None, {"ids": ids[start : start + 250], "state": carried})
        got.append(logits)
    assert np.abs(np.concatenate(got) - expected).max() <= 1e-4
    assert np.abs(carried - state).max() <= 1e-4
    assert np.abs(expected).max() > 0.5  # the logits are not all near zero


# ---- safetensors ----------------------------------------------------------------------------


def test_safetensors_holds_torch_names_vocab_and_config(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    from safetensors import safe_open

    params = random_params("gru", 2, V=5, H=4)
    run_dir = save_run(tmp_path / "run", params, "gru", "abcde", val_loss=1.25)
    path = charrnn.export(charrnn.load(run_dir), tmp_path / "m.safetensors")
    tensors = st.load_file(path)
    assert tensors["rnn.weight_ih_l0"].shape == (12, 5)  # (G*H, V): one-hot input
    assert tensors["rnn.weight_hh_l1"].shape == (12, 4)
    assert tensors["head.weight"].shape == (5, 4)
    back = layouts.from_torch(tensors, "gru", 2)
    for name, value in params.items():
        np.testing.assert_array_equal(back[name], value, err_msg=name)
    with safe_open(path, "np") as f:
        meta = f.metadata()
    assert json.loads(meta["charrnn.vocab"])["symbols"] == list("abcde")
    config = json.loads(meta["charrnn.config"])
    assert (config["cell"], config["layers"], config["hidden_size"]) == ("gru", 2, 4)
    assert meta["charrnn.run"] == "run" and float(meta["charrnn.val_loss"]) == 1.25


def readme_torch_snippet() -> str:
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    return next(b for b in blocks if "safetensors.torch" in b)


def test_the_readme_torch_snippet_loads_the_export_and_samples(trained_run, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    path = charrnn.export(trained_run.dir, tmp_path / "model.safetensors")
    proc = subprocess.run(
        [sys.executable, "-c", readme_torch_snippet()],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert path.exists()
    text = proc.stdout.removesuffix("\n")
    assert len(text) == 200 and set(text) <= trained_run.vocab


# ---- the page -------------------------------------------------------------------------------


class PageText(HTMLParser):
    """The text of the elements with an id, and the attributes of each."""

    def __init__(self) -> None:
        super().__init__()
        self.text: dict[str, str] = {}
        self.attrs: dict[str, dict] = {}
        self._open: list[str | None] = []

    def handle_starttag(self, tag, attrs) -> None:
        ident = dict(attrs).get("id")
        if ident:
            self.attrs[ident], self.text[ident] = dict(attrs), ""
        self._open.append(ident)

    def handle_endtag(self, tag) -> None:
        if self._open:
            self._open.pop()

    def handle_data(self, data) -> None:
        for ident in self._open:
            if ident:
                self.text[ident] += data


def rendered(tmp_path: Path, page: Path, fragment: str) -> PageText:
    """The page's DOM once the generation its fragment asks for has run, parsed."""
    dom = chromium(tmp_path, "--virtual-time-budget=60000", "--dump-dom", page.as_uri() + fragment)
    parsed = PageText()
    parsed.feed(dom.stdout)
    parsed.dom = dom.stdout
    return parsed


def greedy_sample(run: Path, prime: str, length: int) -> str:
    proc = run_cli("sample", run, "--temperature", "0", "--prime", prime, "--length", length)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.removesuffix("\n")


def test_page_weights_are_the_torch_layout_in_float16(trained_run, tmp_path):
    run = charrnn.load(trained_run.dir)
    page = exporters.webpage.page(run, exporters.metadata(run))
    data = json.loads(re.search(r'id="model">(.*?)</script>', page, re.S)[1])
    values = np.frombuffer(base64.b64decode(data["weights"]), "<f2")
    m = run.model
    for name, offset, shape in data["tensors"]:
        expected = layouts.to_torch(m.params, m.cell, m.layers)[name]
        got = values[offset : offset + expected.size].reshape(shape).astype(np.float32)
        np.testing.assert_allclose(got, expected, rtol=2**-11, atol=2**-24, err_msg=name)
    assert offset + expected.size == len(values)


def test_page_weights_beyond_float16_need_float32(tmp_path):
    params = {k: v * 1e5 for k, v in random_params("rnn", 1, V=3, H=2).items()}
    run_dir = save_run(tmp_path / "run", params, "rnn", "abc")
    with pytest.raises(charrnn.ExportError, match="float32"):
        charrnn.export(run_dir, tmp_path / "page.html")
    page = charrnn.export(run_dir, tmp_path / "page.html", page_dtype="float32")
    data = json.loads(re.search(r'id="model">(.*?)</script>', page.read_text("utf-8"))[1])
    values = np.frombuffer(base64.b64decode(data["weights"]), "<f4")
    np.testing.assert_array_equal(values[: params["W_xh"].size], params["W_xh"].T.ravel())


@needs_chromium
def test_page_greedy_writes_what_charrnn_sample_writes(trained_run, tmp_path):
    page = tmp_path / "page.html"
    proc = run_cli("export", trained_run.dir, "--format", "html", "-o", page)
    assert proc.returncode == 0, proc.stderr
    prime = "the quick "
    shown = rendered(tmp_path, page, "#prime=the%20quick%20&temperature=0&length=300&seed=1")
    assert shown.attrs["output"].get("data-done") == "1", shown.text.get("status")
    expected = greedy_sample(trained_run.dir, prime, 300)
    assert shown.text["output"][: len(prime) + 200] == expected[: len(prime) + 200]
    assert len(shown.text["output"]) == len(expected) == len(prime) + 300
    assert shown.text["run"] == trained_run.dir.name
    metrics = trained_run.config["metrics"]
    assert f"{metrics['best_val_loss']:.4f} nats/char" in shown.text["about"]
    assert "english.txt" in shown.text["about"]


@pytest.fixture(scope="module", params=["lstm", "gru"])
def gated_run(request, tmp_path_factory, corpus_file) -> Path:
    """A 2-layer LSTM or GRU run trained for 300 steps: enough that its greedy text varies."""
    out = tmp_path_factory.mktemp("gated") / request.param
    args = ["--cell", request.param, "--layers", "2", "--hidden", "32", "--batch", "8"]
    args += ["--seq-len", "16", "--steps", "300", "--eval-every", "300", "--lr", "0.01"]
    args += ["--dropout", "0", "--weight-drop", "0"]
    proc = run_cli("train", corpus_file, *args, "--out", out, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return out


@needs_chromium
def test_page_greedy_matches_for_gated_cells_two_layers(gated_run, tmp_path):
    page = tmp_path / "page.html"
    proc = run_cli("export", gated_run, "-o", page, "--float32")
    assert proc.returncode == 0, proc.stderr
    shown = rendered(tmp_path, page, "#prime=she%20said&temperature=0&length=250")
    expected = greedy_sample(gated_run, "she said", 250)
    assert shown.text["output"][:208] == expected[:208]
    assert len(set(expected[8:])) >= 4  # not one symbol repeated


@needs_chromium
def test_page_sampling_respects_top_k_and_seed(trained_run, tmp_path):
    page = charrnn.export(trained_run.dir, tmp_path / "page.html")
    fragment = "#prime=the&temperature=1&top_k=1&length=120&seed=7"
    assert rendered(tmp_path, page, fragment).text["output"] == greedy_sample(
        trained_run.dir, "the", 120
    )  # top-k 1 is greedy at any temperature
    texts = [
        rendered(tmp_path, page, f"#prime=the&temperature=1.5&length=150&seed={seed}").text[
            "output"
        ]
        for seed in (1, 1, 2)
    ]
    assert texts[0] == texts[1] != texts[2]
    assert all(len(t) == 153 and set(t) <= trained_run.vocab for t in texts)


@needs_chromium
def test_page_loads_nothing_and_runs_only_its_own_script(trained_run, tmp_path):
    """Hostile markup appended to the page (image, style sheet, script, frame, fetch from a
    local server) makes no request and runs nothing; the page still generates."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    httpd.paths = []
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        hostile = (
            f'<img src="{url}/img"><link rel="stylesheet" href="{url}/css">'
            f'<script src="{url}/script"></script><iframe src="{url}/frame"></iframe>'
            f'<script>fetch("{url}/fetch"); document.title = "ran"</script>'
        )
        page = charrnn.export(trained_run.dir, tmp_path / "page.html")
        text = page.read_text(encoding="utf-8")
        page.write_text(text.replace("</body>", hostile + "</body>"), encoding="utf-8")
        shown = rendered(tmp_path, page, "#prime=the&temperature=0&length=50")
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert httpd.paths == []
    assert shown.attrs["output"].get("data-done") == "1"
    assert "<title>ran</title>" not in shown.dom and "<title>" in shown.dom
    assert "http://" not in text and "https://" not in text


# ---- the command and the Python call --------------------------------------------------------


def test_export_from_python_infers_the_format_and_writes_atomically(trained_run, tmp_path):
    for name in ("m.onnx", "m.safetensors", "m.html"):
        path = charrnn.export(trained_run.dir, tmp_path / name)
        assert path == tmp_path / name and path.stat().st_size > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.html", "m.onnx", "m.safetensors"]
    assert (tmp_path / "m.onnx").read_bytes()[:2] == b"\x08\x08"  # ir_version 8, a protobuf
    assert (tmp_path / "m.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_export_errors_are_one_line(trained_run, run_copy, tmp_path):
    (run_copy / "best.npz").write_bytes(b"PK\x03\x04 not a zip")
    cases = [
        (("export", tmp_path / "nope", "-o", tmp_path / "m.html"), "nope"),
        (("export", run_copy, "-o", tmp_path / "m.html"), "best.npz"),
        (("export", trained_run.dir, "-o", tmp_path / "m.txt"), "unknown export format"),
        (("export", trained_run.dir, "--format", "pdf", "-o", tmp_path / "m"), "pdf"),
        (("export", trained_run.dir, "-o", tmp_path / "no" / "m.html"), "cannot write"),
        (("export", trained_run.dir, "-o", tmp_path / "m.safetensors", "--float32"), "float32"),
    ]
    for args, fragment in cases:
        assert_usage_error(run_cli(*args), fragment)
    assert not list(tmp_path.glob("m*"))


@pytest.mark.parametrize("package", ["onnx", "safetensors"])
def test_a_missing_extra_names_the_package_to_install(package, trained_run, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / f"{package}.py").write_text("raise ImportError('not installed')\n")
    env = cli_env()
    env["PYTHONPATH"] = os.pathsep.join([str(blocker), env.get("PYTHONPATH", "")])
    out = tmp_path / f"m.{package}"
    proc = subprocess.run(
        [sys.executable, "-m", "charrnn", "export", trained_run.dir, "-o", out],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    line = assert_usage_error(proc, f"needs the {package} package", 'pip install "charrnn[export]"')
    assert package in line and not out.exists()
