"""Vocab: the symbols of a text, mapped to contiguous ids and back."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import regex

from charrnn.choices import UNITS
from charrnn.errors import VocabError

_GRAPHEME = regex.compile(r"\X")
# Code points that can join a neighbour into one grapheme cluster: every rule of Unicode's
# grapheme segmentation that keeps two code points together (GB6-GB9c, GB11-GB13) needs one
# of these classes, and GB3 needs CR LF. Text without them has one symbol per code point.
_GCB_JOINING = ("Extend", "ZWJ", "SpacingMark", "Prepend", "Regional_Indicator")
_GCB_HANGUL = ("L", "V", "T", "LV", "LVT")
JOINING_CLASS = "".join(rf"\p{{Grapheme_Cluster_Break={c}}}" for c in _GCB_JOINING + _GCB_HANGUL)
_JOINING = regex.compile(rf"\r\n|[{JOINING_CLASS}]")


def split_symbols(text: str, unit: str = "grapheme") -> list[str]:
    """Split text into symbols: user-perceived characters (`\\X`) or code points."""
    if unit == "grapheme":
        return _GRAPHEME.findall(text)
    if unit == "codepoint":
        return list(text)
    raise VocabError(f"unknown unit {unit!r}; choose one of {', '.join(UNITS)}")


def one_symbol_per_point(text: str, unit: str = "grapheme") -> bool:
    """True when every code point of text is a symbol of its own (fast: no \\X split needed);
    False may also mean "not sure", so callers fall back to `split_symbols`."""
    if unit == "codepoint":
        return True
    if text.isascii():
        return "\r\n" not in text
    return _JOINING.search(text) is None


def code_points(text: str) -> np.ndarray:
    """The code points of text as an array (uint8 for ASCII text, else uint32)."""
    if text.isascii():
        return np.frombuffer(text.encode("ascii"), np.uint8)
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)


def _id_dtype(size: int) -> np.dtype:
    """The smallest unsigned integer type that holds ids 0..size-1."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if size <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


def _describe(symbols: Iterable[str], limit: int = 10) -> str:
    symbols = sorted(set(symbols))
    shown = ", ".join(repr(s) for s in symbols[:limit])
    more = f" and {len(symbols) - limit} more" if len(symbols) > limit else ""
    return shown + more


class Vocab:
    """An ordered set of symbols (sorted, so the same text always gives the same ids)."""

    def __init__(self, symbols: Sequence[str], unit: str = "grapheme") -> None:
        if unit not in UNITS:
            raise VocabError(f"unknown unit {unit!r}; choose one of {', '.join(UNITS)}")
        if not symbols:
            raise VocabError("a vocabulary needs at least one symbol")
        if len(set(symbols)) != len(symbols):
            raise VocabError("vocabulary symbols must be distinct")
        if any(not isinstance(s, str) or not s for s in symbols):
            raise VocabError("vocabulary symbols must be non-empty strings")
        self.symbols: tuple[str, ...] = tuple(symbols)
        self.unit = unit
        self.index: dict[str, int] = {s: i for i, s in enumerate(self.symbols)}
        self.dtype = _id_dtype(len(self.symbols))
        # Code point -> id table for the fast path when every symbol is a single code point:
        # the code points sorted (for searchsorted) and the id of each.
        self._codepoints = self._ids_by_point = None
        if all(len(s) == 1 for s in self.symbols):
            points = np.array([ord(s) for s in self.symbols], np.uint32)
            self._ids_by_point = np.argsort(points, kind="stable")
            self._codepoints = points[self._ids_by_point]

    @classmethod
    def from_text(cls, text: str, unit: str = "grapheme") -> Vocab:
        """The vocabulary of every distinct symbol in text."""
        if unit in UNITS and one_symbol_per_point(text, unit):
            return cls([chr(p) for p in np.unique(code_points(text))], unit)
        return cls(sorted(set(split_symbols(text, unit))), unit)

    def __len__(self) -> int:
        return len(self.symbols)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self.index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and (self.symbols, self.unit) == (other.symbols, other.unit)

    def __repr__(self) -> str:
        return f"Vocab({len(self)} symbols, unit={self.unit!r})"

    def encode(self, text: str) -> np.ndarray:
        """Ids of text's symbols; raises VocabError naming any symbol not in the vocabulary."""
        if self._codepoints is not None and one_symbol_per_point(text, self.unit):
            return self.encode_points(code_points(text))
        symbols = split_symbols(text, self.unit)
        try:
            return np.fromiter((self.index[s] for s in symbols), self.dtype, len(symbols))
        except KeyError:
            unknown = {s for s in symbols if s not in self.index}
            raise VocabError(
                f"text has symbols the model never saw: {_describe(unknown)}"
            ) from None

    @property
    def has_point_table(self) -> bool:
        """True when every symbol is one code point, so `encode_points` applies."""
        return self._codepoints is not None

    def encode_points(self, points: np.ndarray) -> np.ndarray:
        """Ids of code points, for text known to hold one symbol per code point."""
        if self._codepoints is None:
            raise VocabError("this vocabulary has multi-code-point symbols; use encode()")
        where = np.searchsorted(self._codepoints, points)
        np.minimum(where, len(self) - 1, out=where)
        known = self._codepoints[where] == points
        if not known.all():
            unknown = {chr(p) for p in np.unique(points[~known])}
            raise VocabError(f"text has symbols the model never saw: {_describe(unknown)}")
        return self._ids_by_point[where].astype(self.dtype)

    def unknown(self, text: str) -> set[str]:
        """The symbols of text that the vocabulary does not hold."""
        return {s for s in split_symbols(text, self.unit) if s not in self.index}

    def decode(self, ids: Iterable[int]) -> str:
        """The text of a sequence of ids."""
        ids = np.asarray(ids, np.int64).ravel()
        if ids.size and not 0 <= ids.min() <= ids.max() < len(self):
            raise VocabError(f"ids outside 0..{len(self) - 1}")
        symbols = self.symbols
        return "".join([symbols[i] for i in ids])

    def one_hot(self, ids: np.ndarray, dtype: np.dtype = np.float32) -> np.ndarray:
        """One-hot rows (..., V) for an array of ids (...)."""
        ids = np.asarray(ids)
        out = np.zeros((*ids.shape, len(self)), dtype)
        np.put_along_axis(out, ids[..., None].astype(np.intp), 1, axis=-1)
        return out

    def to_json(self) -> dict:
        """A JSON-ready description; `from_json` rebuilds an equal Vocab."""
        return {"unit": self.unit, "symbols": list(self.symbols)}

    @classmethod
    def from_json(cls, data: object) -> Vocab:
        if not isinstance(data, dict) or not isinstance(data.get("symbols"), list):
            raise VocabError("vocabulary JSON must be an object with a list 'symbols'")
        return cls(data["symbols"], data.get("unit", "grapheme"))


def merge_vocab(base: Vocab, symbols: Iterable[str]) -> Vocab:
    """The base's symbols and `symbols` together, sorted as every vocabulary is."""
    return Vocab(sorted(set(base.symbols) | set(symbols)), base.unit)
