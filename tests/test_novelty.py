"""The memorisation check: the suffix array against brute force, the figures of copied and
new text, the index built once and reused, and `charrnn novelty`, `sample --novelty` and the
report page."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import assert_usage_error, run_cli

from charrnn import Vocab, load, training
from charrnn import novelty as novelty_module
from charrnn.novelty import TrainingIndex, build_index


def brute_longest(training: list[int], query: list[int], i: int) -> int:
    best = 0
    for n in range(1, len(query) - i + 1):
        piece = query[i : i + n]
        if not any(training[p : p + n] == piece for p in range(len(training))):
            break
        best = n
    return best


@pytest.mark.parametrize("seed", range(6))
def test_suffix_array_and_matches_agree_with_brute_force(tmp_path, monkeypatch, seed):
    """Small blocks and scans, so that a tiny corpus crosses every boundary of the build."""
    rng = np.random.default_rng(seed)
    monkeypatch.setattr(novelty_module, "BLOCK_SUFFIXES", int(rng.integers(1, 40)))
    monkeypatch.setattr(novelty_module, "SCAN_IDS", int(rng.integers(1, 30)))
    V = int(rng.integers(1, 5))
    ids = rng.integers(0, V, int(rng.integers(20, 200))).astype(np.uint8)
    if seed % 2:
        ids = np.tile(ids[:9], 30)  # long repeats: many rounds of ties
    build_index(ids, V, tmp_path, "test")
    suffixes = np.load(tmp_path / novelty_module.INDEX_FILE)
    assert suffixes.tolist() == sorted(range(len(ids)), key=lambda i: ids[i:].tolist())
    index = TrainingIndex(ids, suffixes, Vocab([chr(97 + i) for i in range(V)]))
    query = np.concatenate([ids[3:80], rng.integers(0, V, 30)])
    lengths, places = index.matches(query)
    training = ids.tolist()
    for i in range(len(query)):
        assert lengths[i] == brute_longest(training, query.tolist(), i)
        n = lengths[i]
        assert training[places[i] : places[i] + n] == query[i : i + n].tolist()


def forget_index(run_dir) -> None:
    """Remove an index an earlier command (`report` on the shared run) built there."""
    for name in (novelty_module.INDEX_FILE, novelty_module.INDEX_META):
        (run_dir / name).unlink(missing_ok=True)


def test_copied_text_is_found_where_it_is_and_new_text_is_not(trained_run, run_copy):
    forget_index(run_copy)
    run = load(run_copy)
    calls = []
    index = TrainingIndex.open(run, lambda: calls.append(1))
    text = trained_run.text
    start = text.index("\n", 1000) + 1
    copied = text[start : start + 300]
    figures = index.novelty(copied)
    assert figures.symbols == 300 and figures.longest == 300 and figures.span == copied
    assert text[figures.at : figures.at + 300] == copied
    assert figures.line == text[: figures.at].count("\n") + 1
    assert figures.shares == {8: 1.0, 16: 1.0, 32: 1.0}
    new = index.novelty("qqqqqqqqqqzzzzzzzzzz")
    assert new.longest < 4 and new.shares == {8: 0.0, 16: 0.0, 32: None}
    half = index.novelty(copied[:40] + "qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq")  # 40 + 40
    assert half.longest == 40
    assert half.shares[8] == pytest.approx((40 - 8 + 1) / (80 - 8 + 1))
    assert calls == [1]
    files = [run_copy / novelty_module.INDEX_FILE, run_copy / novelty_module.INDEX_META]
    stamps = [os.stat(f).st_mtime_ns for f in files]
    TrainingIndex.open(run, lambda: calls.append(2))  # reused: not built again
    assert calls == [1] and [os.stat(f).st_mtime_ns for f in files] == stamps


def test_a_run_without_its_id_cache_is_encoded_once_into_charrnns_cache(
    run_copy, trained_run, tmp_path, monkeypatch
):
    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path / "cache"))
    forget_index(run_copy)
    for name in ("corpus.ids.npy", "corpus.json"):
        (run_copy / name).unlink()
    run = load(run_copy)
    copied = trained_run.text[100:400]
    figures = TrainingIndex.open(run).novelty(copied)
    assert figures.longest == 300 and trained_run.text[figures.at :].startswith(copied)
    folders = list((tmp_path / "cache" / "novelty").iterdir())
    assert len(folders) == 1 and (folders[0] / novelty_module.INDEX_FILE).exists()
    assert not (run_copy / novelty_module.INDEX_FILE).exists()


def test_novelty_command_and_sample_novelty(trained_run, run_copy, tmp_path):
    text = trained_run.text
    passage = tmp_path / "passage.txt"
    passage.write_text(text[2000:2100] + "qqqqqqqqqq", encoding="utf-8")
    proc = run_cli("novelty", run_copy, passage)
    assert proc.returncode == 0, proc.stderr
    assert "100 symbols" in proc.stdout and "110" in proc.stdout
    assert "text too short" not in proc.stdout
    proc = run_cli("novelty", run_copy, input="the fox")
    assert proc.returncode == 0 and "text too short" in proc.stdout
    proc = run_cli(
        *("sample", run_copy, "--length", "300", "--seed", "3", "--num", "2"),
        *("--novelty", "--format", "jsonl"),
    )
    assert proc.returncode == 0, proc.stderr
    for record in map(json.loads, proc.stdout.splitlines()):
        figures = record["novelty"]
        assert figures["symbols"] == 300
        span = figures["longest_copied"]
        assert 0 < span["symbols"] == len(span["text"]) and span["text"] in text
        assert text[span["at"] :].startswith(span["text"])
        assert set(figures["ngrams_in_training"]) == {"8", "16", "32"}
    proc = run_cli("sample", run_copy, "--length", "100", "--seed", "3", "--novelty")
    lines = proc.stdout.splitlines()
    assert lines[-1].startswith("novelty: longest span copied from the training text ")


def test_novelty_errors_are_usage_errors(run_copy):
    assert_usage_error(run_cli("novelty", run_copy, input="Ab€"), "€")
    base = training.BASES["english"]  # the shipped base records no source to read
    assert_usage_error(run_cli("novelty", base, input="the"), "does not say what it trained on")


def test_the_report_shows_each_samples_novelty(trained_run, run_copy, tmp_path):
    out = tmp_path / "report.html"
    proc = run_cli("report", run_copy, "-o", out)
    assert proc.returncode == 0, proc.stderr
    page = out.read_text(encoding="utf-8")
    samples = sum(1 for r in trained_run.metrics() if isinstance(r.get("sample"), str))
    assert samples and page.count('<p class="novelty">novelty: longest span') == samples
