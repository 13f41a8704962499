"""The `charrnn` command: argparse subcommands over the library; all printing lives here."""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import math
import os
import re
import shlex
import signal
import sys
import time
import unicodedata
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from charrnn import checkpoint, colours, corpus, download, sample, training
from charrnn import html as html_page
from charrnn.chart import loss_chart
from charrnn.config import (
    DEFAULT_MINUTES,
    FINE_TUNE_LR,
    LONG_BUDGET,
    LONG_BUDGET_MINUTES,
    Option,
    TrainConfig,
    changed_on_resume,
)
from charrnn.errors import CharRNNError, ConfigError, CorpusError
from charrnn.lineage import lineage_line
from charrnn.observe import StopRequest
from charrnn.progress import DownloadProgress, RichObserver, console
from charrnn.version import __version__

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


def build_parser() -> Parser:
    parser = Parser(prog="charrnn", description="Character-level RNN text generation in NumPy.")
    parser.add_argument("--version", action="version", version=f"charrnn {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

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

    def text_options(p: argparse.ArgumentParser, max_chars: int) -> None:
        p.add_argument("--encoding", default="utf-8", help="text encoding of FILE (utf-8)")
        p.add_argument(
            "--max-chars",
            type=int_range(2, 10**7),
            default=max_chars,
            help=f"read at most this many characters ({max_chars:,})",
        )
        p.add_argument("--checkpoint", choices=["best", "latest"], default="best")

    p = commands.add_parser("show", help="a text coloured by the model's surprisal or a unit")
    p.add_argument("run", type=Path)
    p.add_argument("file", nargs="?", type=Path, help="UTF-8 text file (or give --text)")
    p.add_argument("--text", help="the text itself")
    text_options(p, 2000)
    p.add_argument("--unit", metavar="L:N", help="colour by unit N (from 0) of layer L (from 1)")
    p.add_argument("--cell-state", action="store_true", help="with --unit: an LSTM's c, not h")
    p.add_argument(
        "--format",
        choices=["color", "tsv"],
        help="colours, or one row per symbol (default: color on a terminal without NO_COLOR)",
    )
    p.add_argument("--html", metavar="OUT", type=Path, help="write the heat-map page to OUT")
    p.set_defaults(func=cmd_show)

    p = commands.add_parser("neurons", help="units that track quotes, brackets, line length, ...")
    p.add_argument("run", type=Path)
    p.add_argument("file", type=Path)
    p.add_argument("--top", type=int_range(1, 1000), default=10, help="units per feature (10)")
    text_options(p, 20_000)
    p.set_defaults(func=cmd_neurons)

    p = commands.add_parser("report", help="one self-contained HTML page about a run")
    p.add_argument("run", type=Path)
    p.add_argument("-o", "--output", type=Path, default=Path("report.html"), help="(report.html)")
    p.add_argument("--text", metavar="FILE", type=Path, help="heat-map text (validation tail)")
    text_options(p, 3000)
    p.set_defaults(func=cmd_report)

    p = commands.add_parser("corpora", help="list the built-in and downloadable corpora")
    p.set_defaults(func=cmd_corpora)
    actions = p.add_subparsers(dest="action", parser_class=Parser)
    fetch = actions.add_parser("fetch", help="download a corpus into the cache and verify it")
    fetch.add_argument("name", metavar="NAME", help="a corpus of `charrnn corpora`, or a URL")
    fetch.set_defaults(func=cmd_fetch)
    return parser


def budget_default(defaults: TrainConfig, name: str) -> str:
    """An option's default for help, with the one a long --minutes budget picks instead."""
    long = LONG_BUDGET.get(name)
    if long is None:
        return f"({getattr(defaults, name)})"
    return f"({getattr(defaults, name)}; {long} with --minutes {LONG_BUDGET_MINUTES:g}+)"


# ---- train ------------------------------------------------------------------------------


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
    files: str | list[str] | None = None,
    name: str | None = None,
    encoding: str = "utf-8",
) -> tuple[str | corpus.TextFile | corpus.TextFiles, dict]:
    """load_corpus with a download bar."""
    bar = DownloadProgress(out)
    try:
        return corpus.load_corpus(files or None, name, encoding, progress=bar)
    finally:
        bar.stop()


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
        k: getattr(args, k) for k in TrainConfig.options() if getattr(args, k, None) is not None
    }
    base = None
    if args.resume is not None:
        if args.out is not None:
            raise ConfigError("--resume continues a run in place; leave out --out")
        if args.init_from is not None:
            raise ConfigError(
                "--init-from starts a new run; a resumed run goes on from its own weights"
            )
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
            if "builtin" in source or "download" in source:
                text, source = load_text(out, name=source.get("builtin") or source["download"])
            elif "path" in source or "url" in source or "paths" in source:
                text, source = load_text(
                    out,
                    source.get("paths") or source.get("path") or source["url"],
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
        if "steps" not in given and "minutes" not in given:  # given holds only options set
            given["minutes"] = DEFAULT_MINUTES
        if args.init_from is not None:
            base = training.load_base(args.init_from)
        config = TrainConfig.for_budget(base, **given)
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
                init_from=args.init_from,
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
    chart = loss_chart(read_metrics(run_dir, {})) if out.is_terminal else None
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
    lineage = lineage_line(meta)
    if lineage is not None:
        table.add_row("started from", escape(lineage))
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
    if out.is_terminal:
        chart = loss_chart(read_metrics(args.run, meta))
        if chart is not None:
            out.print(chart)
    return 0


# ---- show, neurons, report ----------------------------------------------------------------


def read_head(path: Path, encoding: str, max_chars: int) -> str:
    """At most the first max_chars characters of a text file (strict decoding, CorpusError)."""
    pieces, size = [], 0
    for piece, _ in corpus.text_pieces(Path(path), encoding):
        pieces.append(piece)
        size += len(piece)
        if size >= max_chars:
            break
    text = "".join(pieces)[:max_chars]
    if len(text) < 2:
        raise CorpusError(f"{path}: needs at least 2 characters")
    return text


def parse_unit(spec: str, run: checkpoint.Run, cell_state: bool) -> tuple[int, int]:
    """ "L:N" as 0-based (layer, unit), checked against the model."""
    m = re.fullmatch(r"(\d+):(\d+)", spec.strip())
    if m is None:
        raise ConfigError(f"--unit must be LAYER:UNIT such as 1:42, got {spec!r}")
    layer, unit = int(m[1]), int(m[2])
    model = run.model
    if not 1 <= layer <= model.layers:
        raise ConfigError(f"--unit layer must be from 1 to {model.layers}, got {layer}")
    if not 0 <= unit < model.hidden_size:
        raise ConfigError(f"--unit unit must be from 0 to {model.hidden_size - 1}, got {unit}")
    if cell_state and model.cell != "lstm":
        raise ConfigError(f"--cell-state needs an LSTM; this model's cell is {model.cell}")
    return layer - 1, unit


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


def unit_values(trace, layer: int, unit: int, cell_state: bool) -> np.ndarray:
    return (trace.cell if cell_state else trace.hidden)[layer][:, unit]


def coloured(trace, values=None, one_line: bool = False) -> Text:
    """The text with each symbol's background by surprisal, or by `values` (diverging)."""
    text = Text()
    for t, symbol in enumerate(trace.symbols):
        shown = colours.readable(symbol) if one_line and "\n" in symbol else symbol
        if values is not None:
            rgb = colours.diverging_rgb(values[t]) if t < len(values) else None
        else:
            rgb = colours.surprisal_rgb(trace.bits[t - 1]) if t else None
        if "\n" in shown or rgb is None:
            text.append(shown)
        else:
            text.append(shown, style=f"#000000 on {colours.hex_colour(rgb)}")
    return text


def cmd_show(args: argparse.Namespace) -> int:
    from charrnn.inspect import trace as run_trace

    if (args.file is None) == (args.text is None):
        raise ConfigError("give a FILE or --text, one of them")
    run = checkpoint.load(args.run, args.checkpoint)
    where = None
    if args.unit is not None:
        where = parse_unit(args.unit, run, args.cell_state)
    elif args.cell_state:
        raise ConfigError("--cell-state goes with --unit L:N")
    if args.text is not None:
        text = args.text[: args.max_chars]
        if len(text) < 2:
            raise CorpusError("--text needs at least 2 characters")
    else:
        text = read_head(args.file, args.encoding, args.max_chars)
    tr = run_trace(run.model, run.vocab, text)
    values = None if where is None else unit_values(tr, *where, args.cell_state)
    out = console()
    if args.html is not None:
        title = f"charrnn show {args.run}" + (f" unit {args.unit}" if where else "")
        page = html_page.heatmap_page(tr, title, values)
        args.html.write_text(page, encoding="utf-8")
        out.print(f"wrote {args.html}", markup=False)
        return 0
    fmt = args.format or ("color" if out.is_terminal and not out.no_color else "tsv")
    if fmt == "tsv":
        write = sys.stdout.write
        header = ["position", "symbol", "probability", "bits", "entropy"]
        for k in range(tr.top_ids.shape[1]):
            header += [f"top{k + 1}", f"p{k + 1}"]
        if where:
            header.append(f"unit {args.unit}" + (" c" if args.cell_state else ""))
        write("\t".join(header) + "\n")
        for t in range(len(tr.bits)):
            row = [str(t + 1), tsv_escape(tr.symbols[t + 1]), f"{tr.prob[t]:.6g}"]
            row += [f"{tr.bits[t]:.4f}", f"{tr.entropy[t]:.4f}"]
            for symbol, p in tr.top(t):
                row += [tsv_escape(symbol), f"{p:.6g}"]
            if where:
                row.append(f"{values[t + 1]:.4f}" if t + 1 < len(values) else "")
            write("\t".join(row) + "\n")
        return 0
    if where is None:
        legend, steps = Text("surprisal, bits: "), colours.surprisal_legend()
    else:
        legend = Text(f"unit {args.unit}{' c' if args.cell_state else ''}: ")
        steps = colours.diverging_legend()
    for label, rgb in steps:
        legend.append(f" {label} ", style=f"#000000 on {colours.hex_colour(rgb)}")
    out.print(legend)
    out.print(coloured(tr, values))
    out.print(f"{tr.bits_per_char:.4f} bits/char over {len(tr.bits):,} predictions", markup=False)
    table = Table(title="most surprising", title_justify="left")
    for name in html_page.SURPRISE_COLUMNS:
        table.add_column(name, justify="right" if name in ("position", "p", "bits") else "left")
    for row in html_page.surprise_rows(tr, 10):
        table.add_row(*map(escape, row))
    out.print(table)
    return 0


def snippet(tr, values: np.ndarray, feature: np.ndarray, width: int = 100):
    """A one-line stretch of the text around the first change of the feature, coloured by a
    unit's values."""
    changes = np.flatnonzero(np.diff(feature))
    start = max(0, int(changes[0]) - 10) if len(changes) else 0
    piece = copy.copy(tr)
    piece.symbols = tr.symbols[start : start + width]
    return coloured(piece, values[start : start + width], one_line=True)


def cmd_neurons(args: argparse.Namespace) -> int:
    from charrnn import neurons
    from charrnn.inspect import trace as run_trace

    run = checkpoint.load(args.run, args.checkpoint)
    text = read_head(args.file, args.encoding, args.max_chars)
    tr = run_trace(run.model, run.vocab, text)
    ranked = neurons.rank_units(tr, args.top)
    feats = neurons.features(tr.symbols[: len(tr.bits)])
    out = console()
    colour = out.is_terminal and not out.no_color
    out.print(
        f"{run.model.cell} {run.model.layers} x {run.model.hidden_size} over "
        f"{len(tr.bits) + 1:,} symbols of {args.file}; units as LAYER:UNIT (c: an LSTM's cell)",
        markup=False,
    )
    table = Table(title="units most correlated with each feature", title_justify="left")
    for name in ("feature", "unit", "correlation"):
        table.add_column(name, justify="right" if name == "correlation" else "left")
    for feature, matches in ranked.items():
        for k, m in enumerate(matches):
            unit = f"{m.layer + 1}:{m.unit}" + (" c" if m.cell else "")
            table.add_row(feature if k == 0 else "", unit, f"{m.correlation:+.3f}")
        table.add_section()
    out.print(table)
    if colour:
        for feature, matches in ranked.items():
            best = matches[0]
            values = unit_values(tr, best.layer, best.unit, best.cell)
            out.print(f"{feature}: unit {best.layer + 1}:{best.unit}", markup=False)
            out.print(snippet(tr, values, feats[feature]))
    return 0


def read_metrics(run_path: Path, meta: dict) -> list[dict]:
    """The evaluation records of a run directory, or of the one holding a checkpoint."""
    return checkpoint.read_metrics(run_path if run_path.is_dir() else run_path.parent, meta)


def validation_tail(meta: dict, max_chars: int) -> str:
    """The last max_chars characters of the corpus the run trained on, from a line start
    (inside the validation split when that is longer); CharRNNError when it is not at hand."""
    source = meta.get("corpus") or {}
    builtin = corpus.builtin_corpus(source["builtin"]) if "builtin" in source else None
    if isinstance(builtin, str):
        text = builtin[-4 * max_chars :]
    else:
        if builtin is not None or "paths" in source:
            files = builtin or corpus.TextFiles(source["paths"], source.get("encoding", "utf-8"))
            try:
                path = corpus.walk(files)[-1].path
            except (CharRNNError, IndexError):
                raise ConfigError(
                    "the files the run trained on are gone; give --text FILE"
                ) from None
        elif "path" in source:
            path = Path(source["path"])
        elif "download" in source and source["download"] in download.catalogue():
            path = download.cached_path(download.catalogue()[source["download"]])
        elif "url" in source:
            path = download.cached_path(download.url_entry(source["url"]))
        else:
            raise ConfigError("the run does not say what it trained on; give --text FILE")
        try:
            with open(path, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 8 * max_chars))
                text = f.read().decode(source.get("encoding", "utf-8"), errors="ignore")
        except (OSError, LookupError) as exc:
            raise CorpusError(f"{path}: cannot read ({exc}); give --text FILE") from None
    text = text[-max_chars:]
    cut = text.find("\n")
    return text[cut + 1 :] if 0 <= cut < len(text) // 2 else text


