"""Reading training text safely, the built-in corpora, and the train/validation split."""

from __future__ import annotations

import codecs
import os
from pathlib import Path

import numpy as np

from charrnn.errors import CorpusError


def _python_docs() -> str:
    from pydoc_data.topics import topics

    return "\n\n".join(topics[name].strip("\n") for name in sorted(topics)) + "\n"


BUILTIN = {
    "python-docs": (
        "The Python language reference prose that ships with CPython (pydoc_data.topics).",
        _python_docs,
    ),
}
DEFAULT_CORPUS = "python-docs"


def builtin_corpus(name: str) -> str:
    """The text of a built-in corpus, by name."""
    try:
        _, load = BUILTIN[name]
    except KeyError:
        raise CorpusError(
            f"no built-in corpus {name!r}; built-ins: {', '.join(sorted(BUILTIN))}"
        ) from None
    return load()


def read_text(path: str | os.PathLike, encoding: str = "utf-8") -> str:
    """A text file's contents, decoded strictly; every way it can be unusable is a CorpusError."""
    path = Path(path)
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise CorpusError(f"unknown encoding {encoding!r}") from None
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CorpusError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CorpusError(f"{path}: is a directory, not a text file") from None
    except PermissionError:
        raise CorpusError(f"{path}: permission denied") from None
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not data:
        raise CorpusError(f"{path}: file is empty")
    if codecs.lookup(encoding).name == "utf-8" and b"\x00" in data:
        raise CorpusError(
            f"{path}: NUL byte at offset {data.index(0)}; this looks like a binary file, not text"
        )
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise CorpusError(
            f"{path}: invalid {encoding} at byte offset {exc.start} "
            f"({data[exc.start : exc.start + 4]!r}); pass --encoding if it is not {encoding}"
        ) from None
    text = text.removeprefix("\ufeff")
    if not text:
        raise CorpusError(f"{path}: file holds no text")
    return text


def split_ids(ids: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Training ids (the first part) and validation ids (the last `val_fraction`)."""
    if not 0 <= val_fraction < 1:
        raise CorpusError(f"val-fraction must be in [0, 1), got {val_fraction}")
    n_val = round(len(ids) * val_fraction)
    if val_fraction > 0 and n_val < 2:
        raise CorpusError(
            f"corpus of {len(ids):,} symbols leaves {n_val} for validation at "
            f"val-fraction {val_fraction}; it needs at least 2"
        )
    return ids[: len(ids) - n_val], ids[len(ids) - n_val :]


def load_corpus(
    path: str | os.PathLike | None = None, name: str | None = None, encoding: str = "utf-8"
) -> tuple[str, dict]:
    """The text to train on and a JSON description of where it came from (for resuming)."""
    if path is not None and name is not None:
        raise CorpusError("give a FILE or --corpus NAME, not both")
    if path is None:
        name = name or DEFAULT_CORPUS
        return builtin_corpus(name), {"builtin": name}
    text = read_text(path, encoding)
    return text, {"path": str(Path(path).resolve()), "encoding": encoding}
