"""Issue 4, promises 1 and 2: `charrnn train` killed at any moment loses at most the work since
its last checkpoint, and Ctrl-C is a clean stop (checkpoint, resume command, exit 130 in 2 s)."""

from __future__ import annotations

import json
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_usage_error, cli_env, english_like, run_cli

import charrnn
from charrnn import CheckpointError
from charrnn.checkpoint import read_meta, read_npz

# Tiny and fast, a checkpoint after every step and an evaluation every 7: a kill lands in the
# middle of a checkpoint write often. The constant schedule makes the learning rate independent
# of --steps, so a chain of runs with different budgets follows one trajectory.
KILL_ARGS = (
    *("--cell", "rnn", "--hidden", "16", "--seq-len", "8", "--batch", "4"),
    *("--schedule", "constant", "--warmup", "5", "--eval-every", "7", "--checkpoint-every", "1"),
    *("--sample-length", "0"),
)


def charrnn_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "charrnn", *map(str, args)]


def leftovers(run_dir: Path) -> list[str]:
    """Names of temporary files (atomic writes cut short) in a run directory."""
    if not run_dir.is_dir():
        return []
    return sorted(p.name for p in run_dir.iterdir() if p.name.startswith(".") or ".tmp" in p.name)


def wait_for_line(log: Path, pattern: str, proc: subprocess.Popen, timeout: float = 60) -> str:
    """Poll a log file until a line matches `pattern`; fail if the process ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text(encoding="utf-8").splitlines():
            if re.search(pattern, line):
                return line
        if proc.poll() is not None:
            pytest.fail(f"exited {proc.returncode} before {pattern!r}:\n{log.read_text()}")
        time.sleep(0.01)
    pytest.fail(f"no {pattern!r} within {timeout} s:\n{log.read_text()}")


def kill_after(args, delay: float, log: Path) -> None:
    """Run `charrnn ARGS` and SIGKILL it after `delay` seconds; it must not end by itself."""
    with (
        log.open("w") as out,
        subprocess.Popen(
            charrnn_cmd(*args), stdout=out, stderr=subprocess.STDOUT, env=cli_env()
        ) as proc,
    ):
        try:
            code = proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            proc.kill()
        assert code is None, f"ended by itself with {code}:\n{log.read_text()}"


# ---- 1. SIGKILL at any moment ---------------------------------------------------------------


def check_killed_run(run: Path, saved_before: int | None) -> int | None:
    """What must hold right after a SIGKILL; returns the step latest.npz holds (None: none yet)."""
    if not (run / "latest.npz").exists():
        # Killed before the first checkpoint: nothing to load and nothing to resume, said
        # clearly (the directory may hold the corpus cache and a cut-short write).
        assert saved_before is None, f"the checkpoint at step {saved_before} is gone"
        assert not any((run / name).exists() for name in ("best.npz", "config.json"))
        with pytest.raises(CheckpointError):
            charrnn.load(run)
        proc = run_cli("train", "--resume", run, "--steps", "5")
        assert_usage_error(proc, str(run), "no ")
        return None
    saved = read_meta(run / "latest.npz")["step"]
    assert saved_before is None or saved >= saved_before, "a saved checkpoint was lost"
    assert charrnn.load(run, "latest").config["step"] == saved
    charrnn.load(run)  # best.npz when there is one
    if (run / "config.json").exists():  # written right after latest.npz: at most one behind
        assert json.loads((run / "config.json").read_text())["step"] in (saved - 1, saved)
    else:
        assert saved == 1
    proc = run_cli("sample", run, "--length", "20", "--seed", "1")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert len(proc.stdout) == 21
    return saved


def test_sigkill_at_20_random_moments_loses_only_work_since_last_checkpoint(tmp_path):
    """SIGKILL at 20 seeded moments from startup to mid-training, each run resuming the last:
    every state loads, samples and resumes at the step latest.npz holds, a clean resume leaves
    no temp file, and the final weights equal those of a run that was never killed."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(english_like(4000), encoding="utf-8")
    run = tmp_path / "run"
    rng = random.Random(20241125)
    saved, outcomes = None, []
    for i in range(20):
        log = tmp_path / f"victim{i}.log"
        if saved is None:  # startup takes ~0.3 s: the first kill lands before any checkpoint
            shutil.rmtree(run, ignore_errors=True)  # nothing to resume: start afresh
            args = ("train", corpus, *KILL_ARGS, "--steps", "100000", "--out", run)
            kill_after(args, rng.uniform(0.0, 0.15) if i == 0 else rng.uniform(0.2, 0.9), log)
        else:
            kill_after(("train", "--resume", run, "--steps", "100000"), rng.uniform(0, 0.9), log)
            lines = log.read_text(encoding="utf-8").splitlines()
            started = [line for line in lines if line.startswith("run ")]
            if started:  # it got as far as starting: from the saved step
                assert f"resuming at step {saved:,}" in started[0], started[0]
        saved = check_killed_run(run, saved)
        outcomes.append(saved)
        if saved is not None and i % 2 == 0:  # a clean resume, which clears the leftovers
            proc = run_cli("train", "--resume", run, "--steps", saved + 2)
            assert proc.returncode == 0, proc.stderr
            assert f"resuming at step {saved:,}" in proc.stdout.splitlines()[1]
            assert read_meta(run / "latest.npz")["step"] == saved + 2
            assert leftovers(run) == []
            saved += 2
    assert None in outcomes and len({s for s in outcomes if s is not None}) >= 3, outcomes

    if saved is None:
        shutil.rmtree(run, ignore_errors=True)
        proc = run_cli("train", corpus, *KILL_ARGS, "--steps", "3", "--out", run)
        saved = 1
    else:
        proc = run_cli("train", "--resume", run, "--steps", saved + 2)
    assert proc.returncode == 0, proc.stderr
    assert leftovers(run) == []
    final = read_meta(run / "latest.npz")["step"]
    straight = tmp_path / "straight"
    args = (*KILL_ARGS, "--checkpoint-every", "1000000", "--steps", final, "--out", straight)
    proc = run_cli("train", corpus, *args)
    assert proc.returncode == 0, proc.stderr
    a, b = read_npz(run / "latest.npz"), read_npz(straight / "latest.npz")
    assert a.keys() == b.keys()
    for key in a.keys() - {"meta"}:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    lines = (straight / "metrics.jsonl").read_text().splitlines()
    val = {r["step"]: r["val_loss"] for r in map(json.loads, lines)}
    for record in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()):
        if record["step"] in val:
            assert record["val_loss"] == val[record["step"]], record


