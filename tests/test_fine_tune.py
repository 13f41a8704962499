"""Starting a run from another run's model: the vocabulary merge moves weights by symbol, every
cell and depth fine-tunes, the result resumes exactly, records its lineage, and every wrong
use is one line and exit 2."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_usage_error, english_like, run_cli
from hypothesis import given, settings
from hypothesis import strategies as st
from test_guarantees_resume import assert_same_run

import charrnn
from charrnn import TextFile, TrainConfig, Vocab, train
from charrnn.checkpoint import load, read_meta, read_npz
from charrnn.errors import CheckpointError, ConfigError, VocabError
from charrnn.lineage import weights_digest
from charrnn.merge import merge_params, merge_vocab, new_symbol_biases, start_from_base
from charrnn.model import CharRNN
from charrnn.training import read_run_config

BASE_TEXT = english_like(3000, seed=1)  # lowercase words and . , ?
# New to the base: capitals, digits, an accent and a euro sign; 'z' and 'j' of the base absent.
NEW_TEXT = english_like(2500, seed=2).replace("the", "The").replace("q", "é") + "Q 42 €\n"
TINY = {"batch": 4, "seq_len": 8, "eval_every": 5, "sample_length": 8, "schedule": "constant"}


def stop_at_once() -> bool:
    return True


@pytest.fixture(scope="module", params=[("rnn", 1), ("lstm", 2), ("gru", 2)], ids=str)
def base_run(request, tmp_path_factory) -> Path:
    cell, layers = request.param
    run_dir = tmp_path_factory.mktemp("base") / f"{cell}{layers}"
    config = TrainConfig(hidden=12, cell=cell, layers=layers, steps=10, **TINY)
    train(BASE_TEXT, config, run_dir)
    return run_dir


# ---- the merge, a pure function ---------------------------------------------------------------


def random_params(vocab: Vocab, cell: str, layers: int, seed: int = 0) -> dict:
    model = CharRNN(len(vocab), 6, seed=seed, dtype=np.float64, cell=cell, layers=layers)
    model.params["b_y"] = np.random.default_rng(seed).normal(size=len(vocab))
    return model.params


@pytest.mark.parametrize("cell,layers", [("rnn", 1), ("lstm", 2), ("gru", 1)])
def test_shared_symbols_keep_rows_bit_for_bit_and_new_ones_start_fresh(cell, layers):
    old = Vocab(list("acegx"))
    new = merge_vocab(old, "bdfa")  # b, d, f sort between the old symbols
    assert new.symbols == tuple("abcdefgx")
    params = random_params(old, cell, layers)
    merged = merge_params(params, old, new, {"b": -1.0, "d": -2.0, "f": -3.0}, seed=4)
    H = params["W_hy"].shape[0]
    for s in old.symbols:
        i, j = old.index[s], new.index[s]
        assert merged["W_xh"][j].tobytes() == params["W_xh"][i].tobytes()
        assert merged["W_hy"][:, j].tobytes() == params["W_hy"][:, i].tobytes()
        assert merged["b_y"][j] == params["b_y"][i]
    for s, bias in {"b": -1.0, "d": -2.0, "f": -3.0}.items():
        j = new.index[s]
        row = merged["W_xh"][j]
        assert np.all(np.abs(row) <= 1 / np.sqrt(H)) and np.unique(row).size == row.size
        assert not merged["W_hy"][:, j].any() and merged["b_y"][j] == bias
    for name in params.keys() - {"W_xh", "W_hy", "b_y"}:  # untouched by the vocabulary
        assert merged[name] is params[name]
    again = merge_params(params, old, new, {"b": -1.0, "d": -2.0, "f": -3.0}, seed=4)
    assert all(np.array_equal(again[k], merged[k]) for k in merged)  # deterministic by seed


@settings(max_examples=25, deadline=None)
@given(
    old_symbols=st.sets(st.sampled_from("abcdefghijklmnop"), min_size=2, max_size=10),
    extra=st.sets(st.sampled_from("ABCDEFGHéü€0123"), min_size=1, max_size=8),
    cell=st.sampled_from(["rnn", "lstm", "gru"]),
    seed=st.integers(0, 100),
)
def test_a_symbols_logit_does_not_change_when_unrelated_symbols_are_added(
    old_symbols, extra, cell, seed
):
    old = Vocab(sorted(old_symbols))
    new = merge_vocab(old, extra)
    params = random_params(old, cell, 2 if cell == "lstm" else 1, seed)
    before = CharRNN.from_params(params, cell)
    after = CharRNN.from_params(merge_params(params, old, new, dict.fromkeys(extra, 0.5)), cell)
    text = "".join(sorted(old_symbols)) * 3
    s_old, s_new = before.zero_state(1), after.zero_state(1)
    for symbol in text:
        y_old, s_old = before.step(old.encode(symbol), s_old)
        y_new, s_new = after.step(new.encode(symbol), s_new)
        for s in old.symbols:
            np.testing.assert_allclose(y_new[0, new.index[s]], y_old[0, old.index[s]], rtol=1e-12)
        for s in extra:
            assert y_new[0, new.index[s]] == 0.5  # a zero column: the bias alone


def test_merge_refuses_what_is_not_a_superset_or_another_unit():
    old = Vocab(list("abc"))
    params = random_params(old, "rnn", 1)
    with pytest.raises(VocabError, match="lacks 1 of the base's symbols"):
        merge_params(params, old, Vocab(list("abd")), {"d": 0.0})
    with pytest.raises(VocabError, match="codepoint"):
        merge_params(params, old, Vocab(list("abc"), "codepoint"), {})
    with pytest.raises(VocabError, match="no starting bias"):
        merge_params(params, old, Vocab(list("abcd")), {})


def test_new_symbols_start_near_their_frequency():
    """The calibrated bias puts a new symbol's mean probability within 30% of its share of
    the new text, where a bias of log(share) alone is off by the base's log-partition."""
    old = Vocab(list("abcdefgh"))
    params = random_params(old, "lstm", 1, seed=3)
    params["b_y"] = params["b_y"] + 4.0  # a base whose logits sit far from zero
    new = merge_vocab(old, "XY")
    rng = np.random.default_rng(0)
    ids = rng.choice(len(new), 4000, p=[0.12] * 8 + [0.03, 0.01])
    merged = start_from_base(params, old, new, ids, "lstm", seed=1)
    model = CharRNN.from_params(merged, "lstm")
    probs, state = [], model.zero_state(8)
    for t in range(100):
        logits, state = model.step(ids[t * 8 : t * 8 + 8], state)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs.append(e / e.sum(axis=1, keepdims=True))
    mean = np.concatenate(probs).mean(axis=0)
    share = np.bincount(ids, minlength=len(new)) / len(ids)
    for s in "XY":
        assert 0.7 < mean[new.index[s]] / share[new.index[s]] < 1.3, s
    plain = dict(merged)
    plain["b_y"] = merged["b_y"].copy()
    biases = new_symbol_biases(model, old, new, ids, np.bincount(ids, minlength=len(new)))
    offset = biases["X"] - np.log(share[new.index["X"]])
    assert offset > 3  # the base's log-partition, which log(share) alone would miss


