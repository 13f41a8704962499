"""The recurrent cells: gradients against finite differences, hand-worked steps, step against
forward, and torch.nn.LSTM / nn.GRU as a second reference when PyTorch is installed."""

import math

import numpy as np
import pytest
from conftest import numeric_grad

from charrnn import cells
from charrnn.cells import CELLS, GRUCell, LSTMCell, RNNCell, from_blocks, to_blocks


def scaled_rows(cell, xw_true):
    """x W_xh + b_h (..., GH) times the cell's x_scale, a fresh copy: what `step` takes."""
    return xw_true.copy() if cell.x_scale is None else xw_true * cell.x_scale


def scaled(cell, xw_true):
    """What the caller hands to forward: scaled_rows made gate-major, (G, T, B, H)."""
    return to_blocks(scaled_rows(cell, xw_true), cell.gates)


def problem(name, H, B, T, seed, dtype=np.float64):
    """A cell and random true pre-activations, W_hh, state0, b_hn (GRU) and output weights R."""
    rng = np.random.default_rng(seed)
    cell = CELLS[name](H, dtype)
    G, S = cell.gates, cell.state_size
    xw = rng.standard_normal((T, B, G * H)).astype(dtype)  # (T, B, GH)
    W_hh = (rng.standard_normal((H, G * H)) / math.sqrt(H)).astype(dtype)  # (H, GH)
    state0 = (0.5 * rng.standard_normal((S, B, H))).astype(dtype)  # (S, B, H)
    b_hn = (0.5 * rng.standard_normal(H)).astype(dtype) if name == "gru" else None
    R = rng.standard_normal((T, B, H)).astype(dtype)  # (T, B, H)
    return cell, xw, W_hh, state0, b_hn, R


def loss(cell, xw, W_hh, state0, b_hn, R):
    """sum(hs * R): R stands for the gradient that arrives from above at every h_t."""
    hs, _ = cell.forward(scaled(cell, xw), W_hh, state0, b_hn)
    return float((hs * R).sum())


def max_rel_error(num, ana):
    return float(np.max(np.abs(num - ana) / np.maximum(np.maximum(abs(num), abs(ana)), 1e-12)))


def analytic(cell, xw, W_hh, state0, b_hn, R):
    """Copies of (dxw, dW_hh, dstate0, extra) for sum(hs * R)."""
    cell.forward(scaled(cell, xw), W_hh, state0, b_hn)
    dxw, dW_hh, dstate0, extra = cell.backward(R.copy(), with_dstate0=True)
    assert dxw.shape == (cell.gates, *R.shape)  # gate-major, (G, T, B, H)
    return from_blocks(dxw), dW_hh.copy(), dstate0.copy(), {k: v.copy() for k, v in extra.items()}


