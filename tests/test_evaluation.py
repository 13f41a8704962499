"""Evaluation (issue 10): `evaluate` reads its ids a block at a time, so `charrnn eval` streams a
file of any size through an anonymous temporary id file and gives the figure of the same text
in memory; during training `--eval-symbols N` (default: up to training.EVAL_SYMBOLS) limits
every evaluation to the first N validation symbols."""

from __future__ import annotations

import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import TRAIN_ARGS, assert_usage_error, cli_env, english_like, run_cli
from hypothesis import given, settings
from hypothesis import strategies as st

import charrnn
from charrnn import CharRNN, ConfigError, TrainConfig, Vocab, VocabError, corpus, training
from charrnn.corpus import IdFile, TextFile, encode_file_ids, split_ids
from charrnn.parallel import DataParallel
from charrnn.training import evaluate, evaluate_file

CLUSTERS = ["e\u0301", "\r\n", "\U0001f469\u200d\U0001f469\u200d\U0001f467", "中文", "\n", " "]


def whole_array_evaluate(model: CharRNN, ids: np.ndarray, seq_len: int, streams: int) -> float:
    """The evaluation before ids were read in blocks: the whole text reshaped (B, L) at once."""
    n = len(ids) - 1
    B = min(streams, n)
    L = n // B
    inputs, targets = ids[: B * L].reshape(B, L), ids[1 : B * L + 1].reshape(B, L)
    h, nats = model.zero_state(B), 0.0
    for start in range(0, L, seq_len):
        cols = slice(start, start + seq_len)
        loss, h = model.loss(inputs[:, cols], targets[:, cols], h)
        nats += loss * inputs[:, cols].size
    if n > B * L:
        loss, _ = model.loss(ids[B * L : n][None], ids[B * L + 1 :][None], h[:, :, -1:])
        nats += loss * (n - B * L)
    return nats / n


@pytest.fixture(scope="module")
def model_and_ids():
    text = english_like(40_000, seed=3)
    vocab = Vocab.from_text(text)
    return CharRNN(len(vocab), 24, seed=1), vocab.encode(text)


# ---- evaluate over blocks, arrays and id files ------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(2, 12_000),
    seq_len=st.integers(1, 120),
    streams=st.integers(1, 80),
    block=st.sampled_from([1, 7, 500, 4096, 1 << 20]),
)
def test_evaluate_in_blocks_is_exactly_the_whole_array_evaluation(
    model_and_ids, n, seq_len, streams, block
):
    """Whatever the block size, the stream count and the chunk length, reading the ids in
    blocks gives bit for bit the figure of the whole text reshaped into streams at once, from
    an array and from an IdFile written in several appends."""
    model, all_ids = model_and_ids
    ids = all_ids[:n]
    expected = whole_array_evaluate(model, ids, seq_len, streams)
    saved = training.EVAL_BLOCK
    training.EVAL_BLOCK = block
    try:
        from_array = evaluate(model, ids, seq_len, streams)
        with IdFile(ids.dtype) as id_file:
            for part in np.array_split(ids, 3):
                id_file.append(part)
            from_file = evaluate(model, id_file, seq_len, streams)
    finally:
        training.EVAL_BLOCK = saved
    assert from_array == from_file == expected


