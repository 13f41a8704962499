"""Gated cells and stacked layers through the whole model: float64 gradient checks of every
parameter and of dL/dstate0, masks, sampling against `step`, training, resume, 0.1 runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import english_like, numeric_grad, run_cli
from test_guarantees_resume import assert_same_run

import charrnn
from charrnn import CharRNN, TrainConfig, evaluate, train
from charrnn.checkpoint import read_meta, read_npz
from charrnn.model import dropout_keep, param_shapes
from charrnn.sample import Streams

FIXTURE = Path(__file__).parent / "fixtures"


def perturbed(V, H, cell, layers, seed, dtype=np.float64) -> CharRNN:
    """A model whose weights are moved well away from their initialisation."""
    rng = np.random.default_rng(seed + 1000)
    model = CharRNN(V, H, seed=seed, dtype=dtype, cell=cell, layers=layers)
    for p in model.params.values():
        p += (0.4 * rng.standard_normal(p.shape)).astype(dtype)
    return model


def max_rel_error(num, ana) -> float:
    """Largest relative error, entries far below the array's largest counted against 1e-4 of
    it: a gradient entry of 1e-8 beside 1e-3 ones is finite-difference noise, not a signal."""
    floor = max(1e-4 * float(np.abs(ana).max()), 1e-12)
    return float(np.max(np.abs(num - ana) / np.maximum(np.maximum(abs(num), abs(ana)), floor)))


@pytest.mark.parametrize("masks", [False, True], ids=["plain", "dropout+weight-drop"])
@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_gradients_match_finite_differences(cell, layers, masks):
    """Every parameter's gradient and dL/dstate0 agree with finite differences (rel < 1e-6),
    with and without a dropout scale between layers and a DropConnect scale on every W_hh."""
    V, H, B, T, seed = 5, 3, 2, 4, 7 * layers + len(cell)
    rng = np.random.default_rng(seed)
    model = perturbed(V, H, cell, layers, seed)
    x, y = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    state0 = 0.5 * rng.standard_normal(model.state_shape(B))
    keep = hh_keep = None
    if masks:
        keep = dropout_keep(0.3, (layers * T * B, H), rng, np.float64)
        hh_keep = dropout_keep(0.3, (layers * H, model.gates * H), rng, np.float64)
    loss, grads, state_T = model.loss_and_grads(x, y, state0, True, keep, hh_keep)
    grads = {k: v.copy() for k, v in grads.items()}
    assert set(grads) == {*param_shapes(V, H, cell, layers), "h0"}
    assert grads["h0"].shape == state0.shape == (layers, 2 if cell == "lstm" else 1, B, H)
    assert loss == pytest.approx(model.loss(x, y, state0, keep, hh_keep)[0], rel=1e-14)
    np.testing.assert_allclose(state_T, model.loss(x, y, state0, keep, hh_keep)[1], atol=1e-14)

    def f():
        return model.loss(x, y, state0, keep, hh_keep)[0]

    errors = {
        name: max_rel_error(numeric_grad(f, p), grads[name]) for name, p in model.params.items()
    }
    errors["h0"] = max_rel_error(numeric_grad(f, state0), grads["h0"])
    assert max(errors.values()) < 1e-6, errors
    assert min(np.abs(g).max() for g in grads.values()) > 1e-6  # no parameter is left out
    if masks:
        plain_loss, plain_state_T = model.loss(x, y, state0)  # the masks matter:
        assert loss != pytest.approx(plain_loss, rel=1e-6)
        assert np.abs(state_T - plain_state_T).max() > 1e-3
        for layer in range(layers):
            s = "" if layer == 0 else str(layer + 1)
            assert not grads[f"W_hh{s}"][hh_keep.reshape(layers, H, -1)[layer] == 0].any()


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_layer_names_and_shapes_map_onto_torch(cell):
    """Layer 1 keeps the 0.1 names; layers above carry "2", "3"; gate blocks G*H wide."""
    G = {"rnn": 1, "lstm": 4, "gru": 3}[cell]
    shapes = param_shapes(7, 5, cell, 3)
    expected = {"W_xh": (7, 5 * G), "W_hh": (5, 5 * G), "b_h": (5 * G,)}
    for s in ("2", "3"):
        expected.update({f"W_xh{s}": (5, 5 * G), f"W_hh{s}": (5, 5 * G), f"b_h{s}": (5 * G,)})
    if cell == "gru":
        expected.update({"b_hn": (5,), "b_hn2": (5,), "b_hn3": (5,)})
    expected.update({"W_hy": (5, 7), "b_y": (7,)})
    assert shapes == expected
    model = CharRNN(7, 5, cell=cell, layers=3)
    assert {k: v.shape for k, v in model.params.items()} == expected
    assert model.zero_state(4).shape == (3, 2 if cell == "lstm" else 1, 4, 5)


def sigmoid(a: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-a))


def torch_weights(model: CharRNN, rng: np.random.Generator) -> list[dict[str, np.ndarray]]:
    """Per layer, torch's `weight_ih`, `weight_hh`, `bias_ih`, `bias_hh` from charrnn's params by
    the documented mapping: W_xh = weight_ih.T, W_hh = weight_hh.T, b_h = bias_ih + bias_hh
    (split at random: any split is the same layer), a GRU's b_hn = bias_hh's n block."""
    H, layers = model.hidden_size, []
    for layer in range(model.layers):
        s = "" if layer == 0 else str(layer + 1)
        p = model.params
        bias_hh = rng.standard_normal(p[f"b_h{s}"].shape)  # (GH,)
        if model.cell == "gru":
            bias_hh[2 * H :] = 0
        bias_ih = p[f"b_h{s}"] - bias_hh
        if model.cell == "gru":
            bias_hh[2 * H :] = p[f"b_hn{s}"]
        layers.append(
            {
                "weight_ih": p[f"W_xh{s}"].T,  # (GH, in)
                "weight_hh": p[f"W_hh{s}"].T,  # (GH, H)
                "bias_ih": bias_ih,  # (GH,)
                "bias_hh": bias_hh,  # (GH,)
            }
        )
    return layers


def torch_forward(cell, layers, W_hy, b_y, x, h0, c0):
    """nn.RNN (tanh) / nn.LSTM / nn.GRU then nn.Linear, straight from torch's documented
    equations: x (T, B, V) one-hot, h0 and c0 (L, B, H) -> logits (T, B, V), h_T, c_T."""
    h, c, out = h0.copy(), c0.copy(), []
    for x_t in x:  # (B, V)
        below = x_t
        for k, w in enumerate(layers):
            gi = below @ w["weight_ih"].T + w["bias_ih"]  # (B, GH)
            gh = h[k] @ w["weight_hh"].T + w["bias_hh"]  # (B, GH)
            if cell == "rnn":
                h[k] = np.tanh(gi + gh)
            elif cell == "lstm":
                i, f, g, o = np.split(gi + gh, 4, axis=1)
                i, f, g, o = sigmoid(i), sigmoid(f), np.tanh(g), sigmoid(o)
                c[k] = f * c[k] + i * g
                h[k] = o * np.tanh(c[k])
            else:
                i_r, i_z, i_n = np.split(gi, 3, axis=1)
                h_r, h_z, h_n = np.split(gh, 3, axis=1)
                r, z = sigmoid(i_r + h_r), sigmoid(i_z + h_z)
                n = np.tanh(i_n + r * h_n)
                h[k] = (1 - z) * n + z * h[k]
            below = h[k]
        out.append(below @ W_hy + b_y)  # nn.Linear with weight W_hy.T
    return np.stack(out), h, c


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_forward_matches_torchs_documented_equations(cell, layers):
    """Through the documented name mapping, charrnn's `step` logits and its training forward's
    loss and final state equal a float64 reference written from torch's equations (gates i, f,
    g, o and r, z, n; GRU's n = tanh(W_in x + b_in + r * (W_hn h + b_hn))): CI has no torch."""
    V, H, B, T = 6, 4, 3, 5
    rng = np.random.default_rng(len(cell) + 10 * layers)
    model = perturbed(V, H, cell, layers, seed=layers)
    ids = rng.integers(0, V, (B, T + 1))
    state0 = 0.5 * rng.standard_normal(model.state_shape(B))  # (L, S, B, H): h, then an LSTM's c
    h0 = state0[:, 0].copy()
    c0 = state0[:, 1].copy() if cell == "lstm" else np.zeros_like(h0)
    x = np.eye(V)[ids[:, :T].T]  # (T, B, V)
    ref, h_T, c_T = torch_forward(
        cell, torch_weights(model, rng), model.params["W_hy"], model.params["b_y"], x, h0, c0
    )
    state = state0
    for t in range(T):
        logits, state = model.step(ids[:, t], state)
        np.testing.assert_allclose(logits, ref[t], rtol=0, atol=1e-12, err_msg=f"step {t}")
    final = np.stack([h_T, c_T] if cell == "lstm" else [h_T], axis=1)  # (L, S, B, H)
    np.testing.assert_allclose(state, final, rtol=0, atol=1e-12)
    z = ref - ref.max(axis=2, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=2, keepdims=True))  # (T, B, V)
    nats = -np.take_along_axis(log_p, ids[:, 1:].T[..., None], axis=2).mean()
    loss, state_T = model.loss(ids[:, :T], ids[:, 1:], state0)
    assert loss == pytest.approx(nats, rel=1e-12)
    np.testing.assert_allclose(state_T, final, rtol=0, atol=1e-12)


