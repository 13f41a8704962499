"""Large corpora: streaming a file in pieces that never split a symbol, and the memory-mapped
id cache that `train` keeps in the run directory."""

import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import charrnn
from charrnn import CorpusError, TrainConfig, Vocab
from charrnn.corpus import (
    CACHE_IDS,
    CACHE_META,
    TextFile,
    encode_file,
    encode_text,
    text_pieces,
)
from charrnn.vocab import one_symbol_per_point, split_symbols

CLUSTERS = [
    "\U0001f469\u200d\U0001f469\u200d\U0001f467",
    "e\u0301",
    "\r\n",
    "\r",
    "\n",
    "\U0001f1eb\U0001f1f7",
    "\u1100\u1161\u11a8",
    "\U0001f44d\U0001f3fd",
    "中文字",
    "\u0301",
    "ab",
    " ",
    "\ufeff",
]
texts = (
    st.lists(st.one_of(st.text(max_size=8), st.sampled_from(CLUSTERS)), max_size=60)
    .map("".join)
    .map(lambda t: t.replace("\x00", ""))  # NUL marks a binary file
)
CONFIG = {"hidden": 8, "batch": 2, "seq_len": 4, "eval_every": 5, "sample_length": 0}


def write(tmp_path, text: str, name: str = "corpus.txt", encoding: str = "utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding, "surrogatepass"))
    return path


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=texts, chunk=st.integers(1, 40), unit=st.sampled_from(["grapheme", "codepoint"]))
def test_pieces_rebuild_the_text_and_never_split_a_symbol(tmp_path, text, chunk, unit):
    """However small the read size, the pieces join to the file's text (minus a leading BOM)
    and splitting each piece gives exactly the symbols of the whole text."""
    path = write(tmp_path, "x" + text)  # never empty
    expected = ("x" + text).removeprefix("\ufeff")
    pieces = [piece for piece, _ in text_pieces(path, chunk_bytes=chunk)]
    assert "".join(pieces) == expected
    assert [s for p in pieces for s in split_symbols(p, unit)] == split_symbols(expected, unit)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=texts.filter(lambda t: t.strip("\ufeff")), chunk=st.integers(1, 64))
def test_encode_file_equals_encoding_in_memory(tmp_path, text, chunk):
    """Streamed in small chunks, a file gets the same vocabulary, ids and digest as its text
    encoded in memory."""
    path = write(tmp_path, text)
    cache = tmp_path / "cache"
    for f in (cache / CACHE_IDS, cache / CACHE_META):
        f.unlink(missing_ok=True)
    streamed = encode_file(TextFile(path), "grapheme", cache, chunk_bytes=chunk)
    in_memory = encode_text(text.removeprefix("\ufeff"), "grapheme")
    assert streamed.vocab == in_memory.vocab
    np.testing.assert_array_equal(streamed.ids, in_memory.ids)
    assert streamed.ids.dtype == in_memory.ids.dtype
    assert streamed.digest == in_memory.digest


@settings(max_examples=300, deadline=None)
@given(texts)
def test_one_symbol_per_point_is_never_wrong(text):
    """When the fast check says every code point is a symbol, the full \\X split agrees."""
    if one_symbol_per_point(text):
        assert split_symbols(text) == list(text)


# Code points of no Grapheme_Cluster_Break class that joins (no combining marks, ZWJ, Hangul
# jamo, regional indicators, no CR before LF): every one of them is a symbol of its own.
PLAIN = st.one_of(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E),  # printable ASCII
    st.sampled_from("\n\t\r€“”«»"),
    st.characters(min_codepoint=0xC0, max_codepoint=0x17F),  # Latin-1 and Latin Extended-A
    st.characters(min_codepoint=0x410, max_codepoint=0x44F),  # Cyrillic
    st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),  # CJK ideographs
)


@settings(max_examples=200, deadline=None)
@given(st.text(PLAIN, max_size=80).map(lambda t: t.replace("\r\n", "\n")))
def test_one_symbol_per_point_says_so_for_plain_text(text):
    """The fast check is the fast path for ordinary text: ASCII, accented Latin, Cyrillic and
    CJK without CR LF get True (the test above would also pass were it always False)."""
    assert split_symbols(text) == list(text)
    assert one_symbol_per_point(text)


def test_decoding_errors_name_the_byte_offset_in_any_chunk(tmp_path):
    """Invalid UTF-8 deep in a file, or a sequence cut off at its end, names its byte offset;
    a NUL byte marks a binary file at its offset."""
    good = ("line of text é\n" * 100).encode()
    cases = {
        good + b"\xff" + good: f"byte offset {len(good)}",
        good + "中".encode()[:2]: f"byte offset {len(good)}",
        good + b"ok\x00": f"NUL byte at offset {len(good) + 2}",
    }
    for data, message in cases.items():
        path = tmp_path / "bad.txt"
        path.write_bytes(data)
        for chunk in (7, 64, 1 << 20):
            with pytest.raises(CorpusError, match=message):
                encode_file(TextFile(path), "grapheme", tmp_path / "cache", chunk_bytes=chunk)
        assert not list((tmp_path / "cache").glob("*")) if (tmp_path / "cache").exists() else True


