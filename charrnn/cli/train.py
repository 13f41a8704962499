"""`charrnn train`: its options (made from TrainConfig's definitions) beside its handler, the
signals that save and stop, and the closing table."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import shlex
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from charrnn.cli.common import LN2, option_type, silence_stdout
from charrnn.config import (
    DEFAULT_MINUTES,
    FINE_TUNE_LR,
    LONG_BUDGET,
    TrainConfig,
    changed_on_resume,
    choose_model,
)
from charrnn.errors import CharRNNError, ConfigError, CorpusError
from charrnn.observe import StopRequest

if TYPE_CHECKING:
    from rich.console import Console

    from charrnn import corpus, training


def add_commands(commands) -> None:
    p = commands.add_parser(
        "train", help="train a model on text files and folders, or a built-in corpus"
    )
    p.add_argument(
        "file",
        nargs="*",
        metavar="FILE",
        help="UTF-8 text files and directories (walked recursively, hidden names and files that "
        "are not text skipped), joined as one corpus; or one http(s) URL downloaded once into "
        "the cache (default: the python-docs corpus)",
    )
    p.add_argument(
        "--corpus", metavar="NAME", help="built-in or downloadable corpus (see `charrnn corpora`)"
    )
    p.add_argument("--encoding", default="utf-8", help="text encoding of the files (default utf-8)")
    p.add_argument("--out", metavar="DIR", type=Path, help="run directory (default runs/<time>)")
    p.add_argument("--resume", metavar="DIR", type=Path, help="continue the run in DIR")
    p.add_argument(
        "--init-from",
        metavar="RUN",
        help="start from RUN's weights (its best checkpoint, or any .npz): fine-tuning; "
        "the vocabularies are merged, the cell, layers and hidden size are RUN's, "
        f"--lr defaults to {FINE_TUNE_LR:g}",
    )
    add_train_options(p)
    p.set_defaults(func=cmd_train)


def add_train_options(p: argparse.ArgumentParser) -> None:
    """One option per TrainConfig setting meant for the command line, from its definition."""
    defaults = TrainConfig()
    budget = p.add_mutually_exclusive_group()
    for name, option in TrainConfig.options().items():
        if not option.cli:
            continue
        default = getattr(defaults, name)
        shown = "" if default is None else " " + budget_default(defaults, name)
        metavar = "{" + ",".join(option.choices) + "}" if option.choices else None
        (budget if name in ("steps", "minutes") else p).add_argument(
            "--" + name.replace("_", "-"),
            type=option_type(option),
            metavar=metavar,
            help=option.help + shown,
        )


def budget_default(defaults: TrainConfig, name: str) -> str:
    """An option's default for help, with the 2-layer LSTM's when the budget picks that."""
    long = LONG_BUDGET.get(name)
    if long is None:
        return f"({getattr(defaults, name)})"
    return f"({getattr(defaults, name)}; {long} when the budget picks the LSTM)"


class StopFlag(StopRequest):
    """SIGINT, SIGTERM and SIGHUP (the terminal went away) ask the trainer to save and stop, and
    so does a log that can no longer be written; a second SIGINT interrupts at once."""

    def __init__(self) -> None:
        super().__init__()
        self.signum: int | None = None  # the signal that asked, if one did

    def install(self) -> None:
        def handler(signum, frame):
            self.requested = True
            self.signum = self.signum or signum
            signal.signal(signal.SIGINT, signal.default_int_handler)

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, handler)


def load_text(
    out: Console,
    files: list[str] | None = None,
    name: str | None = None,
    encoding: str = "utf-8",
    source: corpus.Source | None = None,
) -> tuple[str | corpus.TextFile | corpus.TextFiles, dict]:
    """The corpus of FILE... or --corpus NAME (or a recorded `source`), with a download bar."""
    from charrnn import corpus
    from charrnn.progress import DownloadProgress

    bar = DownloadProgress(out)
    try:
        if source is not None:
            return source.load(bar), source.to_json()
        return corpus.load_corpus(files or None, name, encoding, progress=bar)
    finally:
        bar.stop()


def cmd_train(args: argparse.Namespace) -> int:
    if args.resume is not None and args.out is not None:
        raise ConfigError("--resume continues a run in place; leave out --out")
    if args.resume is not None and args.init_from is not None:
        raise ConfigError(
            "--init-from starts a new run; a resumed run goes on from its own weights"
        )
    import numpy as np

    from charrnn import corpus, rundir, training
    from charrnn.progress import RichObserver, console

    out = console()
    given = {
        k: getattr(args, k) for k in TrainConfig.options() if getattr(args, k, None) is not None
    }
    base = choice = None
    if args.resume is not None:
        config, source = training.read_run_config(args.resume)
        fixed = changed_on_resume(dataclasses.replace(config, **given), dataclasses.asdict(config))
        if fixed:
            names = ", ".join("--" + k.replace("_", "-") for k in fixed)
            raise ConfigError(f"{names} cannot change when resuming a run")
        if "steps" in given or "minutes" in given:
            config.steps, config.minutes = given.get("steps"), given.get("minutes")
        for k in given.keys() - {"steps", "minutes"}:
            setattr(config, k, given[k])
        if not args.file and args.corpus is None:
            try:
                recorded = corpus.Source.from_json(source)
            except CorpusError as exc:
                raise ConfigError(f"{args.resume}: {exc}; give FILE") from None
            text, source = load_text(out, source=recorded)
        else:
            text, source = load_text(out, args.file, args.corpus, args.encoding)
        run_dir = args.resume
    else:
        if "steps" not in given and "minutes" not in given:  # given holds only options set
            given["minutes"] = DEFAULT_MINUTES
        if args.init_from is not None:
            base = training.load_base(args.init_from)
        choice = choose_model(given, base)
        config = choice.config
        config.check()
        text, source = load_text(out, args.file, args.corpus, args.encoding)
        run_dir = args.out if args.out is not None else rundir.make_run_dir()
    fresh = args.resume is None and args.out is None

    stop = StopFlag()
    stop.install()
    observer = RichObserver(out, config.steps, config.minutes, config.eval_every, stop)
    if fresh:  # runs/latest moves only once the text and options have proved usable
        observer.started = rundir.link_latest
    try:
        with np.errstate(all="ignore"):  # the trainer reports a non-finite loss itself
            result = training.train(
                text,
                config,
                run_dir,
                source,
                resume=args.resume is not None,
                observer=observer,
                stop=stop,
                init_from=args.init_from,
                loaded_base=base,  # loaded once, above, to choose the model
                model_choice=None if choice is None else choice.record(),
            )
    except CharRNNError:
        if fresh and run_dir.is_dir() and not any(run_dir.iterdir()):
            run_dir.rmdir()  # nothing was trained: leave no empty run directory behind
        raise
    finally:
        observer.stop()
    if observer.log_error is not None:
        return _log_failed(observer.log_error, result)
    try:
        return _report(out, result, stop)
    except OSError as exc:
        return _log_failed(exc, result)


def _report(out: Console, result: training.TrainResult, stop: StopFlag) -> int:
    """The closing table and what to do next; the exit code (128 + signal after a stop)."""
    from rich.markup import escape
    from rich.table import Table

    from charrnn import checkpoint
    from charrnn.chart import loss_chart

    run_dir = result.run_dir
    table = Table(title=escape(f"run {result.run_dir}"), title_justify="left")
    for name in (
        "steps",
        "time",
        "chars/s",
        "train nats/char",
        "train bits/char",
        "val nats/char",
        "val bits/char",
        "best val nats/char",
    ):
        table.add_column(name, justify="right")

    def fmt(x: float | None, scale: float = 1.0) -> str:
        return "-" if x is None else f"{x / scale:.4f}"

    best = (
        "-"
        if result.best_val_loss is None
        else f"{result.best_val_loss:.4f} @ {result.best_step:,}"
    )
    table.add_row(
        f"{result.step:,}",
        f"{result.elapsed:.1f}s",
        f"{result.chars_per_sec:,.0f}",
        fmt(result.train_loss),
        fmt(result.train_loss, LN2),
        fmt(result.val_loss),
        fmt(result.val_loss, LN2),
        best,
    )
    out.print(table)
    chart = loss_chart(checkpoint.read_metrics(run_dir)) if out.is_terminal else None
    if chart is not None:
        out.print(chart)
    if result.interrupted or stop.requested:  # also a stop during the final evaluation
        out.print(
            f"stopped at step {result.step:,}; checkpoint saved in {run_dir}. "
            f"Resume with: charrnn train --resume {shlex.quote(str(run_dir))}",
            markup=False,
        )
        return 128 + (stop.signum or signal.SIGINT)
    out.print(f"sample from it with: charrnn sample {shlex.quote(str(run_dir))}", markup=False)
    return 0


def _log_failed(exc: OSError, result: training.TrainResult) -> int:
    """Training stopped (or ended) with its log unwritable: the checkpoint is saved; say so on
    stderr while that still works, exit 2."""
    silence_stdout()
    line = (
        f"charrnn: error: cannot write the log ({exc.strerror or exc}); training stopped at step "
        f"{result.step:,} with a checkpoint in {result.run_dir}"
    )
    if result.interrupted:
        line += f"; resume with: charrnn train --resume {shlex.quote(str(result.run_dir))}"
    with contextlib.suppress(OSError):
        print(line, file=sys.stderr)
    return 2