# ---- fine-tuning through train() ----------------------------------------------------------


def test_every_cell_and_depth_starts_from_its_base_by_symbol(base_run, tmp_path):
    """Stopped before its first step, a fine-tuned run's weights are the base's, moved by
    symbol; the new symbols are added and sorted, and the lineage is recorded."""
    base = load(base_run)
    out = tmp_path / "ft"
    result = train(
        NEW_TEXT, TrainConfig(steps=5, **TINY), out, init_from=base_run, stop=stop_at_once
    )
    assert result.interrupted and result.step == 0
    saved = read_npz(out / "latest.npz")
    meta = read_meta(out / "latest.npz")
    vocab = Vocab.from_json(meta["vocab"])
    assert list(vocab.symbols) == sorted(
        set(base.vocab.symbols) | set(Vocab.from_text(NEW_TEXT).symbols)
    )
    assert meta["train"]["cell"] == base.model.cell and meta["train"]["hidden"] == 12
    for name, array in base.model.params.items():
        got = saved[f"param/{name}"]
        if name == "W_xh":
            got = got[[vocab.index[s] for s in base.vocab.symbols]]
        elif name == "W_hy":
            got = got[:, [vocab.index[s] for s in base.vocab.symbols]]
        elif name == "b_y":
            got = got[[vocab.index[s] for s in base.vocab.symbols]]
        assert got.tobytes() == array.tobytes(), name
    lineage = meta["init_from"]
    added = sorted(set(vocab.symbols) - set(base.vocab.symbols))
    assert lineage["symbols_added"] == added and {"T", "é", "€", "Q", "4"} <= set(added)
    assert lineage["path"] == str(base_run) and lineage["step"] == 10
    assert lineage["weights_sha256"] == weights_digest(base.model.params)
    assert not any(k.startswith("opt/") and saved[k].any() for k in saved)  # fresh optimizer


