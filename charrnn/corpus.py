"""Reading training text safely, the built-in corpora, and the train/validation split."""

from __future__ import annotations

import codecs
import hashlib
import io
import json
import os
import sysconfig
import tempfile
import tokenize
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import regex

from charrnn import download
from charrnn.errors import CharRNNError, CorpusError, VocabError
from charrnn.files import atomic_write_bytes
from charrnn.vocab import (
    JOINING_CLASS,
    Vocab,
    code_points,
    merge_vocab,
    one_symbol_per_point,
    split_symbols,
)

CHUNK_BYTES = 8 << 20  # a large file is read, decoded and encoded this many bytes at a time
# Encoding a piece takes about 24 bytes per symbol at its peak (int64 lookups), so a text that
# is only evaluated is read in smaller pieces: its memory then stays near 25 MB whatever its size.
EVAL_CHUNK_BYTES = 1 << 20
HEAD_BYTES = 1 << 20  # the id cache is keyed by size, mtime and the hash of this much head
CACHE_IDS, CACHE_META = "corpus.ids.npy", "corpus.json"
CACHE_VERSION = 2
# Files of a corpus are joined with this: an empty line between files (a newline is in nearly
# every text, so it rarely adds a symbol). It stands between files only, so a corpus of one
# file is that file's text.
FILE_SEPARATOR = "\n\n"
KEEP_BYTES = 64 << 20  # small files' bytes (then texts) kept in memory from one pass to the next
PROGRESS_BYTES = 1 << 20  # progress is reported about this often, not once per small file
PEP263 = "pep263"  # as an encoding: each file's own declaration, as Python reads its source
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


def python_source(root: str | os.PathLike | None = None) -> TextFiles:
    """The standard library's `.py` files under `root` (default: this Python's) as a corpus:
    in path order, each after a `# ==> PATH <==` line and decoded with the encoding it
    declares (PEP 263); a file that does not decode is skipped and named."""
    return TextFiles(
        (Path(root or sysconfig.get_paths()["stdlib"]),),
        PEP263,
        suffix=".py",
        skip_dirs=SOURCE_SKIP_DIRS,
        skip_top=SOURCE_SKIP_TOP,
        headers=True,
    )


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
        python_source,
    ),
}
DEFAULT_CORPUS = "python-docs"


def builtin_corpus(name: str) -> str | TextFiles:
    """The text of a built-in corpus, by name (python-source: its files, to stream)."""
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
    path: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    name: str | None = None,
    encoding: str = "utf-8",
    progress: download.Progress | None = None,
) -> tuple[str | TextFile | TextFiles, dict]:
    """What to train on and a JSON description of where it came from (for resuming): a
    built-in corpus's text (python-source: its files), a catalogue corpus's (downloaded on
    first use), a file (or the cached download of a URL) to stream, or several files and
    directories (a sequence of paths, or one directory) to stream as one corpus."""
    if isinstance(path, (list, tuple)):
        if len(path) > 1:
            if any(download.is_url(str(p)) for p in path):
                raise CorpusError("a URL trains alone: give one URL, or files and directories")
            if name is not None:
                raise CorpusError("give a FILE or --corpus NAME, not both")
            return _files_corpus(path, encoding)
        path = path[0] if path else None
    if path is not None and name is not None:
        raise CorpusError("give a FILE or --corpus NAME, not both")
    if path is None:
        name = name or DEFAULT_CORPUS
        if name in BUILTIN:
            return builtin_corpus(name), Source(builtin=name).to_json()
        entries = download.catalogue()
        if name not in entries:
            raise CorpusError(
                f"no corpus {name!r}; built-ins: {', '.join(sorted(BUILTIN))}; "
                f"downloads: {', '.join(sorted(entries))} (see `charrnn corpora`)"
            )
        return downloaded_corpus(entries[name], progress), Source(download=name).to_json()
    if download.is_url(str(path)):
        cached = download.fetch(download.url_entry(str(path)), progress)
        check_file(cached, encoding)
        return TextFile(cached, encoding), Source(url=str(path), encoding=encoding).to_json()
    if Path(path).is_dir():
        return _files_corpus([path], encoding)
    check_file(path, encoding)
    where = Source(paths=(str(Path(path).resolve()),), encoding=encoding)
    return TextFile(Path(path), encoding), where.to_json()