def test_id_file_reads_back_what_was_appended_and_leaves_no_file(tmp_path, monkeypatch):
    """An IdFile holds the appended ids in order, reads any contiguous slice, refuses a step,
    and never shows up as a file in the temporary directory."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    ids = np.arange(1000, dtype=np.uint16)
    with IdFile(np.uint16) as id_file:
        id_file.append(ids[:10])
        id_file.append(ids[10:])
        assert len(id_file) == 1000
        assert list(tmp_path.iterdir()) == []
        for key in (slice(0, 1000), slice(3, 17), slice(990, 2000), slice(5, 5), slice(-4, None)):
            np.testing.assert_array_equal(id_file[key], ids[key])
        with pytest.raises(ValueError, match="contiguous"):
            id_file[::2]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("unit", ["grapheme", "codepoint"])
def test_evaluate_file_equals_evaluate_of_the_text_in_memory(tmp_path, monkeypatch, unit):
    """A file read in pieces of a few dozen bytes (so that symbols of several code points meet
    piece edges, and ids are written in many appends) evaluates to the figure of `evaluate` on
    the ids of the whole text in memory, with the number of predictions."""
    pieces = [english_like(300, seed=i) + CLUSTERS[i % len(CLUSTERS)] for i in range(12)]
    text = "".join(pieces)
    path = tmp_path / "text.txt"
    path.write_text(text, encoding="utf-8", newline="")
    vocab = Vocab.from_text(text, unit)
    model = CharRNN(len(vocab), 16, seed=2)
    monkeypatch.setattr(corpus, "EVAL_CHUNK_BYTES", 37)
    monkeypatch.setattr(training, "EVAL_BLOCK", 300)
    nats, predictions = evaluate_file(
        model, vocab, TextFile(path), seq_len=10, streams=7, workers=2
    )
    ids = vocab.encode(text)
    assert predictions == len(ids) - 1
    with DataParallel(model, 2) as workers:
        assert nats == pytest.approx(evaluate(workers, ids, 10, 7), rel=1e-12)


def test_evaluate_file_names_the_symbols_the_model_never_saw(tmp_path, monkeypatch):
    """Unknown symbols are a VocabError naming the file and those symbols; nothing is left in
    the temporary directory."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    path = tmp_path / "text.txt"
    path.write_text("the fox\nthe QUICK fox\n", encoding="utf-8")
    vocab = Vocab.from_text("the fox\n")
    with pytest.raises(VocabError, match=r"text\.txt: .*'C', 'I', 'K', 'Q', 'U'"):
        encode_file_ids(TextFile(path), vocab)
    assert list(temporary.iterdir()) == []


def test_evaluate_file_of_one_symbol_is_a_clear_error(tmp_path):
    """A file of one symbol has nothing to predict: a CorpusError naming it."""
    path = tmp_path / "one.txt"
    path.write_text("a", encoding="utf-8")
    vocab = Vocab.from_text("ab")
    with pytest.raises(charrnn.CorpusError, match=r"one\.txt: needs at least 2 symbols"):
        evaluate_file(CharRNN(len(vocab), 4), vocab, TextFile(path))


# ---- charrnn eval -----------------------------------------------------------------------------


