"""Corpus: reading text files strictly, the built-in corpus and the train/validation split."""

from pathlib import Path

import numpy as np
import pytest

from charrnn import CorpusError
from charrnn.corpus import (
    BUILTIN,
    TextFile,
    builtin_corpus,
    load_corpus,
    read_text,
    split_ids,
)


def write(tmp_path: Path, data: bytes, name: str = "text.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_reads_utf8(tmp_path):
    """A UTF-8 file is returned exactly, multi-byte characters included."""
    text = "héllo 👩\u200d👩\u200d👧 中文\n"
    assert read_text(write(tmp_path, text.encode())) == text


def test_missing_path(tmp_path):
    """A missing path is a CorpusError naming the path."""
    with pytest.raises(CorpusError, match="no such file") as info:
        read_text(tmp_path / "nope.txt")
    assert "nope.txt" in str(info.value)


def test_directory(tmp_path):
    """A directory is a CorpusError, not an IsADirectoryError."""
    with pytest.raises(CorpusError, match="directory"):
        read_text(tmp_path)


def test_empty_file(tmp_path):
    """An empty file is a CorpusError."""
    with pytest.raises(CorpusError, match="empty"):
        read_text(write(tmp_path, b""))


def test_bom_only_file_holds_no_text(tmp_path):
    """A file with only a byte-order mark holds no text."""
    with pytest.raises(CorpusError, match="no text"):
        read_text(write(tmp_path, b"\xef\xbb\xbf"))


@pytest.mark.parametrize(
    ("data", "offset"),
    [(b"abc\xffdef", 3), (b"\x80", 0), ("héllo".encode() + b"\xc3(", 6), (b"ok\xe2\x82", 2)],
)
def test_invalid_utf8_names_byte_offset(tmp_path, data, offset):
    """Invalid UTF-8 is a CorpusError naming the byte offset of the first bad byte."""
    with pytest.raises(CorpusError) as info:
        read_text(write(tmp_path, data))
    message = str(info.value)
    assert f"byte offset {offset} " in message
    assert "--encoding" in message


def test_nul_bytes_mean_binary(tmp_path):
    """A file with NUL bytes is reported as binary, with the offset of the first NUL."""
    with pytest.raises(CorpusError, match="binary") as info:
        read_text(write(tmp_path, b"text\x00\x01\x02"))
    assert "offset 4" in str(info.value)


def test_bom_stripped(tmp_path):
    """A UTF-8 byte-order mark is not part of the text."""
    assert read_text(write(tmp_path, b"\xef\xbb\xbfhello")) == "hello"


def test_latin1_encoding(tmp_path):
    """Another encoding can be chosen; latin-1 bytes that are invalid UTF-8 then decode."""
    path = write(tmp_path, "café naïve".encode("latin-1"))
    with pytest.raises(CorpusError):
        read_text(path)
    assert read_text(path, encoding="latin-1") == "café naïve"


def test_unknown_encoding(tmp_path):
    """An unknown encoding name is a CorpusError."""
    with pytest.raises(CorpusError, match="unknown encoding"):
        read_text(write(tmp_path, b"abc"), encoding="no-such-codec")


def test_crlf_preserved(tmp_path):
    """Line endings are kept byte for byte (no newline translation)."""
    assert read_text(write(tmp_path, b"a\r\nb\rc\n")) == "a\r\nb\rc\n"


def test_builtin_python_docs():
    """python-docs loads without a download and holds over 400,000 characters of prose."""
    text = builtin_corpus("python-docs")
    assert len(text) > 400_000
    assert "python-docs" in BUILTIN
    assert "lambda" in text and text.endswith("\n")
    assert builtin_corpus("python-docs") == text


def test_unknown_builtin():
    """An unknown built-in name is a CorpusError listing the built-ins."""
    with pytest.raises(CorpusError, match="python-docs"):
        builtin_corpus("klingon")


@pytest.mark.parametrize(
    ("n", "fraction"), [(1000, 0.1), (1009, 0.1), (57, 0.25), (19, 0.5), (10, 0.5)]
)
def test_split_ids_proportions(n, fraction):
    """The last round(n * fraction) ids are validation, the rest training, in order."""
    ids = np.arange(n)
    train, val = split_ids(ids, fraction)
    assert len(val) == round(n * fraction)
    assert np.array_equal(np.concatenate([train, val]), ids)


def test_split_ids_zero_fraction():
    """val_fraction 0 trains on everything and validates on nothing."""
    train, val = split_ids(np.arange(10), 0.0)
    assert len(train) == 10 and len(val) == 0


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_split_ids_bad_fraction(fraction):
    """val_fraction outside [0, 1) is a CorpusError."""
    with pytest.raises(CorpusError, match="val-fraction"):
        split_ids(np.arange(100), fraction)


def test_split_ids_too_little_validation():
    """A split that leaves fewer than 2 validation symbols is a CorpusError."""
    with pytest.raises(CorpusError, match="at least 2"):
        split_ids(np.arange(10), 0.1)


def test_load_corpus(tmp_path):
    """load_corpus reads a file, a built-in or the default, and says where the text came from."""
    path = write(tmp_path, "ab\u00e9".encode("latin-1"))
    text, source = load_corpus(path, encoding="latin-1")
    assert text == TextFile(path, "latin-1")
    assert read_text(text.path, text.encoding) == "ab\u00e9"
    assert source == {"path": str(path.resolve()), "encoding": "latin-1"}
    text, source = load_corpus(name="python-docs")
    assert source == {"builtin": "python-docs"} and len(text) > 400_000
    assert load_corpus() == (text, source)
    with pytest.raises(CorpusError, match="not both"):
        load_corpus(path, name="python-docs")
    with pytest.raises(CorpusError):
        load_corpus(tmp_path / "missing.txt")
