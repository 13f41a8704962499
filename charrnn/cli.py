"""The `charrnn` command: argparse subcommands over the library; all printing lives here."""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import math
import os
import re
import shlex
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from charrnn import __version__, checkpoint, corpus, download, sample, training
from charrnn.cells import CELLS
from charrnn.errors import CharRNNError, ConfigError
from charrnn.model import MAX_LAYERS
from charrnn.optim import OPTIMIZERS
from charrnn.vocab import UNITS

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


def int_range(low: int, high: int | None = None):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            span = f"from {low:,} to {high:,}" if high is not None else f">= {low:,}"
            raise argparse.ArgumentTypeError(f"must be an integer {span}, got {text!r}")
        return value

    return parse


def float_range(low: float, high: float = math.inf, low_open: bool = False, high_open=False):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        ok = math.isfinite(value) and (value > low if low_open else value >= low)
        ok = ok and (value < high if high_open else value <= high)
        if not ok:
            left, right = "(" if low_open else "[", ")" if high_open or high == math.inf else "]"
            span = f"in {left}{low:g}, {'inf' if high == math.inf else f'{high:g}'}{right}"
            raise argparse.ArgumentTypeError(f"must be a number {span}, got {text!r}")
        return value

    return parse


def build_parser() -> Parser:
    parser = Parser(prog="charrnn", description="Character-level RNN text generation in NumPy.")
    parser.add_argument("--version", action="version", version=f"charrnn {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = commands.add_parser("train", help="train a model on a text file or a built-in corpus")
    p.add_argument(
        "file",
        nargs="?",
        help="UTF-8 text file, or an http(s) URL downloaded once into the cache "
        "(default: the python-docs corpus)",
    )
    p.add_argument(
        "--corpus", metavar="NAME", help="built-in or downloadable corpus (see `charrnn corpora`)"
    )
    p.add_argument("--encoding", default="utf-8", help="text encoding of FILE (default utf-8)")
    p.add_argument("--out", metavar="DIR", type=Path, help="run directory (default runs/<time>)")
    p.add_argument("--resume", metavar="DIR", type=Path, help="continue the run in DIR")
    d = training.TrainConfig()
    p.add_argument(
        "--hidden", type=int_range(1, checkpoint.MAX_HIDDEN), help=f"hidden units ({d.hidden})"
    )
    p.add_argument("--cell", choices=list(CELLS), help=f"recurrent cell ({d.cell})")
    p.add_argument(
        "--layers", type=int_range(1, MAX_LAYERS), help=f"stacked recurrent layers ({d.layers})"
    )
    p.add_argument(
        "--seq-len", type=int_range(1, 100_000), help=f"BPTT chunk length T ({d.seq_len})"
    )
    p.add_argument("--batch", type=int_range(1, 100_000), help=f"parallel streams B ({d.batch})")
    p.add_argument(
        "--lr", type=float_range(0, 10, low_open=True), help=f"peak learning rate ({d.lr})"
    )
    p.add_argument("--optimizer", choices=list(OPTIMIZERS), help=f"({d.optimizer})")
    p.add_argument(
        "--clip",
        type=float_range(0, 1e6),
        help=f"global gradient-norm bound, 0 for none ({d.clip})",
    )
    p.add_argument(
        "--dropout",
        type=float_range(0, 1, high_open=True),
        help=f"share of each layer's units dropped on their way up ({d.dropout})",
    )
    p.add_argument(
        "--weight-drop",
        type=float_range(0, 1, high_open=True),
        help=f"share of W_hh entries dropped each step, DropConnect ({d.weight_drop})",
    )
    p.add_argument(
        "--schedule",
        choices=list(training.SCHEDULES),
        help=f"learning-rate schedule ({d.schedule})",
    )
    p.add_argument("--warmup", type=int_range(0, 10**9), help=f"warm-up steps ({d.warmup})")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int_range(1, 10**9), help="train until this step")
    budget.add_argument(
        "--minutes",
        type=float_range(0, 10**6, low_open=True),
        help=f"wall-clock budget (default {DEFAULT_MINUTES:g} when no --steps)",
    )
    p.add_argument(
        "--eval-every", type=int_range(1, 10**9), help=f"steps between evaluations ({d.eval_every})"
    )
    p.add_argument(
        "--eval-symbols",
        type=int_range(2),
        help="validation symbols evaluated, the first ones of the split "
        f"(all, up to {training.EVAL_SYMBOLS:,})",
    )
    p.add_argument(
        "--checkpoint-every",
        type=int_range(1, 10**9),
        help="steps between checkpoints (eval-every)",
    )
    p.add_argument("--seed", type=int_range(0, 2**32 - 1), help=f"random seed ({d.seed})")
    p.add_argument(
        "--val-fraction",
        type=float_range(0, 1, high_open=True),
        help=f"share of text held out ({d.val_fraction})",
    )
    p.add_argument("--unit", choices=list(UNITS), help=f"symbol unit ({d.unit})")
    p.add_argument(
        "--sample-length",
        type=int_range(0, 10**6),
        help=f"symbols sampled at each evaluation ({d.sample_length})",
    )
    p.set_defaults(func=cmd_train)

    def sampling_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("run", type=Path, help="run directory or .npz checkpoint")
        p.add_argument(
            "--length", type=int_range(0, 10**8), default=500, help="symbols to generate (500)"
        )
        p.add_argument(
            "--temperature", type=float_range(0, 100), default=0.8, help="0 is greedy (0.8)"
        )
        p.add_argument("--top-k", type=int_range(1), help="sample among the k likeliest symbols")
        p.add_argument(
            "--top-p",
            type=float_range(0, 1, low_open=True),
            help="nucleus: the likeliest symbols holding mass p",
        )
        p.add_argument(
            "--seed", type=int_range(0, 2**63 - 1), help="random seed (fresh each run when absent)"
        )
        p.add_argument(
            "--checkpoint", choices=["best", "latest"], default="best", help="which weights (best)"
        )

    p = commands.add_parser("sample", help="generate text from a trained run, streamed to stdout")
    sampling_options(p)
    p.add_argument("--prime", default="", help="text to continue")
    p.add_argument("--num", type=int_range(1, 100_000), default=1, help="independent samples")
    p.set_defaults(func=cmd_sample)

    p = commands.add_parser("repl", help="interactive generation: type text, the model goes on")
    sampling_options(p)
    p.set_defaults(func=cmd_repl, length=300)

    p = commands.add_parser("eval", help="nats/char and bits/char of a run on a text file")
    p.add_argument("run", type=Path)
    p.add_argument("file", type=Path)
    p.add_argument("--encoding", default="utf-8")
    p.add_argument("--checkpoint", choices=["best", "latest"], default="best")
    p.add_argument(
        "--streams",
        type=int_range(1, 100_000),
        default=64,
        help="parallel streams, each from a zero state (64); 1 reads the text as `show` does",
    )
    p.set_defaults(func=cmd_eval)

    p = commands.add_parser("info", help="a run's configuration and metrics")
    p.add_argument("run", type=Path)
    p.set_defaults(func=cmd_info)

    p = commands.add_parser("corpora", help="list the built-in and downloadable corpora")
    p.set_defaults(func=cmd_corpora)
    actions = p.add_subparsers(dest="action", parser_class=Parser)
    fetch = actions.add_parser("fetch", help="download a corpus into the cache and verify it")
    fetch.add_argument("name", metavar="NAME", help="a corpus of `charrnn corpora`, or a URL")
    fetch.set_defaults(func=cmd_fetch)
    return parser


