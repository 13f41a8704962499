"""Reading training text safely, the built-in corpora, and the train/validation split."""

from __future__ import annotations

import codecs
import functools
import hashlib
import io
import json
import os
import sysconfig
import tempfile
import tokenize
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import regex

from charrnn import download
from charrnn.errors import CorpusError, VocabError
from charrnn.files import atomic_write_bytes
from charrnn.vocab import (
    JOINING_CLASS,
    Vocab,
    code_points,
    one_symbol_per_point,
    split_symbols,
)

CHUNK_BYTES = 8 << 20  # a large file is read, decoded and encoded this many bytes at a time
# Encoding a piece takes about 24 bytes per symbol at its peak (int64 lookups), so a text that
# is only evaluated is read in smaller pieces: its memory then stays near 25 MB whatever its size.
EVAL_CHUNK_BYTES = 1 << 20
HEAD_BYTES = 1 << 20  # the id cache is keyed by size, mtime and the hash of this much head
CACHE_IDS, CACHE_META = "corpus.ids.npy", "corpus.json"
CACHE_VERSION = 1
# Two code points with a grapheme boundary between them for sure: neither joins (see vocab).
_PLAIN_PAIR = regex.compile(rf"[^{JOINING_CLASS}\r][^{JOINING_CLASS}]")

Progress = Callable[[str, int, int], None]  # (what, bytes done, bytes in all)


def _python_docs() -> str:
    from pydoc_data.topics import topics

    return "\n\n".join(topics[name].strip("\n") for name in sorted(topics)) + "\n"


SHAKESPEARE = Path(__file__).parent / "data" / "tinyshakespeare.txt"
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


def _shakespeare() -> str:
    return SHAKESPEARE.read_text(encoding="utf-8")


# Left out of python-source: test suites, codec tables (encodings), the help prose that is
# python-docs (pydoc_data), and installed third-party packages.
SOURCE_SKIP_DIRS = {"test", "tests", "idle_test", "__pycache__", "site-packages", "dist-packages"}
SOURCE_SKIP_TOP = {"encodings", "pydoc_data"}


@functools.lru_cache(maxsize=2)
def python_source(root: str | None = None) -> tuple[str, tuple[str, ...]]:
    """The standard library's `.py` files under `root` (default: this Python's), in path order,
    each after a `# ==> PATH <==` line and decoded with the encoding it declares (PEP 263);
    also the paths of files skipped because they do not decode."""
    base = Path(root or sysconfig.get_paths()["stdlib"])
    files = []
    for folder, dirs, names in os.walk(base):
        top = Path(folder) == base
        dirs[:] = [
            d for d in dirs if d not in SOURCE_SKIP_DIRS and not (top and d in SOURCE_SKIP_TOP)
        ]
        files += [Path(folder, n).relative_to(base).as_posix() for n in names if n.endswith(".py")]
    parts, skipped = [], []
    for name in sorted(files):
        try:
            data = (base / name).read_bytes()
            encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
            text = data.decode(encoding).removeprefix("\ufeff")
            text.encode("utf-8")  # no lone surrogates
        except (OSError, SyntaxError, LookupError, UnicodeError):
            skipped.append(name)
            continue
        parts.append(f"# ==> {name} <==\n{text}" + ("" if text.endswith("\n") else "\n"))
    if not parts:
        raise CorpusError(f"{base}: no readable .py files for the python-source corpus")
    return "".join(parts), tuple(skipped)


