"""Run directories: weights and training state in .npz (no pickle) plus JSON metadata.

A run directory holds `latest.npz` (weights, optimizer state, carried hidden state and the
metadata, enough to resume exactly), `best.npz` (weights of the best validation loss),
`config.json` (the metadata, for people) and `metrics.jsonl` (one line per evaluation).
Each .npz embeds its metadata, so it is self-contained and one atomic rename publishes it.
"""

from __future__ import annotations

import io
import json
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charrnn.cells import CELLS
from charrnn.choices import MAX_HIDDEN, MAX_LAYERS
from charrnn.errors import CheckpointError, VocabError
from charrnn.files import atomic_write_bytes
from charrnn.model import CharRNN, param_shapes
from charrnn.vocab import Vocab

FORMAT = "charrnn"
FORMAT_VERSION = 2  # 2: cells and layers (model.cell, model.layers, state (L, S, B, H))
READABLE_VERSIONS = (1, 2)  # 1: charrnn 0.1, a one-layer vanilla RNN with state (B, H)
STORED_DTYPES = ("float16", "float32", "float64")  # float16: weights stored small, run in float32
MAX_VOCAB = 1_114_112  # every Unicode code point
META_KEY = "meta"
# What zipfile raises for damaged archives: besides BadZipFile, a flipped bit in the central
# directory reads as an unsupported version or method (NotImplementedError) or as encryption
# (RuntimeError).
ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    NotImplementedError,
    RuntimeError,
    ValueError,
    OSError,
    EOFError,
)


