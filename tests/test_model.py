"""The one-layer vanilla RNN: gradients against finite differences, truncated BPTT, step,
evaluation (tests/test_stack.py holds the gated cells and stacked layers)."""

import math

import numpy as np
import pytest
from conftest import numeric_grad as central_differences

import charrnn
import charrnn.cells
from charrnn import CharRNN, CorpusError, TrainConfig, Vocab, evaluate, train
from charrnn.model import dropout_keep, param_shapes, scatter_add_rows

PARAM_NAMES = tuple(param_shapes(1, 1))  # W_xh, W_hh, b_h, W_hy, b_y

EPS = 1e-3


def perturbed_model(V, H, seed, dtype=np.float64):
    """A model whose weights and biases are moved well away from their zero/orthogonal start."""
    rng = np.random.default_rng(seed + 1000)
    model = CharRNN(V, H, seed=seed, dtype=dtype)
    for p in model.params.values():
        p += (0.3 * rng.standard_normal(p.shape)).astype(dtype)
    return model


def numeric_grad(model, x, y, h0, array, keep=None):
    """4th-order central differences of the mean loss with respect to each entry of array."""
    return central_differences(lambda: model.loss(x, y, h0, keep)[0], array, EPS)


def max_rel_error(num, ana):
    return float(np.max(np.abs(num - ana) / np.maximum(np.maximum(abs(num), abs(ana)), 1e-12)))


@pytest.mark.parametrize(
    ("V", "H", "B", "T", "seed"),
    [
        (5, 4, 3, 6, 0),
        (11, 6, 2, 9, 1),
        (7, 5, 1, 1, 2),  # one stream, one step
        (4, 8, 5, 1, 3),  # one step
        (9, 3, 1, 12, 4),  # one stream
        (300, 4, 3, 5, 5),  # vocab > 256: the sorted reduceat scatter path
    ],
)
def test_gradients_match_finite_differences(V, H, B, T, seed):
    """Every parameter's gradient and dL/dh0 agree with finite differences (rel err < 1e-6)."""
    rng = np.random.default_rng(seed)
    model = perturbed_model(V, H, seed)
    pool = rng.choice(V, size=min(V, 4), replace=False)  # repeated ids exercise the scatter
    x = rng.choice(pool, (B, T)) if V > 256 else rng.integers(0, V, (B, T))
    y = rng.integers(0, V, (B, T))
    h0 = 0.5 * rng.standard_normal((B, H))
    loss, grads, h_last = model.loss_and_grads(x, y, h0, with_dh0=True)
    grads = {k: v.copy() for k, v in grads.items()}
    assert set(grads) == {*PARAM_NAMES, "h0"}
    forward_loss, forward_h = model.loss(x, y, h0)
    assert loss == pytest.approx(forward_loss, rel=1e-14)
    np.testing.assert_allclose(h_last, forward_h, rtol=0, atol=1e-14)
    errors = {}
    for name in PARAM_NAMES:
        assert grads[name].shape == model.params[name].shape
        assert grads[name].dtype == np.float64
        errors[name] = max_rel_error(numeric_grad(model, x, y, h0, model.params[name]), grads[name])
    assert grads["h0"].shape == (1, 1, B, H)  # (L, S, B, H)
    errors["h0"] = max_rel_error(numeric_grad(model, x, y, h0, h0), grads["h0"])
    assert max(errors.values()) < 1e-6, errors
    assert np.abs(grads["W_hy"]).max() > 1e-3 and np.abs(grads["h0"]).max() > 1e-4