def test_run_killed_before_first_checkpoint_can_start_afresh(tmp_path):
    """An --out directory left by a run killed before its first checkpoint (corpus cache and a
    cut-short temp file, no checkpoint) can be trained afresh; resuming it is a clear error."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(english_like(3000), encoding="utf-8")
    run = tmp_path / "run"
    assert run_cli("train", corpus, *KILL_ARGS, "--steps", "2", "--out", run).returncode == 0
    for name in ("latest.npz", "best.npz", "config.json", "metrics.jsonl"):
        (run / name).unlink(missing_ok=True)
    (run / ".latest.npz.k1ll3d.tmp").write_bytes(b"PK\x03\x04 cut short")
    assert_usage_error(run_cli("train", "--resume", run, "--steps", "3"), str(run), "latest.npz")
    proc = run_cli("train", corpus, *KILL_ARGS, "--steps", "2", "--out", run)
    assert proc.returncode == 0, proc.stderr
    assert read_meta(run / "latest.npz")["step"] == 2
    assert leftovers(run) == []


def test_resume_removes_temp_files_of_a_killed_write(tmp_path):
    """Temp files left by writes cut short (of latest.npz, best.npz, config.json, the corpus
    cache) are removed by the next resume, which continues from the intact checkpoint."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(english_like(3000), encoding="utf-8")
    run = tmp_path / "run"
    assert run_cli("train", corpus, *KILL_ARGS, "--steps", "3", "--out", run).returncode == 0
    for name in (".latest.npz.a1.tmp", ".best.npz.b2.tmp", ".config.json.c3.tmp", ".corpus.d4.tmp"):
        (run / name).write_bytes(b"cut short")
    assert charrnn.load(run, "latest").config["step"] == 3
    proc = run_cli("train", "--resume", run, "--steps", "5")
    assert proc.returncode == 0, proc.stderr
    assert "resuming at step 3" in proc.stdout
    assert leftovers(run) == []