@dataclass(frozen=True)
class Source:
    """Where a run's corpus comes from, as its metadata records it (`to_json`): a built-in or
    catalogue name, one file, files and folders, or a URL. One type that says how to load
    it, how to describe it and where its local copy is, for training, the CLI and `info`."""

    builtin: str | None = None
    download: str | None = None
    paths: tuple[str, ...] = ()
    url: str | None = None
    encoding: str = "utf-8"

    @classmethod
    def from_json(cls, data: object) -> Source:
        """The source a run's metadata names; CorpusError when it names none."""
        data = data if isinstance(data, dict) else {}
        encoding = data.get("encoding", "utf-8")
        for key in ("builtin", "download", "url"):
            if isinstance(data.get(key), str):
                return cls(**{key: data[key]}, encoding=encoding)
        paths = [data["path"]] if isinstance(data.get("path"), str) else data.get("paths")
        if isinstance(paths, list) and paths and all(isinstance(p, str) for p in paths):
            return cls(paths=tuple(paths), encoding=encoding)
        raise CorpusError("the run does not say what it trained on")

    def to_json(self) -> dict:
        if self.builtin or self.download:
            return {"builtin": self.builtin} if self.builtin else {"download": self.download}
        where = {"url": self.url} if self.url else {"path": self.paths[0]}
        if len(self.paths) > 1 or (self.paths and Path(self.paths[0]).is_dir()):
            where = {"paths": list(self.paths)}
        return {**where, "encoding": self.encoding}

    def load(self, progress: download.Progress | None = None) -> str | TextFile | TextFiles:
        """The text to train on: in memory, or files to stream (downloading first if need be)."""
        where = self.url or list(self.paths) or None
        return load_corpus(where, self.builtin or self.download, self.encoding, progress)[0]

    def describe(self) -> str:
        """For people: the name, the path (and how many more) or the URL."""
        if self.builtin or self.download:
            return f"{self.builtin or self.download} ({'built in' if self.builtin else 'download'})"
        if self.url:
            return self.url
        more = f" and {len(self.paths) - 1} more" if len(self.paths) > 1 else ""
        return f"{self.paths[0]}{more}"

    def local_path(self) -> Path:
        """The file on disk that holds the corpus's end (the last file of many, a download's
        cached copy); CorpusError when it is not at hand."""
        if self.download:
            entries = download.catalogue()
            if self.download not in entries:
                raise CorpusError(f"no corpus {self.download!r} in this charrnn's catalogue")
            return download.cached_path(entries[self.download])
        if self.url:
            return download.cached_path(download.url_entry(self.url))
        files = python_source() if self.builtin == "python-source" else None
        if self.builtin and files is None:
            raise CorpusError(f"{self.builtin} is built in, not a file")
        try:
            return walk(files or TextFiles(self.paths, self.encoding))[-1].path
        except (CharRNNError, IndexError):
            raise CorpusError("the files the run trained on are gone") from None


def describe(recorded: object) -> str:
    """What a run's metadata says it trained on, for people (a text given in memory has no
    recorded source)."""
    try:
        return Source.from_json(recorded).describe()
    except CorpusError:
        return "an in-memory text"


def _files_corpus(paths: Sequence[str | os.PathLike], encoding: str) -> tuple[TextFiles, dict]:
    _check_encoding(encoding)
    for path in paths:
        if not Path(path).is_dir():
            check_file(path, encoding)
    source = TextFiles(tuple(Path(p) for p in paths), encoding)
    where = Source(paths=tuple(str(p.resolve()) for p in source.paths), encoding=encoding)
    return source, where.to_json()


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