@pytest.mark.parametrize("chunk_steps", [1, 3, 10])
def test_backward_in_chunks_of_steps_gives_the_same_gradients(monkeypatch, chunk_steps):
    """tanh' is formed a chunk of steps at a time (3 leaves a remainder of 1 in T 10): every
    chunking gives bit-identical gradients, and they agree with finite differences."""
    V, H, B, T = 6, 4, 3, 10
    rng = np.random.default_rng(7)
    x, y = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    h0 = 0.5 * rng.standard_normal((B, H))
    reference = perturbed_model(V, H, 7).loss_and_grads(x, y, h0, with_dh0=True)[1]
    monkeypatch.setattr(charrnn.cells, "TANH_GRAD_CHUNK", chunk_steps * B * H)
    model = perturbed_model(V, H, 7)
    grads = model.loss_and_grads(x, y, h0, with_dh0=True)[1]
    assert len(model.cells[0]._buffers(T, B)["tanh_grad"]) == chunk_steps
    for name in reference:
        np.testing.assert_array_equal(grads[name], reference[name])
    for name in PARAM_NAMES:
        num = numeric_grad(model, x, y, h0, model.params[name])
        assert max_rel_error(num, grads[name]) < 1e-6, name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_is_stable_for_huge_logits(dtype):
    """Logits in the thousands neither overflow nor lose the loss: it matches a float64
    log-sum-exp, and the gradients are finite."""
    rng = np.random.default_rng(8)
    model = perturbed_model(7, 5, 8, dtype)
    model.params["W_hy"] *= 3000
    x, y = rng.integers(0, 7, (2, 6)), rng.integers(0, 7, (2, 6))
    h0 = model.zero_state(2)
    loss, grads, _ = model.loss_and_grads(x, y, h0)
    p = {k: v.astype(np.float64) for k, v in model.params.items()}
    h, total = np.zeros((2, 5)), 0.0
    for t in range(6):
        h = np.tanh(p["W_xh"][x[:, t]] + h @ p["W_hh"] + p["b_h"])
        logits = h @ p["W_hy"] + p["b_y"]
        top = logits.max(axis=1, keepdims=True)
        logp = logits - top - np.log(np.exp(logits - top).sum(axis=1, keepdims=True))
        total -= logp[np.arange(2), y[:, t]].sum()
    assert total / 12 > 100  # the logits really are huge
    assert loss == pytest.approx(total / 12, rel=1e-5 if dtype == np.float32 else 1e-12)
    assert all(np.isfinite(g).all() for g in grads.values())


def test_gradients_with_dropout_match_finite_differences():
    """With a fixed dropout scale on the output layer's input, every gradient and dL/dh0 still
    agree with finite differences, and dropped units get no gradient through the output."""
    V, H, B, T = 6, 5, 3, 4
    rng = np.random.default_rng(7)
    model = perturbed_model(V, H, 7)
    x, y = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    h0 = 0.5 * rng.standard_normal((B, H))
    keep = dropout_keep(0.5, (T * B, H), rng, np.float64)
    assert set(np.unique(keep)) == {0.0, 2.0}
    loss, grads, _ = model.loss_and_grads(x, y, h0, with_dh0=True, keep=keep)
    grads = {k: v.copy() for k, v in grads.items()}
    assert loss != pytest.approx(model.loss(x, y, h0)[0], rel=1e-3)  # the mask matters
    errors = {
        name: max_rel_error(numeric_grad(model, x, y, h0, model.params[name], keep), grads[name])
        for name in PARAM_NAMES
    }
    errors["h0"] = max_rel_error(numeric_grad(model, x, y, h0, h0, keep), grads["h0"])
    assert max(errors.values()) < 1e-6, errors
    # A unit dropped at every position never reaches the output: its W_hy row has no gradient.
    keep_all_but_0 = np.ones((T * B, H))
    keep_all_but_0[:, 0] = 0
    _, grads, _ = model.loss_and_grads(x, y, h0, keep=keep_all_but_0)
    assert np.all(grads["W_hy"][0] == 0) and np.all(grads["W_hy"][1:] != 0)


def test_gradients_with_weight_drop_match_finite_differences():
    """With a fixed DropConnect scale on W_hh (and output dropout), every gradient and dL/dh0
    agree with finite differences, and dropped recurrent weights get no gradient."""
    V, H, B, T = 5, 6, 2, 5
    rng = np.random.default_rng(11)
    model = perturbed_model(V, H, 11)
    x, y = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    h0 = 0.5 * rng.standard_normal((B, H))
    keep = dropout_keep(0.3, (T * B, H), rng, np.float64)
    hh_keep = dropout_keep(0.5, (H, H), rng, np.float64)
    loss, grads, _ = model.loss_and_grads(x, y, h0, with_dh0=True, keep=keep, hh_keep=hh_keep)
    grads = {k: v.copy() for k, v in grads.items()}
    assert loss != pytest.approx(model.loss(x, y, h0, keep)[0], rel=1e-3)  # the mask matters

    def numeric(array):
        return central_differences(lambda: model.loss(x, y, h0, keep, hh_keep)[0], array, EPS)

    errors = {name: max_rel_error(numeric(model.params[name]), grads[name]) for name in PARAM_NAMES}
    errors["h0"] = max_rel_error(numeric(h0), grads["h0"])
    assert max(errors.values()) < 1e-6, errors
    assert np.all(grads["W_hh"][hh_keep == 0] == 0)
    assert np.all(grads["W_hh"][hh_keep != 0] != 0)


