"""Shared fixtures for the process-level tests: a tiny corpus, a tiny trained run, CLI helpers."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

# Words and punctuation of the generated corpus: lowercase only, so upper-case letters,
# digits and symbols such as '€' or '#' are guaranteed to be outside the vocabulary.
WORD_TEXT = (
    "the a an of and to in is was he she it that for on with as his her at by this had not "
    "but from or have they which one you were all we when there can been has more if no out "
    "so said what up its about into than them only other new some could time these two may "
    "then do first any my now such like our over man me even most made after also did many "
    "before must through back years where much your way well down should because each just "
    "those people how too little state good very make world still own see men work long get "
    "here between both life being under never day same another know while last might us great "
    "old year off come since against go came right used take three quick brown fox jumps lazy"
)
WORDS = WORD_TEXT.split()

TRAIN_ARGS = ("--hidden", "16", "--batch", "4", "--seq-len", "16")


def numeric_grad(f, array: np.ndarray, eps: float = 1e-3) -> np.ndarray:
    """4th-order central differences of f() with respect to each entry of array (in place)."""
    num = np.zeros_like(array)
    for i in np.ndindex(array.shape):
        old = array[i]
        values = {}
        for d in (-2, -1, 1, 2):
            array[i] = old + d * eps
            values[d] = f()
        array[i] = old
        num[i] = ((values[-2] - values[2]) + 8 * (values[1] - values[-1])) / (12 * eps)
    return num


def english_like(n_chars: int, seed: int = 0) -> str:
    """Deterministic lowercase pseudo-English: sentences of common words, one per line."""
    rng = random.Random(seed)
    lines, size = [], 0
    while size < n_chars:
        words = [rng.choice(WORDS) for _ in range(rng.randint(4, 12))]
        line = " ".join(words) + rng.choice([".", ".", ".", ",", "?"])
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines) + "\n"


def cli_env() -> dict[str, str]:
    env = dict(os.environ, NO_COLOR="1")
    env.pop("FORCE_COLOR", None)
    return env


def run_cli(
    *args: str | os.PathLike, input: str | None = None, timeout: float = 60, cwd=None
) -> subprocess.CompletedProcess:
    """Run `python -m charrnn ARGS` as a subprocess (NO_COLOR=1) and return the result."""
    return subprocess.run(
        [sys.executable, "-m", "charrnn", *map(str, args)],
        input=input,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        env=cli_env(),
        cwd=cwd,
    )


def assert_usage_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit 2, exactly one non-empty `charrnn: error:` line on stderr, no traceback anywhere.

    Every fragment must occur in that line; the line is returned for further checks.
    """
    report = f"exit {proc.returncode}\nstdout: {proc.stdout!r}\nstderr: {proc.stderr!r}"
    assert "Traceback" not in proc.stderr + proc.stdout, report
    assert proc.returncode == 2, report
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), report
    line = lines[0]
    assert line.startswith("charrnn: error: "), report
    assert len(line) > len("charrnn: error: ") + 5, report
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    return line


@dataclass
class TrainedRun:
    """A run directory trained once per session, with the corpus and the training process."""

    dir: Path
    corpus: Path
    text: str
    proc: subprocess.CompletedProcess

    @property
    def config(self) -> dict:
        return json.loads((self.dir / "config.json").read_text(encoding="utf-8"))

    @property
    def vocab(self) -> set[str]:
        return set(self.config["vocab"]["symbols"])

    def metrics(self) -> list[dict]:
        lines = (self.dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines]


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory) -> Path:
    """About 5 KB of lowercase pseudo-English in a temporary file."""
    path = tmp_path_factory.mktemp("corpus") / "english.txt"
    path.write_text(english_like(5000), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, corpus_file) -> TrainedRun:
    """`charrnn train` for 30 steps (evaluations at 15 and 30) in a real subprocess."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    proc = run_cli(
        "train",
        corpus_file,
        *TRAIN_ARGS,
        "--steps",
        "30",
        "--eval-every",
        "15",
        "--out",
        out,
        timeout=120,
    )
    assert proc.returncode == 0, f"training failed:\n{proc.stdout}\n{proc.stderr}"
    return TrainedRun(out, corpus_file, corpus_file.read_text(encoding="utf-8"), proc)


@pytest.fixture
def run_copy(trained_run, tmp_path) -> Path:
    """A private copy of the trained run, for tests that change or damage it."""
    return Path(shutil.copytree(trained_run.dir, tmp_path / "run"))
