"""`charrnn serve`: a run behind the OpenAI-compatible completions API, until Ctrl-C or
SIGTERM, which finish open generations (for up to --grace seconds) and cut the rest."""

from __future__ import annotations

import argparse
import ipaddress
import signal
import sys
import threading
from pathlib import Path

from charrnn.cli.common import float_range, int_range
from charrnn.errors import ConfigError


def add_commands(commands) -> None:
    p = commands.add_parser("serve", help="an OpenAI-compatible completions API over HTTP")
    p.add_argument("run", type=Path, help="run directory or .npz checkpoint")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    p.add_argument(
        "--port", type=int_range(0, 65535), default=8000, help="0 picks a free one (8000)"
    )
    p.add_argument("--api-key", metavar="KEY", help="require Authorization: Bearer KEY")
    p.add_argument(
        "--max-length", type=int_range(1, 10**8), default=2000, help="largest max_tokens (2000)"
    )
    p.add_argument(
        "--streams",
        type=int_range(1, 4096),
        default=64,
        help="streams generated at once, all requests together; beyond them 503 (64)",
    )
    p.add_argument(
        "--grace",
        type=float_range(0, 3600),
        default=10.0,
        help="seconds a stop lets open generations finish before cutting them (10)",
    )
    p.add_argument("--checkpoint", choices=["best", "latest"], default="best")
    p.set_defaults(func=cmd_serve)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_serve(args: argparse.Namespace) -> int:
    from charrnn import checkpoint
    from charrnn.serve import Server

    run = checkpoint.load(args.run, args.checkpoint)
    path = Path(args.run).resolve()
    model = path.name if path.is_dir() else path.stem
    try:
        server = Server(
            (args.host, args.port), run, model, args.max_length, args.streams, args.api_key
        )
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc})"
        ) from None
    if not is_loopback(args.host) and args.api_key is None:
        print(
            f"charrnn serve: warning: listening on {args.host}, beyond the loopback, without "
            "--api-key: anyone who reaches it can use it",
            file=sys.stderr,
        )
    stopping, cut_now = threading.Event(), threading.Event()

    def on_signal(signum, frame) -> None:
        (cut_now if stopping.is_set() else stopping).set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    host, port = server.server_address[:2]
    print(
        f"charrnn serve: {model} on http://{host}:{port}/ (POST /v1/completions; "
        f"{args.streams} streams at once); Ctrl-C stops",
        flush=True,
    )
    thread = threading.Thread(target=server.serve_forever, name="charrnn-http", daemon=True)
    thread.start()
    while not stopping.wait(0.5):
        pass
    print("charrnn serve: stopping (Ctrl-C again cuts open streams)", flush=True)
    finished, cut = server.stop(args.grace, cut_now)
    print(f"charrnn serve: stopped ({finished} open streams finished, {cut} cut)", flush=True)
    return 0
