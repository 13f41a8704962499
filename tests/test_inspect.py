"""Looking inside a model: trace, show, neurons, report, the pages in a real browser."""

from __future__ import annotations

import math
import os
import re
import shutil
import struct
import subprocess
import sys
import threading
import zlib
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pexpect
import pytest
from conftest import assert_usage_error, run_cli

import charrnn
from charrnn import html as html_page
from charrnn.cli import tsv_escape, tsv_unescape
from charrnn.inspect import trace
from charrnn.neurons import features, rank_units

HOSTILE = 'he said "<script>alert(1)</script>" & left (a [b] {c})\n\tx = 1 \\ <b>bold</b>\n'


def small_model(text: str, cell: str = "lstm", layers: int = 2, hidden: int = 8):
    vocab = charrnn.Vocab.from_text(text)
    return charrnn.CharRNN(len(vocab), hidden, seed=1, cell=cell, layers=layers), vocab


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_bits_per_char_is_evaluate_with_one_stream(cell):
    text = HOSTILE * 30  # several chunks of 100
    model, vocab = small_model(text, cell)
    tr = trace(model, vocab, text)
    nats = charrnn.evaluate(model, vocab.encode(text), streams=1)
    assert tr.bits_per_char == pytest.approx(nats / math.log(2), rel=1e-7)


def test_bits_per_char_is_charrnn_eval(trained_run):
    run = charrnn.load(trained_run.dir)
    tr = trace(run.model, run.vocab, trained_run.text)
    proc = run_cli("eval", trained_run.dir, trained_run.corpus, "--streams", "1")
    assert proc.returncode == 0, proc.stderr
    shown = float(re.search(r"([\d.]+) bits/char", proc.stdout)[1])
    assert abs(tr.bits_per_char - shown) <= 5e-5


def test_top_predictions_and_states_are_the_models_step():
    text = HOSTILE
    model, vocab = small_model(text, "lstm")
    tr = trace(model, vocab, text, top=4)
    ids, state = vocab.encode(text), model.zero_state(1)
    for t in range(len(ids) - 1):
        logits, state = model.step(ids[t : t + 1], state)
        p = np.exp(logits[0] - logits[0].max())
        p /= p.sum()
        order = np.argsort(-p, kind="stable")[:4]
        assert np.allclose(tr.top_probs[t], p[order], atol=1e-5)
        assert tr.prob[t] == pytest.approx(p[ids[t + 1]], abs=1e-5)
        assert tr.entropy[t] == pytest.approx(-(p * np.log2(p)).sum(), abs=1e-4)
        for layer in range(model.layers):
            assert np.allclose(tr.hidden[layer][t], state[layer, 0, 0], atol=1e-5)
            assert np.allclose(tr.cell[layer][t], state[layer, 1, 0], atol=1e-5)
            g, c_before = tr.gates[layer], tr.cell[layer][t - 1] if t else 0
            c = g["f"][t] * c_before + g["i"][t] * g["g"][t]
            assert np.allclose(c, tr.cell[layer][t], atol=1e-5)
            assert np.allclose(g["o"][t] * np.tanh(c), tr.hidden[layer][t], atol=1e-5)


def planted_quote_model(vocab: charrnn.Vocab, unit: int = 1) -> charrnn.CharRNN:
    """An LSTM whose cell `unit` flips between 0 and 1 at every '"': i opens only on a quote,
    f stays 1, and g = tanh(40 (0.38 - h)) writes +1 when c is 0 and -1 when c is 1."""
    V, H = len(vocab), 3
    rng = np.random.default_rng(0)
    p = {
        "W_xh": rng.normal(0, 0.3, (V, 4 * H)),
        "W_hh": rng.normal(0, 0.3, (H, 4 * H)),
        "b_h": np.zeros(4 * H),
        "W_hy": rng.normal(0, 0.3, (H, V)),
        "b_y": np.zeros(V),
    }
    i, f, g, o = (k * H + unit for k in range(4))
    p["W_xh"][:, [i, f, g, o]] = 0
    p["W_hh"][:, [i, f, g, o]] = 0
    p["W_xh"][vocab.index['"'], i] = 20
    p["b_h"][[i, f, g, o]] = [-10, 20, 15.2, 20]
    p["W_hh"][unit, g] = -40
    return charrnn.CharRNN.from_params({k: v.astype(np.float64) for k, v in p.items()}, "lstm")