def test_other_encodings_stream_correctly(tmp_path):
    """A UTF-16 file read in odd-sized chunks decodes exactly (the decoder carries half
    characters across reads)."""
    text = "héllo wörld 中文\n" * 50
    path = write(tmp_path, text, encoding="utf-16")
    encoded = encode_file(TextFile(path, "utf-16"), "grapheme", tmp_path / "c", chunk_bytes=33)
    assert encoded.vocab.decode(encoded.ids) == text


def test_cache_is_reused_and_invalidated(tmp_path):
    """A second encode of the same file maps the cached ids without writing them again; a
    change of contents, size or mtime, or a damaged cache, makes it encode again."""
    text = "abc de\nfgh\n" * 200
    path = write(tmp_path, text)
    cache = tmp_path / "run"
    first = encode_file(TextFile(path), "grapheme", cache, chunk_bytes=100)
    assert isinstance(first.ids, np.memmap)

    def written() -> int:  # each encoding replaces the file: a new inode
        return (cache / CACHE_IDS).stat().st_ino

    before = written()
    again = encode_file(TextFile(path), "grapheme", cache)
    assert written() == before and again.digest == first.digest
    np.testing.assert_array_equal(again.ids, first.ids)

    os.utime(path, ns=(0, 0))  # same bytes, other mtime: re-encoded
    encode_file(TextFile(path), "grapheme", cache)
    assert written() != before
    write(tmp_path, text.replace("a", "z"))  # new contents and vocabulary
    changed = encode_file(TextFile(path), "grapheme", cache)
    assert "z" in changed.vocab and "a" not in changed.vocab
    (cache / CACHE_IDS).write_bytes(b"damaged")
    repaired = encode_file(TextFile(path), "grapheme", cache)
    assert repaired.vocab.decode(repaired.ids) == text.replace("a", "z")
    meta = json.loads((cache / CACHE_META).read_text())
    assert meta["symbols"] == len(text) and meta["key"]["files"][0][1] == len(text)


def test_train_on_a_file_streams_it_and_resume_reuses_the_cache(tmp_path, monkeypatch):
    """train(TextFile) trains on a memory-mapped id cache in the run directory (read in
    several chunks here) and a resume maps that cache instead of reading the file again."""
    monkeypatch.setattr(charrnn.corpus, "CHUNK_BYTES", 97)
    text = "the quick brown fox jumps over the lazy dog\n" * 40
    path = write(tmp_path, text)
    run = tmp_path / "run"
    result = charrnn.train(TextFile(path), TrainConfig(steps=10, **CONFIG), run)
    assert result.step == 10 and (run / CACHE_IDS).exists()
    in_memory = charrnn.train(text, TrainConfig(steps=10, **CONFIG), tmp_path / "mem")
    val = [r["val_loss"] for r in result.history]
    assert val == [r["val_loss"] for r in in_memory.history]  # the very same training

    def no_read(*args, **kwargs):
        raise AssertionError("the cached corpus was read again")

    monkeypatch.setattr(charrnn.corpus, "text_pieces", no_read)
    resumed = charrnn.train(TextFile(path), TrainConfig(steps=15, **CONFIG), run, resume=True)
    assert resumed.step == 15
    assert charrnn.load(run).vocab == Vocab.from_text(text)


def test_unusable_file_leaves_no_run_directory(tmp_path):
    """A file that fails while streaming (invalid UTF-8 late, or too short for one chunk)
    leaves neither a run directory nor cache files behind."""
    bad = write(tmp_path, "fine text\n" * 50 + "\udcff", name="bad.txt")
    short = write(tmp_path, "tiny\n", name="short.txt")
    for path in (bad, short):
        run = tmp_path / f"run-{path.stem}"
        with pytest.raises(CorpusError):
            charrnn.train(TextFile(path), TrainConfig(steps=5, **CONFIG), run)
        assert not run.exists()
    empty_dir = tmp_path / "given"
    empty_dir.mkdir()
    with pytest.raises(CorpusError):
        charrnn.train(TextFile(short), TrainConfig(steps=5, **CONFIG), empty_dir)
    assert empty_dir.is_dir() and not any(empty_dir.iterdir())


def test_stop_while_encoding_leaves_nothing_behind(tmp_path, monkeypatch):
    """A stop request (Ctrl-C) while a file is encoded ends training at once with
    KeyboardInterrupt, leaving no run directory and no temp file."""
    monkeypatch.setattr(charrnn.corpus, "CHUNK_BYTES", 64)
    path = write(tmp_path, "a line of text to encode\n" * 200)
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 3  # a few pieces in

    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        charrnn.train(TextFile(path), TrainConfig(steps=5, **CONFIG), run, stop=stop)
    assert not run.exists()
