"""`charrnn sample` and `charrnn repl`: generation streamed to stdout, or interactive."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from charrnn.cli.common import float_range, int_range


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

    p = commands.add_parser("sample", help="generate text from a trained run, streamed to stdout")
    sampling_options(p)
    p.add_argument("--prime", default="", help="text to continue")
    p.add_argument("--num", type=int_range(1, 100_000), default=1, help="independent samples")
    p.set_defaults(func=cmd_sample)

    p = commands.add_parser("repl", help="interactive generation: type text, the model goes on")
    sampling_options(p)
    p.set_defaults(func=cmd_repl, length=300)


def cmd_sample(args: argparse.Namespace) -> int:
    from charrnn import checkpoint, sample

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
        from charrnn.parallel import worker_count

        workers = worker_count(None, args.num)  # the same texts for any count
        texts = sample.generate_many(run.model, run.vocab, args.num, **options, workers=workers)
        for i, text in enumerate(texts):
            if i:
                write("\n" + "-" * 40 + "\n")
            write(args.prime + text)
        write("\n")
    sys.stdout.flush()
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
    ).loop()
    return 0
