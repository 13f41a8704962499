"""Many files and folders as one corpus: the walk, the per-file validation split, the separator,
skipped files, the id cache and its key, files changing while read, and the CLI around them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import TRAIN_ARGS, assert_usage_error, english_like, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_guarantees_resume import assert_same_run

import charrnn
from charrnn import CorpusError, TextFile, TextFiles, TrainConfig, Vocab
from charrnn.corpus import (
    CACHE_IDS,
    FILE_SEPARATOR,
    encode_file,
    encode_text,
    split_ids,
    walk,
)
from charrnn.vocab import split_symbols


def tree(root: Path, files: dict[str, str | bytes]) -> Path:
    """Write files (text as UTF-8, or bytes) under root; return root."""
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
    return root


def expected_split(texts: list[str], val_fraction: float, unit: str = "grapheme"):
    """The training and validation texts the design promises: each file's last share of
    symbols is validation; the parts joined by FILE_SEPARATOR, empty parts left out."""
    train, val = [], []
    for text in texts:
        symbols = split_symbols(text, unit)
        n_val = round(len(symbols) * val_fraction)
        train.append("".join(symbols[: len(symbols) - n_val]))
        val.append("".join(symbols[len(symbols) - n_val :]))
    return (
        FILE_SEPARATOR.join(t for t in train if t),
        FILE_SEPARATOR.join(v for v in val if v),
    )


def decoded(encoded) -> tuple[str, str]:
    train, val = encoded.split()
    return encoded.vocab.decode(train), encoded.vocab.decode(val)


# ---- the split, the separator, the order --------------------------------------------------


def test_every_file_gives_its_tail_to_validation(tmp_path):
    """Each file is split on its own: the last quarter of each is validation, exactly."""
    notes = tree(tmp_path / "notes", {"a.txt": "abcdefgh", "b.txt": "ijklmnopqrst"})
    encoded = encode_file(TextFiles((notes,)), "grapheme", tmp_path / "run", val_fraction=0.25)
    assert decoded(encoded) == (
        "abcdef" + FILE_SEPARATOR + "ijklmnopq",
        "gh" + FILE_SEPARATOR + "rst",
    )
    train, val = encoded.split()
    assert encoded.n_train == len(train) == 6 + 2 + 9 and len(val) == 2 + 2 + 3
    assert train.base is not None and val.base is not None  # views of the memory map
    ids = encoded.vocab.encode
    np.testing.assert_array_equal(train, ids("abcdef\n\nijklmnopq"))
    np.testing.assert_array_equal(val, ids("gh\n\nrst"))


@pytest.mark.parametrize("val_fraction", [0.0, 0.1, 0.3])
def test_one_file_is_todays_ids_split_and_digest(tmp_path, val_fraction):
    """A one-element list, a TextFile and the text in memory agree on ids, split and digest."""
    text = english_like(3000, seed=5)
    path = tree(tmp_path, {"one.txt": text}) / "one.txt"
    listed = encode_file(TextFiles((path,)), "grapheme", tmp_path / "a", val_fraction=val_fraction)
    single = encode_file(TextFile(path), "grapheme", tmp_path / "b", val_fraction=val_fraction)
    memory = encode_text(text, "grapheme", val_fraction=val_fraction)
    for encoded in (listed, single):
        np.testing.assert_array_equal(encoded.ids, memory.ids)
        assert (encoded.vocab, encoded.digest, encoded.n_train) == (
            memory.vocab,
            memory.digest,
            memory.n_train,
        )
    train, val = split_ids(memory.ids, val_fraction)
    np.testing.assert_array_equal(listed.split()[0], train)
    np.testing.assert_array_equal(listed.split()[1], val)


def test_walk_order_is_sorted_and_explicit_order_kept(tmp_path):
    """A directory's files in sorted path order at every depth; files given by name as given."""
    root = tree(
        tmp_path / "d",
        {"b.txt": "b", "a/z.txt": "z", "a/b/c.txt": "c", "a.txt": "a", "c/x.txt": "x"},
    )
    assert [e.rel for e in walk(TextFiles((root,)))] == [
        "a.txt",
        "a/b/c.txt",
        "a/z.txt",
        "b.txt",
        "c/x.txt",
    ]
    given = TextFiles((root / "c" / "x.txt", root / "a.txt", root / "a"))
    assert [e.name for e in walk(given)] == ["x.txt", "a.txt", "a/b/c.txt", "a/z.txt"]
    encoded = encode_file(given, "grapheme", tmp_path / "run")
    assert encoded.vocab.decode(encoded.ids) == FILE_SEPARATOR.join("xacz")