def test_fine_tuning_trains_and_resumes_bitwise(base_run, tmp_path):
    """20 steps straight equal 10 steps and a resume to 20, for a fine-tuned run; the resumed
    run keeps its lineage."""
    config = TrainConfig(steps=20, **TINY)
    whole, split = tmp_path / "whole", tmp_path / "split"
    train(NEW_TEXT, config, whole, init_from=base_run)
    train(NEW_TEXT, TrainConfig(steps=10, **TINY), split, init_from=base_run)
    saved, _ = read_run_config(split)  # the base's architecture, as a resume must repeat it
    train(NEW_TEXT, dataclasses.replace(saved, steps=20), split, resume=True)
    assert_same_run(whole, split)
    assert (
        read_meta(split / "latest.npz")["init_from"] == read_meta(whole / "latest.npz")["init_from"]
    )


def test_a_file_corpus_fine_tunes_through_the_id_cache_and_resumes(base_run, tmp_path):
    text_file = tmp_path / "new.txt"
    text_file.write_text(NEW_TEXT, encoding="utf-8")
    config = TrainConfig(steps=12, **TINY)
    whole, split = tmp_path / "whole", tmp_path / "split"
    train(TextFile(text_file), config, whole, init_from=base_run)
    in_memory = tmp_path / "in-memory"
    train(NEW_TEXT, config, in_memory, init_from=base_run)
    assert read_npz(whole / "latest.npz")["param/W_hy"].tobytes() == (
        read_npz(in_memory / "latest.npz")["param/W_hy"].tobytes()
    )
    train(TextFile(text_file), TrainConfig(steps=5, **TINY), split, init_from=base_run)
    saved, _ = read_run_config(split)
    train(TextFile(text_file), dataclasses.replace(saved, steps=12), split, resume=True)
    assert_same_run(whole, split)


def test_a_fine_tuned_run_is_an_ordinary_run(base_run, tmp_path):
    out = tmp_path / "ft"
    train(NEW_TEXT, TrainConfig(steps=6, **TINY), out, init_from=base_run)
    run = charrnn.load(out)
    text = "".join(charrnn.generate(run.model, run.vocab, prime="The €", length=30, seed=1))
    assert len(text) == 30
    assert np.isfinite(charrnn.evaluate(run.model, run.vocab.encode(NEW_TEXT[:500])))
    # and it is a base in its turn: the chain of bases is kept
    again = tmp_path / "again"
    train(BASE_TEXT, TrainConfig(steps=2, **TINY), again, init_from=out, stop=stop_at_once)
    lineage = read_meta(again / "latest.npz")["init_from"]
    assert lineage["base"]["path"] == str(base_run) and lineage["symbols_added"] == []


def test_python_config_takes_the_base_architecture_or_refuses_another(base_run, tmp_path):
    base = load(base_run)
    other = "gru" if base.model.cell != "gru" else "lstm"
    with pytest.raises(
        ConfigError, match=rf"^cell {other}: the base .* has cell {base.model.cell}"
    ):
        train(NEW_TEXT, TrainConfig(cell=other, steps=2, **TINY), tmp_path / "a", init_from=base)
    with pytest.raises(ConfigError, match="hidden 99"):
        train(NEW_TEXT, TrainConfig(hidden=99, steps=2, **TINY), tmp_path / "b", init_from=base)
    with pytest.raises(ConfigError, match="unit codepoint"):
        train(NEW_TEXT, TrainConfig(unit="codepoint", steps=2), tmp_path / "c", init_from=base)
    with pytest.raises(ConfigError, match="resumed run"):
        train(NEW_TEXT, TrainConfig(steps=2), tmp_path / "d", resume=True, init_from=base)
    config = TrainConfig.for_budget(base, steps=400)  # the budget picks the LSTM's settings
    line = charrnn.config.choose_model({"steps": 400}, base).line
    assert line.startswith(f"model: {charrnn.budget.describe(config)}, the base's; its other ")
    assert "settings the 2-layer LSTM's (400 steps buy it ~1.28M characters" in line
    assert (config.cell, config.layers, config.hidden) == (
        base.model.cell,
        base.model.layers,
        12,
    )
    assert config.lr == charrnn.config.FINE_TUNE_LR and config.schedule == "wsd"
    assert TrainConfig.for_budget(base, lr=5e-3, steps=3).lr == 5e-3
    assert not any((tmp_path / name).exists() for name in "abcd")