def test_cli_eval_equals_evaluate_on_the_ids_in_memory(trained_run, tmp_path):
    """`charrnn eval` of a 20 KB file the model did not train on prints, to its 4 decimals,
    the figure of `evaluate` on the ids of the text in memory, and the number of predictions."""
    text = english_like(20_000, seed=9)
    path = tmp_path / "other.txt"
    path.write_text(text, encoding="utf-8")
    proc = run_cli("eval", trained_run.dir, path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    run = charrnn.load(trained_run.dir)
    expected = evaluate(run.model, run.vocab.encode(text))
    m = re.fullmatch(
        r".+: (\d+\.\d{4}) nats/char, (\d+\.\d{4}) bits/char over ([\d,]+) predictions "
        r"in 19 streams\n",
        proc.stdout,
    )
    assert m, proc.stdout
    assert m[1] == f"{expected:.4f}"
    assert int(m[3].replace(",", "")) == len(text) - 1


def test_cli_eval_unknown_symbols_is_one_line_naming_them(trained_run, tmp_path):
    """Symbols the model never saw, at the end of a file: exit 2, one line naming the file and
    those symbols only."""
    path = tmp_path / "upper.txt"
    path.write_text(english_like(3000) + "the QUICK fox\n", encoding="utf-8")
    line = assert_usage_error(run_cli("eval", trained_run.dir, path), "upper.txt", "'Q'", "'K'")
    assert "'t'" not in line


PEAK_WRAPPER = """
import sys
from charrnn.cli import main
code = main(sys.argv[1:])
peak = next(line for line in open("/proc/self/status") if line.startswith("VmPeak:"))
print("VmPeak", int(peak.split()[1]) * 1024, file=sys.stderr)
sys.exit(code)
"""
BIG_FILE_BYTES = 200_000_000
HEADROOM = 100 << 20  # address space allowed beyond a small evaluation's: half the file's size
# Ideographs of CJK Extension B: four bytes each in UTF-8, one symbol each, so the 200 MB file
# is 50 M predictions, which a hidden-8 model evaluates in about 15 s (200 M would take 60 s).
IDEOGRAPHS = [chr(0x20000 + 7 * i) for i in range(40)]


def ideographic_lines(n_lines: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    lines = rng.choice(IDEOGRAPHS, size=(n_lines, 60))
    return "".join("".join(line) + "\n" for line in lines)


def limited(limit: int):
    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return preexec


def run_cli_peak(*args) -> int:
    """The peak address space, in bytes, of `charrnn ARGS` in a process of its own."""
    proc = subprocess.run(
        [sys.executable, "-c", PEAK_WRAPPER, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        env=cli_env(),
    )
    assert proc.returncode == 0 and proc.stderr.startswith("VmPeak"), proc.stderr
    return int(proc.stderr.split()[-1])


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_cli_eval_of_a_200_mb_file_stays_within_a_small_address_space(tmp_path):
    """`charrnn eval` of a 200 MB file (50 M symbols) runs under an address-space limit of
    what evaluating a 24 KB file takes plus 100 MiB, half the file's size: the file is streamed
    in 1 MiB pieces and its ids read back in blocks. Reading the text whole needs more than
    the file's size (Python holds these symbols in 4 bytes each), and the same limit stops
    `read_text` of that file: the limit is a real bound. About 25 s on an idle machine."""
    small = tmp_path / "small.txt"
    small.write_text(ideographic_lines(100, seed=0), encoding="utf-8")
    run = tmp_path / "run"
    config = TrainConfig(hidden=8, batch=4, seq_len=8, steps=2, sample_length=0)
    charrnn.train(charrnn.TextFile(small), config, run)
    baseline = run_cli_peak("eval", run, small)

    big = tmp_path / "big.txt"
    block = ideographic_lines(4000, seed=1).encode("utf-8")
    with big.open("wb") as f:
        for _ in range(BIG_FILE_BYTES // len(block)):
            f.write(block)
    symbols = big.stat().st_size // len(block) * len(block.decode("utf-8"))
    limit = baseline + HEADROOM
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "charrnn", "eval", str(run), str(big)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=600,
        env=cli_env(),
        preexec_fn=limited(limit),
    )
    took = time.monotonic() - started
    assert proc.returncode == 0, f"limit {limit:,} bytes:\n{proc.stdout}{proc.stderr}"
    assert f"over {symbols - 1:,} predictions" in proc.stdout, proc.stdout

    whole = subprocess.run(
        [sys.executable, "-c", f"from charrnn.corpus import read_text; read_text({str(big)!r})"],
        capture_output=True,
        text=True,
        timeout=120,
        env=cli_env(),
        preexec_fn=limited(limit),
    )
    assert whole.returncode != 0 and "MemoryError" in whole.stderr, whole.stderr[-2000:]
    print(f"baseline {baseline / 2**20:.0f} MiB, limit {limit / 2**20:.0f} MiB, eval {took:.1f} s")


# ---- evaluation during training: --eval-symbols -----------------------------------------------


def test_eval_symbols_limits_every_evaluation_to_the_first_ones(corpus_file, tmp_path):
    """`train --eval-symbols 50`: every record says val_symbols 50, the last one's val_loss is
    `evaluate` over the first 50 validation ids with the final weights, and the start line and
    eval lines say so. A resume may change it (reporting, not training)."""
    run = tmp_path / "run"
    args = ("train", corpus_file, *TRAIN_ARGS, "--eval-every", "10", "--sample-length", "0")
    proc = run_cli(*args, "--steps", "20", "--eval-symbols", "50", "--out", run)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^run .* validation symbols \(the first 50 evaluated\), ", proc.stdout, re.M)
    assert len(re.findall(r"^eval at step .* over its first 50 symbols$", proc.stdout, re.M)) == 2
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["val_symbols"] for r in records] == [50, 50]
    loaded = charrnn.load(run, "latest")
    _, val_ids = split_ids(np.load(run / corpus.CACHE_IDS), 0.1)
    expected = evaluate(loaded.model, val_ids[:50], seq_len=16)
    assert records[-1]["val_loss"] == pytest.approx(expected, rel=1e-6)

    proc = run_cli("train", "--resume", run, "--steps", "30", "--eval-symbols", "1000000")
    assert proc.returncode == 0, proc.stderr
    assert "evaluated" not in proc.stdout and "first" not in proc.stdout
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["val_symbols"] for r in records] == [50, 50, len(val_ids)]


def test_default_evaluates_the_whole_split_up_to_the_cap(tmp_path):
    """With no eval_symbols an evaluation covers min(len(validation split), EVAL_SYMBOLS)
    symbols, the first ones: the whole split of a small text, the cap of a large one."""
    assert TrainConfig().eval_symbols is None
    cap = training.EVAL_SYMBOLS
    config = TrainConfig(hidden=8, batch=4, seq_len=8, steps=1, sample_length=0)
    small = english_like(5_000)
    result = charrnn.train(small, config, tmp_path / "small")
    _, val_ids = split_ids(Vocab.from_text(small).encode(small), config.val_fraction)
    assert result.history[-1]["val_symbols"] == len(val_ids) < cap

    config.val_fraction = 0.5
    large = english_like(2 * cap + 50_000, seed=1)
    result = charrnn.train(large, config, tmp_path / "large")
    _, val_ids = split_ids(Vocab.from_text(large).encode(large), config.val_fraction)
    assert len(val_ids) > cap
    assert result.history[-1]["val_symbols"] == cap
    model = charrnn.load(tmp_path / "large", "latest").model
    expected = evaluate(model, val_ids[:cap], config.seq_len)
    assert result.history[-1]["val_loss"] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("value", [1, 0, -3])
def test_eval_symbols_below_two_is_refused(value):
    with pytest.raises(ConfigError, match=f"eval_symbols must be an integer >= 2, got {value}"):
        TrainConfig(eval_symbols=value).check()


# ---- how many streams `evaluate` cuts a text into ---------------------------------------------


def test_eval_streams_holds_at_least_a_thousand_symbols_each_and_at_most_64():
    rule = training.eval_streams
    assert [rule(n) for n in (1, 999, 1999, 2000, 2999, 63_999, 64_000, 10**9)] == [
        1,
        1,
        1,
        2,
        2,
        63,
        64,
        64,
    ]
    assert rule(3000, streams=64) == 64 and rule(5, streams=64) == 5  # given: as asked


def test_eval_of_a_short_file_is_the_carried_state_loss_of_show(trained_run, tmp_path):
    """A 1,500-symbol file is read as one stream, as `show` (trace) reads it: the same figure
    to float tolerance; cut 64 ways (the old default), every stream starting without context,
    it gives another."""
    text = english_like(1500, seed=3)[:1500]
    path = tmp_path / "short.txt"
    path.write_text(text, encoding="utf-8")
    out = assert_ok_output(run_cli("eval", trained_run.dir, path))
    assert out.endswith(f"over {len(text) - 1:,} predictions in 1 stream\n"), out
    nats = float(re.search(r": (\d+\.\d+) nats/char", out)[1])
    run = charrnn.load(trained_run.dir)
    shown = charrnn.trace(run.model, run.vocab, text).bits_per_char * np.log(2)
    assert nats == pytest.approx(shown, abs=1e-4)
    ids = run.vocab.encode(text)
    assert evaluate(run.model, ids) == pytest.approx(shown, rel=1e-5)
    assert evaluate(run.model, ids, streams=64) != pytest.approx(shown, rel=1e-4)


def test_eval_of_3000_symbols_uses_two_streams(trained_run, tmp_path):
    text = english_like(3000, seed=4)[:3000]
    path = tmp_path / "three.txt"
    path.write_text(text, encoding="utf-8")
    out = assert_ok_output(run_cli("eval", trained_run.dir, path))
    assert out.endswith("over 2,999 predictions in 2 streams\n"), out
    run = charrnn.load(trained_run.dir)
    nats = float(re.search(r": (\d+\.\d+) nats/char", out)[1])
    assert nats == pytest.approx(evaluate(run.model, run.vocab.encode(text), streams=2), abs=1e-4)


def assert_ok_output(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    return proc.stdout
