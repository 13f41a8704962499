"""`charrnn sample` and `charrnn repl`: generation streamed to stdout, or interactive."""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from charrnn.cli.common import float_range, int_range
from charrnn.errors import CharRNNError, ConfigError
from charrnn.stops import unescape

if TYPE_CHECKING:
    from charrnn.checkpoint import Run


def stop_string(text: str) -> str:
    """An argparse type: a stop string with its escapes (`\\n`) turned into characters."""
    try:
        return unescape(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_commands(commands) -> None:
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
        p.add_argument(
            "--stop",
            action="append",
            default=[],
            type=stop_string,
            metavar="STR",
            help="end a sample where its text ends with STR (repeatable; '\\n\\n' is two newlines)",
        )
        p.add_argument("--keep-stop", action="store_true", help="print the stop string too")

    p = commands.add_parser("sample", help="generate text from a trained run, streamed to stdout")
    sampling_options(p)
    p.add_argument("--prime", default="", help="text to continue")
    p.add_argument("--num", type=int_range(1, 100_000), default=1, help="independent samples")
    p.add_argument(
        "--format",
        choices=["text", "jsonl"],
        default="text",
        help="text as it is made, or one JSON object per sample (text)",
    )
    p.add_argument(
        "--novelty",
        action="store_true",
        help="report how much of each sample the training text holds verbatim",
    )
    p.set_defaults(func=cmd_sample)

    p = commands.add_parser(
        "novelty", help="how much of a text occurs verbatim in a run's training text"
    )
    p.add_argument("run", type=Path, help="run directory or .npz checkpoint")
    p.add_argument("file", nargs="?", type=Path, help="UTF-8 text (default: stdin)")
    p.add_argument("--encoding", default="utf-8", help="text encoding of FILE (utf-8)")
    p.add_argument("--checkpoint", choices=["best", "latest"], default="best")
    p.set_defaults(func=cmd_novelty)

    p = commands.add_parser("repl", help="interactive generation: type text, the model goes on")
    sampling_options(p)
    p.set_defaults(func=cmd_repl, length=300)


def cmd_sample(args: argparse.Namespace) -> int:
    from charrnn import checkpoint, sample

    sample.check_sampling(args.temperature, args.top_k, args.top_p)
    run = checkpoint.load(args.run, args.checkpoint)
    seed = secrets.randbits(63) if args.seed is None else args.seed  # recorded by jsonl
    settings = dict(
        length=args.length, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p
    )
    options = dict(prime=args.prime, **settings, seed=seed, stop=args.stop)
    options["keep_stop"] = args.keep_stop
    write = sys.stdout.write
    from charrnn.parallel import worker_count

    workers = worker_count(None, args.num)  # the same texts for any count
    if args.format == "jsonl" or args.novelty:
        samples = sample.generate_samples(
            run.model, run.vocab, args.num, **options, workers=workers
        )
        index = open_index(run) if args.novelty else None  # after the prime is checked
        for i, s in enumerate(samples):
            figures = index.novelty(s.text) if index is not None else None
            if args.format == "jsonl":
                record = dict(index=i, text=s.text, prime=args.prime, settings=settings)
                record.update(seed=seed, stop=s.stop, symbols=s.symbols)
                if figures is not None:
                    record["novelty"] = figures.to_json()
                write(json.dumps(record, ensure_ascii=False) + "\n")
            else:
                write(("\n" + "-" * 40 + "\n" if i else "") + args.prime + s.text + "\n")
                write(figures.summary() + "\n")
    elif args.num == 1:
        pieces = sample.generate(run.model, run.vocab, **options)  # primes (and checks) first
        first = next(pieces, "")
        write(args.prime + first)
        sys.stdout.flush()
        for piece in pieces:
            write(piece)
            sys.stdout.flush()
        write("\n")
    else:
        texts = sample.generate_many(run.model, run.vocab, args.num, **options, workers=workers)
        for i, text in enumerate(texts):
            if i:
                write("\n" + "-" * 40 + "\n")
            write(args.prime + text)
        write("\n")
    sys.stdout.flush()
    return 0


def open_index(run: Run):
    """The run's training-text index for novelty figures, built first (once) if need be."""
    from charrnn.novelty import TrainingIndex

    def building() -> None:
        print(
            "charrnn: indexing the training text for novelty figures (once; it is kept)",
            file=sys.stderr,
            flush=True,
        )

    return TrainingIndex.open(run, building)


def novelty_notes(run: Run, records: list[dict], out) -> dict[int, str]:
    """The memorisation figures of each recorded sample, by step, for the report page (none,
    said once, when the training text is not at hand)."""
    from charrnn.novelty import TrainingIndex

    samples = {r["step"]: r["sample"] for r in records if isinstance(r.get("sample"), str)}
    if not samples:
        return {}
    try:
        index = TrainingIndex.open(run, lambda: out.print("indexing the training text"))
        return {step: index.novelty(text).summary() for step, text in samples.items()}
    except CharRNNError as exc:
        out.print(f"no novelty figures: {exc}", markup=False)
        return {}


def cmd_novelty(args: argparse.Namespace) -> int:
    from rich.table import Table

    from charrnn import checkpoint
    from charrnn.corpus import read_text
    from charrnn.progress import console

    run = checkpoint.load(args.run, args.checkpoint)
    text = sys.stdin.read() if args.file is None else read_text(args.file, args.encoding)
    run.vocab.encode(text)  # unseen symbols are named before any indexing
    figures = open_index(run).novelty(text)
    table = Table(title="the text against the run's training text", title_justify="left")
    table.add_column("measure")
    table.add_column("value", overflow="fold")
    table.add_row("symbols", f"{figures.symbols:,}")
    table.add_row("longest span copied", f"{figures.longest:,} symbols: {figures.span!r}")
    if figures.at is not None:
        line = f", line {figures.line:,}" if figures.line else ""
        table.add_row("found at", f"training symbol {figures.at:,}{line}")
    for n, share in figures.shares.items():
        shown = "text too short" if share is None else f"{100 * share:.1f}%"
        table.add_row(f"{n}-grams found in training", shown)
    console().print(table)
    return 0


def cmd_repl(args: argparse.Namespace) -> int:
    from charrnn import checkpoint, sample
    from charrnn.progress import console
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
        stop=args.stop,
        keep_stop=args.keep_stop,
    ).loop()
    return 0
