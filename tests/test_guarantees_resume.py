"""Issue 4, promise 3: resume is exact. A run stopped at step N and resumed to N+M ends with
bitwise the parameters, optimizer state, carried hidden state, sampling generator state, best
weights and validation losses of a run trained N+M steps straight."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import cli_env, english_like, run_cli

from charrnn import TrainConfig, train
from charrnn.checkpoint import read_meta, read_npz
from charrnn.training import Observer

# 1,500 symbols: with batch 4 x seq-len 8 an epoch is ~42 steps, so 45 steps cross one.
TEXT = english_like(1500, seed=3)
TIMING = {"elapsed", "chars_per_sec"}  # the only fields of a metrics record a resume may change


def assert_same_run(a: Path, b: Path) -> None:
    """Every array of latest.npz bitwise equal, the same step, sampling generator state and best
    step, the same best.npz weights, and every evaluation's record the same (losses, learning
    rate, sample and all) but for its timings."""
    latest_a, latest_b = read_npz(a / "latest.npz"), read_npz(b / "latest.npz")
    assert latest_a.keys() == latest_b.keys()
    assert any(k.startswith("opt/") for k in latest_a) and "state/h" in latest_a
    for key in latest_a.keys() - {"meta"}:
        x, y = latest_a[key], latest_b[key]
        assert (x.dtype, x.shape, x.tobytes()) == (y.dtype, y.shape, y.tobytes()), key
    meta_a, meta_b = read_meta(a / "latest.npz"), read_meta(b / "latest.npz")
    assert meta_a["step"] == meta_b["step"]
    assert meta_a["sample_rng"] == meta_b["sample_rng"]
    assert meta_a["metrics"]["best_step"] == meta_b["metrics"]["best_step"]
    best_a, best_b = read_npz(a / "best.npz"), read_npz(b / "best.npz")
    for key in (k for k in best_a if k.startswith("param/")):
        assert best_a[key].tobytes() == best_b[key].tobytes(), f"best.npz {key}"

    def records(run: Path) -> list[dict]:
        lines = (run / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in r.items() if k not in TIMING} for r in map(json.loads, lines)]

    assert records(a) == records(b)


# ---- through the CLI --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("resume") / "small.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def cli_ok(*args) -> str:
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.parametrize(
    "extra",
    [
        ("--optimizer", "sgd"),
        ("--optimizer", "rmsprop", "--dropout", "0.2", "--weight-drop", "0.3"),
    ],
    ids=["sgd", "rmsprop-dropout-weight-drop"],
)
def test_cli_resume_is_exact_with_samples_in_between(tmp_path, small_corpus, extra):
    """21 steps, then `--resume --steps 45` (evaluations with samples at 28..42, an epoch
    boundary at ~42) equals 45 steps straight, sampling generator state included."""
    common = ("--hidden", "16", "--batch", "4", "--seq-len", "8", "--schedule", "constant")
    common += ("--eval-every", "7", "--sample-length", "10", *extra)
    split, whole = tmp_path / "split", tmp_path / "whole"
    cli_ok("train", small_corpus, *common, "--steps", "21", "--out", split)
    out = cli_ok("train", "--resume", split, "--steps", "45")
    assert "resuming at step 21" in out.splitlines()[1]  # after the model line
    cli_ok("train", small_corpus, *common, "--steps", "45", "--out", whole)
    assert_same_run(split, whole)


def test_cli_cosine_resume_after_sigkill_is_exact(tmp_path, small_corpus):
    """With a cosine schedule (the learning rate depends on the --steps budget), a run killed
    mid-way and resumed to its own budget equals the same budget trained straight."""
    common = ("--hidden", "16", "--batch", "4", "--seq-len", "8", "--schedule", "cosine")
    common += ("--optimizer", "adagrad", "--warmup", "4", "--eval-every", "6")
    common += ("--sample-length", "10", "--checkpoint-every", "1", "--steps", "60")
    split, whole = tmp_path / "split", tmp_path / "whole"
    log = tmp_path / "split.log"
    cmd = [sys.executable, "-m", "charrnn", "train", str(small_corpus), *common]
    with (
        log.open("w") as out,
        subprocess.Popen(
            [*cmd, "--out", str(split)], stdout=out, stderr=subprocess.STDOUT, env=cli_env()
        ) as proc,
    ):
        try:
            deadline = time.monotonic() + 60
            while "\nstep 12 " not in log.read_text() and time.monotonic() < deadline:
                assert proc.poll() is None, log.read_text()
                time.sleep(0.005)
        finally:
            proc.kill()
    saved = read_meta(split / "latest.npz")["step"]
    assert 11 <= saved < 60
    out = cli_ok("train", "--resume", split)
    assert f"resuming at step {saved}" in out.splitlines()[1]  # after the model line
    cli_ok("train", small_corpus, *common, "--out", whole)
    assert_same_run(split, whole)


# ---- in process -------------------------------------------------------------------------------


class StepCounter(Observer):
    """The last step trained and the steps of the evaluations completed."""

    def __init__(self) -> None:
        self.steps = 0
        self.evals: list[int] = []

    def on_step(self, stats) -> None:
        self.steps = stats.step

    def on_eval(self, record: dict, sample: str) -> None:
        self.evals.append(record["step"])


def stop_and_resume(
    tmp_path: Path, config: TrainConfig, stop_after: int
) -> tuple[Path, Path, list[int]]:
    """Train `config` straight, and again stopped after `stop_after` steps then resumed; the
    steps of the evaluations the stopped process completed."""
    whole, split = tmp_path / "whole", tmp_path / "split"
    train(TEXT, dataclasses.replace(config), whole)
    counter = StepCounter()
    first = train(
        TEXT,
        dataclasses.replace(config),
        split,
        observer=counter,
        stop=lambda: counter.steps >= stop_after,
    )
    assert first.interrupted and first.step == stop_after
    assert read_meta(split / "latest.npz")["step"] == stop_after
    lines = (split / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == counter.evals
    resumed = train(TEXT, dataclasses.replace(config), split, resume=True)
    assert resumed.step == config.steps and not resumed.interrupted
    return split, whole, counter.evals


SMALL = TrainConfig(hidden=16, seq_len=8, batch=4, steps=45, eval_every=7, sample_length=10)


@pytest.mark.parametrize(
    "changes",
    [
        {"schedule": "cosine", "optimizer": "adam"},
        {"schedule": "cosine", "optimizer": "rmsprop", "warmup": 10},
        {"schedule": "constant", "optimizer": "adagrad", "lr": 0.05},
        {"schedule": "cosine", "optimizer": "sgd", "lr": 0.05, "dropout": 0.3, "weight_drop": 0.2},
        {"schedule": "wsd", "optimizer": "adam", "cooldown": 0.6},  # the stop lands in the decay
    ],
    ids=["cosine-adam", "cosine-rmsprop", "constant-adagrad", "cosine-sgd-dropout", "wsd-adam"],
)
def test_stop_callable_and_resume_is_exact(tmp_path, changes):
    """charrnn.train stopped by its `stop` callable after 23 of 45 steps (between evaluations)
    and resumed with resume=True equals 45 steps straight, for every optimizer and schedule."""
    split, whole, evals = stop_and_resume(tmp_path, dataclasses.replace(SMALL, **changes), 23)
    assert evals == [7, 14, 21]
    assert_same_run(split, whole)


def test_stop_during_an_evaluation_and_resume_is_exact(tmp_path):
    """A stop that lands in the evaluation at step 21 (Ctrl-C during an evaluation) and a resume
    still give the straight run: the evaluation and its sample are done on resume. The stop
    is asked for from step 21 on, and step 21's evaluation runs first: had it not been
    interrupted it would have been recorded before the stop was seen between steps."""
    split, whole, evals = stop_and_resume(tmp_path, dataclasses.replace(SMALL), 21)
    assert evals == [7, 14]
    assert_same_run(split, whole)
