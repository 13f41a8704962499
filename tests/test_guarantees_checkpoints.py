"""Issue 4, promise 6: untrusted checkpoints are safe. Truncated, random, bit-flipped, malformed
or hostile files give charrnn.CheckpointError in process, and through `charrnn sample` exit 2
with one `charrnn: error:` line: never a hang, a MemoryError, a traceback, or unpickling."""

from __future__ import annotations

import io
import json
import os
import resource
import struct
import subprocess
import sys
import tracemalloc
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_usage_error, cli_env, english_like
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import charrnn
from charrnn import CheckpointError, TrainConfig, train
from charrnn.checkpoint import read_npz
from charrnn.model import param_shapes

PARAM_NAMES = tuple(param_shapes(1, 1))  # a one-layer vanilla RNN's

FUZZ = settings(max_examples=120, deadline=2000)
MEMORY_LIMIT = 2 << 30  # address space of each CLI process: a hostile file must not need more


@dataclass
class Source:
    """A real checkpoint to corrupt: its bytes, arrays and metadata, and a scratch directory."""

    data: bytes
    arrays: dict[str, np.ndarray]
    meta: dict
    scratch: Path

    def write(self, name: str, data: bytes) -> Path:
        path = self.scratch / name
        path.write_bytes(data)
        return path


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Source:
    base = tmp_path_factory.mktemp("hostile")
    config = TrainConfig(hidden=8, seq_len=8, batch=4, steps=4, eval_every=2, sample_length=5)
    train(english_like(2000), config, base / "run")
    arrays = read_npz(base / "run" / "latest.npz")
    meta = json.loads(arrays.pop("meta").tobytes())
    (base / "scratch").mkdir()
    return Source((base / "run" / "latest.npz").read_bytes(), arrays, meta, base / "scratch")


# ---- building hostile files -------------------------------------------------------------------


