"""Does the model write new text or copy its training text back? For a generated text: the
longest span found verbatim in the training text (and where), and the share of its n-grams
that occur there. A suffix array of the training ids, built once in bounded memory and kept
beside them, answers both exactly by binary search, for a corpus larger than memory."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charrnn import corpus, download
from charrnn.checkpoint import Run
from charrnn.errors import CorpusError, VocabError
from charrnn.files import atomic_write_bytes, atomic_writer
from charrnn.vocab import Vocab

NGRAMS = (8, 16, 32)  # symbols: the n-gram sizes whose shares are reported
INDEX_FILE, INDEX_META, IDS_FILE = "novelty.sa.npy", "novelty.json", "novelty.ids.npy"
INDEX_VERSION = 1
# Suffixes sorted at once while building: about 80 bytes each at the peak (positions, packed
# keys, group ids, the sort's scratch), so blocks of about 2M bound the build's anonymous
# memory near 200 MB whatever the corpus's size. Blocks are cut between keys of 8 symbols,
# so one 8-gram starting more suffixes than this (a corpus of runs of spaces) makes a
# larger block.
BLOCK_SUFFIXES = 2 << 20
SPLITTER_SAMPLE = 1 << 20  # suffixes whose keys choose the blocks' bounds
EXTEND_SYMBOLS = 64  # a match with one candidate place left grows this many symbols a round
SCAN_IDS = 4 << 20  # suffixes keyed at a time when the corpus is scanned for its blocks
MAX_BLOCKS = 1000  # block files open at once: beyond 1.5G symbols, blocks grow instead


@dataclass
class Novelty:
    """How much of a generated text occurs in the training text: its longest span found there
    (`longest` symbols, `span`, at symbol `at` and line `line` of the training text) and, per
    n-gram size, the share of its n-grams found there (None when the text is shorter)."""

    symbols: int
    longest: int
    span: str
    at: int | None
    line: int | None
    shares: dict[int, float | None]

    def to_json(self) -> dict:
        return {
            "symbols": self.symbols,
            "longest_copied": {
                "symbols": self.longest,
                "text": self.span,
                "at": self.at,
                "line": self.line,
            },
            "ngrams_in_training": {str(n): share for n, share in self.shares.items()},
        }

    def summary(self) -> str:
        """One line for people."""
        where = f" (training text line {self.line:,})" if self.line else ""
        shares = ", ".join(
            f"{n}-grams {'-' if s is None else f'{100 * s:.1f}%'}" for n, s in self.shares.items()
        )
        return (
            f"novelty: longest span copied from the training text {self.longest} symbols"
            f"{where}: {self.span!r}; in the training text: {shares}"
        )


def _id_cache(folder: Path, digest: str, vocab: Vocab) -> np.ndarray | None:
    """The ids of a training id cache in `folder` (corpus.ids.npy, as `train` writes it) when
    it holds this text in this vocabulary; None otherwise."""
    try:
        meta = json.loads((folder / corpus.CACHE_META).read_text(encoding="utf-8"))
        if meta.get("version") != corpus.CACHE_VERSION or meta.get("digest") != digest:
            return None
        if Vocab.from_json(meta["vocab"]) != vocab:
            return None
        return np.load(folder / corpus.CACHE_IDS, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, KeyError, TypeError, VocabError):
        return None


def training_ids(run: Run) -> tuple[np.ndarray, Path]:
    """The ids the run trained on (its training split, memory-mapped) and the folder their
    index belongs in: the run's own when its id cache is there, else one in charrnn's cache,
    named by the text's sha256, where the text is encoded once."""
    recorded = run.config.get("corpus") or {}
    digest, n_train = recorded.get("sha256"), recorded.get("train_symbols")
    if not isinstance(digest, str) or type(n_train) is not int:
        raise CorpusError("the run does not record its training text")
    folder = download.cache_dir() / "novelty" / digest[:32]
    for place in (run.path.parent, folder):
        ids = _id_cache(place, digest, run.vocab)
        if ids is not None:
            return ids[:n_train], place
    if not (folder / IDS_FILE).exists():
        loaded = corpus.Source.from_json(recorded).load()
        if not isinstance(loaded, str):  # files: encoded as `train` does, into the folder
            val_fraction = run.config["train"]["val_fraction"]
            encoded = corpus.encode_file(
                loaded, run.vocab.unit, folder, val_fraction=val_fraction, include=run.vocab
            )
            if encoded.digest != digest or encoded.vocab != run.vocab:
                raise CorpusError("the training text changed since the run trained on it")
            return encoded.ids[:n_train], folder
        if corpus.text_digest(loaded) != digest:
            raise CorpusError("the training text changed since the run trained on it")
        ids = run.vocab.encode(loaded)
        _write_array(folder / IDS_FILE, iter([ids]), len(ids), run.vocab.dtype)
    return np.load(folder / IDS_FILE, mmap_mode="r")[:n_train], folder


