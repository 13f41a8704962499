"""Run directories: exact save/load, no pickle, clear errors for bad files, exact resume."""

import dataclasses
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

import charrnn
from charrnn import CheckpointError, ConfigError, TrainConfig, Vocab, checkpoint, train
from charrnn.checkpoint import atomic_write_bytes, read_meta, read_npz, save_npz
from charrnn.model import param_shapes

PARAM_NAMES = tuple(param_shapes(1, 1))  # a one-layer vanilla RNN's

TEXT = "It was the best of times, it was the worst of times; " * 12
CONFIG = TrainConfig(hidden=16, seq_len=16, batch=4, steps=20, eval_every=10, sample_length=20)


@pytest.fixture
def saved(tmp_path, monkeypatch):
    """A tiny trained run and a copy of every array dict written to each .npz name."""
    writes = []
    real = checkpoint.save_npz

    def spy(path, arrays, meta):
        writes.append((Path(path).name, {k: v.copy() for k, v in arrays.items()}, meta))
        real(path, arrays, meta)

    monkeypatch.setattr(checkpoint, "save_npz", spy)
    result = train(TEXT, dataclasses.replace(CONFIG), tmp_path / "run")
    monkeypatch.undo()
    return result, writes


def test_load_round_trip_is_exact(saved):
    """load() returns the weights bitwise as last saved, the same vocab and the config."""
    result, writes = saved
    run_dir = result.run_dir
    last_latest = [arrays for name, arrays, _ in writes if name == "latest.npz"][-1]
    run = charrnn.load(run_dir, "latest")
    assert run.path == run_dir / "latest.npz"
    assert run.vocab == Vocab.from_text(TEXT)
    assert run.config["step"] == result.step == 20
    assert run.config["train"]["hidden"] == 16
    assert run.model.hidden_size == 16 and run.model.vocab_size == len(run.vocab)
    for k in PARAM_NAMES:
        saved_array = last_latest[f"param/{k}"]
        assert run.model.params[k].dtype == saved_array.dtype == np.float32
        assert run.model.params[k].tobytes() == saved_array.tobytes()
    with np.load(run_dir / "latest.npz", allow_pickle=False) as npz:
        for k in PARAM_NAMES:
            assert np.array_equal(npz[f"param/{k}"], run.model.params[k])


def test_load_prefers_best(saved):
    """load(run_dir) reads best.npz, which holds the weights of the best validation step."""
    result, writes = saved
    best = [(arrays, meta) for name, arrays, meta in writes if name == "best.npz"][-1]
    assert best[1]["step"] == result.best_step
    run = charrnn.load(result.run_dir)
    assert run.path.name == "best.npz"
    for k in PARAM_NAMES:
        assert run.model.params[k].tobytes() == best[0][f"param/{k}"].tobytes()
    assert charrnn.load(result.run_dir / "best.npz").config == run.config


def test_run_directory_contents(saved):
    """The run holds latest/best .npz, config.json and one metrics line per evaluation."""
    result, _ = saved
    run_dir = result.run_dir
    assert {p.name for p in run_dir.iterdir()} == {
        "latest.npz",
        "best.npz",
        "config.json",
        "metrics.jsonl",
    }
    config = json.loads((run_dir / "config.json").read_text())
    assert config["format_version"] == checkpoint.FORMAT_VERSION
    assert config["step"] == 20
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [10, 20]
    assert all(np.isfinite(r["val_loss"]) for r in records)