def npy(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def npy_raw(header: str, data: bytes = b"", version: tuple[int, int] = (1, 0)) -> bytes:
    """An .npy member with any header text at all."""
    text = header.encode("latin-1", "replace")
    size = struct.pack("<H" if version == (1, 0) else "<I", len(text))
    return b"\x93NUMPY" + bytes(version) + size + text + data


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def meta_member(meta) -> bytes:
    raw = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
    return npy(np.frombuffer(raw, np.uint8))


def pack(arrays: dict[str, np.ndarray], meta, **raw_members: bytes) -> bytes:
    """A checkpoint of these arrays and metadata; raw_members (name -> .npy bytes) override."""
    members = {"meta.npy": meta_member(meta)}
    members.update({f"{k}.npy": npy(v) for k, v in arrays.items()})
    members.update({f"{k.replace('__', '/')}.npy": v for k, v in raw_members.items()})
    return zip_bytes(members)


def claim_sizes(data: bytes, member: str, compressed: int, uncompressed: int) -> bytes:
    """Rewrite the sizes the central directory claims for one member."""
    out = bytearray(data)
    at = out.find(b"PK\x01\x02")
    while at >= 0:
        name_length = struct.unpack("<H", out[at + 28 : at + 30])[0]
        if out[at + 46 : at + 46 + name_length] == member.encode():
            out[at + 20 : at + 28] = struct.pack("<II", compressed, uncompressed)
        at = out.find(b"PK\x01\x02", at + 4)
    return bytes(out)


class MakesMarker:
    """Unpickling this creates a directory: proof that something was unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def edited(src: Source, edit) -> bytes:
    meta = json.loads(json.dumps(src.meta))
    edit(meta)
    return pack(src.arrays, meta)


def with_array(src: Source, name: str, value: np.ndarray | None) -> bytes:
    arrays = dict(src.arrays)
    if value is None:
        del arrays[name]
    else:
        arrays[name] = value
    return pack(arrays, src.meta)


def poisoned(src: Source, name: str, value: float) -> bytes:
    array = src.arrays[name].copy()
    array.flat[0] = value
    return with_array(src, name, array)


def flipped_crc_byte(data: bytes) -> bytes:
    """Flip the last data byte before the central directory: the CRC no longer matches."""
    at = data.find(b"PK\x01\x02") - 1
    return data[:at] + bytes([data[at] ^ 0x40]) + data[at + 1 :]


def py2_header(src: Source) -> bytes:
    """W_hh with a Python 2 style header (`8L`) that numpy would only read after repairing it."""
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (8L, 8L), }"
    header += " " * (117 - len(header)) + "\n"
    return pack(
        src.arrays, src.meta, param__W_hh=npy_raw(header, src.arrays["param/W_hh"].tobytes())
    )


def lone_surrogate(meta: dict) -> None:
    meta["vocab"]["symbols"][-1] = "\ud800"


def header(descr: str, shape: str) -> str:
    return f"{{'descr': {descr}, 'fortran_order': False, 'shape': {shape}, }}\n"


def claims_4gib_member(src: Source) -> bytes:
    """W_hh says it is 30000 x 30000 and the zip says it holds 4 GiB: the file has 20 KB."""
    member = npy_raw(header("'<f4'", "(30000, 30000)"), b"\0" * 256)
    return claim_sizes(
        pack(src.arrays, src.meta, param__W_hh=member), "param/W_hh.npy", *[2**32 - 2**16] * 2
    )


def claims_4gib_header(src: Source) -> bytes:
    """A version 2 .npy header that says it is 4 GiB long, in a member the zip says is 4 GiB."""
    member = b"\x93NUMPY\x02\x00" + struct.pack("<I", 2**32 - 256)
    return claim_sizes(
        pack(src.arrays, src.meta, param__b_y=member), "param/b_y.npy", *[2**32 - 16] * 2
    )


def compressed(src: Source) -> bytes:
    """Every member deflated: a small file could otherwise expand without bound."""
    buffer = io.BytesIO()
    meta = np.frombuffer(json.dumps(src.meta).encode(), np.uint8)
    np.savez_compressed(buffer, meta=meta, **src.arrays)
    return buffer.getvalue()


HOSTILE = {
    "empty": lambda s: b"",
    "truncated": lambda s: s.data[: len(s.data) // 2],
    "random-bytes": lambda s: np.random.default_rng(7).bytes(len(s.data)),
    "bit-flipped": lambda s: flipped_crc_byte(s.data),
    "compressed": compressed,
    "meta-not-json": lambda s: pack(s.arrays, b"\xff\xfe{not json"),
    "meta-not-object": lambda s: pack(s.arrays, [1, 2, 3]),
    "meta-wrong-type": lambda s: edited(s, lambda m: m["model"].update(hidden_size="8")),
    "meta-float-size": lambda s: edited(s, lambda m: m["model"].update(vocab_size=31.0)),
    "meta-missing-key": lambda s: edited(s, lambda m: m["model"].pop("vocab_size")),
    "meta-missing-vocab": lambda s: edited(s, lambda m: m.pop("vocab")),
    "meta-deep-nesting": lambda s: pack(s.arrays, b"[" * 200_000),
    "meta-5000-digit-int": lambda s: pack(s.arrays, b'{"step": ' + b"9" * 5000 + b"}"),
    "hidden-1e9": lambda s: edited(s, lambda m: m["model"].update(hidden_size=10**9)),
    "vocab-1e9": lambda s: edited(s, lambda m: m["model"].update(vocab_size=10**9)),
    "hidden-max": lambda s: edited(s, lambda m: m["model"].update(hidden_size=16384)),
    "shape-disagrees": lambda s: with_array(s, "param/W_hh", np.zeros((8, 9), np.float32)),
    "dtype-disagrees": lambda s: with_array(s, "param/W_hh", np.zeros((8, 8), np.float64)),
    "missing-array": lambda s: with_array(s, "param/b_h", None),
    "nan-weights": lambda s: poisoned(s, "param/W_hh", np.nan),
    "inf-weights": lambda s: poisoned(s, "param/b_y", -np.inf),
    "lone-surrogate-symbol": lambda s: edited(s, lone_surrogate),
    "py2-npy-header": py2_header,
    "object-header-no-data": lambda s: pack(
        s.arrays, s.meta, param__W_hh=npy_raw(header("'|O'", "(8, 8)"))
    ),
    "negative-shape": lambda s: pack(
        s.arrays, s.meta, param__b_h=npy_raw(header("'<f4'", "(-8,)"))
    ),
    "claims-4GiB-member": claims_4gib_member,
    "claims-4GiB-header": claims_4gib_header,
    "claims-4GiB-meta": lambda s: claim_sizes(s.data, "meta.npy", *[2**32 - 2**16] * 2),
}


def pickled(src: Source, marker: Path, member: str) -> bytes:
    """An otherwise valid checkpoint whose `member` is a pickled object array (np.save with
    allow_pickle=True) that would create `marker` if anything unpickled it."""
    payload = npy(np.array([MakesMarker(marker)], dtype=object), allow_pickle=True)
    members = {"meta.npy": meta_member(src.meta)}
    members.update({f"{k}.npy": npy(v) for k, v in src.arrays.items()})
    members[f"{member}.npy"] = payload
    return zip_bytes(members)


# ---- in process -------------------------------------------------------------------------------


def refused_or_sound(path: Path, params: dict[str, np.ndarray] | None = None) -> bool:
    """charrnn.load either raises CheckpointError with a message, or returns a model whose
    weights match its metadata in shape and dtype and are finite (and equal `params` if given).
    Any other exception fails the test. Returns whether it loaded."""
    try:
        run = charrnn.load(path)
    except CheckpointError as exc:
        assert str(exc).strip()
        return False
    model = run.config["model"]
    assert len(run.vocab) == model["vocab_size"]
    shapes = param_shapes(model["vocab_size"], model["hidden_size"])
    for name, value in run.model.params.items():
        assert value.shape == shapes[name] and value.dtype == np.dtype(model["dtype"])
        assert np.isfinite(value).all()
        if params is not None:
            assert value.tobytes() == params[f"param/{name}"].tobytes(), name
    return True


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_hostile_checkpoint_is_a_checkpoint_error(source, kind):
    """Each hand-made hostile checkpoint is refused with CheckpointError, within a bounded
    amount of memory (a few MiB, whatever sizes the file claims)."""
    path = source.write(f"{kind}.npz", HOSTILE[kind](source))
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError):
            charrnn.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, (
        f"{peak:,} bytes allocated to refuse a {path.stat().st_size:,} byte file"
    )


@pytest.mark.parametrize("member", ["param/W_hh", "state/h", "meta"])
def test_pickled_object_array_is_never_unpickled(source, tmp_path, member):
    """An object array saved with allow_pickle=True, whose unpickling would create a marker
    directory, is refused and the marker never appears (np.load with allow_pickle=True does
    create it: the payload is live)."""
    control = tmp_path / "control"
    with np.load(io.BytesIO(pickled(source, control, member)), allow_pickle=True) as archive:
        archive[member]
    assert control.is_dir()
    marker = tmp_path / "marker"
    path = source.write("pickled.npz", pickled(source, marker, member))
    with pytest.raises(CheckpointError):
        charrnn.load(path)
    with pytest.raises(CheckpointError):
        charrnn.load(path, "latest")
    assert not marker.exists()


def test_real_checkpoint_passes_the_checks(source):
    """Control: the unmodified source and a re-packed copy load with the same weights."""
    assert refused_or_sound(source.write("same.npz", source.data), source.arrays)
    assert refused_or_sound(
        source.write("repacked.npz", pack(source.arrays, source.meta)), source.arrays
    )


@FUZZ
@given(data=st.binary(max_size=4096))
def test_fuzz_random_bytes(source, data):
    """Random bytes are never a checkpoint."""
    assert not refused_or_sound(source.write("random.npz", data))


@FUZZ
@given(cut=st.integers(min_value=0))
def test_fuzz_truncation(source, cut):
    """A checkpoint cut anywhere is refused."""
    data = source.data[: cut % len(source.data)]
    assert not refused_or_sound(source.write("cut.npz", data))


@settings(max_examples=300, deadline=2000)
@given(
    flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(1, 255)), min_size=1, max_size=6)
)
def test_fuzz_bit_flips(source, flips):
    """Flipped bytes anywhere are refused, or (where nothing reads them) change nothing."""
    data = bytearray(source.data)
    for position, mask in flips:
        data[position % len(data)] ^= mask
    refused_or_sound(source.write("flipped.npz", bytes(data)), source.arrays)


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.sampled_from([0, 1, 8, 31, 16384, 16385, 1_114_112, 10**9, -1])
    | st.floats()
    | st.text(max_size=6)
    | st.sampled_from(["charrnn", "rnn", "float32", "float64", "grapheme", "codepoint"]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=8,
)
META_PATHS = [
    ("format",), ("format_version",), ("model",), ("model", "cell"), ("model", "layers"),
    ("model", "hidden_size"), ("model", "vocab_size"), ("model", "dtype"), ("vocab",),
    ("vocab", "symbols"), ("vocab", "unit"), ("step",), ("train",), ("corpus",), ("metrics",),
    ("elapsed",),
]  # fmt: skip
DELETE = object()


@FUZZ
@given(
    edits=st.lists(
        st.tuples(st.sampled_from(META_PATHS), JSON | st.just(DELETE)), min_size=1, max_size=3
    )
)
def test_fuzz_metadata_values(source, edits):
    """Metadata fields replaced by any JSON value, or deleted, are refused or harmless."""
    meta = json.loads(json.dumps(source.meta))
    for path, value in edits:
        parent = meta
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue
        if value is DELETE:
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = value
    refused_or_sound(source.write("meta.npz", pack(source.arrays, meta)), source.arrays)


@FUZZ
@given(
    raw=st.binary(max_size=300)
    | st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass"))
)
def test_fuzz_metadata_bytes(source, raw):
    """Arbitrary bytes as the metadata are refused."""
    assert not refused_or_sound(source.write("meta-bytes.npz", pack(source.arrays, raw)))


DTYPES = ["<f4", "<f8", "<f2", ">f4", "<i4", "|u1", "|b1", "<c8", "<U2"]


@FUZZ
@given(
    name=st.sampled_from([f"param/{k}" for k in PARAM_NAMES]),
    array=hnp.arrays(
        st.sampled_from(DTYPES).map(np.dtype), hnp.array_shapes(min_dims=0, max_dims=3, max_side=40)
    ),
)
def test_fuzz_weight_arrays(source, name, array):
    """A weight array of any dtype and shape (or a missing one) is refused unless it is what
    the metadata describes, finite."""
    arrays = dict(source.arrays, **{name: array})
    loaded = refused_or_sound(source.write("array.npz", pack(arrays, source.meta)), arrays)
    expected = source.arrays[name]
    fits = array.dtype == expected.dtype and array.shape == expected.shape
    assert loaded == (fits and bool(np.isfinite(array).all()))


@FUZZ
@given(
    name=st.sampled_from([f"param/{k}" for k in PARAM_NAMES]),
    index=st.integers(min_value=0),
    value=st.floats(width=32),
)
def test_fuzz_one_weight_value(source, name, index, value):
    """Any one weight set to any float32: loads with that value if finite, else is refused
    as NaN or infinite weights."""
    array = source.arrays[name].copy()
    array.flat[index % array.size] = value
    arrays = dict(source.arrays, **{name: array})
    path = source.write("value.npz", pack(arrays, source.meta))
    if np.isfinite(value):
        assert refused_or_sound(path, arrays)
    else:
        with pytest.raises(CheckpointError, match="NaN or infinite"):
            charrnn.load(path)


HEADER_PARTS = {
    "descr": st.sampled_from(
        [
            "'<f4'",
            "'|O'",
            "'<U3'",
            "[('a', '<f4')]",
            "('<f4', (2,))",
            "None",
            "'<f9'",
            "b'<f4'",
            "'V0'",
        ]
    )
    | st.text(max_size=8).map(repr),
    "fortran_order": st.sampled_from(["False", "True", "0", "'no'", "None"]),
    "shape": st.sampled_from(
        ["(8, 8)", "(8,)", "()", "(-1, 8)", "(0, 8)", "(8.0, 8)", "[8, 8]", "(10**12,)"]
    )
    | st.lists(st.integers(-3, 2**62), max_size=3).map(lambda dims: repr(tuple(dims))),
}


@FUZZ
@given(
    parts=st.fixed_dictionaries(HEADER_PARTS),
    extra=st.sampled_from(["", "'x': 1, ", "-", "(", "[", "~"]) | st.text(max_size=10),
    repeat=st.sampled_from([1, 300, 3000]),
    version=st.sampled_from([(1, 0), (2, 0), (3, 0), (0, 0), (255, 255)]),
    data=st.binary(max_size=300),
)
def test_fuzz_npy_headers(source, parts, extra, repeat, version, data):
    """Any .npy header text (odd dtypes, shapes, nesting, versions) is refused or harmless."""
    header = "{" + extra * repeat + ", ".join(f"'{k}': {v}" for k, v in parts.items()) + ", }\n"
    member = npy_raw(header, data, version)
    refused_or_sound(
        source.write("header.npz", pack(source.arrays, source.meta, param__W_hh=member))
    )


@settings(max_examples=60, deadline=2000)
@given(
    member=st.sampled_from(["meta.npy", "param/W_hh.npy", "state/h.npy"]),
    compressed=st.integers(0, 2**32 - 1),
    uncompressed=st.integers(0, 2**32 - 1),
)
def test_fuzz_claimed_sizes_never_allocate_beyond_the_file(
    source, member, compressed, uncompressed
):
    """Whatever sizes the zip directory claims, loading allocates a few MiB at most."""
    path = source.write("sizes.npz", claim_sizes(source.data, member, compressed, uncompressed))
    tracemalloc.start()
    try:
        refused_or_sound(path, source.arrays)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"{peak:,} bytes for a {len(source.data):,} byte file"


# ---- through the CLI --------------------------------------------------------------------------


def limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


CLI_CASES = [
    "truncated",
    "random-bytes",
    "bit-flipped",
    "meta-wrong-type",
    "meta-missing-key",
    "meta-deep-nesting",
    "meta-5000-digit-int",
    "hidden-1e9",
    "vocab-1e9",
    "shape-disagrees",
    "nan-weights",
    "lone-surrogate-symbol",
    "py2-npy-header",
    "claims-4GiB-member",
    "claims-4GiB-header",
    "pickled",
]


@pytest.fixture(scope="module")
def cli_results(source, tmp_path_factory):
    """`charrnn sample RUN --length 20` on each hostile run directory, several at a time,
    each under a 2 GiB address-space limit and a timeout."""
    base = tmp_path_factory.mktemp("cli-hostile")
    marker = base / "marker"
    runs = {}
    for kind in CLI_CASES:
        runs[kind] = base / kind
        runs[kind].mkdir()
        data = pickled(source, marker, "param/W_hh") if kind == "pickled" else HOSTILE[kind](source)
        (runs[kind] / "best.npz").write_bytes(data)

    def sample(kind: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "charrnn", "sample", str(runs[kind]), "--length", "20"],
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="backslashreplace",
            timeout=60,
            env=cli_env(),
            preexec_fn=limit_memory,
        )

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = dict(zip(CLI_CASES, pool.map(sample, CLI_CASES), strict=True))
    return runs, results, marker


@pytest.mark.parametrize("kind", CLI_CASES)
def test_cli_refuses_hostile_checkpoint(cli_results, kind):
    """`charrnn sample` on a hostile run directory exits 2 with one `charrnn: error:` line
    naming the file, prints nothing, and never unpickles."""
    runs, results, marker = cli_results
    proc = results[kind]
    assert_usage_error(proc, str(runs[kind]))
    assert proc.stdout == ""
    assert not marker.exists()