@dataclass(frozen=True)
class TextFiles:
    """Any number of files and directories as one corpus, streamed like a TextFile. Files given
    by name come as given and must be text; a directory is walked recursively in sorted path
    order (hidden names and symlinked directories left out), and a file found there that is
    not text (a NUL byte, invalid in `encoding`, empty) is skipped and named. The files' texts
    are joined with FILE_SEPARATOR, and each file's last `val_fraction` is validation.

    What a walk takes: names ending in `suffix`, not in directories named in `skip_dirs` (or
    in `skip_top` at a walked directory's top). `headers` puts a `# ==> REL/PATH <==` line
    before each file's text; the encoding PEP263 decodes each file as it declares."""

    paths: tuple[Path, ...]
    encoding: str = "utf-8"
    suffix: str = ""
    skip_dirs: frozenset[str] = frozenset()
    skip_top: frozenset[str] = frozenset()
    headers: bool = False

    def __post_init__(self) -> None:
        paths = (self.paths,) if isinstance(self.paths, (str, os.PathLike)) else self.paths
        object.__setattr__(self, "paths", tuple(Path(p) for p in paths))
        object.__setattr__(self, "skip_dirs", frozenset(self.skip_dirs))
        object.__setattr__(self, "skip_top", frozenset(self.skip_top))


@dataclass
class EncodedText:
    """A corpus as ids (possibly memory-mapped), laid out [training | validation] with
    `n_train` training ids; its vocabulary, the digest of its text, and the names of the
    files left out because they are not text."""

    vocab: Vocab
    ids: np.ndarray
    digest: str
    n_train: int
    skipped: tuple[str, ...] = ()

    def split(self) -> tuple[np.ndarray, np.ndarray]:
        """Training and validation ids: views, never copies (of a memory map either)."""
        return self.ids[: self.n_train], self.ids[self.n_train :]


def encode_text(
    text: str,
    unit: str,
    vocab: Vocab | None = None,
    include: Vocab | None = None,
    val_fraction: float = 0.0,
    digest: str | None = None,
) -> EncodedText:
    """Encode text held in memory, with its own vocabulary (and `include`'s symbols) or a
    given one; its last `val_fraction` is validation, as `split_ids` cuts it. `digest` is the
    text's `text_digest` when the caller has it already."""
    check_unicode(text)
    if vocab is None:
        vocab = Vocab.from_text(text, unit)
        if include is not None:
            vocab = _vocab(set(vocab.symbols), unit, include)
    ids = vocab.encode(text)
    train, _ = split_ids(ids, val_fraction)
    return EncodedText(vocab, ids, digest or text_digest(text), len(train))


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


class FileEntry(NamedTuple):
    """A file of a TextFiles corpus, as the walk found it."""

    path: Path
    name: str  # stable across working directories: DIR/REL for a found file, else its name
    rel: str  # its path relative to the walked directory (the header's), or its name
    explicit: bool  # given by name (must be text), not found in a directory (may be skipped)
    root: int  # which of the given paths it came from


def _as_files(source: TextFile | TextFiles) -> TextFiles:
    return TextFiles((source.path,), source.encoding) if isinstance(source, TextFile) else source


def _check_encoding(encoding: str) -> None:
    if encoding == PEP263:
        return
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise CorpusError(f"unknown encoding {encoding!r}") from None


def walk(source: TextFile | TextFiles) -> list[FileEntry]:
    """The files of a corpus in training order: files given by name as given, each directory
    walked once with os.scandir, in sorted path order, leaving out hidden names (".") at every
    level, symlinks to directories and what the source's filters exclude."""
    source = _as_files(source)
    _check_encoding(source.encoding)
    entries = []
    for root, given in enumerate(source.paths):
        if given.is_dir():
            found: list[tuple[str, str]] = []
            _scan_dir(str(given), "", source, found, top=True)
            found.sort()
            resolved = given.resolve()
            base = resolved.name or resolved.as_posix()
            entries += [
                FileEntry(Path(path), f"{base}/{rel}", rel, False, root) for rel, path in found
            ]
        else:
            check_file(given, "utf-8" if source.encoding == PEP263 else source.encoding)
            entries.append(FileEntry(given, given.name, given.name, True, root))
    return entries


def _scan_dir(
    folder: str, prefix: str, source: TextFiles, found: list[tuple[str, str]], top: bool
) -> None:
    try:
        with os.scandir(folder) as listing:
            items = list(listing)
    except OSError as exc:
        raise CorpusError(f"{folder}: cannot read ({exc.strerror or exc})") from None
    for item in items:
        if item.name.startswith("."):
            continue
        rel = prefix + item.name
        if item.is_dir(follow_symlinks=False):
            if item.name not in source.skip_dirs and not (top and item.name in source.skip_top):
                _scan_dir(item.path, rel + "/", source, found, top=False)
        elif item.name.endswith(source.suffix) and item.is_file():
            found.append((rel, item.path))