def test_dropout_keep_rate_and_scale():
    """The keep scale drops about `rate` of the units and keeps the mean at 1."""
    keep = dropout_keep(0.25, (1000, 400), np.random.default_rng(0), np.float32)
    assert keep.dtype == np.float32 and keep.shape == (1000, 400)
    assert np.mean(keep == 0) == pytest.approx(0.25, abs=0.005)
    assert keep.mean() == pytest.approx(1.0, abs=0.01)
    assert np.all(dropout_keep(0.0, (3, 4), np.random.default_rng(0), np.float32) == 1)


def test_loss_is_mean_nats():
    """The loss is the mean over positions of -ln softmax(h W_hy + b_y)[target]."""
    rng = np.random.default_rng(7)
    model = perturbed_model(6, 5, 7)
    p = model.params
    x, y = rng.integers(0, 6, (2, 4)), rng.integers(0, 6, (2, 4))
    h = 0.2 * rng.standard_normal((2, 5))
    h0 = h.copy()
    total = 0.0
    for t in range(4):
        h = np.tanh(p["W_xh"][x[:, t]] + h @ p["W_hh"] + p["b_h"])
        logits = h @ p["W_hy"] + p["b_y"]
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        total -= logp[np.arange(2), y[:, t]].sum()
    loss, h_last = model.loss(x, y, h0)
    assert loss == pytest.approx(total / 8, rel=1e-12)
    np.testing.assert_allclose(h_last[0, 0], h, rtol=0, atol=1e-14)


def test_uniform_model_loss_is_ln_v():
    """With all weights zero the prediction is uniform: the loss is exactly ln V."""
    model = CharRNN(37, 8, dtype=np.float64)
    for p in model.params.values():
        p[...] = 0
    x = np.zeros((3, 5), np.uint8)
    assert model.loss(x, x, model.zero_state(3))[0] == pytest.approx(math.log(37), rel=1e-14)


@pytest.mark.parametrize("V", [50, 256, 257, 1000])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scatter_add_rows_matches_add_at(V, dtype):
    """scatter_add_rows equals np.add.at on both the one-hot and the sorted reduceat path."""
    rng = np.random.default_rng(V)
    ids = rng.integers(0, min(V, 30), 400) * (V // 30 or 1)
    rows = rng.standard_normal((400, 7)).astype(dtype)
    expected = np.zeros((V, 7), dtype)
    np.add.at(expected, ids, rows)
    out = scatter_add_rows(ids, rows, V)
    assert out.shape == (V, 7) and out.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, expected, rtol=tol, atol=tol)
    assert not out[np.setdiff1d(np.arange(V), ids)].any()


def test_scatter_add_rows_single_row():
    """One row lands on its id on both paths."""
    for V in (10, 500):
        out = scatter_add_rows(np.array([V - 1]), np.array([[1.5, -2.0]]), V)
        assert out[V - 1].tolist() == [1.5, -2.0] and not out[:-1].any()


def test_truncated_bptt_loss_equals_one_long_forward():
    """Two chunks with carried state give the loss of the same positions in one forward."""
    rng = np.random.default_rng(3)
    model = perturbed_model(13, 10, 3)
    B, T1, T2 = 4, 7, 5
    x = rng.integers(0, 13, (B, T1 + T2))
    y = rng.integers(0, 13, (B, T1 + T2))
    h0 = 0.3 * rng.standard_normal((B, 10))
    long_loss, long_h = model.loss(x, y, h0)
    loss1, _, h1 = model.loss_and_grads(x[:, :T1], y[:, :T1], h0)
    loss2, _, h2 = model.loss_and_grads(x[:, T1:], y[:, T1:], h1)
    combined = (loss1 * T1 + loss2 * T2) / (T1 + T2)
    assert abs(combined - long_loss) < 1e-12
    np.testing.assert_allclose(h2, long_h, rtol=0, atol=1e-13)
    cold, _ = model.loss(x[:, T1:], y[:, T1:], model.zero_state(B))
    assert abs(cold - loss2) > 1e-3