def check_gradients(cell, xw, W_hh, state0, b_hn, R, grads):
    """Max relative error of each gradient against finite differences."""
    dxw, dW_hh, dstate0, extra = grads

    def f():
        return loss(cell, xw, W_hh, state0, b_hn, R)

    errors = {
        "xw": max_rel_error(numeric_grad(f, xw), dxw),
        "W_hh": max_rel_error(numeric_grad(f, W_hh), dW_hh),
        "state0": max_rel_error(numeric_grad(f, state0), dstate0),
    }
    if b_hn is not None:
        errors["b_hn"] = max_rel_error(numeric_grad(f, b_hn), extra["b_hn"])
    return errors


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize(
    ("H", "B", "T", "seed"),
    [
        (3, 2, 4, 0),
        (4, 1, 1, 1),  # one stream, one step
        (2, 3, 1, 2),  # one step
        (5, 1, 6, 3),  # one stream
        (4, 3, 5, 4),
    ],
)
def test_gradients_match_finite_differences(name, H, B, T, seed):
    """dxw (true units), dW_hh, dstate0 and GRU's db_hn agree with finite differences."""
    cell, xw, W_hh, state0, b_hn, R = problem(name, H, B, T, seed)
    grads = analytic(cell, xw, W_hh, state0, b_hn, R)
    dxw, dW_hh, dstate0, extra = grads
    G, S = cell.gates, cell.state_size
    assert dxw.shape == (T, B, G * H) and dW_hh.shape == (H, G * H)
    assert dstate0.shape == (S, B, H)
    assert set(extra) == ({"b_hn"} if name == "gru" else set())
    assert all(g.dtype == np.float64 for g in (dxw, dW_hh, dstate0, *extra.values()))
    errors = check_gradients(cell, xw, W_hh, state0, b_hn, R, grads)
    assert max(errors.values()) < 1e-6, errors
    assert np.abs(dstate0).max() > 1e-3 and np.abs(dW_hh).max() > 1e-3


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
def test_backward_without_dstate0_gives_the_same_gradients(name):
    """with_dstate0=False returns None for dstate0 and the same dxw, dW_hh and extra."""
    cell, xw, W_hh, state0, b_hn, R = problem(name, 4, 3, 5, 9)
    dxw, dW_hh, _, extra = analytic(cell, xw, W_hh, state0, b_hn, R)
    cell.forward(scaled(cell, xw), W_hh, state0, b_hn)
    got = cell.backward(R.copy())
    assert got[2] is None
    np.testing.assert_array_equal(from_blocks(got[0]), dxw)
    np.testing.assert_array_equal(got[1], dW_hh)
    for k in extra:
        np.testing.assert_array_equal(got[3][k], extra[k])


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("chunk_steps", [1, 3, 10])
def test_backward_in_chunks_of_steps_gives_the_same_gradients(monkeypatch, name, chunk_steps):
    """The derivative factors are formed a chunk of steps at a time (3 leaves a remainder of 1
    in T 10): every chunking gives bit-identical gradients, and they agree with finite
    differences."""
    H, B, T = 3, 2, 10
    reference = analytic(*problem(name, H, B, T, 5))
    G = CELLS[name].gates
    monkeypatch.setattr(cells, "TANH_GRAD_CHUNK", chunk_steps * B * G * H)
    cell, xw, W_hh, state0, b_hn, R = problem(name, H, B, T, 5)
    grads = analytic(cell, xw, W_hh, state0, b_hn, R)
    assert cell._buffers(T, B)["chunk"] == chunk_steps
    for got, want in zip(grads[:3], reference[:3], strict=True):
        np.testing.assert_array_equal(got, want)
    for k in reference[3]:
        np.testing.assert_array_equal(grads[3][k], reference[3][k])
    if chunk_steps == 3:
        errors = check_gradients(cell, xw, W_hh, state0, b_hn, R, grads)
        assert max(errors.values()) < 1e-6, errors


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_lstm_one_step_by_hand():
    """One LSTM step with H 2, worked out unit by unit with math.exp and math.tanh."""
    H = 2
    xw = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8]  # a_i, a_f, a_g, a_o blocks of H
    W_hh = [
        [0.2, -0.1, 0.05, 0.3, -0.4, 0.25, 0.1, -0.2],
        [-0.3, 0.15, 0.2, -0.05, 0.35, -0.1, 0.4, 0.05],
    ]
    h0, c0 = [0.5, -0.25], [1.0, -2.0]
    h1, c1 = [], []
    for j in range(H):
        pre = [
            xw[k * H + j] + h0[0] * W_hh[0][k * H + j] + h0[1] * W_hh[1][k * H + j]
            for k in range(4)
        ]
        i, f, g, o = sigmoid(pre[0]), sigmoid(pre[1]), math.tanh(pre[2]), sigmoid(pre[3])
        c1.append(f * c0[j] + i * g)
        h1.append(o * math.tanh(c1[j]))
    cell = LSTMCell(H, np.float64)
    hs, state = cell.forward(scaled(cell, np.array([[xw]])), np.array(W_hh), np.array([[h0], [c0]]))
    np.testing.assert_allclose(hs[0, 0], h1, rtol=0, atol=1e-15)
    np.testing.assert_allclose(state[:, 0], [h1, c1], rtol=0, atol=1e-15)
    # unit 0: i = sigmoid(0.1 + 0.5*0.2 - 0.25*-0.3) = sigmoid(0.275), and so on
    assert c1[0] == pytest.approx(
        sigmoid(0.3 + 0.025 - 0.05) * 1.0 + sigmoid(0.275) * math.tanh(-0.5 - 0.2 - 0.0875)
    )


