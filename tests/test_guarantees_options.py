"""Issue 4, promise 9: every numeric option of every subcommand is range-checked, and a value
outside the range (zero, negative, huge, nan, inf, not a number) is one `charrnn: error:` line
naming the option, its allowed range and the value given, with exit code 2."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import assert_usage_error, cli_env

from charrnn.cli import build_parser

# option -> the allowed range as the error message states it; the values tried are derived from it
TRAIN = {
    "--hidden": "from 1 to 16,384",
    "--layers": "from 1 to 8",
    "--seq-len": "from 1 to 100,000",
    "--batch": "from 1 to 100,000",
    "--workers": "from 1 to 1,024",
    "--lr": "in (0, 10]",
    "--clip": "in [0, 1e+06]",
    "--dropout": "in [0, 1)",
    "--weight-drop": "in [0, 1)",
    "--warmup": "from 0 to 1,000,000,000",
    "--cooldown": "in (0, 1]",
    "--steps": "from 1 to 1,000,000,000",
    "--minutes": "in (0, 1e+06]",
    "--eval-every": "from 1 to 1,000,000,000",
    "--eval-symbols": "an integer >= 2",
    "--checkpoint-every": "from 1 to 1,000,000,000",
    "--val-fraction": "in [0, 1)",
    "--seed": "from 0 to 4,294,967,295",
    "--sample-length": "from 0 to 1,000,000",
}
MAX_CHARS = "from 2 to 10,000,000"
SAMPLING = {
    "--length": "from 0 to 100,000,000",
    "--temperature": "in [0, 100]",
    "--top-k": "an integer >= 1",
    "--top-p": "in (0, 1]",
    "--seed": "from 0 to 9,223,372,036,854,775,807",
}
NUMERIC = {
    "train": TRAIN,
    "sample": {**SAMPLING, "--num": "from 1 to 100,000"},
    "repl": SAMPLING,
    "eval": {"--streams": "from 1 to 100,000"},
    "info": {},
    "show": {"--max-chars": MAX_CHARS},
    "neurons": {"--top": "from 1 to 1,000", "--max-chars": MAX_CHARS},
    "report": {"--max-chars": MAX_CHARS},
    "corpora": {},
    "novelty": {},
    "serve": {
        "--port": "from 0 to 65,535",
        "--max-length": "from 1 to 100,000,000",
        "--streams": "from 1 to 4,096",
        "--grace": "in [0, 3600]",
    },
}
# The six kinds of value the README promises for every option, each refused where it is
# outside the option's range and accepted where it is inside (0 for --dropout, a huge --top-k).
KINDS = {"zero": "0", "negative": "-1", "huge": None, "nan": "nan", "inf": "inf", "text": "fast"}
# Options that take a value that is not a number (choices are checked by argparse itself).
NOT_NUMERIC = {"--corpus", "--encoding", "--out", "--resume", "--init-from", "--prime", "--text"}
NOT_NUMERIC |= {"--unit", "--html", "--output", "--stop", "--host", "--api-key"}
POSITIONAL = {
    "train": (), "sample": ("run",), "repl": ("run",), "eval": ("run", "file"),
    "show": ("run", "file"), "neurons": ("run", "file"), "report": ("run",),
    "novelty": ("run",), "serve": ("run",),
}  # fmt: skip


@dataclass(frozen=True)
class Range:
    """An allowed range as the message states it: integers from low to high (high None: no
    bound), or numbers between low and high with each end open or closed."""

    integer: bool
    low: float
    high: float | None
    low_open: bool = False
    high_open: bool = False

    @classmethod
    def parse(cls, allowed: str) -> Range:
        if m := re.fullmatch(r"from ([\d,]+) to ([\d,]+)", allowed):
            return cls(True, *(int(g.replace(",", "")) for g in m.groups()))
        if m := re.fullmatch(r"an integer >= (\d+)", allowed):
            return cls(True, int(m[1]), None)
        m = re.fullmatch(r"in ([\[(])(\S+), (\S+)([\])])", allowed)
        return cls(False, float(m[2]), float(m[3]), m[1] == "(", m[4] == ")")

    def value(self, text: str) -> int | float | None:
        """What argparse should make of `text`: the number, or None for a refusal."""
        try:
            value = int(text) if self.integer else float(text)
        except ValueError:
            return None
        if not math.isfinite(value) or value < self.low or (self.low_open and value == self.low):
            return None
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            return None
        return value

    def values(self) -> list[str]:
        """The six kinds, both ends and just beyond them, and for integers two non-integers."""
        huge = "9" * 30 if self.integer else "1e300"
        texts = [huge if text is None else text for text in KINDS.values()]
        ends = [self.low, self.high] if self.high is not None else [self.low]
        if self.integer:
            texts += [str(int(self.low) - 1), "1.5", "1e3"]
            texts += [str(int(end)) for end in ends]
            texts += [str(int(self.high) + 1)] if self.high is not None else []
        else:
            texts += [f"{end:g}" for end in ends]
            texts += [f"{self.low - 1e-9:.10g}", f"{self.high * (1 + 1e-9):.12g}"]
        return list(dict.fromkeys(texts))


CASES = [
    (command, option, value, allowed)
    for command, options in NUMERIC.items()
    for option, allowed in options.items()
    for value in Range.parse(allowed).values()
]
REFUSED = [case for case in CASES if Range.parse(case[3]).value(case[2]) is None]
ACCEPTED = [case for case in CASES if case not in REFUSED]


def process_cases() -> list[tuple[str, str, str, str]]:
    """One refused value per option for a real `charrnn` process, the kinds taken in turn so
    that each kind meets several options: the rest is checked through the parser itself."""
    chosen = []
    for i, (command, option) in enumerate(dict.fromkeys(c[:2] for c in REFUSED)):
        refused = [c for c in REFUSED if c[:2] == (command, option)]
        chosen.append(refused[i % len(refused)])
    return chosen


PROCESS_CASES = process_cases()


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
    """The process cases and every `charrnn CMD --help`, run a few processes at a time in an
    empty directory: (results by case, help texts by command, that directory)."""
    cwd = tmp_path_factory.mktemp("options")

    def bad(case) -> subprocess.CompletedProcess:
        command, option, value, _ = case
        return charrnn(command, *POSITIONAL[command], option, value, cwd=cwd)

    with ThreadPoolExecutor(max_workers=4) as pool:
        helps = list(pool.map(lambda c: charrnn(c, "--help", cwd=cwd), NUMERIC))
        outcomes = list(pool.map(bad, PROCESS_CASES))
    for proc in helps:
        assert proc.returncode == 0, proc.stderr
    help_texts = {c: proc.stdout for c, proc in zip(NUMERIC, helps, strict=True)}
    return dict(zip(PROCESS_CASES, outcomes, strict=True)), help_texts, cwd


def test_the_values_cover_every_kind_inside_and_outside_ranges():
    """Every option meets all six kinds; zero, a huge number and a bound are accepted where
    the range holds them, so the refusals above are not a parser that refuses everything."""
    for options in NUMERIC.values():
        for option, allowed in options.items():
            values = Range.parse(allowed).values()
            assert {"0", "-1", "nan", "inf", "fast"} <= set(values), option
    accepted = {(c, o, v) for c, o, v, _ in ACCEPTED}
    assert {("train", "--dropout", "0"), ("train", "--clip", "0"), ("train", "--warmup", "0")} <= (
        accepted
    )
    assert ("sample", "--top-k", "9" * 30) in accepted and ("repl", "--top-p", "1") in accepted
    assert ("train", "--lr", "10") in accepted and ("train", "--cooldown", "1") in accepted
    assert {k for k in KINDS.values() if k} - {v for _, _, v, _ in REFUSED} == set()


@pytest.mark.parametrize(("command", "option", "value", "allowed"), REFUSED)
def test_out_of_range_value_is_refused_by_the_parser(capsys, command, option, value, allowed):
    """The parser `charrnn` runs refuses the value: exit 2, one line naming the option, the
    range and the value."""
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args([command, *POSITIONAL[command], option, value])
    out, err = capsys.readouterr()
    assert stopped.value.code == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"charrnn: error: argument {option}: "), err
    assert allowed in lines[0] and repr(value) in lines[0], lines[0]


@pytest.mark.parametrize(("command", "option", "value", "allowed"), ACCEPTED)
def test_in_range_value_is_accepted(command, option, value, allowed):
    """A value inside the range (0 for --dropout, the bounds themselves) is taken as given."""
    args = build_parser().parse_args([command, *POSITIONAL[command], option, value])
    parsed = getattr(args, option.removeprefix("--").replace("-", "_"))
    assert parsed == Range.parse(allowed).value(value) and type(parsed) is (
        int if Range.parse(allowed).integer else float
    )


@pytest.mark.parametrize(("command", "option", "value", "allowed"), PROCESS_CASES)
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
