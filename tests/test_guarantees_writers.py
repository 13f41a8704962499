"""Issue 10: one writer per run directory, no user file touched, no run lost to a closed
terminal or a dead log, and a failed write to stdout is one line. Real processes throughout."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_usage_error, cli_env, english_like, run_cli

import charrnn
from charrnn import RunInUseError, TrainConfig
from charrnn.checkpoint import read_meta, read_npz
from charrnn.rundir import LOCK_NAME, OWN_TEMP, claim, own_temp_files

TINY = ("--cell", "rnn", "--batch", "4", "--seq-len", "8", "--sample-length", "0")
HOLD = "0.02"  # minutes a racing training holds its lock (1.2 s)
RACE_STEPS = 3000  # steps a racing resume trains: about a second at this size
IN_USE = "in use by another charrnn process (pid "


def charrnn_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "charrnn", *map(str, args)]


def start(args, log: Path, **kwargs) -> subprocess.Popen:
    """`charrnn ARGS` in the background, stdout and stderr into `log`."""
    with log.open("w") as out:
        return subprocess.Popen(
            charrnn_cmd(*args), stdout=out, stderr=subprocess.STDOUT, env=cli_env(), **kwargs
        )


def train_ok(*args) -> subprocess.CompletedProcess:
    """`charrnn train ARGS` (tiny settings), which must succeed."""
    proc = run_cli("train", *args[:1], *TINY, *args[1:])
    assert proc.returncode == 0, proc.stderr
    return proc


def race(a, b, tmp_path: Path, i: int) -> list[tuple[int, str, int]]:
    """Start two `charrnn` commands at the same moment; their exit codes, output and pids."""
    logs = [tmp_path / f"race{i}a.log", tmp_path / f"race{i}b.log"]
    procs = [start(args, log) for args, log in zip((a, b), logs, strict=True)]
    codes = [p.wait(timeout=120) for p in procs]
    return [
        (c, log.read_text(encoding="utf-8"), p.pid)
        for c, log, p in zip(codes, logs, procs, strict=True)
    ]


def assert_one_won(results, run: Path, *fragments: str) -> int:
    """One command exited 0, the other lost the race (see `assert_lost_race`) naming the
    winner's pid; the index of the winner."""
    codes = [code for code, _, _ in results]
    assert sorted(codes) == [0, 2], results
    winner = codes.index(0)
    code, out, _ = results[1 - winner]
    assert_lost_race(code, out, run, *fragments)
    if IN_USE in out:
        assert f"{IN_USE}{results[winner][2]})" in out, (out, results[winner][2])
    return winner


def assert_lost_race(code: int, out: str, run: Path, *fragments: str) -> None:
    """Exit 2 and one line, `charrnn: error:` naming the directory and one of `fragments`."""
    assert code == 2 and "Traceback" not in out, out
    lines = out.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"charrnn: error: {run}: "), out
    assert any(f in lines[0] for f in fragments), lines[0]


def assert_consistent_run(run: Path, hidden: int, step: int) -> None:
    """One training's files: the weights have the config's size, every file names the same
    step, the run samples, and no lock or temporary file is left behind."""
    loaded = charrnn.load(run, "latest")
    assert loaded.config["model"]["hidden_size"] == hidden
    assert loaded.model.params["W_hh"].shape == (hidden, hidden)
    assert loaded.config["train"]["hidden"] == hidden
    assert read_meta(run / "latest.npz")["step"] == step
    assert json.loads((run / "config.json").read_text())["step"] == step
    assert json.loads((run / "config.json").read_text())["train"]["hidden"] == hidden
    assert charrnn.load(run, "best").model.hidden_size == hidden
    assert len("".join(charrnn.generate(loaded.model, loaded.vocab, length=20, seed=1))) == 20
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("writers") / "corpus.txt"
    path.write_text(english_like(20_000), encoding="utf-8")
    return path