# ---- 2. Ctrl-C --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_corpus(tmp_path_factory) -> Path:
    """300 KB of text: with --val-fraction 0.9 and --hidden 1024 one evaluation takes minutes."""
    path = tmp_path_factory.mktemp("big") / "big.txt"
    path.write_text(english_like(300_000), encoding="utf-8")
    return path


def interrupt(args, trigger: str, pause: float, tmp_path: Path):
    """Start `charrnn ARGS`, SIGINT it `pause` s after a line matching `trigger`; returns
    (exit code, seconds from the signal to the exit, stdout, stderr)."""
    log, err = tmp_path / "out.log", tmp_path / "err.log"
    with (
        log.open("w") as out,
        err.open("w") as errors,
        subprocess.Popen(charrnn_cmd(*args), stdout=out, stderr=errors, env=cli_env()) as proc,
    ):
        try:
            wait_for_line(log, trigger, proc)
            time.sleep(pause)
            assert proc.poll() is None, log.read_text()
            sent = time.monotonic()
            proc.send_signal(signal.SIGINT)
            try:
                code = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pytest.fail(f"still running 30 s after SIGINT:\n{log.read_text()}")
            took = time.monotonic() - sent
        finally:
            proc.kill()
    return code, took, log.read_text(encoding="utf-8"), err.read_text(encoding="utf-8")


def assert_clean_stop(code, took, out, err, run: Path) -> int:
    """Exit 130 within 2 s, nothing on stderr, a checkpoint at the step reported, and the exact
    command that resumes it; returns that step."""
    assert code == 130, f"exit {code}\n{out}\n{err}"
    assert took < 2.0, f"took {took:.2f} s to stop"
    assert err == "", err
    stopped = r"^stopped at step ([\d,]+); checkpoint saved in .*\. Resume with: (.+)$"
    m = re.search(stopped, out, re.M)
    assert m, out
    step = int(m[1].replace(",", ""))
    assert shlex.split(m[2]) == ["charrnn", "train", "--resume", str(run)]
    assert read_meta(run / "latest.npz")["step"] == step
    assert json.loads((run / "config.json").read_text())["step"] == step
    return step


@pytest.mark.parametrize("workers", ["1", "3"])
def test_ctrl_c_during_training_saves_and_prints_the_resume_command(tmp_path, workers):
    """SIGINT between training steps (a step takes milliseconds) exits 130 within 2 s with a
    checkpoint at the step reached and a resume command that works verbatim, even for a run
    directory whose name holds a space and rich markup; with one worker or three threads."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(english_like(30_000), encoding="utf-8")
    run = tmp_path / "my [bold]run[/] dir"
    args = ("train", corpus, "--cell", "rnn", "--hidden", "256", "--batch", "32", "--seq-len", "64")
    args += ("--eval-every", "1000", "--steps", "100000", "--out", run, "--workers", workers)
    code, took, out, err = interrupt(args, r"^run ", 0.5, tmp_path)
    step = assert_clean_stop(code, took, out, err, run)
    assert step >= 1
    command = shlex.split(re.search(r"Resume with: (.+)$", out, re.M)[1])
    proc = run_cli(*command[1:], "--steps", step + 1)
    assert proc.returncode == 0, proc.stderr
    assert f"resuming at step {step:,}" in proc.stdout


@pytest.mark.parametrize("final", [False, True], ids=["periodic", "final"])
def test_ctrl_c_during_evaluation_stops_within_two_seconds(tmp_path, big_corpus, final):
    """SIGINT in the middle of a long evaluation (a periodic one, or the final one after the
    last step) stops it: exit 130 within 2 s, checkpoint at step 1, no evaluation recorded."""
    run = tmp_path / "run"
    args = ("train", big_corpus, "--cell", "rnn", "--hidden", "1024", "--batch", "4")
    args += ("--seq-len", "8")
    args += ("--val-fraction", "0.9", "--out", run)
    if final:  # step 1 is the last one: the final evaluation follows at once
        args += ("--steps", "1", "--eval-every", "1000")
        trigger = r"^run "
    else:  # logged before its evaluation starts
        args += ("--steps", "100000", "--eval-every", "1")
        trigger = r"^step 1 "
    code, took, out, err = interrupt(args, trigger, 0.6, tmp_path)
    assert assert_clean_stop(code, took, out, err, run) == 1
    assert "eval at step" not in out
    metrics = run / "metrics.jsonl"
    assert not metrics.exists() or metrics.read_text() == ""
