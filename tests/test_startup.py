"""`charrnn --help`, `charrnn train --help` and usage errors answer before NumPy (or rich) is
imported: the CLI parses first and imports the heavy modules in the command it runs."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import cli_env


def imported_modules(*args: str) -> tuple[set[str], subprocess.CompletedProcess]:
    """The modules `python -m charrnn ARGS` imported (from -X importtime), and the process."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "charrnn", *args],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=60,
    )
    lines = [line for line in proc.stderr.splitlines() if line.startswith("import time:")]
    names = {line.rsplit("|", 1)[1].strip() for line in lines[1:]}  # the first is a header
    return names, proc


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("--help",), 0),
        (("train", "--help"), 0),
        (("sample", "--help"), 0),
        (("train", "--hidden", "0"), 2),
        (("sample",), 2),
        (("nonsense",), 2),
    ],
)
def test_help_and_usage_errors_do_not_import_numpy(args, code):
    modules, proc = imported_modules(*args)
    assert proc.returncode == code, proc.stderr
    assert "charrnn.cli" in modules  # the listing is real: it holds what did load
    heavy = {m for m in modules if m.split(".")[0] in ("numpy", "rich", "regex")}
    assert heavy == set(), sorted(heavy)[:5]


def test_a_command_that_runs_does_import_numpy(trained_run):
    """The check above can fail: a command that does work loads NumPy."""
    modules, proc = imported_modules("info", str(trained_run.dir))
    assert proc.returncode == 0, proc.stderr
    assert "numpy" in modules
