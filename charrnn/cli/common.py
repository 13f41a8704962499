"""What every command module of the CLI shares: the one-line error parser, range-checked
option types (from the same Option definitions as TrainConfig), a silenced stdout, and the
escaping of a symbol as a TSV field."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import sys
import unicodedata

from charrnn.config import Option

LN2 = math.log(2)


class Parser(argparse.ArgumentParser):
    """argparse with errors as one line, `charrnn: error: ...`, exit code 2."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # `--lr -inf` or `--lr -1e5` is a value out of range, not an unknown option.
        self._negative_number_matcher = re.compile(r"^-(\d|\.\d|inf|nan)", re.IGNORECASE)

    def error(self, message: str) -> None:
        print(f"charrnn: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def option_type(option: Option):
    """An argparse type that parses and range-checks a word as `option` says."""

    def parse(text: str):
        try:
            return option.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def int_range(low: int, high: int | None = None):
    return option_type(Option("", low=low, high=high))


def float_range(low: float, high: float, low_open: bool = False, high_open: bool = False):
    return option_type(Option("", float, low, high, low_open, high_open))


def silence_stdout() -> None:
    """Point stdout at the null device, so that what is still buffered for an output that
    failed (a closed pipe, a full disk) does not fail again at exit."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def tsv_escape(symbol: str) -> str:
    """A symbol as one TSV field: backslash, tab, newline, return and controls escaped."""
    out = []
    for c in symbol:
        if c == "\\":
            out.append("\\\\")
        elif c in "\t\n\r" or unicodedata.category(c)[0] == "C":
            out.append(c.encode("unicode_escape").decode("ascii"))
        else:
            out.append(c)
    return "".join(out)


def tsv_unescape(field: str) -> str:
    """The inverse of tsv_escape."""
    return field.encode("ascii", "backslashreplace").decode("unicode_escape")