BUILTIN = {
    "python-docs": (
        "The Python language reference prose that ships with CPython (pydoc_data.topics).",
        _python_docs,
    ),
    "shakespeare": (
        "tinyshakespeare: 40,000 lines of Shakespeare's plays, the classic char-rnn corpus.",
        _shakespeare,
    ),
    "python-source": (
        "This Python's standard library .py files, one after another with a header line each "
        "(tests, encodings and pydoc_data left out).",
        lambda: python_source()[0],
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


def downloaded_corpus(entry: download.Entry, progress: download.Progress | None = None) -> str:
    """The cleaned text of a catalogue corpus, downloading (and verifying) it first unless it
    is cached."""
    path = download.fetch(entry, progress)
    try:
        return download.clean_text(entry, path.read_bytes())
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{path}: not UTF-8 text (byte offset {exc.start})") from None


def read_text(path: str | os.PathLike, encoding: str = "utf-8") -> str:
    """A text file's contents, decoded strictly; every way it can be unusable is a CorpusError."""
    path = Path(path)
    text = "".join(piece for piece, _ in text_pieces(path, encoding))
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
    path: str | os.PathLike | None = None,
    name: str | None = None,
    encoding: str = "utf-8",
    progress: download.Progress | None = None,
) -> tuple[str | TextFile, dict]:
    """What to train on and a JSON description of where it came from (for resuming): a
    built-in corpus's text, a catalogue corpus's (downloaded on first use), or a file (or
    the cached download of a URL) to stream."""
    if path is not None and name is not None:
        raise CorpusError("give a FILE or --corpus NAME, not both")
    if path is None:
        name = name or DEFAULT_CORPUS
        if name in BUILTIN:
            return builtin_corpus(name), {"builtin": name}
        entries = download.catalogue()
        if name not in entries:
            raise CorpusError(
                f"no corpus {name!r}; built-ins: {', '.join(sorted(BUILTIN))}; "
                f"downloads: {', '.join(sorted(entries))} (see `charrnn corpora`)"
            )
        return downloaded_corpus(entries[name], progress), {"download": name}
    if download.is_url(str(path)):
        cached = download.fetch(download.url_entry(str(path)), progress)
        check_file(cached, encoding)
        return TextFile(cached, encoding), {"url": str(path), "encoding": encoding}
    check_file(path, encoding)
    return TextFile(Path(path), encoding), {"path": str(Path(path).resolve()), "encoding": encoding}


def check_unicode(text: str) -> None:
    """Refuse text holding lone surrogates: no file decodes to them, and no checkpoint with
    them in its vocabulary would load."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CorpusError(
            f"text holds a lone surrogate {text[exc.start]!r} at character {exc.start}; "
            "it is not valid Unicode text"
        ) from None


def text_digest(text: str) -> str:
    """sha256 of the text as UTF-8: how a run recognises the text it started on."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class TextFile:
    """A corpus on disk: `train` encodes it in chunks into a memory-mapped id cache in the run
    directory, so a file much larger than memory trains, and a resume skips the encoding."""

    path: Path
    encoding: str = "utf-8"

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))


@dataclass
class EncodedText:
    """A corpus as ids (possibly memory-mapped), its vocabulary and the digest of its text."""

    vocab: Vocab
    ids: np.ndarray
    digest: str


def encode_text(
    text: str, unit: str, vocab: Vocab | None = None, include: Vocab | None = None
) -> EncodedText:
    """Encode text held in memory, with its own vocabulary (and `include`'s symbols) or a
    given one."""
    check_unicode(text)
    if vocab is None:
        vocab = Vocab.from_text(text, unit)
        if include is not None:
            vocab = Vocab(sorted(set(vocab.symbols) | set(include.symbols)), unit)
    return EncodedText(vocab, vocab.encode(text), text_digest(text))


def check_file(path: str | os.PathLike, encoding: str = "utf-8") -> Path:
    """Fail early, with a clear error, for a file that cannot be a corpus at all."""
    path = Path(path)
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise CorpusError(f"unknown encoding {encoding!r}") from None
    if path.is_dir():
        raise CorpusError(f"{path}: is a directory, not a text file")
    try:
        with path.open("rb") as f:
            empty = not f.read(1)
    except FileNotFoundError:
        raise CorpusError(f"{path}: no such file") from None
    except PermissionError:
        raise CorpusError(f"{path}: permission denied") from None
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if empty:
        raise CorpusError(f"{path}: file is empty")
    return path


def _cut(text: str) -> int:
    """Where to end a piece of text so that no symbol is split: after the last newline, else
    between the last two code points that surely lie in different grapheme clusters; 0 if
    there is no such place (the caller reads on)."""
    cut = text.rfind("\n") + 1
    if cut:
        return cut
    tail_start = max(0, len(text) - 4096)
    for m in _PLAIN_PAIR.finditer(text, tail_start, overlapped=True):
        cut = m.start() + 1
    return cut


