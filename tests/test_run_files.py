"""A run's files are read in one place: a metrics.jsonl whose last line was torn by a kill
during a write still shows in a notebook, in `info`, in `report`, and resumes."""

from __future__ import annotations

import json

import numpy as np
from conftest import run_cli

import charrnn
from charrnn import checkpoint


def tear_last_line(run) -> list[dict]:
    """Append the first half of a real record, as a writer killed mid-line leaves it."""
    path = run / "metrics.jsonl"
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    line = json.dumps({**records[-1], "step": records[-1]["step"] + 15})
    with open(path, "a", encoding="utf-8") as f:
        f.write(line[: len(line) // 2])
    return records


def test_a_torn_last_line_is_skipped_everywhere(run_copy, tmp_path):
    records = tear_last_line(run_copy)
    assert checkpoint.read_metrics(run_copy) == records
    shown = charrnn.load(run_copy)._repr_html_()  # the notebook's display of a Run
    assert "<svg" in shown and shown.count("<circle") >= len(records)
    info = run_cli("info", run_copy)
    assert info.returncode == 0 and "Traceback" not in info.stderr, info.stderr
    report = run_cli("report", run_copy, "-o", tmp_path / "r.html")
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert all(f"step {r['step']:,}" in page for r in records if "sample" in r)
    resumed = run_cli("train", "--resume", run_copy, "--steps", "45")
    assert resumed.returncode == 0, resumed.stderr
    after = checkpoint.read_metrics(run_copy)
    assert [r["step"] for r in after] == [r["step"] for r in records] + [45]


def test_the_reader_keeps_records_only(tmp_path):
    lines = ['{"step": 1, "val_loss": 2.0}', "[1, 2]", '{"val_loss": 1}', '{"step": "2"}',
             "{" * 100_000, '{"step": 3}', '{"step": 4, "val_lo']  # fmt: skip
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines), encoding="utf-8")
    assert checkpoint.read_metrics(tmp_path) == [{"step": 1, "val_loss": 2.0}, {"step": 3}]
    assert checkpoint.read_metrics(tmp_path, up_to=2) == [{"step": 1, "val_loss": 2.0}]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert checkpoint.read_metrics(empty, {"metrics": {"step": 7}}) == [{"step": 7}]
    assert checkpoint.read_metrics(empty, {"metrics": {"loss": 1}}) == []


def test_array_names_pack_and_unpack():
    params = {"W_hy": np.ones((2, 3)), "b_y": np.zeros(3)}
    opt = {"m/W_hy": np.full((2, 3), 0.5)}
    state = np.zeros((1, 1, 4, 2))
    arrays = checkpoint.pack_arrays(params, opt, state)
    assert sorted(arrays) == ["opt/m/W_hy", "param/W_hy", "param/b_y", "state/h"]
    back_params, back_opt, back_state = checkpoint.unpack_arrays(arrays)
    assert back_params.keys() == params.keys() and back_opt.keys() == opt.keys()
    assert back_state is state
    assert checkpoint.unpack_arrays(checkpoint.pack_arrays(params))[2] is None
