"""Every training setting is defined once (charrnn.config): `charrnn train`'s options and
`TrainConfig.check` come from that definition, so the command line and Python accept and
refuse the same values with the same words."""

from __future__ import annotations

import dataclasses
import math

import pytest

from charrnn.cli import build_parser
from charrnn.config import RESUMABLE, TrainConfig, changed_on_resume
from charrnn.errors import ConfigError

CLI_SETTINGS = {name: o for name, o in TrainConfig.options().items() if o.cli}
PARSER = build_parser()  # parse_args keeps no state between calls


def words(option) -> list[str]:
    """Values on both sides of each end of the range, the six kinds, and other types."""
    if option.choices:
        return [*option.choices, option.choices[0].upper(), "", "0", "none"]
    texts = ["0", "-1", "1e300", "nan", "inf", "-inf", "fast", "1.5", "7"]
    ends = [e for e in (option.low, option.high) if e is not None]
    if option.kind is int:
        texts += [str(int(e) + d) for e in ends for d in (-1, 0, 1)] + ["9" * 30]
    else:
        texts += [repr(float(e) + d) for e in ends for d in (-1e-6, 0.0, 1e-6)]
    return list(dict.fromkeys(texts))


def python_value(option, text: str):
    """What a Python caller would pass for the word: a number where it reads as one."""
    if option.choices:
        return text
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


CASES = [(name, text) for name, option in CLI_SETTINGS.items() for text in words(option)]


def test_every_cli_option_is_a_setting_and_every_setting_is_checked():
    parser = build_parser()
    train = next(a for a in parser._subparsers._actions if a.dest == "command").choices["train"]
    flags = {s for a in train._actions for s in a.option_strings}
    assert {"--" + name.replace("_", "-") for name in CLI_SETTINGS} <= flags
    python_only = set(TrainConfig.options()) - set(CLI_SETTINGS)
    assert python_only == {"min_lr_ratio", "sample_temperature"}
    for name in python_only:  # still range-checked from Python
        with pytest.raises(ConfigError, match=f"^{name} must be"):
            TrainConfig(**{name: -1.0}).check()


@pytest.mark.parametrize(("name", "text"), CASES)
def test_the_cli_and_python_agree(capsys, name, text):
    option = CLI_SETTINGS[name]
    flag = "--" + name.replace("_", "-")
    try:
        args = PARSER.parse_args(["train", flag, text])
        cli_value, cli_error = getattr(args, name), None
    except SystemExit as stopped:
        assert stopped.code == 2
        cli_value = None
        cli_error = capsys.readouterr().err.strip()
    value = python_value(option, text)
    try:
        TrainConfig(**{name: value}).check()
        python_error = None
    except ConfigError as exc:
        python_error = str(exc)
    assert (cli_error is None) == (python_error is None), (cli_error, python_error)
    if cli_error is None:
        assert cli_value == value or (math.isnan(value) if isinstance(value, float) else False)
        return
    refusal = f"must be {option.allowed()}, got "
    assert cli_error == f"charrnn: error: argument {flag}: {refusal}{text!r}"
    assert python_error == f"{name} {refusal}{value!r}"


def test_both_sides_refuse_what_only_one_refused_before():
    """Before one definition, the CLI capped --lr at 10 and --clip at 1e6 while Python took
    any positive value."""
    for kwargs in ({"lr": 50.0}, {"clip": 1e9}, {"minutes": math.inf}):
        with pytest.raises(ConfigError, match="must be a number in"):
            TrainConfig(**kwargs).check()


def test_the_resume_rule_lives_once():
    saved = dataclasses.asdict(TrainConfig())
    for name in TrainConfig.options():
        current = getattr(TrainConfig(), name)
        other = {int: 3, float: 0.5, str: "x"}.get(type(current), 7)
        changed = changed_on_resume(TrainConfig(**{name: other}), saved)
        assert changed == ([] if name in RESUMABLE else [name]), name
    assert changed_on_resume(TrainConfig(), {}) == []  # a checkpoint older than a setting