def text_pieces(
    path: Path, encoding: str = "utf-8", chunk_bytes: int | None = None
) -> Iterator[tuple[str, int]]:
    """The decoded text of a file in pieces that never split a symbol, each with the number of
    bytes read so far. Strict decoding: an error names the byte offset. A leading BOM is
    dropped; NUL bytes mark a binary file."""
    check_file(path, encoding)
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    utf8 = codecs.lookup(encoding).name == "utf-8"
    carry, done, started = "", 0, False
    try:
        f = path.open("rb")
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with f:
        while True:
            data = f.read(chunk_bytes)
            final = not data
            if utf8 and b"\x00" in data:
                raise CorpusError(
                    f"{path}: NUL byte at offset {done + data.index(0)}; "
                    "this looks like a binary file, not text"
                )
            pending = len(decoder.getstate()[0])
            try:
                piece = decoder.decode(data, final)
            except UnicodeDecodeError as exc:
                offset = done - pending + exc.start
                raise CorpusError(
                    f"{path}: invalid {encoding} at byte offset {offset} "
                    f"({exc.object[exc.start : exc.start + 4]!r}); "
                    f"pass --encoding if it is not {encoding}"
                ) from None
            done += len(data)
            if not started and piece:
                piece, started = piece.removeprefix("\ufeff"), True
            text = carry + piece
            if final:
                if text:
                    yield text, done
                return
            cut = _cut(text)
            carry = text[cut:]
            if cut:
                yield text[:cut], done


def _file_key(path: Path, encoding: str, unit: str) -> dict:
    """What identifies a corpus file's contents cheaply: size, mtime and a hash of its head."""
    st = path.stat()
    with path.open("rb") as f:
        head = hashlib.sha256(f.read(HEAD_BYTES)).hexdigest()
    return {
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "head_sha256": head,
        "encoding": codecs.lookup(encoding).name,
        "unit": unit,
    }


def _vocab_with(own: set[str], include: Vocab | None, unit: str) -> Vocab:
    """The vocabulary of a text's own symbols and `include`'s."""
    return Vocab(sorted(own | set(include.symbols if include is not None else ())), unit)


def _load_cache(cache_dir: Path, key: dict, include: Vocab | None = None) -> EncodedText | None:
    """The cached encoding of the file `key` describes in the vocabulary of its symbols and
    `include`'s, or None if absent, stale, in another vocabulary or damaged."""
    try:
        meta = json.loads((cache_dir / CACHE_META).read_text(encoding="utf-8"))
        if meta.get("version") != CACHE_VERSION or meta.get("key") != key:
            return None
        vocab = Vocab.from_json(meta["vocab"])
        own = set(meta.get("own_symbols", vocab.symbols))
        if vocab != _vocab_with(own, include, key["unit"]):
            return None
        ids = np.load(cache_dir / CACHE_IDS, mmap_mode="r", allow_pickle=False)
        if ids.shape != (meta["symbols"],) or ids.dtype != vocab.dtype:
            return None
        return EncodedText(vocab, ids, meta["digest"])
    except (OSError, ValueError, KeyError, TypeError, VocabError):
        return None


