"""Hostile training text, through the real CLI: every file either trains correctly (and the
model samples text made of the file's symbols) or fails with one clear line and exit 2."""

import json
import random
import subprocess
import sys

import numpy as np
from conftest import assert_usage_error, cli_env, english_like, run_cli

import charrnn
from charrnn.vocab import split_symbols

TINY = ("--hidden", "8", "--batch", "2", "--seq-len", "8", "--steps", "6", "--eval-every", "3")


def train_ok(tmp_path, data: bytes, *extra: str) -> charrnn.Run:
    """Train on `data` as a file; assert a clean exit and a run that loads and samples."""
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / "corpus.txt"
    path.write_bytes(data)
    run_dir = tmp_path / "run"
    proc = run_cli("train", path, *TINY, "--out", run_dir, *extra, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "" and "Traceback" not in proc.stdout
    run = charrnn.load(run_dir)
    sample = subprocess.run(  # bytes: text mode would turn "\r\n" into "\n"
        [sys.executable, "-m", "charrnn", "sample", run_dir, "--length", "40", "--seed", "3"],
        capture_output=True,
        env=cli_env(),
        timeout=60,
    )
    assert sample.returncode == 0, sample.stderr
    text = sample.stdout.decode().removesuffix("\n")
    assert set(split_symbols(text)) <= set(run.vocab.symbols)
    return run


def test_utf8_bom_is_not_a_symbol(tmp_path):
    """A leading UTF-8 BOM is dropped: it is not in the vocabulary."""
    run = train_ok(tmp_path, b"\xef\xbb\xbf" + english_like(600).encode())
    assert "\ufeff" not in run.vocab


def test_crlf_line_ends_are_one_symbol(tmp_path):
    """CRLF text trains; with graphemes "\\r\\n" is one symbol, with code points two."""
    data = english_like(600).replace("\n", "\r\n").encode()
    assert "\r\n" in train_ok(tmp_path / "g", data).vocab
    run = train_ok(tmp_path / "c", data, "--unit", "codepoint")
    assert "\r" in run.vocab and "\n" in run.vocab and "\r\n" not in run.vocab


def test_nul_bytes_are_rejected_as_binary(tmp_path):
    """A NUL byte marks a binary file: one line naming its offset."""
    path = tmp_path / "nul.txt"
    path.write_bytes(b"hello world " * 60 + b"\x00 more")
    assert_usage_error(run_cli("train", path, *TINY), "NUL byte at offset 720", "binary")


def test_surrogates(tmp_path):
    """Surrogate code points encoded in the bytes are invalid UTF-8 (offset named); the same
    surrogates written as escape text are ordinary characters."""
    path = tmp_path / "surrogate.txt"
    path.write_bytes(b"abc " * 100 + "\ud800".encode("utf-8", "surrogatepass") + b" tail")
    assert_usage_error(run_cli("train", path, *TINY), "invalid utf-8 at byte offset 400")
    run = train_ok(tmp_path, (english_like(500) + "\\ud800 \\udfff\n").encode())
    assert "\\" in run.vocab


def test_invalid_utf8_at_the_very_end(tmp_path):
    """A multi-byte character cut off by the end of the file is named with its offset."""
    path = tmp_path / "cut.txt"
    body = english_like(600).encode()
    path.write_bytes(body + "€".encode()[:2])
    assert_usage_error(run_cli("train", path, *TINY), f"byte offset {len(body)}")


def test_single_symbol_corpus(tmp_path):
    """A file of one repeated symbol trains every step (vocabulary of one: every loss is 0,
    and so is every gradient, which must not turn into NaN on its way through the clipping and
    the optimizer) and samples nothing but that symbol."""
    run = train_ok(tmp_path, b"a" * 500)
    latest = charrnn.load(tmp_path / "run", "latest")
    assert run.vocab.symbols == ("a",) and latest.config["step"] == 6
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [(r["step"], r["train_loss"], r["val_loss"]) for r in records] == [
        (3, 0.0, 0.0),
        (6, 0.0, 0.0),
    ]
    for name, weights in latest.model.params.items():
        assert np.isfinite(weights).all(), name
    proc = run_cli("sample", tmp_path / "run", "--length", "40", "--seed", "3")
    assert proc.returncode == 0 and proc.stdout == "a" * 40 + "\n", proc.stdout + proc.stderr


def test_ten_thousand_symbol_vocabulary(tmp_path):
    """10,000 distinct CJK characters: a vocabulary beyond uint8 ids and the one-hot GEMM."""
    chars = [chr(0x4E00 + i) for i in range(10_000)]
    random.Random(0).shuffle(chars)
    run = train_ok(tmp_path, ("".join(chars) * 2).encode())
    assert len(run.vocab) == 10_000


def test_very_long_lines(tmp_path):
    """A 200,000-character file without a single newline trains."""
    text = english_like(200_000).replace("\n", " ")
    run = train_ok(tmp_path, text.encode())
    assert "\n" not in run.vocab and run.config["corpus"]["symbols"] == len(text)


def test_other_encoding_by_option(tmp_path):
    """--encoding reads a Latin-1 file; without it the first non-UTF-8 byte is named."""
    text = english_like(600) + "café\n"
    path = tmp_path / "latin.txt"
    path.write_bytes(text.encode("latin-1"))
    offset = text.encode("latin-1").index(b"\xe9")
    assert_usage_error(run_cli("train", path, *TINY), f"byte offset {offset}", "--encoding")
    run = train_ok(tmp_path, text.encode("latin-1"), "--encoding", "latin-1")
    assert "é" in run.vocab


def test_output_encoding_that_cannot_show_the_text(tmp_path):
    """Sampling non-ASCII text to an ASCII-only stdout is one clear line and exit 2."""
    train_ok(tmp_path, ("héllo wörld ñ\n" * 60).encode())
    proc = subprocess.run(
        [sys.executable, "-m", "charrnn", "sample", tmp_path / "run", "--length", "300"],
        capture_output=True,
        text=True,
        env={**cli_env(), "PYTHONIOENCODING": "ascii"},
        timeout=60,
    )
    assert_usage_error(proc, "output encoding ascii cannot show", "PYTHONIOENCODING=utf-8")
