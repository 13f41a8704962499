"""Vocab: symbols <-> ids for any Unicode text, with grapheme clusters kept whole."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charrnn import Vocab, VocabError
from charrnn.vocab import split_symbols

FAMILY = "\U0001f469\u200d\U0001f469\u200d\U0001f467"  # woman, ZWJ, woman, ZWJ, girl
CLUSTERS = [
    FAMILY,
    "e\u0301",
    "\r\n",
    "\U0001f1eb\U0001f1f7",  # a regional-indicator flag
    "\u1100\u1161\u11a8",  # a Hangul syllable as conjoining jamo
    "\U0001f44d\U0001f3fd",  # an emoji with a skin-tone modifier
    "中文字",
    "\u0301",
    "a",
]
unicode_text = st.lists(st.one_of(st.text(), st.sampled_from(CLUSTERS))).map("".join)


@settings(max_examples=300, deadline=None)
@given(unicode_text.filter(bool), st.sampled_from(["grapheme", "codepoint"]))
def test_round_trip_any_unicode(text, unit):
    """decode(encode(t)) == t for arbitrary Unicode text in both units."""
    vocab = Vocab.from_text(text, unit)
    ids = vocab.encode(text)
    assert vocab.decode(ids) == text
    assert len(ids) == len(split_symbols(text, unit))


@settings(max_examples=200, deadline=None)
@given(unicode_text.filter(bool), st.sampled_from(["grapheme", "codepoint"]))
def test_ids_follow_sorted_symbols(text, unit):
    """Symbols are the sorted distinct units and each id indexes its own symbol."""
    vocab = Vocab.from_text(text, unit)
    symbols = split_symbols(text, unit)
    assert vocab.symbols == tuple(sorted(set(symbols)))
    assert [vocab.symbols[i] for i in vocab.encode(text)] == symbols


@pytest.mark.parametrize("cluster", [FAMILY, "e\u0301", "\r\n", "\U0001f1eb\U0001f1f7"])
def test_grapheme_cluster_is_one_symbol(cluster):
    """A ZWJ emoji, a letter with a combining mark, CRLF and a flag are each one symbol."""
    text = f"a{cluster}b{cluster}"
    vocab = Vocab.from_text(text)
    assert vocab.symbols == tuple(sorted({"a", "b", cluster}))
    ids = vocab.encode(text)
    assert len(ids) == 4
    assert ids[1] == ids[3] == vocab.index[cluster]


def test_codepoint_unit_splits_clusters():
    """unit="codepoint" gives one symbol per code point, even inside a cluster."""
    vocab = Vocab.from_text(FAMILY + "e\u0301", unit="codepoint")
    assert len(vocab) == 5
    assert len(vocab.encode(FAMILY)) == 5


def test_cluster_is_unknown_even_when_its_parts_are_known():
    """Grapheme encoding does not split an unseen cluster into known code points."""
    vocab = Vocab.from_text("\u0301e")  # two separate graphemes
    assert set(vocab.symbols) == {"e", "\u0301"}
    with pytest.raises(VocabError) as info:
        vocab.encode("e\u0301")
    assert repr("e\u0301") in str(info.value)


@pytest.mark.parametrize(
    ("size", "dtype"),
    [(1, np.uint8), (256, np.uint8), (257, np.uint16), (65536, np.uint16), (65537, np.uint32)],
)
def test_encode_dtype_is_smallest_unsigned(size, dtype):
    """ids use uint8 up to 256 symbols, uint16 up to 65,536, then uint32."""
    symbols = [chr(0x100 + i) for i in range(size)]
    vocab = Vocab(symbols)
    text = symbols[-1] + symbols[0]
    ids = vocab.encode(text)
    assert ids.dtype == dtype
    assert ids.tolist() == [size - 1, 0]
    assert vocab.decode(ids) == text


def test_encode_dtype_on_cluster_path():
    """The slow (multi-code-point) path also returns the smallest dtype and right ids."""
    symbols = sorted({chr(0x4E00 + i) for i in range(300)} | {FAMILY})
    vocab = Vocab(symbols)
    text = FAMILY + chr(0x4E00 + 299)
    ids = vocab.encode(text)
    assert ids.dtype == np.uint16
    assert vocab.decode(ids) == text


def test_unsorted_symbols_encode_by_position():
    """A Vocab built from symbols in any order encodes each symbol to its own index."""
    vocab = Vocab(["b", "a", "c"])
    assert vocab.encode("abc").tolist() == [1, 0, 2]
    assert vocab.decode([1, 0, 2]) == "abc"
    with pytest.raises(VocabError):
        vocab.encode("abd")


def test_unknown_symbols_are_named():
    """Encoding unknown symbols raises VocabError naming each one (and only those)."""
    vocab = Vocab.from_text("hello")
    with pytest.raises(VocabError) as info:
        vocab.encode("help!")
    message = str(info.value)
    assert "'p'" in message and "'!'" in message
    assert "'h'" not in message
    with pytest.raises(VocabError) as info:
        Vocab.from_text("abc").encode("a" + FAMILY)
    assert repr(FAMILY) in str(info.value)
    assert vocab.unknown("help!") == {"p", "!"}


def test_many_unknown_symbols_are_summarised():
    """More than ten unknown symbols name ten and count the rest."""
    with pytest.raises(VocabError, match="and 5 more"):
        Vocab.from_text("a").encode("bcdefghijklmnop")


def test_decode_rejects_ids_out_of_range():
    """decode raises VocabError for ids outside 0..V-1, negative ones included."""
    vocab = Vocab.from_text("abc")
    for bad in ([3], [-1], [0, 1, 7]):
        with pytest.raises(VocabError):
            vocab.decode(bad)
    assert vocab.decode([]) == ""
    assert vocab.decode(np.array([[2, 1], [0, 0]], np.uint8)) == "cbaa"


def test_one_hot():
    """one_hot puts exactly one 1 per row at the id, shape (..., V)."""
    vocab = Vocab.from_text("abcd")
    ids = np.array([[3, 0, 1], [2, 2, 0]], np.uint8)
    out = vocab.one_hot(ids)
    assert out.shape == (2, 3, 4)
    assert out.dtype == np.float32
    assert np.array_equal(out.argmax(-1), ids)
    assert np.array_equal(out.sum(-1), np.ones((2, 3)))
    assert set(np.unique(out)) == {0.0, 1.0}
    assert vocab.one_hot(np.array(1), np.float64).tolist() == [0.0, 1.0, 0.0, 0.0]


@settings(max_examples=100, deadline=None)
@given(unicode_text.filter(bool), st.sampled_from(["grapheme", "codepoint"]))
def test_json_round_trip(text, unit):
    """to_json / from_json (also through json.dumps / loads) rebuilds an equal Vocab."""
    vocab = Vocab.from_text(text, unit)
    again = Vocab.from_json(json.loads(json.dumps(vocab.to_json())))
    assert again == vocab
    assert again.unit == unit
    assert np.array_equal(again.encode(text), vocab.encode(text))


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        {"symbols": "abc"},
        {"symbols": []},
        {"symbols": ["a", "a"]},
        {"symbols": ["", "a"]},
    ],
)
def test_from_json_rejects_bad_data(data):
    """Malformed vocabulary JSON raises VocabError."""
    with pytest.raises(VocabError):
        Vocab.from_json(data)


def test_bad_unit_empty_text_and_equality():
    """An unknown unit or an empty text is a VocabError; equality is symbols and unit."""
    with pytest.raises(VocabError):
        Vocab.from_text("")
    with pytest.raises(VocabError, match="unit"):
        Vocab.from_text("abc", unit="word")
    assert Vocab.from_text("abc") == Vocab.from_text("cab")
    assert Vocab.from_text("abc") != Vocab.from_text("abc", unit="codepoint")
    assert Vocab.from_text("abc") != Vocab.from_text("abd")
    assert len(Vocab.from_text("abca")) == 3
    assert "a" in Vocab.from_text("abc") and "z" not in Vocab.from_text("abc")