def test_loading_never_unpickles(saved, monkeypatch):
    """Loading a checkpoint works with np.load and pickle disabled."""

    def forbidden(*args, **kwargs):
        raise AssertionError("np.load / pickle must not be used")

    monkeypatch.setattr(np, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    run = charrnn.load(saved[0].run_dir)
    assert run.model.params["W_hh"].shape == (16, 16)


def test_object_array_rejected(saved, tmp_path):
    """An .npz holding an object array is a CheckpointError, never unpickled."""
    latest = saved[0].run_dir / "latest.npz"
    arrays = read_npz(latest)
    arrays["param/W_hh"] = np.array([{"evil": 1}] * 4, dtype=object)
    path = tmp_path / "object.npz"
    np.savez(path, **arrays)
    with pytest.raises(CheckpointError, match="Python objects"):
        read_npz(path)
    with pytest.raises(CheckpointError):
        charrnn.load(path)


def test_read_npz_checks_expected_members(saved):
    """read_npz with `expected` accepts exact members and rejects wrong, extra or missing ones."""
    latest = saved[0].run_dir / "latest.npz"
    arrays = read_npz(latest)
    assert set(checkpoint.model_arrays_expected(read_meta(latest))) < set(arrays)
    expected = {k: (a.shape, a.dtype) for k, a in arrays.items() if k != "meta"}
    assert read_npz(latest, expected).keys() == arrays.keys()
    with pytest.raises(CheckpointError, match="b_h"):
        read_npz(latest, {**expected, "param/b_h": ((17,), np.dtype(np.float32))})
    with pytest.raises(CheckpointError, match="missing arrays extra"):
        read_npz(latest, {**expected, "extra": ((1,), np.dtype(np.float32))})
    with pytest.raises(CheckpointError, match="unexpected member 'state/h'"):
        read_npz(latest, {k: v for k, v in expected.items() if k != "state/h"})


def rewrite(src: Path, dst: Path, change_meta=None, change_arrays=None):
    arrays = read_npz(src)
    meta = json.loads(arrays.pop("meta").tobytes())
    if change_meta:
        change_meta(meta)
    if change_arrays:
        change_arrays(arrays)
    save_npz(dst, arrays, meta)
    return dst


def test_rewritten_checkpoint_still_loads(saved, tmp_path):
    """Rewriting a checkpoint unchanged gives a loadable, identical checkpoint (control)."""
    latest = saved[0].run_dir / "latest.npz"
    copy = rewrite(latest, tmp_path / "copy.npz")
    a, b = charrnn.load(latest), charrnn.load(copy)
    assert all(np.array_equal(a.model.params[k], b.model.params[k]) for k in PARAM_NAMES)


@pytest.mark.parametrize("version", [0, 3, "2", None])
def test_other_format_version_rejected(saved, tmp_path, version):
    """A checkpoint of a format version this charrnn does not read is a CheckpointError naming
    the version."""
    latest = saved[0].run_dir / "latest.npz"
    path = rewrite(latest, tmp_path / "v.npz", lambda m: m.update(format_version=version))
    with pytest.raises(CheckpointError, match=f"version {version!r}; this charrnn reads"):
        charrnn.load(path)


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m.update(format="other"),
        lambda m: m["model"].update(hidden_size=17),
        lambda m: m["model"].update(vocab_size=3),
        lambda m: m["model"].update(dtype="int8"),
        lambda m: m["model"].update(cell="lstm-from-the-future"),
        lambda m: m.update(vocab={"symbols": "abc"}),
        lambda m: m.update(step=-1),
    ],
)
def test_inconsistent_metadata_rejected(saved, tmp_path, change):
    """Metadata that does not describe the arrays is a CheckpointError."""
    path = rewrite(saved[0].run_dir / "latest.npz", tmp_path / "bad.npz", change)
    with pytest.raises(CheckpointError):
        charrnn.load(path)


def test_nan_weights_rejected(saved, tmp_path):
    """Non-finite weights are a CheckpointError."""

    def poison(arrays):
        arrays["param/W_hy"] = arrays["param/W_hy"].copy()
        arrays["param/W_hy"][0, 0] = np.nan

    path = rewrite(saved[0].run_dir / "latest.npz", tmp_path / "nan.npz", change_arrays=poison)
    with pytest.raises(CheckpointError, match="NaN"):
        charrnn.load(path)


def test_missing_array_rejected(saved, tmp_path):
    """A checkpoint lacking a weight array is a CheckpointError naming it."""
    path = rewrite(
        saved[0].run_dir / "latest.npz",
        tmp_path / "missing.npz",
        change_arrays=lambda a: a.pop("param/b_y"),
    )
    with pytest.raises(CheckpointError, match="b_y"):
        charrnn.load(path)


