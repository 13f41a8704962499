"""The `charrnn` command: argparse subcommands over the library, one module per command
group (each with its options beside its handler); all printing lives in these modules."""

from __future__ import annotations

import contextlib
import os
import sys

from charrnn.cli import corpora, export, generate, inside, serve, train
from charrnn.cli.common import Parser, silence_stdout, tsv_escape, tsv_unescape
from charrnn.errors import CharRNNError
from charrnn.version import __version__

__all__ = ["build_parser", "main", "main_exit", "tsv_escape", "tsv_unescape"]


def build_parser() -> Parser:
    parser = Parser(prog="charrnn", description="Character-level RNN text generation in NumPy.")
    parser.add_argument("--version", action="version", version=f"charrnn {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for group in (train, generate, inside, serve, corpora, export):
        group.add_commands(commands)
    return parser


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
