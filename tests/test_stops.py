"""Stop strings: escapes, hold-back while streaming, and `--stop`, `--keep-stop` and
`--format jsonl` on `charrnn sample`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_usage_error, run_cli
from test_repl import PROMPT, Session

from charrnn import CharRNN, ConfigError, Vocab, generate, generate_samples
from charrnn.stops import StopText, unescape

TEXT = "the cat sat on the mat.\nthe dog ate the log!\n"


@pytest.fixture(scope="module")
def vocab():
    return Vocab.from_text(TEXT)


@pytest.fixture(scope="module")
def model(vocab):
    model = CharRNN(len(vocab), 24, seed=1)
    rng = np.random.default_rng(1)
    for p in model.params.values():
        p += rng.standard_normal(p.shape).astype(np.float32)
    return model


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        (r"\n\n", "\n\n"),
        (r"a\tb", "a\tb"),
        (r"\\n", "\\n"),
        (r"\x41\u00e9\U0001F600", "Aé😀"),
        ("THE END", "THE END"),
    ],
)
def test_unescape_turns_shell_escapes_into_characters(typed, meant):
    assert unescape(typed) == meant


@pytest.mark.parametrize(
    ("typed", "fragment"),
    [
        (r"a\q", r"unknown escape \q"),
        ("ab\\", "lone backslash"),
        ("", "empty"),
        (r"\ud800", "not a character"),
    ],
)
def test_unescape_refuses_what_names_no_character(typed, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("\\", "\\\\")):
        unescape(typed)


def test_text_that_may_begin_a_stop_is_held_back_until_decided():
    cut = StopText(["\n\n", "THE END"])
    shown = [cut.push(c) for c in "ab\nc THE ENd\n\nafter"]
    # "\n" waits for the next symbol; "THE EN" waits until "d" rules "THE END" out.
    assert shown[:5] == ["a", "b", "", "\nc", " "]
    assert shown[5:11] == [""] * 6
    assert shown[11] == "THE ENd"
    assert "".join(shown) == "ab\nc THE ENd"
    assert cut.stop == "\n\n"
    assert cut.push("x") == ""


def test_kept_stop_is_shown_and_an_unfinished_one_is_flushed():
    cut = StopText(["xyz"], keep_stop=True)
    assert "".join(cut.push(c) for c in "abxyzq") == "abxyz"
    cut = StopText(["xyz"])
    assert "".join(cut.push(c) for c in "abxy") == "ab"
    assert cut.flush() == "xy" and cut.stop is None


def test_generate_ends_at_the_first_stop_and_samples_say_which(model, vocab):
    free = "".join(generate(model, vocab, "the", 300, seed=3))
    stop = free[40:42]  # a pair of symbols the unstopped text holds
    first = free.find(stop)
    stopped = "".join(generate(model, vocab, "the", 300, seed=3, stop=[stop]))
    assert stopped == free[:first]
    kept = "".join(generate(model, vocab, "the", 300, seed=3, stop=[stop], keep_stop=True))
    assert kept == free[: first + 2]
    samples = generate_samples(model, vocab, 4, "the", 300, seed=3, stop=[stop, "\n"])
    free_many = generate_samples(model, vocab, 4, "the", 300, seed=3)
    for s, f in zip(samples, free_many, strict=True):
        ends = [(f.text.find(x), x) for x in (stop, "\n") if x in f.text]
        at, which = min(ends) if ends else (len(f.text), None)
        assert (s.text, s.stop) == (f.text[:at], which)
        assert s.symbols == (at + len(which) if which else 300)
        assert f.stop is None and f.symbols == 300


def test_sample_stop_and_jsonl(trained_run):
    free = run_cli("sample", trained_run.dir, "--length", "200", "--seed", "7")
    assert free.returncode == 0, free.stderr
    text = free.stdout[:-1]
    assert "\n" in text
    proc = run_cli("sample", trained_run.dir, "--length", "200", "--seed", "7", "--stop", r"\n")
    assert proc.stdout == text[: text.index("\n")] + "\n"
    proc = run_cli(
        *("sample", trained_run.dir, "--length", "200", "--seed", "7", "--stop", r"\n"),
        *("--format", "jsonl", "--num", "3", "--prime", "the"),
    )
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["index"] for r in records] == [0, 1, 2]
    for r in records:
        assert r["prime"] == "the" and r["seed"] == 7
        assert r["settings"] == {"length": 200, "temperature": 0.8, "top_k": None, "top_p": None}
        assert "\n" not in r["text"]
        if r["stop"] is None:
            assert r["symbols"] == len(r["text"]) == 200
        else:
            assert r["stop"] == "\n" and r["symbols"] == len(r["text"]) + 1
    assert any(r["stop"] for r in records)


def test_repl_stop_command_ends_each_turn_at_the_stop(trained_run):
    session = Session(trained_run.dir, "--seed", "1", "--length", "300")
    session.child.sendline(":stop e")
    session.child.expect_exact("top-p off, stop 'e'\r\n")
    session.child.expect_exact(PROMPT)
    turn = session.send("")
    assert turn and "e" not in turn and len(turn) < 300
    assert session.settings(":stop off") == ("0.8", "300", "off", "off")
    session.child.sendline(":quit")
    assert session.finish() == 0


def test_bad_stop_strings_are_usage_errors(trained_run):
    assert_usage_error(run_cli("sample", trained_run.dir, "--stop", r"x\q"), "--stop", r"\q")
    assert_usage_error(run_cli("sample", trained_run.dir, "--stop", ""), "--stop", "empty")
