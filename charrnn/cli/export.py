"""`charrnn export`: a run as an ONNX model, PyTorch-named safetensors or one HTML page."""

from __future__ import annotations

import argparse
from pathlib import Path

from charrnn.choices import EXPORT_FORMATS
from charrnn.errors import ExportError


def add_commands(commands) -> None:
    p = commands.add_parser(
        "export", help="write a run as ONNX, safetensors (PyTorch names) or one HTML page"
    )
    p.add_argument("run", type=Path, help="run directory or .npz checkpoint")
    p.add_argument(
        "--format",
        choices=EXPORT_FORMATS,
        help="onnx, safetensors or html (default: from the output's suffix)",
    )
    p.add_argument("-o", "--out", type=Path, required=True, help="the file to write")
    p.add_argument(
        "--checkpoint", choices=["best", "latest"], default="best", help="which weights (best)"
    )
    p.add_argument(
        "--float32",
        action="store_true",
        help="html: embed float32 weights, the model exactly (default float16, half the size)",
    )
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from charrnn import checkpoint, exporters

    format = exporters.check_format(args.out, args.format)
    if args.float32 and format != "html":
        raise ExportError("--float32 applies to --format html only")
    run = checkpoint.load(args.run, args.checkpoint)
    dtype = "float32" if args.float32 else "float16"
    path = exporters.export(run, args.out, format, page_dtype=dtype)
    print(f"wrote {path} ({format}, {path.stat().st_size:,} bytes)")
    return 0