DEFAULT_MINUTES = 3.0
RESUMABLE = {"steps", "minutes", "eval_every", "eval_symbols", "checkpoint_every", "sample_length"}


class PipeConsole(Console):
    """rich's Console, except that a closed pipe raises BrokenPipeError instead of exiting
    with status 1: training saves its checkpoint before it stops."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))


def console(stderr: bool = False) -> Console:
    """Rich on a terminal (NO_COLOR respected by rich); unwrapped plain lines elsewhere."""
    out = PipeConsole(stderr=stderr, highlight=False)
    if not out.is_terminal:
        out = PipeConsole(stderr=stderr, highlight=False, soft_wrap=True, width=max(out.width, 120))
    return out


# ---- train ------------------------------------------------------------------------------


class StopFlag:
    """SIGINT, SIGTERM and SIGHUP (the terminal went away) ask the trainer to save and stop, and
    so does a log that can no longer be written; a second SIGINT interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self.signum: int | None = None  # the signal that asked, if one did

    def __call__(self) -> bool:
        return self.requested

    def install(self) -> None:
        def handler(signum, frame):
            self.requested = True
            self.signum = self.signum or signum
            signal.signal(signal.SIGINT, signal.default_int_handler)

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, handler)


def _log_guard(method):
    """A write of the log that fails (a closed pipe, a full disk, a terminal gone) asks the
    trainer to save and stop, instead of raising out of the training loop; nothing more is
    shown after it."""

    @functools.wraps(method)
    def guarded(self, *args) -> None:
        if self.log_error is None:
            try:
                method(self, *args)
            except OSError as exc:
                self.log_error = exc
                if self.stop_flag is not None:
                    self.stop_flag.requested = True

    return guarded