def test_hidden_names_and_symlinked_directories_are_left_out(tmp_path):
    root = tree(
        tmp_path / "d",
        {"keep.txt": "keep", ".hidden.txt": "no", ".git/config": "no", "sub/.x/y.txt": "no"},
    )
    (root / "link").symlink_to(tree(tmp_path / "elsewhere", {"far.txt": "no"}))
    assert [e.rel for e in walk(TextFiles((root,)))] == ["keep.txt"]
    encoded = encode_file(TextFiles((root,)), "grapheme", tmp_path / "run")
    assert encoded.vocab.decode(encoded.ids) == "keep" and encoded.skipped == ()


def test_found_files_that_are_not_text_are_skipped_and_named(tmp_path):
    root = tree(
        tmp_path / "notes",
        {
            "a.txt": "fine\n",
            "b.bin": b"\x89PNG\x00\x00",
            "c.txt": b"caf\xe9\n",
            "d.txt": b"",
            "e.txt": "\ufeff",
            "f.txt": "also fine\n",
        },
    )
    encoded = encode_file(TextFiles((root,)), "grapheme", tmp_path / "run")
    assert encoded.skipped == ("notes/b.bin", "notes/c.txt", "notes/d.txt", "notes/e.txt")
    assert encoded.vocab.decode(encoded.ids) == "fine\n" + FILE_SEPARATOR + "also fine\n"
    latin = encode_file(TextFiles((root,), "latin-1"), "grapheme", tmp_path / "latin")
    assert "notes/c.txt" not in latin.skipped and "é" in latin.vocab


def test_a_directory_without_text_and_an_explicit_binary_file_are_errors(tmp_path):
    root = tree(tmp_path / "bin", {"a.bin": b"\x00\x01", "b.dat": b""})
    with pytest.raises(CorpusError, match=r"bin: no text file in it \(2 skipped: bin/a.bin"):
        encode_file(TextFiles((root,)), "grapheme", tmp_path / "run")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match=r"empty: no text file in it$"):
        encode_file(TextFiles((tmp_path / "empty",)), "grapheme", tmp_path / "run")
    fine = tree(tmp_path, {"fine.txt": "text\n"}) / "fine.txt"
    with pytest.raises(CorpusError, match=r"a.bin: NUL byte at offset 0"):
        encode_file(TextFiles((fine, root / "a.bin")), "grapheme", tmp_path / "run")
    with pytest.raises(CorpusError, match=r"missing.txt: no such file"):
        encode_file(TextFiles((fine, tmp_path / "missing.txt")), "grapheme", tmp_path / "run")


def test_include_adds_symbols_and_ids_stay_sorted(tmp_path):
    root = tree(tmp_path / "d", {"a.txt": "bca", "b.txt": "cab"})
    base = Vocab(["Z", "a", "é"])
    encoded = encode_file(TextFiles((root,)), "grapheme", tmp_path / "run", include=base)
    assert encoded.vocab.symbols == tuple(sorted({"a", "b", "c", "\n", "Z", "é"}))
    assert encoded.vocab.decode(encoded.ids) == "bca\n\ncab"
    plain = encode_file(TextFiles((root,)), "grapheme", tmp_path / "run")  # not the cached one
    assert "Z" not in plain.vocab
    memory = encode_text("bca", "grapheme", include=base)
    assert memory.vocab == Vocab(sorted({"a", "b", "c", "Z", "é"}))


# ---- the cache and files that change ------------------------------------------------------