def _vanished(path: Path) -> CorpusError:
    return CorpusError(f"{path}: the file vanished while it was being read")


def _changed(path: Path) -> CorpusError:
    return CorpusError(f"{path}: the file changed while it was being read")


def _read_heads(
    entries: list[FileEntry], small: int
) -> tuple[list[list], dict[int, bytes], list[int]]:
    """Each file's cache key entry [name, size, mtime_ns, sha256 of its first MiB]; the whole
    bytes of small files (read once for both the key and the first pass) while they fit in
    KEEP_BYTES; and each file's size."""
    keys, kept, sizes, room = [], {}, [], KEEP_BYTES
    for i, entry in enumerate(entries):
        try:
            st, data = _read_head(entry.path, small)
        except FileNotFoundError:
            raise _vanished(entry.path) from None
        except OSError as exc:
            if entry.explicit:
                raise CorpusError(f"{entry.path}: cannot read ({exc.strerror or exc})") from None
            keys.append([entry.name, None, None, None])  # unreadable: skipped in the first pass
            sizes.append(0)
            continue
        head = hashlib.sha256(data[:HEAD_BYTES]).hexdigest()
        keys.append([entry.name, st.st_size, st.st_mtime_ns, head])
        sizes.append(st.st_size)
        if st.st_size <= small and len(data) <= room:
            kept[i] = data
            room -= len(data)
    return keys, kept, sizes


def _read_head(path: Path, small: int) -> tuple[os.stat_result, bytes]:
    """A file's status and its bytes: all of them up to `small`, else its first HEAD_BYTES.
    Plain os calls: for 10,000 small files, io.open's layers cost more than the reads."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        want = st.st_size if st.st_size <= small else HEAD_BYTES
        parts = []
        while want > 0:
            part = os.read(fd, want)
            if not part:
                break
            parts.append(part)
            want -= len(part)
        return st, b"".join(parts)
    finally:
        os.close(fd)


def _decode(path: Path, data: bytes, encoding: str) -> str:
    """A whole small file's text, with text_pieces' checks and messages."""
    if encoding == PEP263:
        try:
            encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        except SyntaxError as exc:
            raise CorpusError(f"{path}: {exc.msg}") from None
    try:
        utf8 = codecs.lookup(encoding).name == "utf-8"
        if utf8 and b"\x00" in data:
            raise CorpusError(
                f"{path}: NUL byte at offset {data.index(0)}; "
                "this looks like a binary file, not text"
            )
        return data.decode(encoding).removeprefix("\ufeff")
    except LookupError:
        raise CorpusError(f"{path}: unknown encoding {encoding!r}") from None
    except UnicodeDecodeError as exc:
        raise CorpusError(
            f"{path}: invalid {encoding} at byte offset {exc.start} "
            f"({exc.object[exc.start : exc.start + 4]!r}); "
            f"pass --encoding if it is not {encoding}"
        ) from None


def _pieces(
    entry: FileEntry, source: TextFiles, data: bytes | None, small: int, chunk_bytes: int
) -> Iterator[tuple[str, int]]:
    """A file's text (after its header, if the source has headers) in pieces that never split
    a symbol, with the bytes read so far: whole from `data` or a small file, else streamed."""
    if source.headers:
        yield f"# ==> {entry.rel} <==\n", 0
    try:
        if data is None and entry.path.stat().st_size <= small:
            data = entry.path.read_bytes()
    except OSError as exc:
        raise CorpusError(f"{entry.path}: cannot read ({exc.strerror or exc})") from None
    if data is not None:
        yield _decode(entry.path, data, source.encoding), len(data)
        return
    encoding = source.encoding
    if encoding == PEP263:
        with entry.path.open("rb") as f:
            try:
                encoding, _ = tokenize.detect_encoding(f.readline)
            except SyntaxError as exc:
                raise CorpusError(f"{entry.path}: {exc.msg}") from None
    yield from text_pieces(entry.path, encoding, chunk_bytes)


class _Throttled:
    """Progress reported after every piece of a streamed file, but only every PROGRESS_BYTES
    or so of small files, not once per small file."""

    def __init__(self, progress: Progress | None, total: int) -> None:
        self.progress, self.total, self.last = progress, total, -PROGRESS_BYTES

    def __call__(self, what: str, done: int, now: bool = False) -> None:
        if self.progress is not None and (now or done - self.last >= PROGRESS_BYTES):
            self.progress(what, min(done, self.total), self.total)
            self.last = done


def cache_key(cache_dir: Path) -> dict | None:
    """The key of the id cache in `cache_dir` (which files, how encoded), or None."""
    try:
        meta = json.loads((cache_dir / CACHE_META).read_text(encoding="utf-8"))
        return meta["key"] if meta.get("version") == CACHE_VERSION else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def key_changes(old: dict | None, new: dict | None) -> str:
    """What differs between the files of two cache keys, by name: "added X; removed Y;
    changed Z" ("" when the file lists agree or a key is missing)."""
    try:
        before = {f[0]: f[1:] for f in old["files"]}
        after = {f[0]: f[1:] for f in new["files"]}
    except (TypeError, KeyError, IndexError):
        return ""
    parts = []
    for word, names in (
        ("added", [n for n in after if n not in before]),
        ("removed", [n for n in before if n not in after]),
        ("changed", [n for n in after if n in before and after[n] != before[n]]),
    ):
        if names:
            parts.append(f"{word} {first_names(names)}")
    return "; ".join(parts)