def test_neurons_finds_a_planted_quote_unit():
    text = 'he said "the man is here" and then "no" and so on (a) "yes, it is" ok\n' * 20
    vocab = charrnn.Vocab.from_text(text)
    tr = trace(planted_quote_model(vocab), vocab, text)
    assert np.allclose(tr.cell[0][:, 1], features(tr.symbols[:-1])["in_quotes"], atol=0.05)
    best = rank_units(tr, top=3)["in_quotes"][0]
    assert (best.layer, best.unit) == (0, 1) and best.correlation > 0.95


def held_bytes(tr) -> int:
    """The memory a Trace holds in its arrays, and a pointer per symbol in its list."""
    arrays = [tr.ids, tr.prob, tr.bits, tr.entropy, tr.top_ids, tr.top_probs, *tr.hidden]
    arrays += [*(tr.cell or []), *(a for g in tr.gates or [] for a in g.values())]
    return sum(a.nbytes for a in arrays) + 8 * len(tr.symbols)


def test_a_trace_over_1_gib_is_refused_saying_how_many_symbols_fit():
    """A text whose trace would take more than 1 GiB is refused before any work, naming how
    many symbols fit; that number is honest: at the bytes per symbol a small trace of the same
    model really holds, it is 1 GiB (to 1%: the estimate counts 12 bytes for each top
    prediction, the arrays hold 16, and 8 for each id, which takes 1 here)."""
    model, vocab = small_model(HOSTILE, "lstm", layers=2, hidden=512)
    per_symbol = held_bytes(trace(model, vocab, HOSTILE * 3)) / (len(HOSTILE) * 3 - 1)
    n = int(1.1 * (1 << 30) / per_symbol)  # ~48,000 predictions, 10% over
    text = (HOSTILE * (n // len(HOSTILE) + 1))[: n + 1]
    with pytest.raises(charrnn.ConfigError) as refused:
        trace(model, vocab, text)
    m = re.fullmatch(
        rf"a trace of {n:,} symbols would not fit in memory; give at most ([\d,]+)",
        str(refused.value),
    )
    assert m, str(refused.value)
    fit = int(m[1].replace(",", ""))
    assert fit * per_symbol == pytest.approx(1 << 30, rel=0.01)  # trace_bytes is an estimate


def test_features_by_hand():
    f = features(list('a("b")\n  Cd 9'))
    assert f["in_quotes"].tolist() == [0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    assert f["paren_depth"].tolist() == [0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    assert f["line_position"].tolist() == [1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4, 5, 6]
    assert f["to_line_end"].tolist()[:7] == [5, 4, 3, 2, 1, 0, 6]
    assert f["indent"].tolist()[7:] == [1, 2, 2, 2, 2, 2]
    assert f["upper"].tolist()[9] == 1 and f["digit"].tolist()[12] == 1


def test_tsv_escape_round_trips():
    for s in ["a", "\t", "\n", "\\", "\\n", "\r\n", "\x00", "\x1b", "é", "👍🏽", " ", "\u2028"]:
        field = tsv_escape(s)
        assert "\t" not in field and "\n" not in field and "\r" not in field
        assert tsv_unescape(field) == s


def test_show_tsv_round_trips(trained_run):
    text = trained_run.text[:500]
    proc = run_cli("show", trained_run.dir, "--text", text, "--format", "tsv")
    assert proc.returncode == 0, proc.stderr
    rows = [line.split("\t") for line in proc.stdout.splitlines()]
    assert rows[0][:4] == ["position", "symbol", "probability", "bits"]
    assert "".join(tsv_unescape(r[1]) for r in rows[1:]) == text[1:]
    run = charrnn.load(trained_run.dir)
    tr = trace(run.model, run.vocab, text)
    assert np.allclose([float(r[3]) for r in rows[1:]], tr.bits, atol=1e-4)
    assert [tsv_unescape(r[5]) for r in rows[1:]] == [tr.top(t)[0][0] for t in range(len(tr.bits))]


class Spans(HTMLParser):
    """Collects the symbol spans, every start tag and the text of the page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags, self.symbols, self.text, self._in = [], [], [], False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._in = tag == "span" and ("class", "s") in attrs
        if self._in:
            self.symbols.append("")

    def handle_endtag(self, tag):
        self._in = False

    def handle_data(self, data):
        self.text.append(data)
        if self._in:
            self.symbols[-1] += data


def parse(page: str) -> Spans:
    parser = Spans()
    parser.feed(page)
    parser.close()
    return parser


def test_pages_hold_one_escaped_element_per_symbol():
    model, vocab = small_model(HOSTILE)
    tr = trace(model, vocab, HOSTILE)
    records = [
        {"step": 10, "train_loss": 3.0, "val_loss": 3.1, "sample": "<script>x</script>"},
        {"step": 20, "train_loss": 2.5, "val_loss": 2.7},
    ]
    for page in (
        html_page.heatmap_page(tr, "<script>t</script>"),
        html_page.report_page("r", {"model": {"cell": "<i>"}}, records, tr),
        html_page.page("nb", tr._repr_html_()),
    ):
        parsed = parse(page)
        assert "script" not in parsed.tags and "b" not in parsed.tags and "i" not in parsed.tags
        expected = [html_page._in_text(s) for s in tr.symbols]
        assert parsed.symbols == expected
        assert "<script>alert(1)</script>" in "".join(parsed.text)
        assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert "https://" not in page and "@import" not in page
    assert "<svg" in html_page.report_page("r", {}, records, None)


def test_show_colours_and_no_color(trained_run):
    def shown(no_color: bool) -> str:
        env = dict(os.environ, TERM="xterm-256color", COLORTERM="truecolor")
        env.pop("NO_COLOR", None)
        env.pop("FORCE_COLOR", None)
        if no_color:
            env["NO_COLOR"] = "1"
        args = ["-m", "charrnn", "show", str(trained_run.dir), "--text", trained_run.text[:80]]
        child = pexpect.spawn(
            sys.executable, args, env=env, encoding="utf-8", timeout=30, dimensions=(40, 160)
        )
        out = child.read()
        child.close()
        assert child.exitstatus == 0, out
        return out

    coloured = shown(False)
    assert "\x1b[" in coloured and "bits/char" in coloured and "most surprising" in coloured
    out = shown(True)
    assert "\x1b[" not in out and out.startswith("position\tsymbol")  # TSV, the default there


def test_neurons_and_report_commands(trained_run, tmp_path):
    proc = run_cli("neurons", trained_run.dir, trained_run.corpus, "--top", "3")
    assert proc.returncode == 0, proc.stderr
    assert "line_position" in proc.stdout and "word_start" in proc.stdout
    out = tmp_path / "r.html"
    proc = run_cli("report", trained_run.dir, "-o", out)
    assert proc.returncode == 0, proc.stderr
    parsed = parse(out.read_text(encoding="utf-8"))
    assert "svg" in parsed.tags and len(parsed.symbols) > 100
    assert any("step 30" in t for t in parsed.text)  # the samples of the evaluations


def test_bad_input_is_one_line(trained_run, tmp_path):
    run, corpus = trained_run.dir, trained_run.corpus
    cases = [
        (("show", tmp_path / "nope", corpus), "nope"),
        (("show", run, tmp_path / "missing.txt"), "missing.txt"),
        (("show", run), "FILE or --text"),
        (("show", run, corpus, "--text", "ab"), "FILE or --text"),
        (("show", run, corpus, "--unit", "x"), "LAYER:UNIT"),
        (("show", run, corpus, "--unit", "2:0"), "layer"),
        (("show", run, corpus, "--unit", "1:99"), "unit"),
        (("show", run, corpus, "--unit", "1:0", "--cell-state"), "LSTM"),
        (("show", run, "--text", "€€€"), "never saw"),
        (("neurons", run, tmp_path / "missing.txt"), "missing.txt"),
        (("neurons", tmp_path / "nope", corpus), "nope"),
        (("report", tmp_path / "nope"), "nope"),
        (("report", run, "-o", tmp_path / "no" / "dir" / "r.html"), "cannot write"),
    ]
    for args, fragment in cases:
        assert_usage_error(run_cli(*args), fragment)


# ---- a real browser ------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ]
    return subprocess.run(
        [CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=90, check=True
    )


def png_colours(path: Path) -> int:
    """The number of distinct pixel colours of an 8-bit RGB(A) PNG (a small PNG reader)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos : pos + 4]), data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour_type = header[:4]
    assert depth == 8 and colour_type in (2, 6)
    bpp = 3 if colour_type == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows = np.zeros((height, stride), np.int64)
    prior = np.zeros(stride, np.int64)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int64)
        if kind == 0:
            cur = line
        elif kind == 2:
            cur = (line + prior) % 256
        elif kind == 1:  # sub: a running sum per channel
            cur = (np.cumsum(line.reshape(-1, bpp), axis=0) % 256).reshape(-1)
        else:
            cur, up = line.tolist(), prior.tolist()
            for x in range(stride):
                a = cur[x - bpp] if x >= bpp else 0
                b, c = up[x], up[x - bpp] if x >= bpp else 0
                if kind == 3:
                    cur[x] = (cur[x] + (a + b) // 2) % 256
                else:
                    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                    cur[x] = (cur[x] + pred) % 256
            cur = np.array(cur)
        rows[y] = prior = cur
    pixels = rows.reshape(height, width, bpp)[..., :3]
    return len(np.unique(pixels.reshape(-1, 3) @ np.array([1, 256, 65536])))


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_pages_in_headless_chromium(trained_run, tmp_path):
    report, heat = tmp_path / "report.html", tmp_path / "show.html"
    text = tmp_path / "t.txt"
    text.write_text(trained_run.text[:600], encoding="utf-8")
    assert run_cli("report", trained_run.dir, "-o", report).returncode == 0
    assert run_cli("show", trained_run.dir, text, "--html", heat).returncode == 0
    for page, symbols in ((report, None), (heat, 600)):
        dom = chromium(tmp_path, "--dump-dom", page.as_uri()).stdout
        parsed = parse(dom)
        assert len(parsed.symbols) == (symbols or len(parsed.symbols)) > 100
        if page == report:
            assert "svg" in parsed.tags and "polyline" in parsed.tags
        shot = tmp_path / f"{page.stem}.png"
        chromium(tmp_path, f"--screenshot={shot}", "--window-size=800,600", page.as_uri())
        assert png_colours(shot) > 20


class Recorder(BaseHTTPRequestHandler):
    """Answers every request with a tiny body and records its path."""

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        body = b"/* */" if not self.path.startswith("/img") else PNG_1PX
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


PNG_1PX = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_the_content_security_policy_blocks_every_fetch_in_chromium(tmp_path):
    """A page whose content tries to load an image, a style sheet, a script, a frame, an
    @import, a CSS background and a fetch() from a local server makes no request in headless
    Chromium; the same page without the CSP makes them, so the server would have seen them."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    httpd.paths = []
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        hostile = (
            f'<img src="{url}/img"><link rel="stylesheet" href="{url}/css">'
            f'<script src="{url}/script"></script><iframe src="{url}/frame"></iframe>'
            f'<style>@import url("{url}/import"); body {{ background: url("{url}/img-css") }}'
            f'</style><script>fetch("{url}/fetch")</script>'
        )
        model, vocab = small_model(HOSTILE)
        tr = trace(model, vocab, HOSTILE)
        records = [{"step": 10, "train_loss": 3.0, "val_loss": 3.1, "sample": "x"}]
        meta = f'<meta http-equiv="Content-Security-Policy" content="{html_page.CSP}">'
        pages = {
            "heat": html_page.heatmap_page(tr, "t"),
            "report": html_page.report_page("r", {}, records, tr),
        }
        pages["control"] = pages["heat"].replace(meta, "")
        assert pages["control"] != pages["heat"]
        seen = {}
        for name, page in pages.items():
            path = tmp_path / f"{name}.html"
            path.write_text(page.replace("</body>", hostile + "</body>"), encoding="utf-8")
            httpd.paths.clear()
            chromium(tmp_path, "--virtual-time-budget=2000", "--dump-dom", path.as_uri())
            seen[name] = sorted(httpd.paths)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert seen["heat"] == seen["report"] == [], seen
    # the loads the load event waits for; the CSS background and fetch() usually come too
    assert {"/css", "/frame", "/img", "/import", "/script"} <= set(seen["control"]), seen