def save_npz(path: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Atomically write arrays and metadata (as UTF-8 JSON bytes) to one uncompressed .npz."""
    buffer = io.BytesIO()
    meta_bytes = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(buffer, **{META_KEY: meta_bytes}, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def save_json(path: Path, data: dict) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode())


def save_jsonl(path: Path, records: list[dict]) -> None:
    """Atomically write one JSON line per record."""
    atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in records).encode())


def append_jsonl(path: Path, record: dict) -> None:
    """Append one JSON line and fsync it."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _read_header(member) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        read = np.lib.format.read_array_header_1_0
    elif version == (2, 0):
        read = np.lib.format.read_array_header_2_0
    else:
        raise ValueError(f"unsupported .npy version {version}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a header numpy has to repair (Python 2 style) is refused
        try:
            shape, _, dtype = read(member)
        except (zipfile.BadZipFile, EOFError):
            raise
        except Exception:  # numpy's parser: ValueError, TokenError, RecursionError, warnings
            raise ValueError("malformed .npy header") from None
    return shape, dtype


def _check_member(path: Path, info: zipfile.ZipInfo, file_size: int) -> None:
    """Refuse a member zipfile would read with more memory than the file holds.

    zipfile sizes its reads by the sizes the archive claims, so a few bytes claiming gigabytes
    would allocate gigabytes: each member must be stored, and fit in the file.
    """
    name = info.filename.removesuffix(".npy")
    if info.compress_type != zipfile.ZIP_STORED:
        raise CheckpointError(f"{path}: member {name!r} is compressed")
    if info.compress_size != info.file_size or info.file_size > file_size:
        raise CheckpointError(f"{path}: member {name!r} claims more bytes than the file holds")


def read_npz(path: Path, expected: dict[str, tuple[tuple[int, ...], np.dtype]] | None = None):
    """Read every array of an .npz without pickle, checking each header before its data.

    With `expected`, arrays must have exactly those shapes and dtypes; members must be stored
    uncompressed, so no array is larger than the bytes actually in the file.
    """
    arrays: dict[str, np.ndarray] = {}
    try:
        file_size = os.path.getsize(path)
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                name = info.filename.removesuffix(".npy")
                _check_member(path, info, file_size)
                with archive.open(info) as member:
                    shape, dtype = _read_header(member)
                    if dtype.hasobject:
                        raise CheckpointError(f"{path}: member {name!r} holds Python objects")
                    if expected is not None and name != META_KEY:
                        if name not in expected:
                            raise CheckpointError(f"{path}: unexpected member {name!r}")
                        want_shape, want_dtype = expected[name]
                        if shape != want_shape or dtype != want_dtype:
                            raise CheckpointError(
                                f"{path}: {name!r} is {dtype}{list(shape)}, the config says "
                                f"{np.dtype(want_dtype)}{list(want_shape)}"
                            )
                    nbytes = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
                    if nbytes > info.file_size:
                        raise CheckpointError(f"{path}: member {name!r} is truncated")
                    data = member.read(nbytes)
                    if len(data) != nbytes:
                        raise CheckpointError(f"{path}: member {name!r} is truncated")
                    arrays[name] = np.frombuffer(data, dtype).reshape(shape).copy()
    except CheckpointError:
        raise
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except ZIP_ERRORS as exc:
        raise CheckpointError(f"{path}: not a readable charrnn checkpoint ({exc})") from None
    if expected is not None:
        missing = sorted(set(expected) - set(arrays))
        if missing:
            raise CheckpointError(f"{path}: missing arrays {', '.join(missing)}")
    return arrays


def read_meta(path: Path) -> dict:
    """The metadata embedded in a checkpoint, validated enough to size every other array."""
    try:
        file_size = os.path.getsize(path)
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(META_KEY + ".npy")
            _check_member(path, info, file_size)
            with archive.open(info) as member:
                shape, dtype = _read_header(member)
                if dtype != np.uint8 or len(shape) != 1 or shape[0] > 64 << 20:
                    raise CheckpointError(f"{path}: metadata has the wrong type")
                raw = member.read(shape[0])
    except CheckpointError:
        raise
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except KeyError:
        raise CheckpointError(f"{path}: not a charrnn checkpoint (no metadata)") from None
    except ZIP_ERRORS as exc:
        raise CheckpointError(f"{path}: not a readable charrnn checkpoint ({exc})") from None
    try:
        meta = json.loads(raw.decode())
    except (ValueError, RecursionError):  # also JSON nested too deep or numbers too long
        raise CheckpointError(f"{path}: metadata is not valid JSON") from None
    validate_meta(meta, path)
    return meta


def validate_meta(meta: object, path: Path) -> None:
    """Check the fields every reader relies on, with one clear message for the first wrong one;
    a version-1 (0.1) model gains `layers: 1`, so readers see one layout."""

    def fail(what: str) -> None:
        raise CheckpointError(f"{path}: {what}")

    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        fail("not a charrnn checkpoint")
    version = meta.get("format_version")
    if type(version) is not int or version not in READABLE_VERSIONS:
        readable = " and ".join(map(str, READABLE_VERSIONS))
        fail(f"checkpoint format version {version!r}; this charrnn reads versions {readable}")
    model = meta.get("model")
    if not isinstance(model, dict):
        fail("metadata has no 'model' object")
    cell = model.get("cell")
    if not isinstance(cell, str) or cell not in (CELLS if version >= 2 else ("rnn",)):
        fail(f"unknown cell {cell!r}")
    layers = model.setdefault("layers", 1) if version == 1 else model.get("layers")
    if type(layers) is not int or not 1 <= layers <= MAX_LAYERS:
        fail(f"model layers must be an integer from 1 to {MAX_LAYERS}, got {layers!r}")
    for key, limit in (("hidden_size", MAX_HIDDEN), ("vocab_size", MAX_VOCAB)):
        value = model.get(key)
        if type(value) is not int or not 1 <= value <= limit:
            fail(f"model {key} must be an integer from 1 to {limit}, got {value!r}")
    if model.get("dtype") not in STORED_DTYPES:
        fail(f"model dtype must be float16, float32 or float64, got {model.get('dtype')!r}")
    try:
        vocab = Vocab.from_json(meta.get("vocab"))
    except (VocabError, TypeError) as exc:
        fail(f"bad vocabulary: {exc}")
    try:
        "".join(vocab.symbols).encode("utf-8")  # text never holds lone surrogates
    except UnicodeEncodeError:
        fail("bad vocabulary: a symbol is not valid Unicode text (a lone surrogate)")
    if len(vocab) != model["vocab_size"]:
        fail(f"vocabulary has {len(vocab)} symbols but the model expects {model['vocab_size']}")
    if type(meta.get("step")) is not int or meta["step"] < 0:
        fail(f"step must be a non-negative integer, got {meta.get('step')!r}")
    for key in ("train", "corpus", "metrics"):
        if key in meta and not isinstance(meta[key], dict):
            fail(f"metadata {key!r} must be an object, got {type(meta[key]).__name__}")
    if "elapsed" in meta and type(meta["elapsed"]) not in (int, float):
        fail(f"elapsed must be a number, got {meta['elapsed']!r}")


@dataclass
class Run:
    """A loaded checkpoint: the model, its vocabulary and the metadata it was saved with."""

    model: CharRNN
    vocab: Vocab
    config: dict
    path: Path

    def _repr_html_(self) -> str:
        """In a notebook: the run's loss curves and configuration."""
        from charrnn import html

        records = read_metrics(self.path.parent, self.config)
        return f"<div>{html.curves_svg(records)}{html.config_table(self.config)}</div>"


def read_metrics(run_dir: Path, meta: dict | None = None, up_to: int | None = None) -> list[dict]:
    """The evaluation records of metrics.jsonl (up to step `up_to`), skipping a line torn by
    a kill during a write and anything that is not a record; without the file, the
    checkpoint's last record (`meta["metrics"]`) when it has a step."""
    records = []
    try:
        lines = (Path(run_dir) / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        lines = []
    for line in lines:
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):  # a torn or hostile line
            continue
        is_record = isinstance(record, dict) and type(record.get("step")) is int
        if is_record and (up_to is None or record["step"] <= up_to):
            records.append(record)
    last = (meta or {}).get("metrics")
    if not records and isinstance(last, dict) and type(last.get("step")) is int:
        records.append(last)
    return records


def checkpoint_path(path: str | os.PathLike, which: str = "best") -> Path:
    """The .npz to read for a run directory (best, else latest) or a path to an .npz."""
    path = Path(path)
    if path.is_dir():
        for name in (which, "latest") if which == "best" else (which,):
            candidate = path / f"{name}.npz"
            if candidate.exists():
                return candidate
        raise CheckpointError(f"{path}: no {which}.npz in this run directory")
    if not path.exists():
        raise CheckpointError(f"{path}: no such run directory or checkpoint")
    return path


PARAM, OPT, STATE = "param/", "opt/", "state/h"  # array names: weights, optimizer, carried state


def pack_arrays(
    params: dict[str, np.ndarray],
    optimizer_state: dict[str, np.ndarray] | None = None,
    state: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """A checkpoint's arrays by name: weights, and for a resume the optimizer's state and the
    carried recurrent state."""
    arrays = {PARAM + k: v for k, v in params.items()}
    arrays.update({OPT + k: v for k, v in (optimizer_state or {}).items()})
    if state is not None:
        arrays[STATE] = state
    return arrays


def unpack_arrays(arrays: dict[str, np.ndarray]) -> tuple[dict, dict, np.ndarray | None]:
    """The inverse of pack_arrays: (weights, optimizer state, carried state or None)."""
    params = {k.removeprefix(PARAM): v for k, v in arrays.items() if k.startswith(PARAM)}
    optimizer_state = {k.removeprefix(OPT): v for k, v in arrays.items() if k.startswith(OPT)}
    return params, optimizer_state, arrays.get(STATE)


def model_arrays_expected(meta: dict) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    m = meta["model"]
    dtype = np.dtype(m["dtype"])
    shapes = param_shapes(m["vocab_size"], m["hidden_size"], m["cell"], m["layers"])
    return {PARAM + k: (shape, dtype) for k, shape in shapes.items()}


def load(path: str | os.PathLike, which: str = "best") -> Run:
    """Load a run directory or .npz: `.model`, `.vocab` and `.config` (never unpickles)."""
    file = checkpoint_path(path, which)
    meta = read_meta(file)
    expected = model_arrays_expected(meta)
    arrays = read_npz(file)
    for name, (shape, dtype) in expected.items():
        array = arrays.get(name)
        if array is None:
            raise CheckpointError(f"{file}: missing array {name!r}")
        if array.shape != shape or array.dtype != dtype:
            raise CheckpointError(
                f"{file}: {name!r} is {array.dtype}{list(array.shape)}, the config says "
                f"{dtype}{list(shape)}"
            )
        if not np.isfinite(array).all():
            raise CheckpointError(f"{file}: {name!r} holds NaN or infinite weights")
    params, _, _ = unpack_arrays({name: arrays[name] for name in expected})
    if meta["model"]["dtype"] == "float16":  # storage only: NumPy computes in float32
        params = {k: v.astype(np.float32) for k, v in params.items()}
    model = CharRNN.from_params(params, meta["model"]["cell"])
    return Run(model, Vocab.from_json(meta["vocab"]), meta, file)
