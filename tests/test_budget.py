"""The budget picks the model by one rule for --steps and --minutes: the candidate whose curve,
measured at equal characters on tinyshakespeare, is lower at the characters the budget buys it;
the first line of training says which and why, the run saves it, and a resume keeps it."""

from __future__ import annotations

import json

import pytest
from conftest import english_like, run_cli

import charrnn
from charrnn import budget
from charrnn.config import LONG_BUDGET, TrainConfig, choose_model


def one_step_a_second(config: TrainConfig) -> float:
    """A machine on which every candidate makes one step a second."""
    return config.batch * config.seq_len


def equal_character_crossover() -> float:
    """Where the LSTM's measured curve first lies below the vanilla RNN's (bisection)."""
    low, high = budget.CURVES["lstm"][0][0], budget.CURVES["lstm"][-1][0]
    for _ in range(60):
        mid = (low * high) ** 0.5
        lower = budget.expected_loss("lstm", mid) < budget.expected_loss("rnn", mid)
        low, high = (low, mid) if lower else (mid, high)
    return high


def test_the_crossover_lies_between_the_measured_budgets_that_bracket_it():
    """At 499,200 characters the vanilla RNN ended lower (2.582 against 2.636 nats/char), at
    about a million the LSTM (2.168 against 2.285)."""
    assert 499_200 < equal_character_crossover() < 998_400
    assert budget.expected_loss("rnn", 499_200) == 2.582
    assert budget.expected_loss("lstm", 499_200) == 2.636


@pytest.mark.parametrize("side", [-1, 1])
def test_a_budget_of_equal_characters_switches_at_the_crossover(side):
    """With T and B given, both candidates buy the same characters: the equal-character rule."""
    steps = round(equal_character_crossover() / 1600) + side
    choice = choose_model({"steps": steps, "seq_len": 25, "batch": 64})
    assert choice.candidate == ("rnn" if side < 0 else "lstm")


def test_a_steps_budget_buys_each_candidate_its_own_characters():
    """--steps S buys the vanilla RNN S x 64 x 25 characters and the LSTM S x 64 x 50."""
    short, long = choose_model({"steps": 156}), choose_model({"steps": 312})
    assert short.config == TrainConfig(steps=156)
    assert long.config == TrainConfig(steps=312, **LONG_BUDGET)
    assert long.line == (
        "model: 2-layer LSTM, H 256 (312 steps buy it ~998K characters, the vanilla RNN, H 512 "
        "~499K; at those the curves measured on tinyshakespeare give ~2.17 against ~2.58 "
        "nats/char)"
    )
    assert short.line.startswith("model: vanilla RNN, H 512 (156 steps buy it ~250K characters")


@pytest.mark.parametrize("steps", [60, 150, 200, 300, 600, 3_000, 20_000])
def test_minutes_and_steps_follow_the_same_rule(steps):
    """A time budget that buys as many steps as a step budget picks the same model."""
    by_time = choose_model({"minutes": steps / 60}, speed=one_step_a_second)
    assert by_time.candidate == choose_model({"steps": steps}).candidate


def test_a_slower_machine_buys_fewer_characters_and_may_keep_the_cheaper_model():
    """Ten minutes: on a machine that trains 80,000 chars/s with the vanilla RNN and 30,000
    with the LSTM, the LSTM; on one a hundred times slower, the vanilla RNN."""

    def machine(scale: float):
        return lambda config: {"rnn": 80_000, "lstm": 30_000}[config.cell] * scale

    fast = choose_model({"minutes": 10}, speed=machine(1))
    slow = choose_model({"minutes": 10}, speed=machine(0.01))
    assert (fast.candidate, slow.candidate) == ("lstm", "rnn")
    assert "10 minutes at 30,000 chars/s here buy it ~18M characters" in fast.line
    assert "10 minutes at 800 chars/s here buy it ~480K characters" in slow.line


def test_options_given_win_over_the_chosen_settings():
    config = choose_model({"steps": 20_000, "cell": "gru", "hidden": 64}).config
    assert (config.cell, config.hidden, config.layers, config.dropout) == ("gru", 64, 2, 0.3)
    assert TrainConfig.for_budget(steps=20_000) == TrainConfig(steps=20_000, **LONG_BUDGET)


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_a_cell_given_takes_its_candidates_settings_whatever_the_budget(cell):
    for steps in (10, 20_000):
        choice = choose_model({"steps": steps, "cell": cell, "hidden": 16})
        assert choice.config == TrainConfig(
            **{**budget.CANDIDATES[cell], "cell": cell, "hidden": 16, "steps": steps}
        )
        assert choice.line.endswith(f"(--cell {cell}: the {budget.LABELS[cell]}'s settings)")


def test_the_speed_probe_measures_characters_per_second():
    speed = budget.measure_speed(TrainConfig(hidden=8, batch=2, seq_len=4))
    assert 100 < speed < 1e9


# ---- the command line: the first line, the metadata, resume ----------------------------------


def test_training_names_its_model_first_and_saves_the_choice(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(english_like(3000), encoding="utf-8")
    run = tmp_path / "run"
    args = ("--hidden", "8", "--batch", "4", "--seq-len", "8", "--steps", "3")
    proc = run_cli("train", corpus, *args, "--out", run)
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first.startswith("model: vanilla RNN, H 8 (3 steps buy it ~96 characters, ")
    saved = json.loads((run / "config.json").read_text(encoding="utf-8"))
    assert saved["model_choice"] == {"candidate": "rnn", "line": first}


def test_resume_keeps_the_saved_choice(tmp_path):
    """A run that chose the LSTM resumes as the LSTM, saying so, even with a budget that would
    pick the vanilla RNN for a new run."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(english_like(3000), encoding="utf-8")
    run = tmp_path / "run"
    tiny = {"hidden": 8, "batch": 4, "seq_len": 8, "sample_length": 0}
    config = TrainConfig(**{**LONG_BUDGET, **tiny, "steps": 2})
    choice = {"candidate": "lstm", "line": "model: 2-layer LSTM, H 8 (as chosen then)"}
    charrnn.train(charrnn.TextFile(corpus), config, run, model_choice=choice)
    assert choose_model({**tiny, "steps": 4}).candidate == "rnn"
    proc = run_cli("train", corpus, "--resume", run, "--steps", "4")
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first == "model: 2-layer LSTM, H 8 (as chosen then) [kept from the run's start]"
    saved = json.loads((run / "config.json").read_text(encoding="utf-8"))
    assert saved["model_choice"] == choice
    assert (saved["train"]["cell"], saved["train"]["layers"], saved["step"]) == ("lstm", 2, 4)