@pytest.mark.parametrize("cut", [0.5, 0.9, 0.999])
def test_truncated_file_rejected(saved, tmp_path, cut):
    """A truncated checkpoint is a CheckpointError."""
    data = (saved[0].run_dir / "latest.npz").read_bytes()
    path = tmp_path / "cut.npz"
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(CheckpointError):
        charrnn.load(path)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not a zip file at all",
        bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8)),
    ],
)
def test_garbage_file_rejected(tmp_path, data):
    """Empty, text and random-byte files are CheckpointErrors."""
    path = tmp_path / "garbage.npz"
    path.write_bytes(data)
    with pytest.raises(CheckpointError):
        charrnn.load(path)


def test_zip_without_metadata_rejected(tmp_path):
    """A valid .npz that is not a charrnn checkpoint is a CheckpointError."""
    path = tmp_path / "foreign.npz"
    np.savez(path, x=np.arange(3))
    with pytest.raises(CheckpointError, match="not a charrnn checkpoint"):
        charrnn.load(path)


def test_compressed_member_rejected(saved, tmp_path):
    """Compressed members are refused (their size could not be bounded by the file size)."""
    arrays = read_npz(saved[0].run_dir / "latest.npz")
    path = tmp_path / "compressed.npz"
    np.savez_compressed(path, **arrays)
    with pytest.raises(CheckpointError):
        charrnn.load(path)


def test_corrupted_bytes_never_escape_as_other_errors(saved, tmp_path):
    """Flipping any byte of the zip directory, or a sample of the rest, gives a
    CheckpointError or (for bytes nothing reads) the very same weights."""
    data = (saved[0].run_dir / "latest.npz").read_bytes()
    original = charrnn.load(saved[0].run_dir, "latest").model.params
    directory = data.find(b"PK\x01\x02")
    flips = [(pos, 0x81) for pos in range(directory, len(data))]
    flips += [(pos, 0xFF) for pos in range(0, directory, 37)]
    path = tmp_path / "flipped.npz"
    outcomes = {"error": 0, "same": 0}
    for pos, flip in flips:
        corrupted = bytearray(data)
        corrupted[pos] ^= flip
        path.write_bytes(corrupted)
        try:
            params = charrnn.load(path).model.params
        except CheckpointError:
            outcomes["error"] += 1
            continue
        assert all(np.array_equal(params[k], original[k]) for k in PARAM_NAMES), (pos, flip)
        outcomes["same"] += 1
    assert outcomes["error"] > outcomes["same"] > 0


def test_missing_run_directory_and_empty_directory(tmp_path):
    """A missing path or a directory without checkpoints is a CheckpointError."""
    with pytest.raises(CheckpointError, match="no such"):
        charrnn.load(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match=r"no best\.npz"):
        charrnn.load(tmp_path)


def test_resume_continues_from_saved_step(tmp_path):
    """Resuming a 12-step run with steps=20 trains steps 13..20 and logs evaluations past 12."""
    run_dir = tmp_path / "run"
    config = dataclasses.replace(CONFIG, steps=12, eval_every=4, schedule="constant")
    first = train(TEXT, config, run_dir)
    assert first.step == 12
    seen = []

    class Recorder(charrnn.training.Observer):
        def on_start(self, info):
            seen.append(("start", info["step"]))

        def on_step(self, stats):
            seen.append(("step", stats.step))

    result = train(
        TEXT, dataclasses.replace(config, steps=20), run_dir, resume=True, observer=Recorder()
    )
    assert result.step == 20
    assert seen[0] == ("start", 12)
    assert [s for kind, s in seen if kind == "step"] == list(range(13, 21))
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [4, 8, 12, 16, 20]
    assert charrnn.load(run_dir, "latest").config["step"] == 20
    assert [r["step"] for r in result.history] == [4, 8, 12, 16, 20]