def _load_cache(cache_dir: Path, key: dict, include: Vocab | None) -> EncodedText | None:
    """The cached encoding `key` describes, if its vocabulary is the one this call would build;
    None if absent, stale or damaged."""
    try:
        meta = json.loads((cache_dir / CACHE_META).read_text(encoding="utf-8"))
        if meta.get("version") != CACHE_VERSION or meta.get("key") != key:
            return None
        vocab = Vocab.from_json(meta["vocab"])
        if vocab != _vocab(set(meta["text_symbols"]), key["unit"], include):
            return None
        ids = np.load(cache_dir / CACHE_IDS, mmap_mode="r", allow_pickle=False)
        if ids.shape != (meta["symbols"],) or ids.dtype != vocab.dtype:
            return None
        if not 0 <= meta["n_train"] <= len(ids):
            return None
        skipped = tuple(str(s) for s in meta["skipped"])
        return EncodedText(vocab, ids, meta["digest"], meta["n_train"], skipped)
    except (OSError, ValueError, KeyError, TypeError, VocabError):
        return None


def _vocab(symbols: set[str], unit: str, include: Vocab | None) -> Vocab:
    """The vocabulary of a text's symbols and, when given, another vocabulary's."""
    if include is None:
        return Vocab(sorted(symbols), unit)
    if include.unit != unit:
        raise VocabError(f"cannot include a {include.unit} vocabulary in a {unit} one")
    return merge_vocab(include, symbols)


