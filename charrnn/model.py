"""A stack of recurrent layers over one-hot symbols, forward and backward by hand in NumPy.

    layer 1:   xw = x_t W_xh + b_h            (a row gather: x_t is one-hot)
    layer l:   xw = h_t^(l-1) W_xh{l} + b_h{l}  (one GEMM over all T*B rows)
    each:      h_t^(l) = cell(xw_t, h_{t-1}^(l) W_hh{l}, state)       (see cells.py)
    output:    p_t = softmax(h_t^(L) W_hy + b_y)
    loss = mean over all positions of -ln p_t[target_t]      (nats per symbol)

Shapes: B streams, T time steps, H hidden units, V symbols, L layers, G gate blocks of the
cell. Internally time is the leading axis, so each recurrence walks contiguous (B, G*H) slabs
and every other product is one GEMM over all T*B rows; the chunk is run layer by layer, as
cuDNN does. The recurrent state is one array (L, S, B, H), S = 2 for the LSTM (h, c).
"""

from __future__ import annotations

import numpy as np

from charrnn.cells import CELLS, block_products, from_blocks, to_blocks
from charrnn.choices import MAX_LAYERS


def suffix(layer: int) -> str:
    """The parameter-name suffix of a 0-based layer: "" for the first, "2", "3", ... above."""
    return "" if layer == 0 else str(layer + 1)


def param_shapes(
    vocab_size: int, hidden_size: int, cell: str = "rnn", layers: int = 1
) -> dict[str, tuple[int, ...]]:
    """The shape of each parameter, by name; the layout maps one to one onto torch.nn.RNN,
    LSTM and GRU (W_xh{s} = weight_ih_l{l}.T, W_hh{s} = weight_hh_l{l}.T)."""
    V, H, G = vocab_size, hidden_size, CELLS[cell].gates
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in range(layers):
        s = suffix(layer)
        shapes[f"W_xh{s}"] = (V if layer == 0 else H, G * H)
        shapes[f"W_hh{s}"] = (H, G * H)
        shapes[f"b_h{s}"] = (G * H,)
        if cell == "gru":
            shapes[f"b_hn{s}"] = (H,)
    shapes["W_hy"] = (H, V)
    shapes["b_y"] = (V,)
    return shapes


def scatter_add_rows(ids: np.ndarray, rows: np.ndarray, num_ids: int) -> np.ndarray:
    """out[..., v, :] = sum of rows[..., i, :] where ids[i] == v: the gradient of a row gather,
    (..., num_ids, H) from rows (..., N, H)."""
    if num_ids <= 256:  # one GEMM a block with a (V, N) one-hot: cheap while V is small
        one_hot_t = np.zeros((num_ids, len(ids)), rows.dtype)  # (V, N)
        one_hot_t[ids, np.arange(len(ids))] = 1
        return one_hot_t @ rows  # (..., V, H)
    order = np.argsort(ids, kind="stable")  # sort rows by id, then sum each run of equal ids
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    out = np.zeros((*rows.shape[:-2], num_ids, rows.shape[-1]), rows.dtype)
    out[..., sorted_ids[starts], :] = np.add.reduceat(rows[..., order, :], starts, axis=-2)
    return out


def dropout_keep(
    rate: float, shape: tuple[int, int], rng: np.random.Generator, dtype
) -> np.ndarray:
    """A dropout scale of `shape`: 0 with probability `rate`, else 1/(1-rate) (inverted dropout).

    Drawn from random bytes (rate rounded to 1/256) because that is several times cheaper
    than float draws for the millions of units a training step drops.
    """
    threshold = round(rate * 256)
    if threshold <= 0:
        return np.ones(shape, dtype)
    draws = np.frombuffer(rng.bytes(shape[0] * shape[1]), np.uint8).reshape(shape)
    keep = (draws >= threshold).astype(dtype)
    keep *= 256 / (256 - threshold)
    return keep


def _orthogonal(rng: np.random.Generator, H: int) -> np.ndarray:
    """A random orthogonal (H, H) matrix: keeps early gradients from exploding or vanishing."""
    q, r = np.linalg.qr(rng.standard_normal((H, H)))
    return q * np.sign(np.diag(r))