def test_the_cache_is_reused_and_keyed_by_every_file(tmp_path):
    root = tree(tmp_path / "d", {"a.txt": "alpha\n", "b.txt": "beta\n"})
    cache = tmp_path / "run"
    first = encode_file(TextFiles((root,)), "grapheme", cache, val_fraction=0.2)
    inode = (cache / CACHE_IDS).stat().st_ino
    again = encode_file(TextFiles((root,)), "grapheme", cache, val_fraction=0.2)
    assert (cache / CACHE_IDS).stat().st_ino == inode and again.digest == first.digest
    assert again.n_train == first.n_train
    (root / "c.txt").write_text("gamma\n")
    third = encode_file(TextFiles((root,)), "grapheme", cache, val_fraction=0.2)
    assert (cache / CACHE_IDS).stat().st_ino != inode and "g" in third.vocab
    meta = json.loads((cache / "corpus.json").read_text())
    assert [f[0] for f in meta["key"]["files"]] == ["d/a.txt", "d/b.txt", "d/c.txt"]


def test_a_file_changed_or_gone_between_the_passes_is_named(tmp_path):
    root = tree(tmp_path / "d", {"a.txt": "alpha\n" * 50, "b.txt": "beta\n" * 50})

    def meddle(action):
        def progress(what, done, total):
            if what == "encoding" or done == total:  # between the passes (or in the second)
                action()

        return progress

    def change():
        (root / "b.txt").write_text("BETA\n" * 50)

    for chunk in (None, 64):  # kept in memory, or streamed again
        with pytest.raises(CorpusError, match=r"b.txt: the file changed while it was being read"):
            encode_file(TextFiles((root,)), "grapheme", tmp_path / "r", meddle(change), chunk)
        tree(root, {"b.txt": "beta\n" * 50})
    for chunk in (None, 64):
        with pytest.raises(CorpusError, match=r"a.txt: the file vanished while it was being read"):
            encode_file(
                TextFiles((root,)),
                "grapheme",
                tmp_path / "r",
                meddle(lambda: (root / "a.txt").unlink(missing_ok=True)),
                chunk,
            )
        tree(root, {"a.txt": "alpha\n" * 50})
    assert not list((tmp_path / "r").glob("*.tmp"))


def test_a_folder_larger_than_the_piece_size_gives_the_same_ids(tmp_path):
    texts = {f"f{i:02}.txt": english_like(300 + 37 * i, seed=i) for i in range(12)}
    texts["crlf.txt"] = "windows\r\nlines\r\n" * 20
    root = tree(tmp_path / "d", texts)
    whole = encode_file(TextFiles((root,)), "grapheme", tmp_path / "a", val_fraction=0.1)
    pieces = encode_file(
        TextFiles((root,)), "grapheme", tmp_path / "b", chunk_bytes=64, val_fraction=0.1
    )
    np.testing.assert_array_equal(whole.ids, pieces.ids)
    assert (whole.vocab, whole.digest, whole.n_train) == (
        pieces.vocab,
        pieces.digest,
        pieces.n_train,
    )
    assert decoded(whole) == expected_split([texts[n] for n in sorted(texts)], 0.1)


file_texts = st.lists(
    st.text(st.sampled_from("ab\r\n é\u0301中"), max_size=30).filter(lambda t: t.strip("\ufeff")),
    min_size=1,
    max_size=5,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    texts=file_texts,
    val_fraction=st.sampled_from([0.0, 0.1, 0.25, 0.5]),
    chunk=st.sampled_from([None, 7]),
    unit=st.sampled_from(["grapheme", "codepoint"]),
)
def test_property_train_and_validation_are_the_per_file_split(
    tmp_path, texts, val_fraction, chunk, unit
):
    """For any small set of files: training and validation ids decode to each file's split,
    joined by the separator; the digest is that of the files joined by it."""
    root = tmp_path / "prop"
    for old in root.glob("*"):
        old.unlink()
    tree(root, {f"{i}.txt": t for i, t in enumerate(texts)})
    want_train, want_val = expected_split(texts, val_fraction, unit)
    if val_fraction and len(split_symbols(want_val, unit)) < 2:
        with pytest.raises(CorpusError, match="needs at least 2"):
            encode_file(
                TextFiles((root,)), unit, tmp_path / "c", None, chunk, val_fraction=val_fraction
            )
        return
    encoded = encode_file(
        TextFiles((root,)), unit, tmp_path / "c", None, chunk, val_fraction=val_fraction
    )
    assert decoded(encoded) == (want_train, want_val)
    assert encoded.digest == charrnn.corpus.text_digest(FILE_SEPARATOR.join(texts))


