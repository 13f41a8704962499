"""Issue 4, promises 4 and 5: divergence is caught (one clear line, exit 2, the checkpoints on
disk stay the last good ones), and a full disk or unwritable output is a clear error that
leaves the previous checkpoint intact and no temporary file behind."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import re
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_usage_error, cli_env, english_like, run_cli

import charrnn
from charrnn import CheckpointError, DivergenceError, TrainConfig, checkpoint, corpus, train
from charrnn.checkpoint import read_meta, read_npz


def snapshot(run: Path) -> dict[str, bytes]:
    """Every file of a run directory, by name."""
    return {p.name: p.read_bytes() for p in sorted(run.iterdir()) if p.is_file()}


def temp_files(run: Path) -> list[str]:
    return sorted(p.name for p in run.iterdir() if p.name.startswith(".") or ".tmp" in p.name)


@pytest.fixture
def corpus_path(tmp_path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(english_like(3000), encoding="utf-8")
    return path


def record_writes(monkeypatch) -> dict[str, bytes]:
    """The bytes of the last complete atomic write of each file name, as it happens."""
    written: dict[str, bytes] = {}
    real = checkpoint.atomic_write_bytes

    def spy(path, data):
        real(path, data)
        written[Path(path).name] = bytes(data)

    monkeypatch.setattr(checkpoint, "atomic_write_bytes", spy)
    return written


# ---- 4. divergence ----------------------------------------------------------------------------

# No learning rate in range (at most 10, the same for Python and the CLI) makes this tiny model
# overflow, so the run is pushed over the edge: after two good steps its output weights are
# set to +-3e38 (finite, so the checkpoint loads), and the next step's logits overflow float32.
DIVERGING = TrainConfig(hidden=16, seq_len=8, batch=4, steps=2, eval_every=1, sample_length=5)
DIVERGING.checkpoint_every, DIVERGING.schedule, DIVERGING.warmup = 1, "constant", 0
DIVERGING.lr, DIVERGING.clip, DIVERGING.weight_drop = 10.0, 0, 0.0


@pytest.fixture
def diverged(tmp_path, corpus_path, monkeypatch):
    """A run that diverged in process: (run dir, last bytes written per file, the message)."""
    run = tmp_path / "run"
    text, source = corpus.load_corpus(corpus_path)
    written = record_writes(monkeypatch)
    train(text, dataclasses.replace(DIVERGING), run, source)
    arrays = read_npz(run / "latest.npz")
    meta = arrays.pop("meta")
    arrays["param/W_hy"] = np.sign(arrays["param/W_hy"]) * np.float32(3e38)  # finite, huge
    checkpoint.save_npz(run / "latest.npz", arrays, json.loads(meta.tobytes()))
    # numpy's overflow warnings are noise here: the trainer reports the non-finite loss itself.
    with np.errstate(all="ignore"), pytest.raises(DivergenceError) as info:
        train(text, dataclasses.replace(DIVERGING, steps=100), run, source, resume=True)
    monkeypatch.undo()
    return run, written, str(info.value)


def test_divergence_error_keeps_the_last_good_checkpoints(diverged):
    """An absurd learning rate raises DivergenceError naming the step and what to do, after
    which every file on disk is byte for byte the last one written before it: latest.npz at
    the step before, loadable, with finite weights."""
    run, written, message = diverged
    m = re.fullmatch(
        r"(?:training diverged at step (\d+): loss \S+, gradient norm \S+|"
        r"validation loss is \S+ at step (\d+)); lower --lr "
        r"\(now 10\); checkpoints on disk are the last good ones",
        message,
    )
    assert m, message
    step = int(m[1] or m[2])
    assert step >= 2, "diverged before any checkpoint: nothing was proved"
    assert {"latest.npz", "best.npz", "config.json"} <= written.keys()
    on_disk = snapshot(run)
    for name, data in written.items():
        assert on_disk[name] == data, name
    assert read_meta(run / "latest.npz")["step"] == step - 1
    assert charrnn.load(run, "latest").config["step"] == step - 1
    assert charrnn.load(run).config["step"] <= step - 1
    assert temp_files(run) == []


def test_cli_divergence_is_one_line_exit_2_and_writes_nothing(diverged):
    """Resuming the diverging run with the CLI diverges again at the same step: exit 2, one
    `charrnn: error: ... at step K ... lower --lr ...` line (no numpy warnings), and not a
    byte of the run directory changes."""
    run, _, message = diverged
    before = snapshot(run)
    proc = run_cli("train", "--resume", run, "--steps", "100")
    line = assert_usage_error(proc, message.split(";")[0], "lower --lr")
    assert "checkpoints on disk are the last good ones" in line
    assert snapshot(run) == before


# ---- 5. disk full, unwritable output ------------------------------------------------------------


def limit_file_size(limit: int):
    """A preexec_fn: files grow to at most `limit` bytes; a longer write fails with EFBIG."""

    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    return preexec


def test_cli_file_too_large_keeps_the_previous_checkpoint(tmp_path, corpus_path):
    """A resume whose next checkpoint cannot be written (RLIMIT_FSIZE below its size, as on a
    full disk the write fails midway) is one clear error, exit 2, no traceback; every file of
    the run is unchanged and no temp file is left."""
    run = tmp_path / "run"
    args = ("--hidden", "16", "--seq-len", "8", "--batch", "4", "--eval-every", "2")
    args += ("--checkpoint-every", "1", "--steps", "4", "--out", run)
    proc = run_cli("train", corpus_path, *args)
    assert proc.returncode == 0, proc.stderr
    before = snapshot(run)
    limit = len(before["latest.npz"]) // 2
    assert limit > len(before["config.json"])  # the .npz write is the one that fails
    proc = subprocess.run(
        [sys.executable, "-m", "charrnn", "train", "--resume", str(run), "--steps", "8"],
        capture_output=True,
        text=True,
        timeout=60,
        env=cli_env(),
        preexec_fn=limit_file_size(limit),
    )
    assert_usage_error(
        proc, f"cannot write a checkpoint in {run}", "File too large", "previous checkpoint"
    )
    assert snapshot(run) == before
    assert temp_files(run) == []
    assert charrnn.load(run, "latest").config["step"] == 4


@contextlib.contextmanager
def small_file_system(path: Path, size: str):
    """A tmpfs of `size` mounted on `path` for the block (root can; elsewhere a skip)."""
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill ({mounted.stderr.strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def fill(disk: Path) -> Path:
    """Write a file on `disk` until the file system is full (ENOSPC)."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