def test_gated_initialisation_is_pytorchs():
    """The gated cells start as torch.nn.LSTM/GRU: weights uniform in +-1/sqrt(H), b_h the
    sum of two such draws (bias_ih + bias_hh), the GRU's n block and b_hn one draw each; the
    output layer as nn.Linear with a zero bias; the seed fixes everything."""
    H = 64
    bound = 1 / np.sqrt(H)
    for cell in ("lstm", "gru"):
        model = CharRNN(9, H, cell=cell, layers=2, dtype=np.float64)
        for s in ("", "2"):
            for name in ("W_xh", "W_hh"):
                w = model.params[name + s]
                assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
                assert w.std() == pytest.approx(bound / np.sqrt(3), rel=0.05)  # uniform
            b = model.params["b_h" + s]
            summed = b[: 2 * H] if cell == "gru" else b
            assert np.abs(summed).max() <= 2 * bound and np.abs(summed).max() > bound
            if cell == "gru":
                assert np.abs(b[2 * H :]).max() <= bound
                assert 0 < np.abs(model.params["b_hn" + s]).max() <= bound
        again = CharRNN(9, H, cell=cell, layers=2, dtype=np.float64)
        assert all(np.array_equal(model.params[k], again.params[k]) for k in model.params)
        assert not model.params["b_y"].any()


