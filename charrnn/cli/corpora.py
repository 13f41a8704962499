"""`charrnn corpora` and `charrnn corpora fetch`: what can be trained on, and a download."""

from __future__ import annotations

import argparse

from charrnn.cli.common import Parser
from charrnn.errors import ConfigError


def add_commands(commands) -> None:
    p = commands.add_parser("corpora", help="list the built-in and downloadable corpora")
    p.set_defaults(func=cmd_corpora)
    actions = p.add_subparsers(dest="action", parser_class=Parser)
    fetch = actions.add_parser("fetch", help="download a corpus into the cache and verify it")
    fetch.add_argument("name", metavar="NAME", help="a corpus of `charrnn corpora`, or a URL")
    fetch.set_defaults(func=cmd_fetch)


def cmd_corpora(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    from charrnn import corpus, download
    from charrnn.progress import console

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
    from charrnn import corpus, download
    from charrnn.progress import DownloadProgress, console

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