def encode_file(
    source: TextFile | TextFiles,
    unit: str,
    cache_dir: Path,
    progress: Progress | None = None,
    chunk_bytes: int | None = None,
    *,
    val_fraction: float = 0.0,
    include: Vocab | None = None,
) -> EncodedText:
    """A corpus of files as ids, memory-mapped from `cache_dir` ([training | validation], each
    file split on its own), encoding them first unless cached. `include` adds a vocabulary's
    symbols to the text's.

    Two streaming passes, so memory stays bounded by the piece size and KEEP_BYTES: the first
    finds the vocabulary, each file's symbol count and which found files are text; the second
    writes the ids. A file that changes or vanishes meanwhile is a CorpusError naming it.
    """
    source = _as_files(source)
    if not source.paths:
        raise CorpusError("no files to train on")
    if not 0 <= val_fraction < 1:
        raise CorpusError(f"val-fraction must be in [0, 1), got {val_fraction}")
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    small = min(chunk_bytes, HEAD_BYTES)  # read whole, once, and kept between the passes
    entries = walk(source)
    keys, kept, sizes = _read_heads(entries, small)
    key = {
        "files": keys,
        "encoding": source.encoding
        if source.encoding == PEP263
        else codecs.lookup(source.encoding).name,
        "unit": unit,
        "val_fraction": val_fraction,
        "separator": FILE_SEPARATOR,
        "headers": source.headers,
        "filters": [source.suffix, sorted(source.skip_dirs), sorted(source.skip_top)],
    }
    cached = _load_cache(cache_dir, key, include)
    if cached is not None:
        return cached
    corpus = _Corpus(source, entries, sizes, unit, small, chunk_bytes)
    report = _Throttled(progress, sum(sizes))
    corpus.first_pass(keys, kept, report)
    vocab = _vocab(corpus.symbols, unit, include)
    n_train, n_val = corpus.layout(val_fraction)

    def write(path: str) -> None:
        ids = np.lib.format.open_memmap(
            path, mode="w+", dtype=vocab.dtype, shape=(n_train + n_val,)
        )
        corpus.second_pass(ids.view(np.ndarray), vocab, n_train, report)
        corpus.check_unchanged(keys)
        ids.flush()

    _write_file(cache_dir, CACHE_IDS, write)
    meta = {
        "version": CACHE_VERSION,
        "key": key,
        "symbols": n_train + n_val,
        "n_train": n_train,
        "digest": corpus.digest.hexdigest(),
        "vocab": vocab.to_json(),
        "text_symbols": sorted(corpus.symbols),
        "skipped": corpus.skipped,
    }
    # Compact: the key has a row per file, and indenting 10,000 rows costs more than the rows.
    atomic_write_bytes(cache_dir / CACHE_META, json.dumps(meta, ensure_ascii=False).encode())
    ids = np.load(cache_dir / CACHE_IDS, mmap_mode="r", allow_pickle=False)
    return EncodedText(vocab, ids, meta["digest"], n_train, tuple(corpus.skipped))