def encode_file(
    source: TextFile,
    unit: str,
    cache_dir: Path,
    progress: Progress | None = None,
    chunk_bytes: int | None = None,
    include: Vocab | None = None,
) -> EncodedText:
    """A file's ids, memory-mapped from `cache_dir`, encoding them first unless cached; the
    vocabulary holds the file's symbols and `include`'s.

    Two streaming passes, so memory stays bounded by the chunk size: the first finds the
    vocabulary (and checks the whole file decodes), the second writes the ids.
    """
    path, encoding = source.path, source.encoding
    check_file(path, encoding)
    key = _file_key(path, encoding, unit)
    cached = _load_cache(cache_dir, key, include)
    if cached is not None:
        return cached
    progress = progress or (lambda what, done, total: None)
    total = key["size"]

    present = np.zeros(0x110000, bool)  # single-code-point symbols seen
    clusters: set[str] = set()  # multi-code-point symbols seen
    simple: list[bool] = []  # per piece: one symbol per code point?
    digest = hashlib.sha256()
    count = 0
    for piece, done in text_pieces(path, encoding, chunk_bytes):
        digest.update(piece.encode("utf-8", "surrogatepass"))
        simple.append(one_symbol_per_point(piece, unit))
        if simple[-1]:
            points = code_points(piece)
            seen = np.bincount(points) > 0
            present[: len(seen)] |= seen
            count += len(points)
        else:
            symbols = split_symbols(piece, unit)
            clusters.update(symbols)
            count += len(symbols)
        progress("reading", done, total)
    own = {chr(p) for p in np.flatnonzero(present)} | clusters
    if not own:
        raise CorpusError(f"{path}: file holds no text")
    vocab = _vocab_with(own, include, unit)

    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".corpus.", suffix=".tmp", dir=cache_dir)
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # as open() would make it, not mkstemp's 0600
    os.close(fd)
    try:
        ids = np.lib.format.open_memmap(tmp, mode="w+", dtype=vocab.dtype, shape=(count,))
        at = 0
        changed = CorpusError(f"{path}: the file changed while it was being read")
        for i, (piece, done) in enumerate(text_pieces(path, encoding, chunk_bytes)):
            try:
                if i < len(simple) and simple[i] and vocab.has_point_table:
                    piece_ids = vocab.encode_points(code_points(piece))
                else:
                    piece_ids = vocab.encode(piece)
            except VocabError:
                raise changed from None
            if at + len(piece_ids) > count:
                raise changed
            ids[at : at + len(piece_ids)] = piece_ids
            at += len(piece_ids)
            progress("encoding", done, total)
        if at != count or _file_key(path, encoding, unit) != key:
            raise changed
        ids.flush()
        del ids
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, cache_dir / CACHE_IDS)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    meta = {
        "version": CACHE_VERSION,
        "key": key,
        "symbols": count,
        "digest": digest.hexdigest(),
        "vocab": vocab.to_json(),
        "own_symbols": sorted(own),
    }
    atomic_write_bytes(cache_dir / CACHE_META, json.dumps(meta).encode())
    ids = np.load(cache_dir / CACHE_IDS, mmap_mode="r", allow_pickle=False)
    return EncodedText(vocab, ids, meta["digest"])


class IdFile:
    """Ids in an anonymous temporary file (removed when closed, or when the process dies),
    read back a slice at a time: a text larger than memory as a sequence of ids."""

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = np.dtype(dtype)
        self.file = tempfile.TemporaryFile(prefix="charrnn-ids-")  # noqa: SIM115  (close())
        self.length = 0

    def append(self, ids: np.ndarray) -> None:
        self.file.seek(0, os.SEEK_END)
        self.file.write(np.ascontiguousarray(ids, self.dtype).data)
        self.length += len(ids)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key: slice) -> np.ndarray:
        """The ids of a slice (step 1), read from the file."""
        start, stop, step = key.indices(self.length)
        if step != 1:
            raise ValueError("an IdFile reads contiguous slices only")
        size = self.dtype.itemsize
        self.file.seek(start * size)
        return np.frombuffer(self.file.read(max(stop - start, 0) * size), self.dtype)

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> IdFile:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def encode_file_ids(source: TextFile, vocab: Vocab, chunk_bytes: int | None = None) -> IdFile:
    """A file's ids in a given vocabulary, streamed into an IdFile: one pass, and memory
    bounded by the piece size whatever the file's size. Symbols the vocabulary lacks raise
    VocabError naming them (those of the first piece that has any)."""
    path = source.path
    try:
        ids = IdFile(vocab.dtype)
    except OSError as exc:
        raise _no_temporary_room(path, exc) from None
    try:
        for piece, _ in text_pieces(path, source.encoding, chunk_bytes or EVAL_CHUNK_BYTES):
            try:
                piece_ids = vocab.encode(piece)
            except VocabError as exc:
                raise VocabError(f"{path}: {exc}") from None
            try:
                ids.append(piece_ids)
            except OSError as exc:
                raise _no_temporary_room(path, exc) from None
        if not len(ids):
            raise CorpusError(f"{path}: file holds no text")
    except BaseException:
        ids.close()
        raise
    return ids


def _no_temporary_room(path: Path, exc: OSError) -> CorpusError:
    return CorpusError(
        f"{path}: cannot write its ids to a temporary file in {tempfile.gettempdir()} "
        f"({exc.strerror or exc}); point TMPDIR at a directory with room"
    )