def _write_array(path: Path, blocks: Iterator[np.ndarray], length: int, dtype) -> None:
    """Write a .npy of `length` items from `blocks`, streamed, atomically (a temporary file
    renamed into place): no memory map, so the written pages do not count as ours."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(path) as f:
        header = {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": (length,)}
        np.lib.format.write_array_header_1_0(f, header)
        for block in blocks:
            f.write(np.ascontiguousarray(block, dtype).data)


def _symbols_at(ids: np.ndarray, places: np.ndarray) -> np.ndarray:
    """ids at `places` as int64, -1 past the end (an ended suffix sorts first)."""
    inside = places < len(ids)
    out = np.full(len(places), -1, np.int64)
    out[inside] = ids[places[inside]]
    return out


def _keys(ids: np.ndarray, starts: np.ndarray, depth: int, per_key: int, bits: int) -> np.ndarray:
    """The symbols depth .. depth + per_key of each suffix packed into one uint64 that sorts
    as they do (id + 1 per symbol, 0 past the end). Byte ids are read 8 at a time, through a
    view of the ids as overlapping big-endian words, one load per suffix."""
    if bits == 8 and ids.dtype == np.uint8 and len(ids) >= 8:
        words = np.ndarray((len(ids) - 7,), ">u8", ids, strides=(1,))  # word i: ids[i:i+8]
        places = starts + depth
        whole = places < len(words)
        key = np.zeros(len(starts), np.uint64)
        key[whole] = words[places[whole]] + np.uint64(0x0101010101010101)  # each byte + 1
        if not whole.all():
            key[~whole] = _packed(ids, starts[~whole], depth, 8, 8)
        return key
    return _packed(ids, starts, depth, per_key, bits)


def _packed(ids: np.ndarray, starts: np.ndarray, depth: int, per_key: int, bits: int):
    """`_keys` a symbol at a time."""
    key = np.zeros(len(starts), np.uint64)
    for j in range(per_key):
        key <<= np.uint64(bits)
        key |= (_symbols_at(ids, starts + (depth + j)) + 1).astype(np.uint64)
    return key


def sort_suffixes(ids: np.ndarray, starts: np.ndarray, vocab_size: int) -> np.ndarray:
    """`starts` ordered by the suffixes of `ids` there. Suffixes are sorted by packed keys of
    the next few symbols; only those still tied are compared further, a key at a time."""
    per_key, bits = _key_width(vocab_size)
    starts = np.array(starts, np.int64)
    slots = np.arange(len(starts))  # the places in `starts` still tied, by group
    group = np.zeros(len(starts), np.int64)
    depth = 0
    while len(slots) > 1:
        tied = starts[slots]
        key = _keys(ids, tied, depth, per_key, bits)
        if group[0] == group[-1]:
            order = np.argsort(key)
        else:  # by group, then key: a key's rank among all fits beside the group in an int64
            rank = np.empty(len(key), np.int64)
            rank[np.argsort(key)] = np.arange(len(key))
            order = np.argsort(group * len(key) + rank)
        starts[slots] = tied[order]
        key, group = key[order], group[order]
        same = (key[1:] == key[:-1]) & (group[1:] == group[:-1])  # as the one before
        keep = np.zeros(len(slots), bool)
        keep[1:] |= same
        keep[:-1] |= same
        new_group = np.cumsum(np.concatenate([[True], ~same]))
        slots, group = slots[keep], new_group[keep]
        depth += per_key
    return starts


def _key_width(vocab_size: int) -> tuple[int, int]:
    """(symbols per packed key, bits per symbol): 8 of 8 bits for up to 255 symbols."""
    bits = max(int(vocab_size).bit_length(), 8 if vocab_size < 256 else 0)
    return 64 // bits, bits


def _scan(ids: np.ndarray, vocab_size: int) -> Iterator[tuple[int, np.ndarray]]:
    """(first position, the packed keys of the suffixes there), SCAN_IDS at a time."""
    per_key, bits = _key_width(vocab_size)
    for start in range(0, len(ids), SCAN_IDS):
        starts = np.arange(start, min(start + SCAN_IDS, len(ids)))
        yield start, _keys(ids, starts, 0, per_key, bits)


def _blocks(ids: np.ndarray, vocab_size: int, scratch: Path) -> Iterator[np.ndarray]:
    """The suffix array a block at a time. Splitters, the keys at even quantiles of a sample
    of suffixes, cut the key range into blocks of about 3/4 BLOCK_SUFFIXES (suffixes of one
    key share a block); one scan spreads every position into its block's file in `scratch`,
    then each block is read back and sorted."""
    per_key, bits = _key_width(vocab_size)
    sample = np.linspace(0, len(ids) - 1, min(len(ids), SPLITTER_SAMPLE)).astype(np.int64)
    keys = np.sort(_keys(ids, sample, 0, per_key, bits))
    count = min(-(-len(ids) * 4 // (3 * BLOCK_SUFFIXES)), MAX_BLOCKS)
    splitters = np.unique(keys[(np.arange(1, count) * len(keys)) // count])
    files = [open(scratch / f"block{b}", "wb") for b in range(len(splitters) + 1)]  # noqa: SIM115
    try:
        for start, chunk_keys in _scan(ids, vocab_size):
            blocks = np.searchsorted(splitters, chunk_keys, side="right").astype(np.int16)
            order = np.argsort(blocks, kind="stable")  # a radix sort, for int16
            edges = np.searchsorted(blocks[order], np.arange(len(files) + 1))
            for b, f in enumerate(files):
                f.write((start + order[edges[b] : edges[b + 1]]).data)
    finally:
        for f in files:
            f.close()
    for b in range(len(files)):
        starts = np.fromfile(scratch / f"block{b}", np.int64)
        (scratch / f"block{b}").unlink()
        yield sort_suffixes(ids, starts, vocab_size)


def _index_meta(digest: str, symbols: int) -> dict:
    """What INDEX_META says of the index: its version and the training ids it sorts."""
    return {"version": INDEX_VERSION, "digest": digest, "symbols": symbols}


def build_index(ids: np.ndarray, vocab_size: int, folder: Path, digest: str) -> None:
    """Sort every suffix of `ids` into folder/INDEX_FILE (int32 positions while they fit),
    block by block in bounded memory, and record what it indexes in INDEX_META."""
    dtype = np.int32 if len(ids) < 2**31 else np.int64
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".novelty.", dir=folder) as scratch:
        _write_array(folder / INDEX_FILE, _blocks(ids, vocab_size, Path(scratch)), len(ids), dtype)
    atomic_write_bytes(folder / INDEX_META, json.dumps(_index_meta(digest, len(ids))).encode())


class TrainingIndex:
    """A run's training ids and their suffix array, both memory-mapped: the longest match of
    every start of a text in the training text, by binary search."""

    def __init__(self, ids: np.ndarray, suffixes: np.ndarray, vocab: Vocab) -> None:
        self.ids, self.suffixes, self.vocab = ids, suffixes, vocab

    @classmethod
    def open(cls, run: Run, build: Callable[[], None] | None = None) -> TrainingIndex:
        """The run's index, built first if absent or stale (`build` is told before)."""
        ids, folder = training_ids(run)
        digest = run.config["corpus"]["sha256"]
        try:
            meta = json.loads((folder / INDEX_META).read_text(encoding="utf-8"))
            fresh = meta == _index_meta(digest, len(ids))
        except (OSError, ValueError):
            fresh = False
        if not fresh:
            if build is not None:
                build()
            build_index(ids, len(run.vocab), folder, digest)
        return cls(ids, np.load(folder / INDEX_FILE, mmap_mode="r"), run.vocab)

    def _bound(self, low, high, depth, symbol, above: bool) -> np.ndarray:
        """Per query: the first place in [low, high) of the suffix array whose symbol at
        `depth` is >= `symbol` (> with `above`); the suffixes there share `depth` symbols."""
        low, high = low.copy(), high.copy()
        while True:
            active = low < high
            if not active.any():
                return low
            mid = (low + high) // 2
            at = _symbols_at(self.ids, self.suffixes[np.minimum(mid, len(self.ids) - 1)] + depth)
            right = active & ((at <= symbol) if above else (at < symbol))
            low = np.where(right, mid + 1, low)
            high = np.where(active & ~right, mid, high)

    def matches(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each start i of `query`: the length of its longest prefix found in the training
        ids, and a place where it is (-1 for none)."""
        n = len(query)
        lengths, places = np.zeros(n, np.int64), np.full(n, -1, np.int64)
        low, high = np.zeros(n, np.int64), np.full(n, len(self.ids), np.int64)
        going = np.arange(n)  # starts whose match may grow
        depth = 0
        while len(going):
            going = going[going + depth < n]
            symbol = query[going + depth].astype(np.int64)
            lo = self._bound(low[going], high[going], depth, symbol, above=False)
            hi = self._bound(lo, high[going], depth, symbol, above=True)
            found = lo < hi
            grown = going[found]
            lengths[grown] = depth + 1
            places[grown] = self.suffixes[lo[found]]
            low[grown], high[grown] = lo[found], hi[found]
            alone = hi[found] - lo[found] == 1  # one place left: compare there directly
            self._extend(query, grown[alone], places, lengths)
            going = grown[~alone]
            depth += 1
        return lengths, places

    def _extend(self, query: np.ndarray, starts: np.ndarray, places, lengths) -> None:
        """Grow the matches of `starts` at their places (in `lengths`) by comparing the text
        with the training ids directly, EXTEND_SYMBOLS a round."""
        steps = np.arange(EXTEND_SYMBOLS)
        while len(starts):
            offsets = lengths[starts][:, None] + steps  # (S, E)
            in_query = starts[:, None] + offsets < len(query)
            wanted = query[np.minimum(starts[:, None] + offsets, len(query) - 1)]
            there = _symbols_at(self.ids, (places[starts][:, None] + offsets).ravel())
            same = in_query & (wanted == there.reshape(offsets.shape))
            whole = same.all(axis=1)
            lengths[starts] += np.where(whole, EXTEND_SYMBOLS, same.argmin(axis=1))
            starts = starts[whole]

    def novelty(self, text: str) -> Novelty:
        """The memorisation figures of a text (VocabError for symbols the model never saw)."""
        query = self.vocab.encode(text)
        lengths, places = self.matches(query)
        shares = {
            n: float(np.mean(lengths[: len(query) - n + 1] >= n)) if len(query) >= n else None
            for n in NGRAMS
        }
        if not len(query) or not lengths.max():
            return Novelty(len(query), 0, "", None, None, shares)
        best = int(np.argmax(lengths))
        longest, at = int(lengths[best]), int(places[best])
        return Novelty(
            len(query),
            longest,
            self.vocab.decode(query[best : best + longest]),
            at,
            self._line(at),
            shares,
        )

    def _line(self, at: int) -> int | None:
        """The line of the training text holding symbol `at` (None without newlines)."""
        newline = self.vocab.index.get("\n")
        if newline is None:
            return None
        before = sum(
            int(np.count_nonzero(np.asarray(self.ids[s : min(s + SCAN_IDS, at)]) == newline))
            for s in range(0, at, SCAN_IDS)
        )
        return before + 1