# ---- 1. one writer at a time ------------------------------------------------------------------


@pytest.mark.parametrize("delay", [0.02, None], ids=["pid-written-late", "no-pid"])
def test_a_lock_taken_microseconds_earlier_still_names_its_holder(tmp_path, delay):
    """The holder writes its pid just after its flock succeeds: a rival that reads the lock
    file in between waits for the pid (up to 0.1 s) instead of saying "pid unknown"."""
    import fcntl
    import threading

    run = tmp_path / "run"
    run.mkdir()
    fd = os.open(run / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held, nothing written yet
        if delay is not None:
            writer = threading.Timer(delay, os.pwrite, (fd, b"4242\n", 0))
            writer.start()
        with pytest.raises(RunInUseError) as caught, claim(run, new=False):
            pass
        expected = "pid 4242" if delay is not None else "pid unknown"
        assert f"in use by another charrnn process ({expected})" in str(caught.value)
        if delay is not None:
            writer.join()
    finally:
        os.close(fd)


def test_20_races_of_two_new_trainings_leave_one_consistent_run(tmp_path, corpus):
    """Two `train --out DIR` with different settings, started together 20 times: exactly one
    trains, the other exits 2 with the in-use line naming the winner's pid, and DIR holds the
    winner's run alone."""
    settings = [("--hidden", "24", "--seed", "1"), ("--hidden", "12", "--seed", "5")]
    for i in range(20):
        run = tmp_path / f"run{i}"
        # A time budget holds the winner's lock for 1.2 s whatever the machine's speed: longer
        # than the two start-ups can drift apart, so the loser always meets the lock.
        a, b = (("train", corpus, *TINY, *s, "--minutes", HOLD, "--out", run) for s in settings)
        winner = assert_one_won(race(a, b, tmp_path, i), run, IN_USE)
        assert_consistent_run(run, int(settings[winner][1]), read_meta(run / "latest.npz")["step"])


def test_two_resumes_of_one_run_race(tmp_path, corpus):
    """`train --resume RUN` twice at once, five times: one continues the run, the other exits
    2 with the in-use line; the run ends at the winner's step, whole."""
    run = tmp_path / "run"
    train_ok(corpus, "--hidden", "16", "--steps", "5", "--out", run)
    step = 5
    for i in range(5):
        target = step + RACE_STEPS
        args = ("train", "--resume", run, "--steps", target)
        assert_one_won(race(args, args, tmp_path, i), run, IN_USE)
        step = target
        assert_consistent_run(run, 16, step)


def test_a_new_training_racing_a_resume_of_the_same_directory(tmp_path, corpus):
    """`train --out RUN` against `train --resume RUN` at once: the resume continues the run,
    the new training is refused (in use, or the directory already holds a run)."""
    run = tmp_path / "run"
    train_ok(corpus, "--hidden", "16", "--steps", "5", "--out", run)
    for i in range(5):
        step = read_meta(run / "latest.npz")["step"]
        resume = ("train", "--resume", run, "--steps", step + RACE_STEPS)
        new = ("train", corpus, *TINY, "--hidden", "8", "--steps", "300", "--out", run)
        results = race(resume, new, tmp_path, i)
        assert assert_one_won(results, run, IN_USE, "already holds a run") == 0, results
        assert_consistent_run(run, 16, step + RACE_STEPS)


def test_the_lock_dies_with_a_killed_process(tmp_path, corpus):
    """kill -9 a training (its lock file stays behind, naming it), then `--resume` starts at
    once and leaves no lock file when it ends."""
    run = tmp_path / "run"
    args = ("train", corpus, *TINY, "--hidden", "16", "--checkpoint-every", "1")
    proc = start((*args, "--steps", "10000000", "--out", run), tmp_path / "victim.log")
    try:
        deadline = time.monotonic() + 60
        while not (run / "latest.npz").exists() and time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "victim.log").read_text()
            time.sleep(0.02)
        assert (run / LOCK_NAME).read_text().strip() == str(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    assert (run / LOCK_NAME).exists()  # stale: nobody holds its lock any more
    step = read_meta(run / "latest.npz")["step"]
    proc = run_cli("train", "--resume", run, "--steps", step + 3)
    assert proc.returncode == 0, proc.stderr
    assert f"resuming at step {step:,}" in proc.stdout
    assert_consistent_run(run, 16, step + 3)


def test_the_python_api_takes_the_same_lock(tmp_path):
    """`charrnn.train` into a directory another writer holds raises RunInUseError naming this
    process's pid; the user's lock-free readers still load the run meanwhile."""
    run = tmp_path / "run"
    text = english_like(3000)
    config = TrainConfig(hidden=8, batch=2, seq_len=8, steps=3, sample_length=0)
    charrnn.train(text, config, run)
    config.steps = 6
    with claim(run, new=False):
        with pytest.raises(RunInUseError, match=rf"pid {os.getpid()}\)"):
            charrnn.train(text, config, run, resume=True)
        assert charrnn.load(run).config["step"] == 3
    assert charrnn.train(text, config, run, resume=True).step == 6


# ---- 2, 3. charrnn deletes only what it made; --out is new, empty or a run to resume ----------


def test_a_non_empty_out_directory_is_refused_and_left_alone(tmp_path, corpus):
    """A user's `.draft.tmp`, `notes.txt` and a sub-folder survive `train --out DIR`, which is
    refused with one line naming them, as `git clone` refuses a non-empty target."""
    out = tmp_path / "mine"
    (out / "sub").mkdir(parents=True)
    files = {".draft.tmp": "draft", "notes.txt": "notes", "sub/x.txt": "x"}
    for name, content in files.items():
        (out / name).write_text(content)
    line = assert_usage_error(run_cli("train", corpus, *TINY, "--steps", "2", "--out", out))
    assert "not empty" in line and ".draft.tmp, notes.txt, sub/" in line, line
    assert {p.relative_to(out).as_posix() for p in out.rglob("*")} == {*files, "sub"}
    for name, content in files.items():
        assert (out / name).read_text() == content
    # A corpus too short to train on fails after the checks: the user's files still survive.
    short = tmp_path / "short.txt"
    short.write_text("ab")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_usage_error(run_cli("train", short, "--out", empty))
    assert empty.is_dir() and list(empty.iterdir()) == []


def test_an_empty_out_directory_is_used(tmp_path, corpus):
    out = tmp_path / "empty"
    out.mkdir()
    train_ok(corpus, "--hidden", "8", "--steps", "2", "--out", out)
    assert read_meta(out / "latest.npz")["step"] == 2


def test_resume_cleans_only_charrnn_temp_files(tmp_path, corpus):
    """A resume removes the leftover `.latest.npz.x.tmp` of a killed write, and nothing of the
    user's: a `.draft.tmp`, a `.latest.npz.tmp` without a random part, a `notes.txt`."""
    run = tmp_path / "run"
    train_ok(corpus, "--hidden", "8", "--steps", "2", "--out", run)
    ours = [".latest.npz.x.tmp", ".corpus.json.Ab_9.tmp", ".corpus.q1w2e3r4.tmp"]
    theirs = [".draft.tmp", ".latest.npz.tmp", "notes.txt", ".best.npz.a.b.tmp"]
    for name in ours + theirs:
        (run / name).write_text("x")
    proc = run_cli("train", "--resume", run, "--steps", "3")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in run.iterdir() if p.name in ours + theirs) == sorted(theirs)