# ---- the command line -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_base(tmp_path_factory) -> tuple[Path, Path]:
    """A base run trained by the CLI, and a new text with symbols the base never saw."""
    where = tmp_path_factory.mktemp("cli-base")
    (where / "base.txt").write_text(BASE_TEXT, encoding="utf-8")
    (where / "new.txt").write_text(NEW_TEXT, encoding="utf-8")
    proc = run_cli(
        "train", where / "base.txt", "--cell", "gru", "--hidden", "12", "--batch", "4",
        "--seq-len", "8", "--steps", "10", "--eval-every", "5", "--out", where / "base",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return where / "base", where / "new.txt"


def test_cli_fine_tunes_and_info_shows_the_lineage(cli_base, tmp_path):
    base, new = cli_base
    out = tmp_path / "ft"
    proc = run_cli(
        "train", new, "--init-from", base / "latest.npz", "--batch", "4", "--seq-len", "8",
        "--steps", "6", "--eval-every", "3", "--out", out,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "gru 1 x 12" in proc.stdout and f"lr {charrnn.config.FINE_TUNE_LR:g}" in proc.stdout
    info = run_cli("info", out)
    assert info.returncode == 0, info.stderr
    line = next(line for line in info.stdout.splitlines() if "started from" in line)
    assert str(base / "latest.npz") in line and "step 10" in line
    meta = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert meta["init_from"]["corpus"]["path"].endswith("base.txt")
    report = run_cli("report", out, "-o", tmp_path / "r.html")
    assert report.returncode == 0, report.stderr
    assert "started from" in (tmp_path / "r.html").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "args,fragments",
    [
        (("--cell", "lstm"), ("cell lstm", "has cell gru")),
        (("--hidden", "64", "--layers", "2"), ("layers 2, hidden 64", "layers 1, hidden 12")),
        (("--unit", "codepoint"), ("unit codepoint", "unit grapheme")),
    ],
    ids=["cell", "layers-hidden", "unit"],
)
def test_cli_refuses_another_architecture_by_name(cli_base, tmp_path, args, fragments):
    base, new = cli_base
    proc = run_cli("train", new, "--init-from", base, *args, "--out", tmp_path / "x")
    assert_usage_error(proc, *fragments)
    assert not (tmp_path / "x").exists()


def test_cli_refuses_a_missing_damaged_or_foreign_base_and_resume(cli_base, tmp_path):
    base, new = cli_base
    damaged = tmp_path / "damaged"
    shutil.copytree(base, damaged)
    for name in ("best.npz", "latest.npz"):
        data = (damaged / name).read_bytes()
        (damaged / name).write_bytes(data[: len(data) // 2])
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, weights=np.zeros(3))
    cases = [
        ((tmp_path / "missing",), "--init-from", "no such run directory"),
        ((damaged,), "--init-from", "not a readable charrnn checkpoint"),
        ((foreign,), "--init-from", "not a charrnn checkpoint"),
        ((new,), "--init-from", "not a readable charrnn checkpoint"),
    ]
    for (where,), *fragments in cases:
        proc = run_cli("train", new, "--init-from", where, "--out", tmp_path / "x")
        assert_usage_error(proc, *fragments)
        assert not (tmp_path / "x").exists()
    proc = run_cli("train", "--resume", base, "--init-from", base)
    assert_usage_error(proc, "--init-from starts a new run")


def test_load_base_names_the_option():
    with pytest.raises(CheckpointError, match=r"^--init-from: "):
        charrnn.training.load_base("/nonexistent/run")


# ---- the base that ships ------------------------------------------------------------------


def test_the_english_base_ships_and_loads_as_float32():
    base = charrnn.training.load_base("english")
    assert base.path == charrnn.training.BASES["english"]
    assert (base.model.cell, base.model.layers, base.model.hidden_size) == ("lstm", 2, 256)
    assert all(p.dtype == np.float32 for p in base.model.params.values())
    assert base.config["model"]["dtype"] == "float16"  # stored small, computed in float32
    assert "bench_transfer.py" in base.config["made_by"] and base.config["step"] == 2500
    assert {"a", "Z", "(", "\n"} <= set(base.vocab.symbols)


def test_cli_fine_tunes_from_english_and_a_local_run_named_english_wins(tmp_path):
    (tmp_path / "new.txt").write_text(NEW_TEXT, encoding="utf-8")
    common = ("--batch", "2", "--seq-len", "8", "--steps", "2", "--eval-every", "2")
    proc = run_cli(
        "train", "new.txt", "--init-from", "english", *common, "--out", "ft", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert "lstm 2 x 256" in proc.stdout
    info = run_cli("info", "ft", cwd=tmp_path).stdout
    assert "started from" in info and "english at step 2,500" in info
    # a run directory called english in the working directory is what the user means
    proc = run_cli("train", "new.txt", "--hidden", "8", *common, "--out", "english", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli(
        "train", "new.txt", "--init-from", "english", *common, "--out", "ft2", cwd=tmp_path
    )
    assert proc.returncode == 0 and "rnn 1 x 8" in proc.stdout, proc.stderr
