"""Looking at a run: `eval`, `info`, `show`, `neurons` and `report`."""

from __future__ import annotations

import argparse
import copy
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from charrnn.cli.common import LN2, int_range, tsv_escape
from charrnn.errors import CharRNNError, ConfigError, CorpusError

if TYPE_CHECKING:
    import numpy as np
    from rich.text import Text

    from charrnn import checkpoint


def add_commands(commands) -> None:
    p = commands.add_parser("eval", help="nats/char and bits/char of a run on a text file")
    p.add_argument("run", type=Path)
    p.add_argument("file", type=Path)
    p.add_argument("--encoding", default="utf-8")
    p.add_argument("--checkpoint", choices=["best", "latest"], default="best")
    p.add_argument(
        "--streams",
        type=int_range(1, 100_000),
        help="parallel streams, each from a zero state (default: up to 64, each of at least "
        "1,000 symbols); 1 reads the text as `show` does",
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


def cmd_eval(args: argparse.Namespace) -> int:
    from charrnn import checkpoint, corpus, training
    from charrnn.progress import console

    run = checkpoint.load(args.run, args.checkpoint)
    source = corpus.TextFile(args.file, args.encoding)
    nats, predictions = training.evaluate_file(run.model, run.vocab, source, streams=args.streams)
    streams = training.eval_streams(predictions, args.streams)
    console().print(
        f"{args.file}: {nats:.4f} nats/char, {nats / LN2:.4f} bits/char "
        f"over {predictions:,} predictions in {streams} stream{'s' if streams > 1 else ''}",
        markup=False,
    )
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    from charrnn import checkpoint
    from charrnn.chart import loss_chart
    from charrnn.lineage import lineage_line
    from charrnn.progress import console

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
    table.add_row("corpus", escape(describe_corpus(meta.get("corpus") or {})))
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
        chart = loss_chart(checkpoint.read_metrics(run.path.parent, meta))
        if chart is not None:
            out.print(chart)
    return 0


def describe_corpus(recorded: dict) -> str:
    """What a run trained on, and how many symbols it held, split and all."""
    from charrnn import corpus

    where = corpus.describe(recorded)
    counts = [(k, recorded[k]) for k in ("symbols", "train_symbols", "val_symbols")]
    return where + "".join(
        f", {k.replace('_', ' ')} {v:,}" for k, v in counts if isinstance(v, int)
    )


def read_head(path: Path, encoding: str, max_chars: int) -> str:
    """At most the first max_chars characters of a text file (strict decoding, CorpusError)."""
    from charrnn import corpus

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


def unit_values(trace, layer: int, unit: int, cell_state: bool) -> np.ndarray:
    return (trace.cell if cell_state else trace.hidden)[layer][:, unit]


def coloured(trace, values=None, one_line: bool = False) -> Text:
    """The text with each symbol's background by surprisal, or by `values` (diverging)."""
    from rich.text import Text

    from charrnn import colours

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
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    from charrnn import checkpoint, colours
    from charrnn import html as html_page
    from charrnn.inspect import trace as run_trace
    from charrnn.progress import console

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
    import numpy as np

    changes = np.flatnonzero(np.diff(feature))
    start = max(0, int(changes[0]) - 10) if len(changes) else 0
    piece = copy.copy(tr)
    piece.symbols = tr.symbols[start : start + width]
    return coloured(piece, values[start : start + width], one_line=True)


def cmd_neurons(args: argparse.Namespace) -> int:
    from rich.table import Table

    from charrnn import checkpoint, neurons
    from charrnn.inspect import trace as run_trace
    from charrnn.progress import console

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


def validation_tail(meta: dict, max_chars: int) -> str:
    """The last max_chars characters of the corpus the run trained on, from a line start
    (inside the validation split when that is longer); CharRNNError when it is not at hand."""
    from charrnn import corpus

    try:
        source = corpus.Source.from_json(meta.get("corpus"))
        builtin = corpus.builtin_corpus(source.builtin) if source.builtin else None
        path = None if isinstance(builtin, str) else source.local_path()
    except CorpusError as exc:
        raise ConfigError(f"{exc}; give --text FILE") from None
    if path is None:
        text = builtin[-4 * max_chars :]
    else:
        try:
            with open(path, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 8 * max_chars))
                text = f.read().decode(source.encoding, errors="ignore")
        except (OSError, LookupError) as exc:
            raise CorpusError(f"{path}: cannot read ({exc}); give --text FILE") from None
    text = text[-max_chars:]
    cut = text.find("\n")
    return text[cut + 1 :] if 0 <= cut < len(text) // 2 else text


def cmd_report(args: argparse.Namespace) -> int:
    from charrnn import checkpoint
    from charrnn import html as html_page
    from charrnn.cli.generate import novelty_notes
    from charrnn.inspect import trace as run_trace
    from charrnn.progress import console

    run = checkpoint.load(args.run, args.checkpoint)
    out = console()
    records = checkpoint.read_metrics(run.path.parent, run.config)
    if args.text is not None:
        text = read_head(args.text, args.encoding, args.max_chars)
        tr = run_trace(run.model, run.vocab, text)
    else:
        try:
            tr = run_trace(run.model, run.vocab, validation_tail(run.config, args.max_chars))
        except CharRNNError as exc:
            out.print(f"no heat-map: {exc}", markup=False)
            tr = None
    notes = novelty_notes(run, records, out)
    page = html_page.report_page(f"charrnn run {args.run}", run.config, records, tr, notes)
    try:
        args.output.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {args.output} ({exc.strerror or exc})") from None
    out.print(f"wrote {args.output}", markup=False)
    return 0