def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path):
    """Stopping after 13 of 25 steps and resuming gives bitwise the weights of a straight run."""
    config = dataclasses.replace(CONFIG, steps=25, eval_every=5)
    straight = train(TEXT, dataclasses.replace(config), tmp_path / "straight")
    done = []

    class Counter(charrnn.training.Observer):
        def on_step(self, stats):
            done.append(stats.step)

    first = train(
        TEXT,
        dataclasses.replace(config),
        tmp_path / "split",
        observer=Counter(),
        stop=lambda: len(done) >= 13,
    )
    assert first.interrupted and first.step == 13
    assert charrnn.load(tmp_path / "split", "latest").config["step"] == 13
    resumed = train(TEXT, dataclasses.replace(config), tmp_path / "split", resume=True)
    assert resumed.step == 25 and not resumed.interrupted
    a = charrnn.load(tmp_path / "straight", "latest").model.params
    b = charrnn.load(tmp_path / "split", "latest").model.params
    for k in PARAM_NAMES:
        assert a[k].tobytes() == b[k].tobytes(), k
    assert resumed.val_loss == straight.val_loss
    assert [r["val_loss"] for r in resumed.history] == [r["val_loss"] for r in straight.history]
    straight_state = read_npz(tmp_path / "straight" / "latest.npz")
    split_state = read_npz(tmp_path / "split" / "latest.npz")
    for k in straight_state:
        if k.startswith(("opt/", "state/")):
            assert np.array_equal(straight_state[k], split_state[k]), k


def test_resume_of_other_text_refused(saved):
    """Resuming on a different text is a CheckpointError."""
    with pytest.raises(CheckpointError, match="differs"):
        train(TEXT + "!", dataclasses.replace(CONFIG, steps=30), saved[0].run_dir, resume=True)


@pytest.mark.parametrize(
    "change",
    [{"hidden": 32}, {"lr": 1e-3}, {"optimizer": "sgd"}, {"seq_len": 8}, {"dropout": 0.1}],
)
def test_resume_refuses_a_changed_training_setting(saved, change):
    """A resume that would train differently (size, optimizer, lr, chunking, dropout) is
    refused by name; the budget and reporting may change."""
    run_dir = saved[0].run_dir
    config = dataclasses.replace(CONFIG, steps=30, **change)
    with pytest.raises(ConfigError, match=f"{next(iter(change))} cannot change"):
        train(TEXT, config, run_dir, resume=True)
    budget = dataclasses.replace(CONFIG, steps=25, eval_every=5, sample_length=0)
    assert train(TEXT, budget, run_dir, resume=True).step == 25


def test_new_run_refuses_nonempty_directory(saved):
    """Starting a fresh run in a directory that holds one is a CheckpointError."""
    with pytest.raises(CheckpointError, match="--resume"):
        train(TEXT, dataclasses.replace(CONFIG), saved[0].run_dir)


def test_atomic_write_bytes(tmp_path):
    """atomic_write_bytes replaces the file whole, leaves no temp files, honours the umask."""
    path = tmp_path / "file.bin"
    atomic_write_bytes(path, b"first")
    atomic_write_bytes(path, b"second" * 1000)
    assert path.read_bytes() == b"second" * 1000
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_atomic_write_failure_keeps_old_file(tmp_path):
    """A failed write leaves the old contents and no temp file behind."""
    path = tmp_path / "file.bin"
    atomic_write_bytes(path, b"old")
    with pytest.raises(TypeError):
        atomic_write_bytes(path, "not bytes")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_saved_npz_is_uncompressed_zip_with_meta(saved):
    """Every member is stored uncompressed and the metadata is UTF-8 JSON bytes."""
    latest = saved[0].run_dir / "latest.npz"
    with zipfile.ZipFile(latest) as archive:
        infos = archive.infolist()
        assert all(info.compress_type == zipfile.ZIP_STORED for info in infos)
        assert "meta.npy" in {info.filename for info in infos}
    meta = read_meta(latest)
    assert meta["format"] == "charrnn" and meta["vocab"] == Vocab.from_text(TEXT).to_json()