class CharRNN:
    """L recurrent layers of one cell ("rnn", "lstm" or "gru") with a softmax output;
    `params` holds every weight by name (see `param_shapes`)."""

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int,
        seed: int = 0,
        dtype: np.dtype | type = np.float32,
        cell: str = "rnn",
        layers: int = 1,
    ) -> None:
        if vocab_size < 1 or hidden_size < 1:
            raise ValueError("vocab_size and hidden_size must be positive")
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, got {cell!r}")
        if not 1 <= layers <= MAX_LAYERS:
            raise ValueError(f"layers must be from 1 to {MAX_LAYERS}, got {layers}")
        V, H = int(vocab_size), int(hidden_size)
        rng = np.random.default_rng(seed)
        scale = 1.0 / np.sqrt(H)
        G = CELLS[cell].gates
        params: dict[str, np.ndarray] = {}
        for layer in range(layers):
            s = suffix(layer)
            params[f"W_xh{s}"] = rng.uniform(-scale, scale, (V if layer == 0 else H, G * H))
            if cell == "rnn":  # as charrnn 0.1: an orthogonal W_hh, zero bias
                params[f"W_hh{s}"] = _orthogonal(rng, H)
                params[f"b_h{s}"] = np.zeros(H)
                continue
            # The gated cells start as torch.nn.LSTM/GRU do, every weight and both biases
            # uniform in +-1/sqrt(H): measured ahead, step for step, of orthogonal W_hh blocks
            # and of the LSTM's forget-gate bias 1, which slowed early learning (README).
            params[f"W_hh{s}"] = rng.uniform(-scale, scale, (H, G * H))
            bias_ih, bias_hh = rng.uniform(-scale, scale, (2, G * H))
            if cell == "gru":  # bias_hh's n block stays inside r's product
                params[f"b_hn{s}"] = bias_hh[2 * H :].copy()
                bias_hh[2 * H :] = 0
            params[f"b_h{s}"] = bias_ih + bias_hh
        params["W_hy"] = rng.uniform(-scale, scale, (H, V))
        params["b_y"] = np.zeros(V)
        self._setup({k: v.astype(dtype) for k, v in params.items()}, cell, layers)

    @classmethod
    def from_params(cls, params: dict[str, np.ndarray], cell: str | None = None) -> CharRNN:
        """A model holding the given weights (shapes as `param_shapes`), without drawing a
        random initialisation first (a QR of H x H is slow for large H). The cell and depth
        follow from the names and shapes unless `cell` is given."""
        H = params["W_hy"].shape[0]
        layers = sum(1 for name in params if name.startswith("W_hh"))
        if cell is None:
            cell = {1: "rnn", 3: "gru", 4: "lstm"}.get(params["W_hh"].shape[1] // H, "rnn")
        model = cls.__new__(cls)
        model._setup(dict(params), cell, layers)
        return model

    def replica(self) -> CharRNN:
        """A model over the same parameter arrays with work buffers of its own, so that it can
        run a forward and backward beside this one: a worker of data-parallel training."""
        return CharRNN.from_params(self.params, self.cell)

    def _setup(self, params: dict[str, np.ndarray], cell: str, layers: int) -> None:
        self.params = params
        self.cell, self.layers = cell, layers
        self.vocab_size, self.hidden_size = params["W_hy"].shape[1], params["W_hy"].shape[0]
        self.dtype = params["W_hy"].dtype
        self.cells = [CELLS[cell](self.hidden_size, self.dtype) for _ in range(layers)]
        self.state_size = self.cells[0].state_size
        self.gates = self.cells[0].gates
        self._work: dict[tuple[int, int], dict] = {}

    def state_shape(self, batch: int) -> tuple[int, int, int, int]:
        """(L, S, B, H): per layer the h (and for an LSTM the c) of every stream."""
        return (self.layers, self.state_size, batch, self.hidden_size)

    def zero_state(self, batch: int) -> np.ndarray:
        """A fresh recurrent state for `batch` streams, (L, S, B, H)."""
        return np.zeros(self.state_shape(batch), self.dtype)

    def _buffers(self, T: int, B: int) -> dict[str, np.ndarray]:
        """Work buffers for a (B, T) chunk, allocated once and reused by every later call."""
        work = self._work.get((T, B))
        if work is None:
            H, V, N, dt = self.hidden_size, self.vocab_size, T * B, self.dtype
            work = {
                # Per layer, gate-major: x W_xh + b_h, then the gates, then dL/dxw (cells.py).
                "xw": [np.empty((self.gates, T, B, H), dt) for _ in range(self.layers)],
                # Symbols on rows, positions on columns: the per-position max and sum run
                # along long contiguous rows instead of T*B short ones.
                "logits_t": np.empty((V, N), dt),  # logits, then exp, then dL/dlogits
                "dh": np.empty((N, H), dt),  # dL/dh of the layer whose backward runs
                "rows": np.arange(N),
                "ones_n": np.ones(N, dt),  # sums over positions as a GEMV, faster than .sum
                "ones_v": np.ones(V, dt),
            }
            if len(self._work) >= 4:  # training and evaluation use few shapes; cap the rest
                self._work.pop(next(iter(self._work)))
            self._work[(T, B)] = work
        return work

    def _masks(self, keep, hh_keep, N: int):
        """Dropout scales as (L, T*B, H) and weight-drop scales as (L, H, G*H), or None."""
        L, H = self.layers, self.hidden_size
        if keep is not None:
            keep = np.asarray(keep, self.dtype).reshape(L, N, H)
        if hh_keep is not None:
            hh_keep = np.asarray(hh_keep, self.dtype).reshape(L, H, self.gates * H)
        return keep, hh_keep

    def _forward(self, inputs, targets, state0, keep, hh_keep):
        """Run the chunk; returns the summed nats, work buffers, the (T*B,) target ids, the
        (T*B,) softmax denominators (w["logits_t"] holds exp(logit - max) then) and state_T.

        `keep` (L, T*B, H), when given, scales each layer's h_t on its way up (to the next
        layer or the output layer): dropout, never inside the recurrence. `hh_keep` (L, H, G*H)
        scales each W_hh for the whole chunk (DropConnect on the recurrence).
        """
        p = self.params
        B, T = inputs.shape
        N, H = T * B, self.hidden_size
        w = self._buffers(T, B)
        state0 = np.asarray(state0, self.dtype).reshape(self.state_shape(B))
        state_T = np.empty_like(state0)  # (L, S, B, H)
        below = None  # the input of the layer above, (TB, H)
        w["below"] = []
        for layer, cell in enumerate(self.cells):
            s, xw, scale = suffix(layer), w["xw"][layer], cell.x_scale
            if layer == 0:
                # x_t W_xh + b_h is a row gather from (W_xh + b_h). Ids are < V by
                # construction; mode="clip" skips a bounds check that costs 3x the copy.
                table = p["W_xh"] + p["b_h"]  # (V, GH)
                if scale is not None:
                    table *= scale
                for k, block in enumerate(to_blocks(table, self.gates)):  # (V, H) each
                    np.take(block, inputs.T, axis=0, out=xw[k], mode="clip")  # (T, B, H)
            else:
                W_xh, b_h = p[f"W_xh{s}"], p[f"b_h{s}"]  # (H, GH), (GH,)
                if scale is not None:
                    W_xh, b_h = W_xh * scale, b_h * scale
                for k in range(self.gates):  # one GEMM over all TB rows per gate block
                    block = slice(k * H, (k + 1) * H)
                    np.matmul(below, W_xh[:, block], out=xw[k].reshape(N, H))  # (TB, H)
                    xw[k] += b_h[block]
            W_hh = p[f"W_hh{s}"]  # (H, GH)
            if hh_keep is not None:
                W_hh = W_hh * hh_keep[layer]
            hs, state_T[layer] = cell.forward(xw, W_hh, state0[layer], p.get(f"b_hn{s}"))
            below = hs.reshape(N, H)  # (TB, H)
            if keep is not None:
                if "dropped" not in w:  # h * keep of every layer, made with the first mask
                    w["dropped"] = np.empty((self.layers, N, H), self.dtype)
                below = np.multiply(below, keep[layer], out=w["dropped"][layer])
            w["below"].append(below)
        logits_t = w["logits_t"]
        np.matmul(p["W_hy"].T, below.T, out=logits_t)  # (V, TB)
        logits_t += p["b_y"][:, None]
        target_ids = targets.T.reshape(-1)  # (TB,) time-major, matching the rows of h
        # Stable log-softmax: log p = y - max - log sum exp(y - max).
        logits_t -= logits_t.max(axis=0)
        target_logit = logits_t[target_ids, w["rows"]]  # (TB,)
        np.exp(logits_t, out=logits_t)
        total = w["ones_v"] @ logits_t  # (TB,)
        nats = float(np.log(total).sum(dtype=np.float64) - target_logit.sum(dtype=np.float64))
        return nats, w, target_ids, total, state_T

    def loss(self, inputs, targets, state0, keep=None, hh_keep=None):
        """Forward only: (mean nats per symbol, state_T) for (B, T) inputs and targets."""
        keep, hh_keep = self._masks(keep, hh_keep, inputs.size)
        nats, *_, state_T = self._forward(inputs, targets, state0, keep, hh_keep)
        return nats / inputs.size, state_T

    def loss_and_grads(
        self, inputs, targets, state0, with_dh0=False, keep=None, hh_keep=None, positions=None
    ):
        """Loss (mean nats), gradients of every parameter, and state_T to carry on.

        inputs, targets: int (B, T); state0: (L, S, B, H). With `with_dh0` the gradients also
        hold "h0", dL/dstate0 of the state's shape, which training never needs but the
        gradient check does. `keep` is an optional (L, T*B, H) dropout scale on each layer's
        output, `hh_keep` an optional (L, H, G*H) one on each W_hh (see `dropout_keep`).
        `positions` is the mean's denominator (default T*B): a data-parallel worker divides by
        the whole batch's, so that the workers' losses and gradients add up to the batch's.
        """
        p = self.params
        B, T = inputs.shape
        H, V, N = self.hidden_size, self.vocab_size, T * B
        keep, hh_keep = self._masks(keep, hh_keep, N)
        nats, w, target_ids, total, state_T = self._forward(inputs, targets, state0, keep, hh_keep)
        mean_over = N if positions is None else positions

        # loss = mean -log softmax(y)[target]  ->  dL/dy = (exp / total - onehot(target)) / N
        dlogits_t = w["logits_t"]  # (V, TB), holds exp(y - max)
        scale = np.reciprocal(total, out=total)
        scale *= 1.0 / mean_over
        dlogits_t *= scale  # probs / N
        dlogits_t[target_ids, w["rows"]] -= 1.0 / mean_over
        # y = h W_hy + b_y
        top = w["below"][-1]  # (TB, H), after dropout
        grads = {
            "W_hy": np.ascontiguousarray((dlogits_t @ top).T),  # (H, V); NN, faster than TN
            "b_y": dlogits_t @ w["ones_n"],  # (V,)
        }
        W_hy_T = np.ascontiguousarray(p["W_hy"].T)  # (V, H)
        dh = np.matmul(dlogits_t.T, W_hy_T, out=w["dh"])  # dL/dh of the top layer, (TB, H)
        dstate0 = np.empty(self.state_shape(B), self.dtype) if with_dh0 else None
        for layer in range(self.layers - 1, -1, -1):
            s, cell = suffix(layer), self.cells[layer]
            if keep is not None:
                dh *= keep[layer]  # through the dropout scale
            dxw, dW_hh, dstate0_layer, extra = cell.backward(dh.reshape(T, B, H), with_dh0)
            if hh_keep is not None:
                dW_hh *= hh_keep[layer]  # W_eff = W_hh * hh_keep
            grads[f"W_hh{s}"] = dW_hh  # (H, GH)
            grads.update({f"{name}{s}": g for name, g in extra.items()})
            if with_dh0:
                dstate0[layer] = dstate0_layer
            dxw_blocks = dxw.reshape(self.gates, N, H)  # (G, TB, H): dL/d(x W_xh + b_h)
            if layer == 0:
                ids = inputs.T.reshape(-1)  # (TB,)
                grads["W_xh"] = from_blocks(scatter_add_rows(ids, dxw_blocks, V))  # (V, GH)
                # Every position adds its dL/dxw to one row of dW_xh: the rows sum to dL/db_h.
                grads["b_h"] = grads["W_xh"].sum(axis=0)  # (GH,)
            else:
                below = w["below"][layer - 1]  # (TB, H)
                grads[f"W_xh{s}"] = block_products(below.T, dxw_blocks)  # (H, GH)
                grads[f"b_h{s}"] = (w["ones_n"] @ dxw_blocks).reshape(-1)  # (GH,)
                # dL/dh of the layer below, sum over blocks of dxw_k W_xh_k^T; each block's
                # product lands in the block before it, already used and free.
                W_xh_T = p[f"W_xh{s}"].T  # (GH, H)
                np.matmul(dxw_blocks[0], W_xh_T[:H], out=dh)
                for k in range(1, self.gates):
                    spare = dxw_blocks[k - 1]  # (TB, H)
                    np.matmul(dxw_blocks[k], W_xh_T[k * H : (k + 1) * H], out=spare)
                    dh += spare
        if with_dh0:
            grads["h0"] = dstate0
        grads = {k: np.asarray(grads[k], self.dtype) for k in (*p, "h0") if k in grads}
        return nats / mean_over, grads, state_T

    def step(self, ids: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One time step, the plain reference for sampling: ids (B,), state (L, S, B, H) ->
        logits (B, V), new state (L, S, B, H)."""
        p = self.params
        state = np.asarray(state, self.dtype).reshape(self.state_shape(len(ids)))
        new = np.empty_like(state)
        h = None
        for layer, cell in enumerate(self.cells):
            s, scale = suffix(layer), cell.x_scale
            if layer == 0:
                xw = p["W_xh"][ids] + p["b_h"]  # the training forward's sums, row by row
            else:
                xw = h @ p[f"W_xh{s}"]  # (B, GH)
                xw += p[f"b_h{s}"]
            if scale is not None:
                xw *= scale
            new[layer] = cell.step(xw, p[f"W_hh{s}"], state[layer], p.get(f"b_hn{s}"))
            h = new[layer, 0]  # (B, H)
        logits = h @ p["W_hy"]  # (B, V)
        logits += p["b_y"]
        return logits, new