def test_gradient_is_cut_at_the_chunk_edge():
    """Chunk 2's gradient ignores chunk 1's inputs, unlike full BPTT over both chunks."""
    rng = np.random.default_rng(4)
    model = perturbed_model(10, 6, 4)
    B, T = 2, 6
    x1 = rng.integers(0, 5, (B, T))  # ids 0..4 appear only in chunk 1
    x2 = rng.integers(5, 10, (B, T))
    y1, y2 = rng.integers(0, 10, (B, T)), rng.integers(0, 10, (B, T))
    _, g1, h1 = model.loss_and_grads(x1, y1, model.zero_state(B))
    g1 = {k: v.copy() for k, v in g1.items()}
    _, g2, _ = model.loss_and_grads(x2, y2, h1)
    assert not g2["W_xh"][:5].any()
    assert g2["W_xh"][np.unique(x2)].any()
    _, g_full, _ = model.loss_and_grads(
        np.concatenate([x1, x2], 1), np.concatenate([y1, y2], 1), model.zero_state(B)
    )
    truncated = (g1["W_xh"][:5] + g2["W_xh"][:5]) / 2
    assert np.abs(g_full["W_xh"][:5] - truncated).max() > 1e-6


def test_results_do_not_alias_work_buffers():
    """h_last and grads survive later calls that reuse the model's work buffers."""
    rng = np.random.default_rng(5)
    model = perturbed_model(8, 6, 5, np.float32)
    x = rng.integers(0, 8, (3, 4))
    loss, grads, h = model.loss_and_grads(x, x, model.zero_state(3))
    saved = {k: v.copy() for k, v in grads.items()}
    h_saved = h.copy()
    _, h_forward = model.loss(x, x, h)
    h_forward_saved = h_forward.copy()
    model.loss_and_grads(x[:, ::-1].copy(), x, h)
    model.loss(x, x[:, ::-1].copy(), h_forward)
    assert np.array_equal(h, h_saved)
    assert np.array_equal(h_forward, h_forward_saved)
    for k in saved:
        assert np.array_equal(grads[k], saved[k])
    again, _, _ = model.loss_and_grads(x, x, model.zero_state(3))
    assert again == loss


def test_step_agrees_with_forward():
    """Stepping one symbol at a time gives the forward pass's per-position loss and state."""
    rng = np.random.default_rng(6)
    model = perturbed_model(9, 7, 6)
    T = 8
    x, y = rng.integers(0, 9, (1, T)), rng.integers(0, 9, (1, T))
    h0 = 0.4 * rng.standard_normal((1, 7))
    h = h0.copy()
    for t in range(T):
        logits, h_next = model.step(x[:, t], h)
        assert logits.shape == (1, 9) and h_next.shape == (1, 1, 1, 7)
        logp = logits - np.log(np.exp(logits).sum())
        expected, h_forward = model.loss(x[:, t : t + 1], y[:, t : t + 1], h)
        assert -logp[0, y[0, t]] == pytest.approx(expected, rel=1e-12)
        np.testing.assert_allclose(h_next, h_forward, rtol=0, atol=1e-14)
        h = h_next
    np.testing.assert_allclose(h, model.loss(x, y, h0)[1], rtol=0, atol=1e-13)
    xb, yb = rng.integers(0, 9, (4, T)), rng.integers(0, 9, (4, T))
    hb, total = model.zero_state(4), 0.0
    for t in range(T):
        logits, hb = model.step(xb[:, t], hb)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        total -= logp[np.arange(4), yb[:, t]].sum()
    assert total / (4 * T) == pytest.approx(model.loss(xb, yb, model.zero_state(4))[0], rel=1e-12)


def test_float32_agrees_with_float64():
    """The float32 forward and backward agree with float64 on the same weights (~1e-4)."""
    rng = np.random.default_rng(8)
    m64 = perturbed_model(60, 32, 8)
    m32 = CharRNN(60, 32, dtype=np.float32)
    m32.params = {k: v.astype(np.float32) for k, v in m64.params.items()}
    x, y = rng.integers(0, 60, (8, 20)), rng.integers(0, 60, (8, 20))
    l64, g64, h64 = m64.loss_and_grads(x, y, m64.zero_state(8))
    l32, g32, h32 = m32.loss_and_grads(x, y, m32.zero_state(8))
    assert h32.dtype == np.float32 and all(g.dtype == np.float32 for g in g32.values())
    assert abs(l32 - l64) / l64 < 1e-5
    np.testing.assert_allclose(h32, h64, atol=1e-4)
    for k in PARAM_NAMES:
        scale = np.abs(g64[k]).max()
        assert np.abs(g32[k] - g64[k]).max() < 1e-4 * scale, k