def test_cli_full_file_system_keeps_the_previous_checkpoint(tmp_path, corpus_path):
    """A resume on a real file system that is full, but for half of one checkpoint file: the
    process meets ENOSPC midway through its next checkpoint and stops with one clear error,
    exit 2; the run's files are unchanged, no temp file is left, and once space is freed the
    run resumes."""
    with small_file_system(tmp_path / "disk", "4m") as disk:
        run = disk / "run"
        args = ("--hidden", "64", "--seq-len", "8", "--batch", "4", "--eval-every", "2")
        args += ("--checkpoint-every", "1", "--steps", "4", "--out", run)
        proc = run_cli("train", corpus_path, *args)
        assert proc.returncode == 0, proc.stderr
        before = snapshot(run)
        filler = fill(disk)
        os.truncate(filler, filler.stat().st_size - len(before["latest.npz"]) // 2)
        proc = run_cli("train", "--resume", run, "--steps", "8")
        assert_usage_error(
            proc, f"cannot write a checkpoint in {run}", "No space left on device", "previous"
        )
        assert snapshot(run) == before
        assert temp_files(run) == []
        filler.unlink()
        proc = run_cli("train", "--resume", run, "--steps", "8")
        assert proc.returncode == 0, proc.stderr
        assert charrnn.load(run, "latest").config["step"] == 8


def test_cli_unwritable_out_directory(tmp_path, corpus_path):
    """An --out directory that cannot be created (its parent is a file) is one clear error."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = run_cli("train", corpus_path, "--hidden", "8", "--steps", "2", "--out", blocker / "run")
    assert_usage_error(proc, "cannot create", str(blocker / "run"))


class FillsDisk:
    """A file object that writes half of what it is given, then fails as a full disk does."""

    def __init__(self, f) -> None:
        self.f = f

    def write(self, data) -> int:
        self.f.write(data[: len(data) // 2])
        self.f.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.f.close()


@pytest.mark.parametrize("failing", [1, 2, 3], ids=["best.npz", "latest.npz", "config.json"])
def test_disk_full_midway_through_a_checkpoint(tmp_path, monkeypatch, failing):
    """ENOSPC half-way through the n-th file of a checkpoint (best.npz, latest.npz, config.json
    in that order) raises CheckpointError naming the cause; files written before it are whole
    and new, the failing one and those after are untouched, no temp file is left, and the run
    resumes from what is on disk."""
    text = english_like(3000)
    run = tmp_path / "run"
    config = TrainConfig(hidden=16, seq_len=8, batch=4, steps=5, eval_every=3, sample_length=5)
    config.checkpoint_every = 1
    train(text, dataclasses.replace(config), run)
    before = snapshot(run)
    attempts: list[str] = []
    written = record_writes(monkeypatch)
    real_fdopen = os.fdopen
    real_atomic = checkpoint.atomic_write_bytes

    def counting(path, data):
        attempts.append(Path(path).name)
        real_atomic(path, data)

    def fdopen(fd, *args, **kwargs):
        f = real_fdopen(fd, *args, **kwargs)
        return FillsDisk(f) if len(attempts) == failing else f

    monkeypatch.setattr(checkpoint, "atomic_write_bytes", counting)
    monkeypatch.setattr(checkpoint.os, "fdopen", fdopen)
    with pytest.raises(CheckpointError) as info:
        train(text, dataclasses.replace(config, steps=6), run, resume=True)
    monkeypatch.undo()
    message = str(info.value)
    assert f"cannot write a checkpoint in {run}" in message
    assert "No space left on device" in message and "previous checkpoint is intact" in message
    # step 6 is an evaluation with a new best: best.npz, latest.npz, config.json
    assert attempts == ["best.npz", "latest.npz", "config.json"][:failing]
    after = snapshot(run)
    for i, name in enumerate(["best.npz", "latest.npz", "config.json"], start=1):
        if i < failing:
            assert after[name] == written[name] != before[name], name
        else:
            assert after[name] == before[name], name
    assert after["metrics.jsonl"] == before["metrics.jsonl"]
    assert temp_files(run) == []
    resumed = train(text, dataclasses.replace(config, steps=7), run, resume=True)
    assert resumed.step == 7
    assert charrnn.load(run, "latest").config["step"] == 7