class RichObserver(training.Observer):
    """Progress bar, evaluation lines and samples on a terminal; plain lines elsewhere."""

    def __init__(
        self,
        out: Console,
        total_steps: int | None,
        minutes: float | None,
        eval_every: int,
        stop: StopFlag | None = None,
    ):
        self.out = out
        self.stop_flag = stop
        self.log_error: OSError | None = None  # the write that failed; nothing is shown after it
        self.total_steps, self.minutes = total_steps, minutes
        self.log_every = max(1, eval_every // 5)
        self.val_symbols = 0  # size of the validation split, from on_start
        self.progress: Progress | None = None
        self.task = None
        self.started: Callable[[Path], None] | None = None  # called with the run directory
        self.encoding: Progress | None = None  # the corpus encoding bar, on a terminal
        self.encoding_task, self.encoding_what, self.encoding_logged = None, None, None

    @_log_guard
    def on_encode(self, what: str, done: int, total: int) -> None:
        if total <= corpus.CHUNK_BYTES:  # one chunk: over before anyone could read a bar
            return
        if self.out.is_terminal:
            if self.encoding is None:
                self.encoding = Progress(
                    TextColumn("{task.description} corpus"),
                    BarColumn(),
                    DownloadColumn(),
                    TransferSpeedColumn(),
                    TimeRemainingColumn(),
                    console=self.out,
                    transient=True,
                )
                self.encoding.start()
            if self.encoding_task is None or self.encoding_what != what:
                self.encoding_task = self.encoding.add_task(what, total=total)
                self.encoding_what = what
            self.encoding.update(self.encoding_task, completed=done)
            if what == "encoding" and done >= total:
                self.encoding.stop()
        else:
            tenth = 10 * done // total
            if (what, tenth) != self.encoding_logged:
                self.encoding_logged = (what, tenth)
                self.out.print(f"{what} corpus: {done / 2**20:,.0f} of {total / 2**20:,.0f} MiB")

    @_log_guard
    def on_start(self, info: dict) -> None:
        if self.encoding is not None:
            self.encoding.stop()
        if self.started is not None:
            self.started(Path(info["run_dir"]))
        c = info["config"]
        self.val_symbols = info["val_symbols"]
        evaluated = info["eval_symbols"]
        self.out.print(
            f"run {info['run_dir']}: {info['train_symbols']:,} training and "
            f"{info['val_symbols']:,} validation symbols"
            + (f" (the first {evaluated:,} evaluated)" if evaluated < info["val_symbols"] else "")
            + f", vocab {info['vocab_size']}, "
            f"{info['params']:,} parameters, {c.cell} {c.layers} x {c.hidden}, batch {c.batch} "
            f"x seq-len "
            f"{c.seq_len}, {c.optimizer} lr {c.lr:g}"
            + (f", resuming at step {info['step']:,}" if info["step"] else ""),
            markup=False,
        )
        if self.out.is_terminal:
            self.progress = Progress(
                TextColumn("step {task.fields[step]:>6,}"),
                BarColumn(),
                TaskProgressColumn(),
                TextColumn("loss {task.fields[loss]:.3f}"),
                TextColumn("{task.fields[bpc]:.3f} bits/char"),
                TextColumn("{task.fields[cps]:>9,.0f} chars/s"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.out,
            )
            total = self.total_steps if self.total_steps else self.minutes * 60
            self.task = self.progress.add_task(
                "train", total=total, step=info["step"], loss=math.nan, bpc=math.nan, cps=0.0
            )
            self.progress.start()

    @_log_guard
    def on_step(self, s: training.StepStats) -> None:
        if self.progress is not None:
            done = s.step if self.total_steps else s.elapsed
            self.progress.update(
                self.task,
                completed=done,
                step=s.step,
                loss=s.loss,
                bpc=s.loss / LN2,
                cps=s.chars_per_sec,
            )
        elif s.step % self.log_every == 0:
            self.out.print(
                f"step {s.step:,}  loss {s.loss:.4f}  {s.loss / LN2:.3f} bits/char  "
                f"{s.chars_per_sec:,.0f} chars/s  lr {s.lr:.2e}  elapsed {s.elapsed:.1f}s"
            )

    @_log_guard
    def on_eval(self, record: dict, text: str) -> None:
        line = f"eval at step {record['step']:,}:"
        if record.get("train_loss") is not None:
            line += f" train {record['train_loss']:.4f} nats/char"
        if "val_loss" in record:
            line += (
                f", validation {record['val_loss']:.4f} nats/char "
                f"({record['val_bpc']:.3f} bits/char)"
            )
            if record["val_symbols"] < self.val_symbols:
                line += f" over its first {record['val_symbols']:,} symbols"
        target = self.progress.console if self.progress else self.out
        target.print(line)
        if text:
            if self.out.is_terminal:
                target.print(
                    Panel(text, title="sample", title_align="left", expand=False), markup=False
                )
            else:
                target.print("sample: " + text.replace("\n", "\n        "), markup=False)

    @_log_guard
    def stop(self) -> None:
        for bar in (self.encoding, self.progress):
            if bar is not None:
                bar.stop()


class DownloadProgress:
    """A download's bar (bytes, speed, ETA) on a terminal; a line each tenth elsewhere."""

    def __init__(self, out: Console) -> None:
        self.out = out
        self.bar: Progress | None = None
        self.task = None
        self.logged: tuple[str, int] | None = None

    def __call__(self, what: str, done: int, total: int | None) -> None:
        if what.startswith("retrying"):
            self.stop()
            self.out.print(what, markup=False)
            return
        if self.out.is_terminal:
            if self.bar is None:
                self.bar = Progress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    DownloadColumn(),
                    TransferSpeedColumn(),
                    TimeRemainingColumn(),
                    console=self.out,
                )
                self.bar.start()
                self.task = self.bar.add_task(escape(what), total=total)
            self.bar.update(self.task, completed=done, total=total)
        else:
            step = 10 * done // total if total else done >> 23  # tenths, or every 8 MiB
            if (what, step) != self.logged:
                self.logged = (what, step)
                of = f" of {total / 2**20:,.1f}" if total else ""
                self.out.print(f"{what}: {done / 2**20:,.1f}{of} MiB", markup=False)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def load_text(
    out: Console, file: str | None = None, name: str | None = None, encoding: str = "utf-8"
) -> tuple[str | corpus.TextFile, dict]:
    """load_corpus with a download bar, and a word about python-source files left out."""
    bar = DownloadProgress(out)
    try:
        text, source = corpus.load_corpus(file, name, encoding, progress=bar)
    finally:
        bar.stop()
    if source.get("builtin") == "python-source":
        skipped = corpus.python_source()[1]
        if skipped:
            out.print(
                f"python-source: skipped {len(skipped)} file(s) that do not decode: "
                + ", ".join(skipped),
                markup=False,
            )
    return text, source


def make_run_dir() -> Path:
    """A new, empty runs/<timestamp>; `link_latest` points runs/latest at it once it starts."""
    runs = Path("runs")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = runs / stamp
    n = 1
    while run_dir.exists():
        n += 1
        run_dir = runs / f"{stamp}-{n}"
    run_dir.mkdir(parents=True)
    return run_dir


def link_latest(run_dir: Path) -> None:
    """Point runs/latest at run_dir (best effort)."""
    runs = run_dir.parent
    link = runs / "latest"
    tmp = runs / f".latest.{os.getpid()}"
    try:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(run_dir.name)
        os.replace(tmp, link)
    except OSError:
        pass  # no symlinks here: the run directory itself is printed


def cmd_train(args: argparse.Namespace) -> int:
    out = console()
    given = {
        k: getattr(args, k)
        for k in (f.name for f in training.dataclasses.fields(training.TrainConfig))
        if getattr(args, k, None) is not None
    }
    if args.resume is not None:
        if args.out is not None:
            raise ConfigError("--resume continues a run in place; leave out --out")
        config, source = training.read_run_config(args.resume)
        fixed = {k: v for k, v in given.items() if k not in RESUMABLE and getattr(config, k) != v}
        if fixed:
            names = ", ".join("--" + k.replace("_", "-") for k in fixed)
            raise ConfigError(f"{names} cannot change when resuming a run")
        if "steps" in given or "minutes" in given:
            config.steps, config.minutes = given.get("steps"), given.get("minutes")
        for k in RESUMABLE & given.keys() - {"steps", "minutes"}:
            setattr(config, k, given[k])
        if args.file is None and args.corpus is None:
            if "builtin" in source or "download" in source:
                text, source = load_text(out, name=source.get("builtin") or source["download"])
            elif "path" in source or "url" in source:
                text, source = load_text(
                    out,
                    source.get("path") or source["url"],
                    encoding=source.get("encoding", "utf-8"),
                )
            else:
                raise ConfigError(
                    f"{args.resume}: the run does not say what it trained on; give FILE"
                )
        else:
            text, source = load_text(out, args.file, args.corpus, args.encoding)
        run_dir = args.resume
    else:
        config = training.TrainConfig(**given)
        if config.steps is None and config.minutes is None:
            config.minutes = DEFAULT_MINUTES
        config.check()
        text, source = load_text(out, args.file, args.corpus, args.encoding)
        run_dir = args.out if args.out is not None else make_run_dir()
    fresh = args.resume is None and args.out is None

    stop = StopFlag()
    stop.install()
    observer = RichObserver(out, config.steps, config.minutes, config.eval_every, stop)
    if fresh:  # runs/latest moves only once the text and options have proved usable
        observer.started = link_latest
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


def silence_stdout() -> None:
    """Point stdout at the null device, so that what is still buffered for an output that
    failed (a closed pipe, a full disk) does not fail again at exit."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


# ---- sample, repl, eval, info, corpora --------------------------------------------------------


def cmd_sample(args: argparse.Namespace) -> int:
    sample.check_sampling(args.temperature, args.top_k, args.top_p)
    run = checkpoint.load(args.run, args.checkpoint)
    options = dict(
        prime=args.prime,
        length=args.length,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
    )
    write = sys.stdout.write
    if args.num == 1:
        pieces = sample.generate(run.model, run.vocab, **options)  # primes (and checks) first
        first = next(pieces, "")
        write(args.prime + first)
        sys.stdout.flush()
        for piece in pieces:
            write(piece)
            sys.stdout.flush()
        write("\n")
    else:
        texts = sample.generate_many(run.model, run.vocab, args.num, **options)
        for i, text in enumerate(texts):
            if i:
                write("\n" + "-" * 40 + "\n")
            write(args.prime + text)
        write("\n")
    sys.stdout.flush()
    return 0


def cmd_repl(args: argparse.Namespace) -> int:
    from charrnn.repl import Repl

    sample.check_sampling(args.temperature, args.top_k, args.top_p)
    run = checkpoint.load(args.run, args.checkpoint)
    Repl(
        run,
        console(),
        temperature=args.temperature,
        length=args.length,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
    ).loop()
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    run = checkpoint.load(args.run, args.checkpoint)
    source = corpus.TextFile(args.file, args.encoding)
    nats, predictions = training.evaluate_file(run.model, run.vocab, source, streams=args.streams)
    console().print(
        f"{args.file}: {nats:.4f} nats/char, {nats / LN2:.4f} bits/char "
        f"over {predictions:,} predictions",
        markup=False,
    )
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    run = checkpoint.load(args.run, "latest")
    meta = run.config
    out = console()
    table = Table(title=f"run {args.run}", title_justify="left", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    m = meta["model"]
    unit = meta["vocab"].get("unit")
    table.add_row(
        "model",
        f"{m['cell']} {m['layers']} x {m['hidden_size']} (layers x hidden), vocab "
        f"{m['vocab_size']} ({unit}), {m['dtype']}",
    )
    table.add_row("parameters", f"{sum(p.size for p in run.model.params.values()):,}")
    table.add_row(
        "corpus", ", ".join(f"{k} {v}" for k, v in meta.get("corpus", {}).items() if k != "sha256")
    )
    for k, v in meta.get("train", {}).items():
        table.add_row(k.replace("_", "-"), str(v))
    table.add_row("step", f"{meta['step']:,}")
    if isinstance(meta.get("elapsed"), (int, float)):
        table.add_row("elapsed", f"{meta['elapsed']:.1f}s")
    metrics = meta.get("metrics") or {}
    for k in ("train_loss", "train_bpc", "val_loss", "val_bpc", "best_val_loss", "best_step"):
        if metrics.get(k) is not None:
            v = metrics[k]
            table.add_row(k.replace("_", " "), f"{v:.4f}" if isinstance(v, float) else str(v))
    out.print(table)
    return 0


def cmd_corpora(args: argparse.Namespace) -> int:
    out = console()
    table = Table(title="built-in corpora", title_justify="left")
    table.add_column("name")
    table.add_column("characters", justify="right")
    table.add_column("what it is")
    for name, (description, load) in sorted(corpus.BUILTIN.items()):
        table.add_row(name, f"{len(load()):,}", description)
    out.print(table)

    table = Table(
        title=escape(f"downloadable corpora (cache {download.cache_dir()})"), title_justify="left"
    )
    table.add_column("name")
    table.add_column("size", justify="right")
    table.add_column("cached")
    table.add_column("sha256")
    table.add_column("licence")
    table.add_column("what it is")
    for name, entry in sorted(download.catalogue().items()):
        table.add_row(
            name,
            "-" if entry.size is None else f"{entry.size / 1e6:.1f} MB",
            "yes" if download.cached_path(entry).is_file() else "no",
            "pinned" if entry.sha256 else "on first use",
            escape(entry.licence),
            escape(entry.description),
        )
    out.print(table)
    out.print("train on one with: charrnn train --corpus NAME", markup=False)
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    out = console()
    if download.is_url(args.name):
        entry = download.url_entry(args.name)
    else:
        entries = download.catalogue()
        if args.name not in entries:
            builtin = " (it is built in: no download needed)" if args.name in corpus.BUILTIN else ""
            raise ConfigError(
                f"no downloadable corpus {args.name!r}{builtin}; "
                f"downloads: {', '.join(sorted(entries))}"
            )
        entry = entries[args.name]
    bar = DownloadProgress(out)
    try:
        path = download.fetch(entry, bar)
    finally:
        bar.stop()
    if not download.is_url(args.name):
        corpus.downloaded_corpus(entry)  # the cleaning rule applies: fail now, not when training
    out.print(f"{args.name}: cached in {path}", markup=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CharRNNError as exc:
        message = " ".join(str(exc).split("\n"))
        print(f"charrnn: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("charrnn: interrupted", file=sys.stderr)
        return 130
    except UnicodeEncodeError as exc:  # stdout cannot show a symbol of the model's text
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (drop what is still buffered)
        print(
            f"charrnn: error: the output encoding {exc.encoding} cannot show "
            f"{exc.object[exc.start : exc.end]!r}; set PYTHONIOENCODING=utf-8",
            file=sys.stderr,
        )
        return 2
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, as other Unix tools do.
        silence_stdout()
        return 0
    except OSError as exc:  # the output cannot be written: a full disk, a terminal gone (EIO)
        silence_stdout()
        where = exc.filename if exc.filename is not None else "the output"
        with contextlib.suppress(OSError):
            print(f"charrnn: error: cannot write {where} ({exc.strerror or exc})", file=sys.stderr)
        return 2


def main_exit() -> None:
    """Console-script entry point."""
    sys.exit(main())