def test_gru_one_step_by_hand():
    """One GRU step with H 2 and b_hn inside r's product, worked out unit by unit."""
    H = 2
    xw = [0.3, -0.1, 0.2, 0.5, -0.4, 0.25]  # r, z, n blocks of H (x W_xh + b_h)
    W_hh = [[0.1, -0.2, 0.3, 0.05, -0.15, 0.4], [0.25, 0.1, -0.3, 0.2, 0.35, -0.05]]
    b_hn = [0.2, -0.3]
    h0 = [0.6, -0.4]
    h1 = []
    for j in range(H):
        gh = [h0[0] * W_hh[0][k * H + j] + h0[1] * W_hh[1][k * H + j] for k in range(3)]
        r = sigmoid(xw[j] + gh[0])
        z = sigmoid(xw[H + j] + gh[1])
        n = math.tanh(xw[2 * H + j] + r * (gh[2] + b_hn[j]))
        h1.append((1 - z) * n + z * h0[j])
    cell = GRUCell(H, np.float64)
    hs, state = cell.forward(
        scaled(cell, np.array([[xw]])), np.array(W_hh), np.array([[h0]]), np.array(b_hn)
    )
    np.testing.assert_allclose(hs[0, 0], h1, rtol=0, atol=1e-15)
    np.testing.assert_allclose(state[0, 0], h1, rtol=0, atol=1e-15)


def test_rnn_one_step_by_hand():
    """One vanilla step with H 2: h' = tanh(xw + h W_hh), no scaling."""
    xw, W_hh, h0 = [0.3, -0.6], [[0.5, -0.2], [0.1, 0.4]], [0.8, -0.5]
    h1 = [math.tanh(xw[j] + h0[0] * W_hh[0][j] + h0[1] * W_hh[1][j]) for j in range(2)]
    cell = RNNCell(2, np.float64)
    assert cell.x_scale is None
    hs, state = cell.forward(np.array([[[xw]]]), np.array(W_hh), np.array([[h0]]))
    np.testing.assert_allclose(hs[0, 0], h1, rtol=0, atol=1e-15)
    np.testing.assert_allclose(state[0, 0], h1, rtol=0, atol=1e-15)


