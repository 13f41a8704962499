"""Issue 4, promise 9: every numeric option of every subcommand is range-checked, and a value
outside the range (zero, negative, huge, nan, inf, not a number) is one `charrnn: error:` line
naming the option, its allowed range and the value given, with exit code 2."""

from __future__ import annotations

import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import assert_usage_error, cli_env

# option -> (the allowed range as the message states it, values outside it)
TRAIN = {
    "--hidden": ("from 1 to 16,384", ["0", "16385", "1.5", "9" * 30]),
    "--layers": ("from 1 to 8", ["0", "9", "-1", "2.0"]),
    "--seq-len": ("from 1 to 100,000", ["0", "-inf"]),
    "--batch": ("from 1 to 100,000", ["-1", "1e3"]),
    "--lr": ("in (0, 10]", ["0", "-1", "1e6", "nan", "-inf", "fast"]),
    "--clip": ("in [0, 1e+06]", ["-1", "inf"]),
    "--dropout": ("in [0, 1)", ["1", "nan"]),
    "--weight-drop": ("in [0, 1)", ["1.5", "-0.5"]),
    "--warmup": ("from 0 to 1,000,000,000", ["-1", "10000000000"]),
    "--cooldown": ("in (0, 1]", ["0", "1.5", "nan"]),
    "--steps": ("from 1 to 1,000,000,000", ["0", "1e9", "1000000001"]),
    "--minutes": ("in (0, 1e+06]", ["0", "-1e3", "inf"]),
    "--eval-every": ("from 1 to 1,000,000,000", ["0", "1.0"]),
    "--eval-symbols": ("an integer >= 2", ["1", "0", "-5", "2.5", "many"]),
    "--checkpoint-every": ("from 1 to 1,000,000,000", ["0", "x"]),
    "--val-fraction": ("in [0, 1)", ["1", "-0.1", "NaN"]),
    "--seed": ("from 0 to 4,294,967,295", ["-1", "4294967296"]),
    "--sample-length": ("from 0 to 1,000,000", ["-1", "1000001"]),
}
MAX_CHARS = ("from 2 to 10,000,000", ["1", "10000001", "x"])
SAMPLING = {
    "--length": ("from 0 to 100,000,000", ["-1", "100000001", "1e3"]),
    "--temperature": ("in [0, 100]", ["-0.5", "nan", "101"]),
    "--top-k": ("an integer >= 1", ["0", "2.5"]),
    "--top-p": ("in (0, 1]", ["0", "1.01", "-inf"]),
    "--seed": ("from 0 to 9,223,372,036,854,775,807", ["-1", "9223372036854775808"]),
}
NUMERIC = {
    "train": TRAIN,
    "sample": {**SAMPLING, "--num": ("from 1 to 100,000", ["0", "100001", "-1"])},
    "repl": SAMPLING,
    "eval": {"--streams": ("from 1 to 100,000", ["0", "100001", "1.5"])},
    "info": {},
    "show": {"--max-chars": MAX_CHARS},
    "neurons": {"--top": ("from 1 to 1,000", ["0", "1001"]), "--max-chars": MAX_CHARS},
    "report": {"--max-chars": MAX_CHARS},
    "corpora": {},
}
# Options that take a value that is not a number (choices are checked by argparse itself).
NOT_NUMERIC = {"--corpus", "--encoding", "--out", "--resume", "--prime", "--text", "--unit"}
NOT_NUMERIC |= {"--html", "--output"}
POSITIONAL = {
    "train": (), "sample": ("run",), "repl": ("run",), "eval": ("run", "file"),
    "show": ("run", "file"), "neurons": ("run", "file"), "report": ("run",),
}  # fmt: skip

CASES = [
    (command, option, value, allowed)
    for command, options in NUMERIC.items()
    for option, (allowed, values) in options.items()
    for value in (values if command != "repl" else values[:2])
]


def charrnn(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "charrnn", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        env=dict(cli_env(), COLUMNS="200"),
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Every case and every `charrnn CMD --help`, run a few processes at a time in an empty
    directory: (results by case, help texts by command, that directory)."""
    cwd = tmp_path_factory.mktemp("options")

    def bad(case) -> subprocess.CompletedProcess:
        command, option, value, _ = case
        return charrnn(command, *POSITIONAL[command], option, value, cwd=cwd)

    with ThreadPoolExecutor(max_workers=4) as pool:
        helps = list(pool.map(lambda c: charrnn(c, "--help", cwd=cwd), NUMERIC))
        outcomes = list(pool.map(bad, CASES))
    for proc in helps:
        assert proc.returncode == 0, proc.stderr
    help_texts = {c: proc.stdout for c, proc in zip(NUMERIC, helps, strict=True)}
    return dict(zip(CASES, outcomes, strict=True)), help_texts, cwd


@pytest.mark.parametrize(("command", "option", "value", "allowed"), CASES)
def test_out_of_range_value_is_one_line_naming_option_and_range(
    results, command, option, value, allowed
):
    """`charrnn CMD OPTION VALUE` outside the range exits 2 with one line naming the option,
    the range and the value; nothing is printed on stdout or written."""
    by_case, _, cwd = results
    proc = by_case[command, option, value, allowed]
    assert_usage_error(proc, f"argument {option}:", allowed, repr(value))
    assert proc.stdout == ""
    assert list(cwd.iterdir()) == []


@pytest.mark.parametrize("command", list(NUMERIC))
def test_every_numeric_option_is_in_the_table(results, command):
    """Every option `charrnn CMD --help` lists with a value, other than choices and the known
    text and path options, has range cases above: a new numeric option needs a check here."""
    _, help_texts, _ = results
    takes_value = set(re.findall(r"(--[a-z][a-z-]*) [A-Z][A-Z_]*", help_texts[command]))
    assert takes_value - NOT_NUMERIC == set(NUMERIC[command])
