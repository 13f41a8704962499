"""The `charrnn` command as real subprocesses: train, sample, eval, info, corpora, resume, and
every kind of bad input answered by one `charrnn: error:` line and exit code 2."""

from __future__ import annotations

import json
import math
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TRAIN_ARGS, assert_usage_error, cli_env, english_like, run_cli

import charrnn
from charrnn.corpus import builtin_corpus

LN2 = math.log(2)
SEPARATOR = "\n" + "-" * 40 + "\n"


def read_metrics(run_dir):
    """The rows of a run's metrics.jsonl."""
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def assert_ok(proc: subprocess.CompletedProcess) -> str:
    """Exit 0, nothing on stderr, no traceback and no ANSI escape code; returns stdout."""
    report = f"exit {proc.returncode}\nstdout: {proc.stdout!r}\nstderr: {proc.stderr!r}"
    assert proc.returncode == 0, report
    assert proc.stderr == "", report
    assert "\x1b" not in proc.stdout, report
    return proc.stdout


def table_rows(text: str) -> list[list[str]]:
    """The cells of every body row of a rich table printed with box characters."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in text.splitlines()
        if line.startswith("│")
    ]


def rewrite_checkpoints(run_dir: Path, edit_meta=None, edit_arrays=None) -> None:
    """Rebuild latest.npz and best.npz with np.savez after editing their metadata or arrays."""
    for name in ("latest.npz", "best.npz"):
        path = run_dir / name
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
        meta = json.loads(arrays["meta"].tobytes().decode("utf-8"))
        if edit_meta is not None:
            edit_meta(meta)
        if edit_arrays is not None:
            edit_arrays(arrays)
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8)
        np.savez(path, **arrays)


# ---- train ----------------------------------------------------------------------------------


def test_train_writes_a_complete_run_dir(trained_run):
    """A tiny training run exits 0 and leaves latest.npz, best.npz, config.json, metrics.jsonl
    with the step reached and one metrics line per evaluation."""
    assert trained_run.proc.returncode == 0
    names = {p.name for p in trained_run.dir.iterdir()}
    assert {"latest.npz", "best.npz", "config.json", "metrics.jsonl"} <= names
    config = trained_run.config
    assert config["format_version"] == 2
    assert config["step"] == 30
    assert config["train"]["hidden"] == 16 and config["train"]["batch"] == 4
    assert config["train"]["seq_len"] == 16
    assert config["model"]["vocab_size"] == len(set(trained_run.text))
    assert sorted(config["vocab"]["symbols"]) == sorted(set(trained_run.text))
    records = trained_run.metrics()
    assert [r["step"] for r in records] == [15, 30]
    for r in records:
        assert 0 < r["val_loss"] < 2 * math.log(len(trained_run.vocab))
        assert r["val_bpc"] == pytest.approx(r["val_loss"] / LN2)
        assert r["train_bpc"] == pytest.approx(r["train_loss"] / LN2)
    best = min(records, key=lambda r: r["val_loss"])
    assert config["metrics"]["best_val_loss"] == pytest.approx(best["val_loss"])
    assert config["metrics"]["best_step"] == best["step"]
    run = charrnn.load(trained_run.dir / "latest.npz")
    assert run.model.hidden_size == 16 and run.config["step"] == 30


def test_train_log_is_plain_lines(trained_run):
    """Off a terminal with NO_COLOR, training prints plain log lines (no ANSI codes), every
    evaluation, and a final table whose numbers match metrics.jsonl."""
    out = assert_ok(trained_run.proc)
    lines = out.splitlines()
    assert lines[0].startswith("model: vanilla RNN, H 16 (30 steps buy it ~1.92K characters")
    assert lines[1].startswith(f"run {trained_run.dir}: ")
    assert "rnn 1 x 16, batch 4 x seq-len 16" in lines[1]
    step_lines = [line for line in lines if re.match(r"step \d+  loss ", line)]
    assert [int(line.split()[1]) for line in step_lines] == list(range(3, 31, 3))
    for line in step_lines:
        m = re.match(r"step \d+  loss (\d+\.\d{4})  (\d+\.\d{3}) bits/char", line)
        assert m, line
        assert float(m[2]) == pytest.approx(float(m[1]) / LN2, abs=2e-3)
    last = trained_run.metrics()[-1]
    assert "eval at step 15:" in out and "eval at step 30:" in out
    assert f"validation {last['val_loss']:.4f} nats/char" in out
    summary = [row for row in table_rows(out) if row[0] == "30"]
    assert len(summary) == 1, out
    row = summary[0]
    assert row[3] == f"{last['train_loss']:.4f}" and row[4] == f"{last['train_bpc']:.4f}"
    assert row[5] == f"{last['val_loss']:.4f}" and row[6] == f"{last['val_bpc']:.4f}"
    assert out.rstrip().endswith(f"charrnn sample {trained_run.dir}")


def test_resume_continues_from_saved_step(trained_run, run_copy):
    """`--resume DIR --steps 40` picks up at step 30 and ends with config.json at step 40."""
    proc = run_cli("train", "--resume", run_copy, "--steps", "40")
    out = assert_ok(proc)
    first, second = out.splitlines()[:2]
    assert first.startswith("model: vanilla RNN") and first.endswith(" [kept from the run's start]")
    assert "resuming at step 30" in second
    first_step = next(line for line in out.splitlines() if line.startswith("step "))
    assert first_step.startswith("step 33 ")
    config = json.loads((run_copy / "config.json").read_text())
    assert config["step"] == 40
    assert config["train"]["steps"] == 40
    steps = [row["step"] for row in read_metrics(run_copy)]
    assert steps == [15, 30, 40]
    assert charrnn.load(run_copy, "latest").config["step"] == 40


def test_resume_is_exact(tmp_path, corpus_file):
    """50 steps then a resume to 90 (across an epoch boundary) gives bit-identical weights and
    optimizer state to 90 steps in one go, with a budget-independent learning rate."""
    common = (*TRAIN_ARGS, "--schedule", "constant", "--warmup", "0", "--eval-every", "25")
    split, whole = tmp_path / "split", tmp_path / "whole"
    assert_ok(run_cli("train", corpus_file, *common, "--steps", "50", "--out", split))
    assert_ok(run_cli("train", corpus_file, "--resume", split, "--steps", "90"))
    assert_ok(run_cli("train", corpus_file, *common, "--steps", "90", "--out", whole))
    with np.load(split / "latest.npz") as a, np.load(whole / "latest.npz") as b:
        keys = [k for k in a.files if k != "meta"]
        assert sorted(keys) == sorted(k for k in b.files if k != "meta")
        assert any(k.startswith("opt/") for k in keys)
        for key in keys:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    val = [row["val_loss"] for row in read_metrics(split)]
    assert val == [row["val_loss"] for row in read_metrics(whole)]


def test_ctrl_c_saves_and_resume_continues(tmp_path, corpus_file):
    """SIGINT during training saves a checkpoint at the step reached and exits 130; a resume
    then continues from exactly that step."""
    out_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "charrnn", "train", str(corpus_file), *TRAIN_ARGS),
            *("--minutes", "5", "--eval-every", "50", "--out", str(out_dir)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )
    try:
        for line in proc.stdout:
            if line.startswith("step "):
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    m = re.search(r"stopped at step ([\d,]+); checkpoint saved", out)
    assert m, out
    stopped = int(m[1].replace(",", ""))
    assert stopped >= 1
    assert json.loads((out_dir / "config.json").read_text())["step"] == stopped
    out = assert_ok(run_cli("train", "--resume", out_dir, "--steps", str(stopped + 5)))
    assert f"resuming at step {stopped:,}" in out
    assert json.loads((out_dir / "config.json").read_text())["step"] == stopped + 5


# ---- sample ---------------------------------------------------------------------------------


def test_sample_prints_length_symbols_from_the_vocab(trained_run):
    """`sample RUN --length 50 --seed 3` prints exactly 50 known symbols and a newline, the same
    text as charrnn.generate with those settings."""
    out = assert_ok(run_cli("sample", trained_run.dir, "--length", "50", "--seed", "3"))
    assert out.endswith("\n")
    body = out[:-1]
    assert len(body) == 50
    assert set(body) <= trained_run.vocab
    run = charrnn.load(trained_run.dir)
    expected = "".join(charrnn.generate(run.model, run.vocab, length=50, temperature=0.8, seed=3))
    assert body == expected


def test_sample_same_seed_same_text(trained_run):
    """The same seed reproduces the sample; another seed gives other text."""
    a = assert_ok(run_cli("sample", trained_run.dir, "--length", "80", "--seed", "3"))
    b = assert_ok(run_cli("sample", trained_run.dir, "--length", "80", "--seed", "3"))
    c = assert_ok(run_cli("sample", trained_run.dir, "--length", "80", "--seed", "4"))
    assert a == b
    assert a != c


def test_temperature_zero_is_greedy_and_deterministic(trained_run):
    """Temperature 0 needs no seed: two runs agree and equal the argmax continuation."""
    args = ("sample", trained_run.dir, "--length", "60", "--temperature", "0")
    a, b = assert_ok(run_cli(*args)), assert_ok(run_cli(*args))
    assert a == b
    run = charrnn.load(trained_run.dir)
    h = run.model.zero_state(1)
    logits, h = run.model.step(np.array([run.vocab.index["\n"]]), h)
    greedy = []
    for _ in range(60):
        i = int(np.argmax(logits[0]))
        greedy.append(run.vocab.symbols[i])
        logits, h = run.model.step(np.array([i]), h)
    assert a == "".join(greedy) + "\n"


def test_sample_num_gives_independent_samples(trained_run):
    """`--num 3` prints three samples of the requested length, separated by a dashed line."""
    out = assert_ok(
        run_cli("sample", trained_run.dir, "--num", "3", "--length", "25", "--seed", "1")
    )
    samples = out[:-1].split(SEPARATOR)
    assert len(samples) == 3
    for text in samples:
        assert len(text) == 25 and set(text) <= trained_run.vocab
    assert len(set(samples)) > 1


def test_sample_prime_is_printed_and_continued(trained_run):
    """`--prime` text of known symbols is echoed, then continued as the model conditioned on it."""
    prime = "the quick brown fox "
    out = assert_ok(
        run_cli("sample", trained_run.dir, "--prime", prime, "--length", "40", "--seed", "7")
    )
    assert out.startswith(prime)
    continuation = out[len(prime) : -1]
    assert len(continuation) == 40
    run = charrnn.load(trained_run.dir)
    expected = charrnn.generate(run.model, run.vocab, prime, 40, temperature=0.8, seed=7)
    assert continuation == "".join(expected)
    many = assert_ok(
        run_cli("sample", trained_run.dir, "--prime", prime, "--num", "2", "--length", "5")
    )
    assert [s[: len(prime)] for s in many[:-1].split(SEPARATOR)] == [prime, prime]


def test_sample_length_zero_prints_only_the_prime(trained_run):
    """`--length 0` generates nothing: the output is the prime and a newline."""
    out = assert_ok(run_cli("sample", trained_run.dir, "--length", "0", "--prime", "the"))
    assert out == "the\n"


def test_sample_latest_checkpoint_and_npz_path(trained_run):
    """`--checkpoint latest` and a direct .npz path both sample from those exact weights."""
    a = run_cli(
        "sample", trained_run.dir, "--checkpoint", "latest", "--length", "30", "--seed", "2"
    )
    b = run_cli("sample", trained_run.dir / "latest.npz", "--length", "30", "--seed", "2")
    assert assert_ok(a) == assert_ok(b)
    assert len(a.stdout) == 31


def test_sample_into_closed_pipe_is_quiet(trained_run):
    """A reader that goes away (`| head`) ends sampling with exit 0 and nothing on stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "charrnn", "sample", str(trained_run.dir), "--length", "10000000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(),
    )
    with proc:
        try:
            assert len(proc.stdout.read(200)) == 200
            proc.stdout.close()
            assert proc.wait(timeout=30) == 0
            assert proc.stderr.read() == b""
        finally:
            proc.kill()


