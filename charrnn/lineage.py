"""Where a run came from: the record of the base it started from (`--init-from`), written
into its metadata, and the one line that `info` and `report` show of it."""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING

import numpy as np

from charrnn import corpus
from charrnn.corpus import Source
from charrnn.errors import CorpusError

if TYPE_CHECKING:
    from charrnn.checkpoint import Run


def weights_digest(params: dict[str, np.ndarray]) -> str:
    """sha256 over a model's arrays (name, dtype, shape, bytes, in name order): what identifies
    a base model's weights whatever file or metadata they came in."""
    digest = hashlib.sha256()
    for name in sorted(params):
        array = np.ascontiguousarray(params[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape}\n".encode())
        digest.update(array.data)
    return digest.hexdigest()


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
        f"(trained on {corpus.describe(base.get('corpus'))}, "
        f"weights sha256 {str(base.get('weights_sha256', ''))[:12]}), "
        + (f"{len(added)} symbols added: {shown}" if added else "no symbols added")
    )


def _where(recorded: dict) -> dict:
    """Only where a corpus came from, not its counts."""
    try:
        return Source.from_json(recorded).to_json()
    except CorpusError:
        return {}


def record(base: Run, init_from: str | os.PathLike, added: list[str]) -> dict:
    """What a run records of the base it started from."""
    corpus = base.config.get("corpus") or {}
    return {
        "path": str(init_from),
        "checkpoint": str(base.path),
        "step": base.config["step"],
        "weights_sha256": weights_digest(base.model.params),
        "corpus": _where(corpus),
        "symbols_added": added,
        **({"base": base.config["init_from"]} if "init_from" in base.config else {}),
    }