@pytest.mark.parametrize(
    ("name", "ours"),
    [
        (".latest.npz.x.tmp", True),
        (".best.npz.8fj_2k1a.tmp", True),
        (".config.json.a.tmp", True),
        (".metrics.jsonl.zz.tmp", True),
        (".corpus.abc.tmp", True),
        (".corpus.json.abc.tmp", True),
        (".draft.tmp", False),
        (".latest.npz.tmp", False),
        ("latest.npz.x.tmp", False),
        (".latest.npz.x.tmp.bak", False),
        (".notes.txt.x.tmp", False),
        (".latest.npz.a-b.tmp", False),
    ],
)
def test_own_temp_name_pattern(tmp_path, name, ours):
    assert bool(OWN_TEMP.fullmatch(name)) == ours
    (tmp_path / name).write_text("x")
    assert [p.name for p in own_temp_files(tmp_path)] == ([name] if ours else [])


# ---- 6. SIGHUP and a log that cannot be written -----------------------------------------------

EXACT = (*TINY, "--hidden", "16", "--eval-every", "50", "--checkpoint-every", "1000")


def assert_same_weights(a: Path, b: Path) -> None:
    x, y = read_npz(a / "latest.npz"), read_npz(b / "latest.npz")
    assert x.keys() == y.keys()
    for key in x.keys() - {"meta"}:
        np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def wait_for(log: Path, pattern: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(pattern, log.read_text(encoding="utf-8"), re.M):
            return
        assert proc.poll() is None, log.read_text()
        time.sleep(0.01)
    pytest.fail(f"no {pattern!r} within {timeout} s:\n{log.read_text()}")


def test_sighup_during_training_saves_and_resumes_exactly(tmp_path, corpus):
    """The terminal goes away (SIGHUP) mid-training: exit 129 with a checkpoint at the step
    reached; resuming to N steps equals a straight N-step run, bit for bit."""
    run, straight, log = tmp_path / "run", tmp_path / "straight", tmp_path / "hup.log"
    total = 2000
    proc = start(("train", corpus, *EXACT, "--steps", total, "--out", run), log)
    wait_for(log, r"^step [\d,]+ ", proc)
    time.sleep(0.1)
    proc.send_signal(signal.SIGHUP)
    assert proc.wait(timeout=30) == 129, log.read_text()
    out = log.read_text()
    assert "Traceback" not in out
    step = int(re.search(r"^stopped at step ([\d,]+);", out, re.M)[1].replace(",", ""))
    assert 0 < step < total and read_meta(run / "latest.npz")["step"] == step
    assert run_cli("train", "--resume", run, "--steps", total).returncode == 0
    assert run_cli("train", corpus, *EXACT, "--steps", total, "--out", straight).returncode == 0
    assert_same_weights(run, straight)
    lines = [(run / "metrics.jsonl").read_text(), (straight / "metrics.jsonl").read_text()]
    vals = [[json.loads(x)["val_loss"] for x in text.splitlines()] for text in lines]
    assert vals[0] == vals[1]


def test_sighup_during_an_evaluation_saves_and_resumes_exactly(tmp_path):
    """SIGHUP while the evaluation after step 1 runs (a long one): exit 129, a checkpoint at
    step 1 with no evaluation recorded; the resume redoes that evaluation and equals a straight
    run."""
    corpus = tmp_path / "big.txt"
    corpus.write_text(english_like(450_000), encoding="utf-8")  # ~2 s to evaluate, quiet
    run, straight, log = tmp_path / "run", tmp_path / "straight", tmp_path / "hup.log"
    args = ("train", corpus, "--hidden", "512", "--batch", "4", "--seq-len", "8")
    args += ("--val-fraction", "0.9", "--steps", "1", "--sample-length", "0")
    proc = start((*args, "--out", run), log)
    wait_for(log, r"^run ", proc)
    time.sleep(0.3)  # step 1 takes milliseconds, the evaluation after it over a second
    proc.send_signal(signal.SIGHUP)
    assert proc.wait(timeout=30) == 129, log.read_text()
    assert "eval at step" not in log.read_text()
    assert read_meta(run / "latest.npz")["step"] == 1
    assert not (run / "metrics.jsonl").exists() or (run / "metrics.jsonl").read_text() == ""
    resumed = run_cli("train", "--resume", run, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert run_cli(*args, "--out", straight, timeout=120).returncode == 0
    assert_same_weights(run, straight)
    assert (run / "metrics.jsonl").read_text().count("\n") == 1
    loss = [json.loads((d / "metrics.jsonl").read_text())["val_loss"] for d in (run, straight)]
    assert loss[0] == loss[1]


def assert_log_failure(proc_err: str, code: int, run: Path) -> int:
    """Exit 2, one line on stderr naming the stop and the resume command; the step saved."""
    assert code == 2 and "Traceback" not in proc_err, proc_err
    lines = proc_err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("charrnn: error: cannot write the log ("), lines
    m = re.search(rf"stopped at step ([\d,]+) with a checkpoint in {re.escape(str(run))}", lines[0])
    assert m and lines[0].endswith(f"resume with: charrnn train --resume {run}"), lines[0]
    step = int(m[1].replace(",", ""))
    assert read_meta(run / "latest.npz")["step"] == step
    return step


def test_a_closed_pipe_stops_training_with_a_checkpoint(tmp_path, corpus):
    """`charrnn train ... | head -2`: the reader goes away, training saves and stops, says so on
    stderr, and the run resumes."""
    run = tmp_path / "run"
    command = shlex.join(charrnn_cmd("train", corpus, *EXACT, "--steps", "100000", "--out", run))
    shell = f"{command} 2>{shlex.quote(str(tmp_path / 'err'))} | head -2; exit ${{PIPESTATUS[0]}}"
    proc = subprocess.run(
        ["bash", "-c", shell], capture_output=True, text=True, env=cli_env(), timeout=120
    )
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and lines[1].startswith(f"run {run}: "), proc.stdout
    step = assert_log_failure((tmp_path / "err").read_text(), proc.returncode, run)
    assert step < 100000
    resumed = run_cli("train", "--resume", run, "--steps", step + 2)
    assert resumed.returncode == 0 and f"resuming at step {step:,}" in resumed.stdout


def test_a_full_disk_under_the_log_stops_training_with_a_checkpoint(tmp_path, corpus):
    """`charrnn train > /dev/full`: the very first line fails, the run saves step 0 and stops
    with one line on stderr; it then resumes."""
    run = tmp_path / "run"
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            charrnn_cmd("train", corpus, *EXACT, "--steps", "100000", "--out", run),
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(),
            timeout=120,
        )
    step = assert_log_failure(proc.stderr, proc.returncode, run)
    assert step == 0
    resumed = run_cli("train", "--resume", run, "--steps", "2")
    assert resumed.returncode == 0 and "Traceback" not in resumed.stderr


@pytest.mark.parametrize("command", ["sample", "info", "eval"])
def test_other_commands_writing_to_a_full_disk_say_so_in_one_line(trained_run, command):
    args = {"sample": ("sample", trained_run.dir, "--seed", "1"), "info": ("info", trained_run.dir)}
    args["eval"] = ("eval", trained_run.dir, trained_run.corpus)
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            charrnn_cmd(*args[command]),
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(),
            timeout=60,
        )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr == "charrnn: error: cannot write the output (No space left on device)\n"


@pytest.mark.parametrize("command", ["sample", "info", "eval"])
def test_other_commands_stay_quiet_on_a_closed_pipe(trained_run, command):
    """Stdout is a pipe whose reader has already gone, so every write meets EPIPE however
    little the command prints (`| head -c 5` may read it all first): exit 0, nothing said."""
    args = {
        "sample": ("sample", trained_run.dir, "--length", "5"),
        "info": ("info", trained_run.dir),
    }
    args["eval"] = ("eval", trained_run.dir, trained_run.corpus)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run(
            charrnn_cmd(*args[command]),
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(),
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 0 and proc.stderr == "", (proc.returncode, proc.stderr)