def _write_file(cache_dir: Path, name: str, write: Callable[[str], None]) -> None:
    """Make cache_dir/name atomically: `write` fills a temporary file there, which is synced
    and renamed into place (and removed if anything fails, Ctrl-C included)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".corpus.", suffix=".tmp", dir=cache_dir)
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # as open() would make it, not mkstemp's 0600
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, cache_dir / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class _Corpus:
    """The files of one encoding and what the first pass learns of them for the second: each
    text file's symbol count and per-piece fast-path flags, small files' texts, the symbols,
    the digest of the joined text, and the names of the files skipped."""

    def __init__(
        self,
        source: TextFiles,
        entries: list[FileEntry],
        sizes: list[int],
        unit: str,
        small: int,
        chunk_bytes: int,
    ) -> None:
        self.source, self.entries, self.sizes, self.unit = source, entries, sizes, unit
        self.small, self.chunk_bytes = small, chunk_bytes
        self.counts: dict[int, int] = {}  # symbols of each text file, by entry
        self.simple: dict[int, list[bool]] = {}  # per piece: one symbol per code point?
        self.texts: dict[int, str] = {}  # small files' texts, kept for the second pass
        self.symbols: set[str] = set()
        self.digest = hashlib.sha256()
        self.skipped: list[str] = []
        self.separator = split_symbols(FILE_SEPARATOR, unit)
        self.n_val: dict[int, int] = {}

    def pieces(self, i: int, data: bytes | None = None) -> Iterator[tuple[str, int]]:
        return _pieces(self.entries[i], self.source, data, self.small, self.chunk_bytes)

    def first_pass(self, keys: list[list], kept: dict[int, bytes], report: _Throttled) -> None:
        """Symbols, counts and digest of every text file; found files that are not text are
        skipped; a directory left without a text file is an error."""
        present = np.zeros(0x110000, bool)  # single-code-point symbols seen
        waiting: list[str] = []  # small files' texts whose code points are not yet marked
        waiting_size = done = 0
        for i, entry in enumerate(self.entries):
            data = kept.pop(i, None)
            try:
                if keys[i][1] is None:
                    raise CorpusError(f"{entry.path}: cannot read")
                found = self._scan(i, data, report, done)
            except CorpusError:
                if entry.explicit:
                    raise
                if not entry.path.exists():
                    raise _vanished(entry.path) from None
                self.skipped.append(entry.name)
                continue
            finally:
                done += self.sizes[i]
            self.digest, seen, clusters, self.simple[i], self.counts[i], pieces = found
            for s in seen:
                present[: len(s)] |= s
            self.symbols |= clusters
            if data is not None:
                self.texts[i] = "".join(pieces)
                simple = [p for p, fast in zip(pieces, self.simple[i], strict=True) if fast]
                waiting += simple
                waiting_size += sum(map(len, simple))
            if waiting_size >= self.chunk_bytes:
                _mark_seen(present, waiting)
                waiting, waiting_size = [], 0
            report("reading", done)
        _mark_seen(present, waiting)
        report("reading", done, now=True)
        self.symbols |= {chr(p) for p in np.flatnonzero(present)}
        if len(self.counts) > 1:
            self.symbols |= set(self.separator)
        self._check_roots()

    def _scan(self, i: int, data: bytes | None, report: _Throttled, done: int) -> tuple:
        """One file's digest (the joined text's so far), code points seen, clusters, per-piece
        flags, symbol count, and (for a small file) its pieces; CorpusError if not text."""
        entry, unit = self.entries[i], self.unit
        digest = self.digest.copy()
        if self.counts:
            digest.update(FILE_SEPARATOR.encode())
        seen, clusters, flags, pieces, count = [], set(), [], [], 0
        for piece, read in self.pieces(i, data):
            try:
                digest.update(piece.encode("utf-8"))
            except UnicodeEncodeError as exc:
                raise CorpusError(
                    f"{entry.path}: holds a lone surrogate {piece[exc.start]!r}; "
                    "it is not valid Unicode text"
                ) from None
            flags.append(one_symbol_per_point(piece, unit))
            if flags[-1] and data is not None:
                count += len(piece)  # its code points: marked later, with other files'
            elif flags[-1]:
                points = code_points(piece)
                if len(points):
                    seen.append(np.bincount(points) > 0)
                count += len(points)
            else:
                symbols = split_symbols(piece, unit)
                clusters.update(symbols)
                count += len(symbols)
            if data is not None:
                pieces.append(piece)
            else:
                report("reading", done + read, now=True)  # a streamed piece
        if not count:
            raise CorpusError(f"{entry.path}: file holds no text")
        return digest, seen, clusters, flags, count, pieces

    def _check_roots(self) -> None:
        """Every directory given yields a text file."""
        found = {e.root for e in self.entries if not e.explicit}
        text_roots = {self.entries[i].root for i in self.counts}
        for root, given in enumerate(self.source.paths):
            if given.is_dir() and root not in text_roots:
                names = [e.name for e in self.entries if e.root == root] if root in found else []
                detail = f" ({len(names)} skipped: {first_names(names)})" if names else ""
                raise CorpusError(f"{given}: no text file in it{detail}")

    def layout(self, val_fraction: float) -> tuple[int, int]:
        """Training and validation symbols in all: each file's last `val_fraction`, rounded as
        `split_ids` rounds, is validation; the separator stands between non-empty parts."""
        self.n_val = {i: round(n * val_fraction) for i, n in self.counts.items()}
        train_parts = sum(1 for i, n in self.counts.items() if n > self.n_val[i])
        val_parts = sum(1 for v in self.n_val.values() if v)
        n_train = sum(n - self.n_val[i] for i, n in self.counts.items())
        n_train += len(self.separator) * max(train_parts - 1, 0)
        n_val = sum(self.n_val.values()) + len(self.separator) * max(val_parts - 1, 0)
        if val_fraction > 0 and n_val < 2:
            raise CorpusError(
                f"corpus of {n_train + n_val:,} symbols leaves {n_val} for validation at "
                f"val-fraction {val_fraction}; it needs at least 2"
            )
        return n_train, n_val

    def second_pass(self, out: np.ndarray, vocab: Vocab, n_train: int, report: _Throttled) -> None:
        """Each file's ids into place: its training part after the training ids so far, its
        validation part after the validation ids (from n_train on), separators between."""
        separator_ids = vocab.encode(FILE_SEPARATOR) if len(self.counts) > 1 else None
        width = len(self.separator)
        train_at, val_at, done = 0, n_train, 0
        order = list(self.counts)
        ready: dict[int, np.ndarray] = {}  # ids of small files encoded together, by entry
        for pos, i in enumerate(order):
            entry, count, file_train = (
                self.entries[i],
                self.counts[i],
                self.counts[i] - self.n_val[i],
            )
            if file_train and train_at:
                out[train_at : train_at + width] = separator_ids
                train_at += width
            if self.n_val[i] and val_at > n_train:
                out[val_at : val_at + width] = separator_ids
                val_at += width
            if i not in ready and self._together(i, vocab):
                ready = self._encode_together(order[pos:], vocab)
            streamed = i not in self.texts and i not in ready
            at = 0
            try:
                for piece_ids, read in self._ids(i, ready, vocab):
                    if at + len(piece_ids) > count:
                        raise _changed(entry.path)
                    k = max(0, min(len(piece_ids), file_train - at))
                    out[train_at : train_at + k] = piece_ids[:k]
                    out[val_at : val_at + len(piece_ids) - k] = piece_ids[k:]
                    train_at, val_at = train_at + k, val_at + len(piece_ids) - k
                    at += len(piece_ids)
                    report("encoding", done + read, now=streamed)
            except (CorpusError, VocabError):
                if not entry.path.exists():
                    raise _vanished(entry.path) from None
                raise _changed(entry.path) from None
            if at != count:
                raise _changed(entry.path)
            done += self.sizes[i]
        report("encoding", done, now=True)

    def _ids(
        self, i: int, ready: dict[int, np.ndarray], vocab: Vocab
    ) -> Iterator[tuple[np.ndarray, int]]:
        """A file's ids in pieces, with its bytes read so far: encoded already, from its kept
        text, or read again (each piece the way the first pass found fastest)."""
        if i in ready:
            yield ready.pop(i), self.sizes[i]
            return
        flags = self.simple[i]
        if i in self.texts:
            pieces, flags = iter([(self.texts.pop(i), self.sizes[i])]), [all(flags)]
        else:
            pieces = self.pieces(i)
        for j, (piece, read) in enumerate(pieces):
            if j < len(flags) and flags[j] and vocab.has_point_table:
                yield vocab.encode_points(code_points(piece)), read
            else:
                yield vocab.encode(piece), read

    def _together(self, i: int, vocab: Vocab) -> bool:
        """Whether kept file i's ids come from its code points alone (so from a joined text)."""
        return i in self.texts and vocab.has_point_table and all(self.simple[i])

    def _encode_together(self, order: list[int], vocab: Vocab) -> dict[int, np.ndarray]:
        """The ids of the kept files at the head of `order` whose symbols are their code
        points, up to about chunk_bytes of them, encoded in one call and cut apart."""
        group, size = [], 0
        for i in order:
            if size >= self.chunk_bytes or not self._together(i, vocab):
                break
            group.append(i)
            size += self.counts[i]
        ids = vocab.encode_points(code_points("".join(self.texts.pop(i) for i in group)))
        cuts = np.cumsum([self.counts[i] for i in group[:-1]])
        return dict(zip(group, np.split(ids, cuts), strict=True))

    def check_unchanged(self, keys: list[list]) -> None:
        """Every file still has the size and mtime (and, for a large one, the head) of its
        key: none changed while it was read."""
        for entry, (_, size, mtime_ns, head) in zip(self.entries, keys, strict=True):
            if size is None:
                continue
            try:
                st = entry.path.stat()
                same = (st.st_size, st.st_mtime_ns) == (size, mtime_ns)
                if same and size > self.small:
                    with entry.path.open("rb") as f:
                        same = hashlib.sha256(f.read(HEAD_BYTES)).hexdigest() == head
            except FileNotFoundError:
                raise _vanished(entry.path) from None
            except OSError:
                same = False
            if not same:
                raise _changed(entry.path)


def _mark_seen(present: np.ndarray, texts: list[str]) -> None:
    """Mark the code points of texts (one symbol each) in `present`: one pass for many files."""
    points = code_points("".join(texts))
    if len(points):
        seen = np.bincount(points) > 0
        present[: len(seen)] |= seen


def first_names(names: list[str] | tuple[str, ...], limit: int = 5) -> str:
    """The first `limit` names, and how many more: "a, b and 3 more"."""
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


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