def test_cell_table_and_scales():
    """CELLS names each cell; x_scale halves exactly the sigmoid gates' columns."""
    assert {k: (v.gates, v.state_size) for k, v in CELLS.items()} == {
        "rnn": (1, 1),
        "lstm": (4, 2),
        "gru": (3, 1),
    }
    ones = np.ones(3)
    lstm, gru = LSTMCell(3, np.float32), GRUCell(3, np.float32)
    assert lstm.x_scale.dtype == np.float32
    np.testing.assert_array_equal(
        lstm.x_scale, np.concatenate([ones / 2, ones / 2, ones, ones / 2])
    )
    np.testing.assert_array_equal(gru.x_scale, np.concatenate([ones / 2, ones / 2, ones]))
    with pytest.raises(ValueError):
        LSTMCell(0, np.float32)
    with pytest.raises(RuntimeError):
        GRUCell(3, np.float32).backward(np.zeros((2, 1, 3), np.float32))


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
def test_step_agrees_with_forward(name):
    """float32: step equals one step of forward, and T steps of it equal forward's hs."""
    H, B, T = 8, 3, 7
    cell, xw, W_hh, state0, b_hn, _ = problem(name, H, B, T, 6, np.float32)
    xw_in = scaled_rows(cell, xw)  # (T, B, GH)
    hs, state_T = cell.forward(to_blocks(xw_in, cell.gates), W_hh, state0, b_hn)
    hs, state_T = hs.copy(), state_T.copy()
    one, _ = cell.forward(to_blocks(xw_in[:1], cell.gates), W_hh, state0, b_hn)
    state = cell.step(xw_in[0], W_hh, state0, b_hn)
    assert state.shape == state0.shape and state.dtype == np.float32
    np.testing.assert_allclose(state[0], one[0], rtol=0, atol=1e-6)
    for t in range(1, T):
        state = cell.step(xw_in[t], W_hh, state, b_hn)
        np.testing.assert_allclose(state[0], hs[t], rtol=0, atol=1e-6)
    np.testing.assert_allclose(state, state_T, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
def test_final_state_is_a_copy(name):
    """state_T survives a later forward of the same (T, B), unlike hs, which is a view."""
    cell, xw, W_hh, state0, b_hn, _ = problem(name, 4, 2, 3, 7)
    hs, state_T = cell.forward(scaled(cell, xw), W_hh, state0, b_hn)
    saved = state_T.copy()
    np.testing.assert_array_equal(hs[-1], state_T[0])
    cell.forward(scaled(cell, xw), W_hh, 0 * state0, b_hn)
    np.testing.assert_array_equal(state_T, saved)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_matches_torch(name):
    """The same weights in torch.nn.LSTM / nn.GRU give the same hs, final state and gradients."""
    torch = pytest.importorskip("torch")
    H, B, T, D = 5, 3, 6, 4
    cell, _, W_hh, state0, b_hn, R = problem(name, H, B, T, 8)
    rng = np.random.default_rng(80)
    G = cell.gates
    x = rng.standard_normal((T, B, D))  # (T, B, D), the layer's input
    W_xh = rng.standard_normal((D, G * H)) / 2  # (D, GH)
    b_h = rng.standard_normal(G * H) / 2  # (GH,)
    xw = x @ W_xh + b_h  # (T, B, GH)

    net = (torch.nn.LSTM if name == "lstm" else torch.nn.GRU)(D, H, dtype=torch.float64)
    b_hh = np.zeros(G * H)
    if name == "gru":
        b_hh[2 * H :] = b_hn
    with torch.no_grad():
        net.weight_ih_l0.copy_(torch.from_numpy(W_xh.T))
        net.weight_hh_l0.copy_(torch.from_numpy(W_hh.T))
        net.bias_ih_l0.copy_(torch.from_numpy(b_h))
        net.bias_hh_l0.copy_(torch.from_numpy(b_hh))
    x_t = torch.from_numpy(x)
    s0 = [torch.from_numpy(s[None].copy()).requires_grad_() for s in state0]  # (1, B, H) each
    out, final = net(x_t, (s0[0], s0[1]) if name == "lstm" else s0[0])
    (out * torch.from_numpy(R)).sum().backward()

    hs, state_T = cell.forward(scaled(cell, xw), W_hh, state0, b_hn)
    np.testing.assert_allclose(hs, out.detach().numpy(), rtol=0, atol=1e-10)
    final = torch.cat(final if name == "lstm" else [final]).detach().numpy()  # (S, B, H)
    np.testing.assert_allclose(state_T, final, rtol=0, atol=1e-10)

    dxw, dW_hh, dstate0, extra = cell.backward(R.copy(), with_dstate0=True)
    dxw = from_blocks(dxw)  # (T, B, GH)
    N = T * B
    dW_xh = x.reshape(N, D).T @ dxw.reshape(N, G * H)  # (D, GH)
    db_h = dxw.reshape(N, G * H).sum(axis=0)  # (GH,)

    def grad(p):
        return p.grad.numpy()

    np.testing.assert_allclose(dW_xh, grad(net.weight_ih_l0).T, rtol=0, atol=1e-10)
    np.testing.assert_allclose(db_h, grad(net.bias_ih_l0), rtol=0, atol=1e-10)
    np.testing.assert_allclose(dW_hh, grad(net.weight_hh_l0).T, rtol=0, atol=1e-10)
    np.testing.assert_allclose(dstate0, np.concatenate([grad(s) for s in s0]), atol=1e-10)
    if name == "gru":
        np.testing.assert_allclose(extra["b_hn"], grad(net.bias_hh_l0)[2 * H :], atol=1e-10)