def test_init_shapes_dtype_and_seed():
    """Parameters have the documented shapes and dtype; the seed fixes them."""
    model = CharRNN(17, 12, seed=3)
    assert {k: v.shape for k, v in model.params.items()} == param_shapes(17, 12)
    assert all(v.dtype == np.float32 for v in model.params.values())
    same, other = CharRNN(17, 12, seed=3), CharRNN(17, 12, seed=4)
    assert all(np.array_equal(model.params[k], same.params[k]) for k in PARAM_NAMES)
    assert not np.array_equal(model.params["W_xh"], other.params["W_xh"])
    W_hh = CharRNN(5, 12, dtype=np.float64).params["W_hh"]
    np.testing.assert_allclose(W_hh @ W_hh.T, np.eye(12), atol=1e-12)
    assert model.zero_state(3).shape == (1, 1, 3, 12) and not model.zero_state(3).any()
    for bad in ((0, 4), (4, 0)):
        with pytest.raises(ValueError):
            CharRNN(*bad)


def test_memorises_a_short_repeated_text(tmp_path):
    """A few hundred Adam steps drive a short repeated text below 0.05 nats/char."""
    text = "the quick brown fox jumps over the lazy dog. " * 40
    config = TrainConfig(
        hidden=64,
        seq_len=25,
        batch=8,
        lr=1e-2,
        steps=300,
        warmup=10,
        eval_every=1000,
        val_fraction=0,
        sample_length=0,
    )
    train(text, config, tmp_path / "run")
    run = charrnn.load(tmp_path / "run", "latest")
    loss = evaluate(run.model, run.vocab.encode(text), seq_len=25, streams=1)
    assert loss < 0.05


def evaluate_reference(model, ids, streams):
    """evaluate()'s definition written out: B zero-state streams, the last one runs to the end."""
    n = len(ids) - 1
    B = min(streams, n)
    L = n // B
    nats = 0.0
    for b in range(B):
        end = (b + 1) * L if b < B - 1 else n
        x, y = ids[b * L : end][None], ids[b * L + 1 : end + 1][None]
        nats += model.loss(x, y, model.zero_state(1))[0] * x.size
    return nats / n


@pytest.mark.parametrize(("n", "seq_len", "streams"), [(301, 7, 4), (200, 50, 3), (64, 10, 64)])
def test_evaluate_matches_stream_reference(n, seq_len, streams):
    """evaluate() equals independent zero-state forwards over its streams (float64)."""
    rng = np.random.default_rng(n)
    model = perturbed_model(12, 9, 9)
    ids = rng.integers(0, 12, n).astype(np.uint8)
    got = evaluate(model, ids, seq_len=seq_len, streams=streams)
    assert got == pytest.approx(evaluate_reference(model, ids, streams), rel=1e-11)


def test_evaluate_single_stream_is_one_forward():
    """With one stream, chunked evaluation with carried state equals one batch-1 forward."""
    rng = np.random.default_rng(10)
    model = perturbed_model(15, 11, 10)
    ids = rng.integers(0, 15, 533)
    whole, _ = model.loss(ids[None, :-1], ids[None, 1:], model.zero_state(1))
    for seq_len in (1, 17, 100, 1000):
        assert abs(evaluate(model, ids, seq_len=seq_len, streams=1) - whole) < 1e-9


@pytest.mark.parametrize(("n", "streams"), [(101, 8), (50, 7), (9, 64), (3, 3)])
def test_evaluate_predicts_every_position_once(n, streams):
    """Every symbol after the first is predicted exactly once: len(ids) - 1 predictions.

    With W_hy = 0 the loss at a position depends only on its target, and the targets are
    distinct, so a missed or repeated position changes the mean.
    """
    model = perturbed_model(n, 4, n)
    model.params["W_hy"][...] = 0
    b = model.params["b_y"]
    nats_for_target = np.log(np.exp(b).sum()) - b
    got = evaluate(model, np.arange(n), seq_len=5, streams=streams)
    assert got == pytest.approx(nats_for_target[1:].mean(), rel=1e-12)
    assert abs(got - nats_for_target[2:].mean()) > 1e-6


def test_evaluate_rejects_short_text_and_honours_stop():
    """Fewer than 2 symbols is a CorpusError; a stop request returns None."""
    model = CharRNN(3, 4)
    with pytest.raises(CorpusError):
        evaluate(model, np.array([1]))
    assert evaluate(model, np.arange(3).repeat(50), seq_len=5, stop=lambda: True) is None


def test_vocab_sized_model_on_real_text():
    """A model sized from a Vocab accepts that vocab's encoded ids (uint8) end to end."""
    text = "to be or not to be, that is the question\n" * 5
    vocab = Vocab.from_text(text)
    model = CharRNN(len(vocab), 16)
    ids = vocab.encode(text)
    loss = evaluate(model, ids, seq_len=16, streams=4)
    assert abs(loss - math.log(len(vocab))) < 0.5