# ---- training, resume and the CLI ----------------------------------------------------------


@pytest.fixture
def notes(tmp_path) -> Path:
    return tree(
        tmp_path / "notes",
        {
            "a.txt": english_like(1200, seed=1),
            "b.txt": english_like(900, seed=2),
            "sub/c.txt": english_like(1500, seed=3),
            "image.png": b"\x89PNG\r\n\x1a\n\x00\x00",
            ".git/HEAD": "ref: refs/heads/main\n",
        },
    )


def test_train_on_a_folder_prints_the_skipped_line_and_resumes_exactly(tmp_path, notes):
    """A folder run (through the CLI) names its skipped file once, records its files, and a
    stop-and-resume equals a straight run bit for bit."""
    steps = ("--schedule", "constant", "--eval-every", "10", "--sample-length", "20")
    straight = run_cli(
        "train", notes, *TRAIN_ARGS, *steps, "--steps", "30", "--out", tmp_path / "s"
    )
    assert straight.returncode == 0, straight.stderr
    line = "skipped 1 file that is not text: notes/image.png"
    assert straight.stdout.count(line) == 1
    source = json.loads((tmp_path / "s" / "config.json").read_text())["corpus"]
    assert source["paths"] == [str(notes.resolve())] and source["encoding"] == "utf-8"
    first = run_cli("train", notes, *TRAIN_ARGS, *steps, "--steps", "20", "--out", tmp_path / "r")
    assert first.returncode == 0, first.stderr
    resumed = run_cli("train", "--resume", tmp_path / "r", "--steps", "30", cwd=tmp_path / "r")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming at step 20" in resumed.stdout and line in resumed.stdout
    assert_same_run(tmp_path / "s", tmp_path / "r")


def test_resume_refuses_changed_files_by_name(tmp_path, notes):
    run = tmp_path / "run"
    proc = run_cli("train", notes, *TRAIN_ARGS, "--steps", "2", "--out", run)
    assert proc.returncode == 0, proc.stderr
    (notes / "a.txt").unlink()
    (notes / "b.txt").write_text(english_like(900, seed=9))
    (notes / "new.txt").write_text("something new\n")
    line = assert_usage_error(
        run_cli("train", "--resume", run, "--steps", "4"),
        "differs",
        "added notes/new.txt",
        "removed notes/a.txt",
        "changed notes/b.txt",
    )
    assert str(run) in line


def test_cli_errors_for_files(tmp_path, notes):
    bins = tree(tmp_path / "bins", {"x.bin": b"\x00", "y.bin": b"\xff\xfe\x00"})
    assert_usage_error(
        run_cli("train", bins, "--steps", "1", "--out", tmp_path / "a"),
        "no text file in it",
        "2 skipped",
        "bins/x.bin",
    )
    assert_usage_error(
        run_cli("train", notes, bins / "x.bin", "--steps", "1", "--out", tmp_path / "b"),
        "x.bin: NUL byte at offset 0",
    )
    assert_usage_error(
        run_cli("train", notes, "https://example.org/a.txt", "--out", tmp_path / "c"),
        "URL",
    )
    assert_usage_error(
        run_cli("train", notes, notes / "a.txt", "--corpus", "shakespeare"),
        "not both",
    )
    assert not any((tmp_path / d).exists() for d in "abc")


def test_python_api_trains_on_files_and_dirs(tmp_path, notes):
    extra = tree(tmp_path, {"extra.txt": english_like(800, seed=7)}) / "extra.txt"
    config = TrainConfig(hidden=8, batch=2, seq_len=8, steps=3, sample_length=0)
    seen = {}

    class Recorder(charrnn.training.Observer):
        def on_start(self, info):
            seen.update(info)

    result = charrnn.train(TextFiles((extra, notes)), config, tmp_path / "run", observer=Recorder())
    assert result.step == 3 and seen["skipped"] == ("notes/image.png",)
    assert os.path.exists(tmp_path / "run" / CACHE_IDS)