def test_sample_ctrl_c_exits_130(trained_run):
    """SIGINT during a long sample stops it with exit 130 and one line, no traceback."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "charrnn", "sample", str(trained_run.dir), "--length", "10000000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(),
    )
    try:
        proc.stdout.read(100)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert err.decode() == "charrnn: interrupted\n"


# ---- eval, info, corpora, version -----------------------------------------------------------


def test_eval_prints_nats_and_bits_per_char(trained_run, tmp_path):
    """`eval RUN FILE` on the validation split reproduces the best validation loss, in nats and
    in bits per character, over len-1 predictions."""
    text = trained_run.text
    n_val = round(len(text) * 0.1)
    val_file = tmp_path / "val.txt"
    val_file.write_text(text[-n_val:], encoding="utf-8")
    out = assert_ok(run_cli("eval", trained_run.dir, val_file))
    m = re.fullmatch(
        r"(.+): (\d+\.\d{4}) nats/char, (\d+\.\d{4}) bits/char over ([\d,]+) predictions "
        r"in 1 stream\n",
        out,
    )
    assert m, out
    nats, bits = float(m[2]), float(m[3])
    assert m[1] == str(val_file)
    assert int(m[4].replace(",", "")) == n_val - 1
    assert bits == pytest.approx(nats / LN2, abs=2e-4)
    assert nats == pytest.approx(trained_run.config["metrics"]["best_val_loss"], abs=2e-4)


def test_eval_whole_corpus_matches_library(trained_run):
    """`eval` of the training file equals charrnn.evaluate on the same symbols."""
    out = assert_ok(run_cli("eval", trained_run.dir, trained_run.corpus))
    nats = float(re.search(r": (\d+\.\d+) nats/char", out)[1])
    run = charrnn.load(trained_run.dir)
    assert nats == pytest.approx(
        charrnn.evaluate(run.model, run.vocab.encode(trained_run.text)), abs=1e-4
    )
    assert f"over {len(trained_run.text) - 1:,} predictions" in out


def test_info_shows_the_config(trained_run):
    """`info RUN` prints the model, hyperparameters, step and best validation loss."""
    out = assert_ok(run_cli("info", trained_run.dir))
    rows = {row[0]: row[1] for row in table_rows(out) if len(row) == 2 and row[0]}
    config = trained_run.config
    vocab_size = config["model"]["vocab_size"]
    assert rows["model"] == f"rnn 1 x 16 (layers x hidden), vocab {vocab_size} (grapheme), float32"
    assert rows["hidden"] == "16" and rows["batch"] == "4" and rows["seq-len"] == "16"
    assert rows["optimizer"] == "adam" and rows["eval-every"] == "15"
    assert rows["step"] == "30"
    assert rows["parameters"] == f"{16 * vocab_size * 2 + 16 * 16 + 16 + vocab_size:,}"
    assert rows["best val loss"] == f"{config['metrics']['best_val_loss']:.4f}"


def test_corpora_lists_python_docs():
    """`corpora` lists the built-in python-docs corpus with its true size."""
    out = assert_ok(run_cli("corpora"))
    row = next(row for row in table_rows(out) if row[0] == "python-docs")
    size = int(row[1].replace(",", ""))
    assert size == len(builtin_corpus("python-docs")) > 400_000
    assert "pydoc_data" in out


def test_version():
    """`python -m charrnn --version` and the `charrnn` console script print the version."""
    out = assert_ok(run_cli("--version"))
    assert out == f"charrnn {charrnn.__version__}\n"
    script = shutil.which("charrnn") or str(Path(sys.executable).parent / "charrnn")
    proc = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout == out


# ---- bad text files -------------------------------------------------------------------------

BAD_FILES = {
    "missing": (None, ("no such file",)),
    "empty": (b"", ("empty",)),
    "directory": ("dir", ("directory",)),
    "nul": (b"the quick\x00brown fox" * 20, ("NUL byte at offset 9", "binary")),
    "random": (np.random.default_rng(0).bytes(4096), ()),
    "invalid_utf8": (b"hello world, the text " + b"\xff\xfe more text here." * 10, ("offset 22",)),
    "bom_only": ("\ufeff".encode(), ("no text",)),
}


def make_bad_file(tmp_path: Path, kind: str) -> Path:
    content, _ = BAD_FILES[kind]
    path = tmp_path / f"{kind}.txt"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    return path


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_train_rejects_unusable_file(tmp_path, kind):
    """Each unusable training file is one clear error naming the file; no run dir is made."""
    path = make_bad_file(tmp_path, kind)
    out_dir = tmp_path / "out"
    proc = run_cli("train", path, *TRAIN_ARGS, "--steps", "5", "--out", out_dir)
    line = assert_usage_error(proc, path.name, *BAD_FILES[kind][1])
    if kind == "random":
        assert "binary" in line or "invalid utf-8" in line
    assert not out_dir.exists()


@pytest.mark.parametrize("kind", ["missing", "empty", "directory", "nul", "invalid_utf8"])
def test_eval_rejects_unusable_file(trained_run, tmp_path, kind):
    """`eval` gives the same clear errors for unusable files."""
    path = make_bad_file(tmp_path, kind)
    assert_usage_error(run_cli("eval", trained_run.dir, path), path.name, *BAD_FILES[kind][1])


def test_eval_rejects_unknown_symbols(trained_run, tmp_path):
    """`eval` on text with symbols the model never saw names those symbols."""
    path = tmp_path / "upper.txt"
    path.write_text("the QUICK fox\n", encoding="utf-8")
    line = assert_usage_error(run_cli("eval", trained_run.dir, path), "'Q'", "'U'", "'K'")
    assert "'t'" not in line


def test_train_rejects_corpus_shorter_than_a_chunk(tmp_path):
    """A file shorter than batch x seq-len is an error that says what it needs; no run dir is
    left behind, neither with --out nor under the default runs/."""
    path = tmp_path / "tiny.txt"
    path.write_text("the quick brown fox jumps over the lazy dog and cat\n", encoding="utf-8")
    out_dir = tmp_path / "out"
    proc = run_cli("train", path, *TRAIN_ARGS, "--steps", "5", "--out", out_dir)
    assert_usage_error(proc, "47 symbols", "needs at least 65", "--seq-len")
    assert not out_dir.exists()
    proc = run_cli("train", path, *TRAIN_ARGS, "--steps", "5", cwd=tmp_path)
    assert_usage_error(proc, "needs at least 65")
    runs = tmp_path / "runs"
    assert not runs.exists() or list(runs.iterdir()) == []


def test_train_rejects_corpus_too_short_to_validate(tmp_path):
    """A file too short to hold out 2 validation symbols is a clear error."""
    path = tmp_path / "short.txt"
    path.write_text("short text\n", encoding="utf-8")
    proc = run_cli("train", path, *TRAIN_ARGS, "--steps", "5", "--out", tmp_path / "out")
    assert_usage_error(proc, "validation")


# ---- priming, checkpoints and run directories -----------------------------------------------


@pytest.mark.parametrize("extra", [(), ("--num", "3")])
def test_prime_with_unknown_symbols_names_them(trained_run, extra):
    """A prime with symbols outside the vocabulary names each of them and prints nothing."""
    proc = run_cli("sample", trained_run.dir, "--prime", "theXQ€#", "--length", "5", *extra)
    line = assert_usage_error(proc, "prime", "'X'", "'Q'", "'€'", "'#'")
    assert "'t'" not in line and "'h'" not in line
    assert proc.stdout == ""


def damage(run_dir: Path, kind: str) -> None:
    if kind == "corrupt":
        rng = np.random.default_rng(1)
        for name in ("latest.npz", "best.npz"):
            (run_dir / name).write_bytes(rng.bytes(20_000))
    elif kind == "truncated":
        for name in ("latest.npz", "best.npz"):
            data = (run_dir / name).read_bytes()
            (run_dir / name).write_bytes(data[: len(data) // 2])
    elif kind == "version999":
        rewrite_checkpoints(run_dir, edit_meta=lambda meta: meta.update(format_version=999))
    elif kind == "missing":
        shutil.rmtree(run_dir)
    elif kind == "empty":
        shutil.rmtree(run_dir)
        run_dir.mkdir()
    else:
        raise AssertionError(kind)


DAMAGE_MESSAGES = {
    "corrupt": ("checkpoint", ".npz"),
    "truncated": ("checkpoint", ".npz"),
    "version999": ("format version 999", ".npz"),
    "missing": ("no such run directory",),
    "empty": ("no ", ".npz"),
}


@pytest.mark.parametrize("kind", list(DAMAGE_MESSAGES))
@pytest.mark.parametrize("command", ["sample", "eval", "info", "repl", "resume"])
def test_damaged_or_missing_checkpoint(run_copy, trained_run, kind, command):
    """Corrupt, truncated, foreign-version, missing and empty runs are one clear error for every
    command that reads a run."""
    damage(run_copy, kind)
    args = {
        "sample": ("sample", run_copy, "--length", "5"),
        "eval": ("eval", run_copy, trained_run.corpus),
        "info": ("info", run_copy),
        "repl": ("repl", run_copy),
        "resume": ("train", "--resume", run_copy, "--steps", "40"),
    }[command]
    assert_usage_error(run_cli(*args), str(run_copy), *DAMAGE_MESSAGES[kind])


def test_damaged_training_state_cannot_resume(run_copy):
    """A checkpoint whose optimizer state is missing cannot be resumed: one clear error."""
    rewrite_checkpoints(run_copy, edit_arrays=lambda arrays: arrays.pop("opt/t"))
    proc = run_cli("train", "--resume", run_copy, "--steps", "40")
    assert_usage_error(proc, "latest.npz", "cannot resume")


@pytest.mark.parametrize(
    "edit", [{"train": None}, {"corpus": ["x"]}, {"metrics": [1]}, {"elapsed": "soon"}]
)
@pytest.mark.parametrize("command", ["info", "resume"])
def test_malformed_metadata(run_copy, edit, command):
    """Metadata sections of the wrong type are reported, not crashed on."""
    rewrite_checkpoints(run_copy, edit_meta=lambda meta: meta.update(edit))
    args = ("info", run_copy) if command == "info" else ("train", "--resume", run_copy)
    assert_usage_error(run_cli(*args), "latest.npz", next(iter(edit)))


def test_out_dir_holding_a_run_is_refused(run_copy, corpus_file):
    """Training into an --out directory that already holds a run fails and leaves it intact."""
    before = {p.name: p.read_bytes() for p in run_copy.iterdir()}
    proc = run_cli("train", corpus_file, *TRAIN_ARGS, "--steps", "5", "--out", run_copy)
    assert_usage_error(proc, str(run_copy), "already holds a run", "--resume")
    assert {p.name: p.read_bytes() for p in run_copy.iterdir()} == before


def test_out_path_that_is_a_file_is_refused(tmp_path, corpus_file):
    """An --out path that is a regular file is a clear error."""
    target = tmp_path / "file"
    target.write_text("x")
    proc = run_cli("train", corpus_file, *TRAIN_ARGS, "--steps", "5", "--out", target)
    assert_usage_error(proc, "not a directory")


def test_resume_with_changed_hidden_is_refused(run_copy):
    """`--resume` with a different --hidden names the option and changes nothing."""
    before = (run_copy / "latest.npz").read_bytes()
    proc = run_cli("train", "--resume", run_copy, "--hidden", "32", "--steps", "40")
    assert_usage_error(proc, "--hidden", "resum")
    assert (run_copy / "latest.npz").read_bytes() == before


def test_resume_with_out_is_refused(run_copy, tmp_path):
    """`--resume` continues in place, so --out alongside it is an error naming --out."""
    proc = run_cli("train", "--resume", run_copy, "--out", tmp_path / "elsewhere")
    assert_usage_error(proc, "--out")


def test_resume_on_other_text_is_refused(run_copy, tmp_path):
    """Resuming with a different training file is refused (the corpus digest differs)."""
    other = tmp_path / "other.txt"
    other.write_text(english_like(5000, seed=1), encoding="utf-8")
    proc = run_cli("train", other, "--resume", run_copy, "--steps", "40")
    assert_usage_error(proc, "differs")


# ---- options --------------------------------------------------------------------------------

SAMPLING_ERRORS = [
    (("--temperature", "-1"), "--temperature"),
    (("--temperature", "-0.01"), "--temperature"),
    (("--temperature", "nan"), "--temperature"),
    (("--top-k", "0"), "--top-k"),
    (("--top-k", "-3"), "--top-k"),
    (("--top-p", "0"), "--top-p"),
    (("--top-p", "1.5"), "--top-p"),
]


@pytest.mark.parametrize("command", ["sample", "repl"])
@pytest.mark.parametrize(("option", "name"), SAMPLING_ERRORS)
def test_sampling_option_out_of_range(trained_run, command, option, name):
    """Temperature < 0, top-k < 1 and top-p outside (0, 1] are errors naming the option."""
    proc = run_cli(command, trained_run.dir, *option)
    assert_usage_error(proc, name, repr(option[1]))
    assert proc.stdout == ""


@pytest.mark.parametrize(
    ("option", "name"),
    [(("--length", "-1"), "--length"), (("--num", "0"), "--num"), (("--seed", "x"), "--seed")],
)
def test_sample_option_out_of_range(trained_run, option, name):
    """Other sample options out of range name the option."""
    assert_usage_error(run_cli("sample", trained_run.dir, *option), name)


TRAIN_ERRORS = [
    (("--hidden", "0"), "--hidden"),
    (("--hidden", "abc"), "--hidden"),
    (("--hidden", "-5"), "--hidden"),
    (("--lr", "-1"), "--lr"),
    (("--lr", "0"), "--lr"),
    (("--steps", "0"), "--steps"),
    (("--minutes", "0"), "--minutes"),
    (("--batch", "0"), "--batch"),
    (("--seq-len", "0"), "--seq-len"),
    (("--clip", "-1"), "--clip"),
    (("--eval-every", "0"), "--eval-every"),
    (("--val-fraction", "1"), "--val-fraction"),
    (("--seed", "-1"), "--seed"),
    (("--optimizer", "lbfgs"), "--optimizer"),
    (("--unit", "word"), "--unit"),
    (("--bogus",), "--bogus"),
    (("--steps", "5", "--minutes", "1"), "--minutes"),
]


@pytest.mark.parametrize(("option", "name"), TRAIN_ERRORS)
def test_train_option_errors(tmp_path, corpus_file, option, name):
    """Nonsense, unknown or conflicting training options name the option; nothing is written."""
    out_dir = tmp_path / "out"
    line = assert_usage_error(
        run_cli("train", corpus_file, "--out", out_dir, *TRAIN_ARGS, *option), name
    )
    if "--minutes" in option and "--steps" in option:
        assert "--steps" in line
    assert not out_dir.exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ((), "command"),
        (("fly",), "fly"),
        (("sample",), "run"),
        (("eval", "somewhere"), "file"),
        (("train", "--corpus", "klingon"), "python-docs"),
        (("train", "x.txt", "--corpus", "python-docs"), "not both"),
        (("train", "x.txt", "--encoding", "klingon"), "klingon"),
        (("sample", "run", "--bogus"), "--bogus"),
    ],
)
def test_usage_errors(tmp_path, args, fragment):
    """Missing or unknown subcommands, arguments, corpora and encodings are one-line errors."""
    assert_usage_error(run_cli(*args, cwd=tmp_path), fragment)


@pytest.mark.parametrize(("steps", "cell", "layers"), [("200", "lstm", 2), ("150", "rnn", 1)])
def test_train_budget_chooses_the_architecture(tmp_path, steps, cell, layers):
    """`charrnn train --steps 200` buys the LSTM stack 640K characters (the vanilla RNN 320K)
    and trains it, 150 steps the vanilla RNN (charrnn.budget); options given on the command
    line (here --hidden) win over either."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(english_like(20_000), encoding="utf-8")
    run = tmp_path / "run"
    args = ("train", corpus, "--steps", steps, "--hidden", "16", "--sample-length", "0")
    out = assert_ok(run_cli(*args, "--eval-every", "100000", "--out", run))
    assert out.startswith(f"model: {'2-layer LSTM' if cell == 'lstm' else 'vanilla RNN'}, H 16 (")
    train = json.loads((run / "config.json").read_text())["train"]
    assert (train["cell"], train["layers"], train["hidden"]) == (cell, layers, 16)
    assert train["steps"] == int(steps)
    if cell == "lstm":
        assert (train["seq_len"], train["dropout"], train["weight_drop"]) == (50, 0.3, 0.2)
        assert (train["lr"], train["schedule"], train["cooldown"]) == (3e-3, "wsd", 0.2)
    else:
        assert (train["seq_len"], train["dropout"], train["weight_drop"]) == (25, 0.0, 0.15)
