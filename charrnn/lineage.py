"""Where a run came from: the record of the base it started from (`--init-from`), written
into its metadata, and the one line that `info` and `report` show of it."""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from charrnn.checkpoint import Run

SOURCE_KEYS = ("builtin", "download", "path", "paths", "url", "encoding")  # where a corpus is


def weights_digest(params: dict[str, np.ndarray]) -> str:
    """sha256 over a model's arrays (name, dtype, shape, bytes, in name order): what identifies
    a base model's weights whatever file or metadata they came in."""
    digest = hashlib.sha256()
    for name in sorted(params):
        array = np.ascontiguousarray(params[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape}\n".encode())
        digest.update(array.data)
    return digest.hexdigest()


def describe_source(corpus: dict) -> str:
    """A corpus description for people: a built-in or downloaded name, a path or URL."""
    for key in ("builtin", "download", "url", "path"):
        if isinstance(corpus.get(key), str):
            return corpus[key]
    paths = corpus.get("paths")
    if isinstance(paths, list) and paths:
        more = f" and {len(paths) - 1} more" if len(paths) > 1 else ""
        return f"{paths[0]}{more}"
    return "unknown corpus"


def lineage_line(meta: dict) -> str | None:
    """One line on the base a run started from (None for a run from random weights)."""
    base = meta.get("init_from")
    if not isinstance(base, dict) or type(base.get("step")) is not int:
        return None
    added = base.get("symbols_added") or []
    shown = ", ".join(repr(s) for s in added[:8]) + (" ..." if len(added) > 8 else "")
    step = base.get("step")
    return (
        f"{base.get('path')} at step {step:,} "
        f"(trained on {describe_source(base.get('corpus') or {})}, "
        f"weights sha256 {str(base.get('weights_sha256', ''))[:12]}), "
        + (f"{len(added)} symbols added: {shown}" if added else "no symbols added")
    )


def record(base: Run, init_from: str | os.PathLike, added: list[str]) -> dict:
    """What a run records of the base it started from."""
    corpus = base.config.get("corpus") or {}
    return {
        "path": str(init_from),
        "checkpoint": str(base.path),
        "step": base.config["step"],
        "weights_sha256": weights_digest(base.model.params),
        "corpus": {k: v for k, v in corpus.items() if k in SOURCE_KEYS},
        "symbols_added": added,
        **({"base": base.config["init_from"]} if "init_from" in base.config else {}),
    }