def cmd_report(args: argparse.Namespace) -> int:
    from charrnn.inspect import trace as run_trace

    run = checkpoint.load(args.run, args.checkpoint)
    out = console()
    records = read_metrics(args.run, run.config)
    if args.text is not None:
        text = read_head(args.text, args.encoding, args.max_chars)
        tr = run_trace(run.model, run.vocab, text)
    else:
        try:
            tr = run_trace(run.model, run.vocab, validation_tail(run.config, args.max_chars))
        except CharRNNError as exc:
            out.print(f"no heat-map: {exc}", markup=False)
            tr = None
    page = html_page.report_page(f"charrnn run {args.run}", run.config, records, tr)
    try:
        args.output.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {args.output} ({exc.strerror or exc})") from None
    out.print(f"wrote {args.output}", markup=False)
    return 0


def cmd_corpora(args: argparse.Namespace) -> int:
    out = console()
    table = Table(title="built-in corpora", title_justify="left")
    table.add_column("name")
    table.add_column("characters", justify="right")
    table.add_column("what it is")
    for name, (description, load) in sorted(corpus.BUILTIN.items()):
        text = load()
        if isinstance(text, str):
            size = f"{len(text):,}"
        else:  # files streamed when training: their bytes, about as many characters
            size = f"~{sum(e.path.stat().st_size for e in corpus.walk(text)):,}"
        table.add_row(name, size, description)
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