def test_one_layer_rnn_keeps_the_01_initialisation():
    """The draws of a one-layer vanilla RNN are those of charrnn 0.1: same seed, same weights."""
    rng = np.random.default_rng(3)
    V, H = 11, 8
    scale = 1 / np.sqrt(H)
    W_xh = rng.uniform(-scale, scale, (V, H))
    q, r = np.linalg.qr(rng.standard_normal((H, H)))
    W_hy = rng.uniform(-scale, scale, (H, V))
    model = CharRNN(V, H, seed=3, dtype=np.float64)
    np.testing.assert_array_equal(model.params["W_xh"], W_xh)
    np.testing.assert_array_equal(model.params["W_hh"], q * np.sign(np.diag(r)))
    np.testing.assert_array_equal(model.params["W_hy"], W_hy)


@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_step_and_streams_follow_the_training_forward(cell, layers):
    """`step`, and the one-GEMM-per-layer sampling recurrence, give the forward pass's loss at
    every position and its state, for five streams each fed its own symbols."""
    V, H, B, T = 9, 6, 5, 12
    rng = np.random.default_rng(layers)
    model = perturbed(V, H, cell, layers, 4)
    x, y = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    state0 = 0.3 * rng.standard_normal(model.state_shape(B))
    state, streams, total = state0.copy(), Streams(model, state0), 0.0
    for t in range(T):
        logits, state = model.step(x[:, t], state)
        streams.push(x[:, t])
        np.testing.assert_allclose(streams.state, state, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(streams.logits, logits, rtol=1e-12, atol=1e-12)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        total -= logp[np.arange(B), y[:, t]].sum()
    loss, state_T = model.loss(x, y, state0)
    assert total / (B * T) == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(state, state_T, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_float32_agrees_with_float64(cell):
    rng = np.random.default_rng(8)
    m64 = perturbed(40, 24, cell, 2, 8)
    m32 = CharRNN.from_params({k: v.astype(np.float32) for k, v in m64.params.items()})
    assert (m32.cell, m32.layers) == (cell, 2)
    x, y = rng.integers(0, 40, (8, 20)), rng.integers(0, 40, (8, 20))
    l64, g64, s64 = m64.loss_and_grads(x, y, m64.zero_state(8))
    l32, g32, s32 = m32.loss_and_grads(x, y, m32.zero_state(8))
    assert s32.dtype == np.float32 and all(g.dtype == np.float32 for g in g32.values())
    assert abs(l32 - l64) / l64 < 1e-5
    np.testing.assert_allclose(s32, s64, atol=1e-4)
    for k in g64:
        assert np.abs(g32[k] - g64[k]).max() < 2e-4 * np.abs(g64[k]).max(), k


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_gated_stack_learns_and_samples(tmp_path, cell):
    """Two layers of a gated cell memorise a repeated sentence, and the run samples it."""
    text = "the quick brown fox jumps over the lazy dog. " * 40
    config = TrainConfig(
        hidden=32, cell=cell, layers=2, seq_len=25, batch=8, lr=1e-2, steps=400, warmup=10,
        eval_every=1000, val_fraction=0, sample_length=0, weight_drop=0, dropout=0.1,
    )  # fmt: skip
    train(text, config, tmp_path / "run")
    run = charrnn.load(tmp_path / "run", "latest")
    assert (run.model.cell, run.model.layers) == (cell, 2)
    assert evaluate(run.model, run.vocab.encode(text), seq_len=25, streams=1) < 0.1
    sample = "".join(charrnn.generate(run.model, run.vocab, "the quick", 30, temperature=0))
    assert sample.startswith(" brown fox jumps over the lazy")


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_resume_is_bitwise_exact(tmp_path, cell):
    """Eight steps, stop, resume to sixteen equals sixteen straight, bit for bit: weights,
    optimizer state, carried (L, S, B, H) state, sampling generator, best weights, metrics
    (two layers, dropout and weight drop on, samples at every evaluation)."""
    text = english_like(3000)
    args = dict(hidden=12, cell=cell, layers=2, seq_len=8, batch=4, eval_every=4, dropout=0.2)
    args.update(schedule="constant", sample_length=10)
    train(text, TrainConfig(**args, steps=16), tmp_path / "straight")
    train(text, TrainConfig(**args, steps=8), tmp_path / "resumed")
    train(text, TrainConfig(**args, steps=16), tmp_path / "resumed", resume=True)
    assert read_npz(tmp_path / "straight/latest.npz")["state/h"].shape == (
        2, 2 if cell == "lstm" else 1, 4, 12
    )  # fmt: skip
    assert_same_run(tmp_path / "straight", tmp_path / "resumed")


def test_resume_refuses_another_cell_or_depth(tmp_path, corpus_file):
    run = tmp_path / "run"
    args = ("--hidden", "8", "--batch", "4", "--seq-len", "8", "--steps", "2")
    assert run_cli("train", corpus_file, *args, "--cell", "gru", "--out", run).returncode == 0
    for option in (("--cell", "lstm"), ("--layers", "2")):
        proc = run_cli("train", "--resume", run, *option, "--steps", "4")
        assert proc.returncode == 2 and f"{option[0]} cannot change" in proc.stderr, proc.stderr


def test_cli_trains_a_stack_and_every_command_reads_it(tmp_path, corpus_file):
    """`train --cell lstm --layers 2`, then info, sample, eval and repl's first line."""
    run = tmp_path / "run"
    args = ("--hidden", "16", "--batch", "4", "--seq-len", "8", "--steps", "20", "--out", run)
    proc = run_cli("train", corpus_file, "--cell", "lstm", "--layers", "2", *args)
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.splitlines()[:2]
    assert first == "model: 2-layer LSTM, H 16 (--cell lstm: the 2-layer LSTM's settings)"
    assert "lstm 2 x 16" in second
    info = run_cli("info", run)
    assert "lstm 2 x 16 (layers x hidden)" in info.stdout
    sample = run_cli("sample", run, "--length", "50", "--seed", "1", "--prime", "the")
    assert sample.returncode == 0 and len(sample.stdout) >= 50
    again = run_cli("sample", run, "--length", "50", "--seed", "1", "--prime", "the", "--num", "2")
    assert again.returncode == 0
    ev = run_cli("eval", run, corpus_file)
    assert ev.returncode == 0 and "bits/char" in ev.stdout
    meta = read_meta(run / "latest.npz")
    assert meta["model"]["cell"] == "lstm" and meta["model"]["layers"] == 2
    assert meta["format_version"] == 2


# ---- runs written by charrnn 0.1 ----------------------------------------------------------------


@pytest.fixture
def run_01(tmp_path) -> Path:
    """A copy of the run directory charrnn 0.1 wrote (hidden 8, 6 steps, tests/fixtures)."""
    return Path(shutil.copytree(FIXTURE / "run-0.1", tmp_path / "run-0.1"))


def test_01_run_loads_samples_and_evaluates(run_01):
    meta = read_meta(run_01 / "latest.npz")
    assert meta["format_version"] == 1 and meta["model"]["layers"] == 1
    assert json.loads((run_01 / "config.json").read_text())["format_version"] == 1
    run = charrnn.load(run_01)
    assert (run.model.cell, run.model.layers, run.model.hidden_size) == ("rnn", 1, 8)
    text = "".join(charrnn.generate(run.model, run.vocab, length=40, seed=2))
    assert len(text) == 40
    ev = run_cli("eval", run_01, FIXTURE / "corpus-0.1.txt")
    assert ev.returncode == 0 and "nats/char" in ev.stdout
    assert run_cli("info", run_01).returncode == 0
    assert run_cli("sample", run_01, "--length", "20").returncode == 0


def test_01_run_resumes(run_01):
    """`--resume` of a 0.1 run continues it: its (B, H) carried state is read as (1, 1, B, H),
    and the checkpoint it writes is format version 2."""
    proc = run_cli("train", "--resume", run_01, FIXTURE / "corpus-0.1.txt", "--steps", "9")
    assert proc.returncode == 0, proc.stderr
    assert "resuming at step 6" in proc.stdout
    meta = read_meta(run_01 / "latest.npz")
    assert meta["step"] == 9 and meta["format_version"] == 2 and meta["model"]["layers"] == 1
    assert read_npz(run_01 / "latest.npz")["state/h"].shape == (1, 1, 4, 8)


def test_repl_continues_a_gru_stack_as_sample_does(tmp_path):
    """`charrnn repl` on a 2-layer GRU through a pseudo-terminal: the greedy continuation of
    the user's text is what `generate` gives for the same prime, and it is the learned text."""
    from test_repl import Session

    corpus, run = tmp_path / "fox.txt", tmp_path / "run"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 40)
    args = ("--hidden", "32", "--batch", "8", "--seq-len", "25", "--lr", "0.01", "--steps", "300")
    args += ("--weight-drop", "0", "--val-fraction", "0", "--sample-length", "0", "--out", run)
    assert run_cli("train", corpus, "--cell", "gru", "--layers", "2", *args).returncode == 0
    loaded = charrnn.load(run, "latest")
    expected = "".join(charrnn.generate(loaded.model, loaded.vocab, "the ", 40, temperature=0))
    assert expected.startswith("quick brown fox jumps")
    session = Session(run, "--temperature", "0", "--length", "40", "--checkpoint", "latest")
    try:
        assert session.send("the ") == expected + "\n"
        session.child.sendline(":quit")
        assert session.finish() == 0
    finally:
        session.kill()
