"""A vanilla RNN over one-hot symbols, forward and backward by hand in NumPy.

    h_t = tanh(x_t W_xh + h_{t-1} W_hh + b_h)      p_t = softmax(h_t W_hy + b_y)
    loss = mean over all positions of -ln p_t[target_t]      (nats per symbol)

Shapes: B streams, T time steps, H hidden units, V symbols. Internally time is the leading
axis, so the recurrence walks contiguous (B, H) slabs and every other product is one GEMM
over all T*B rows.
"""

from __future__ import annotations

import numpy as np

from charrnn import blas

PARAM_NAMES = ("W_xh", "W_hh", "b_h", "W_hy", "b_y")
# The backward pass forms tanh' for as many steps at once as fit in this many elements
# (256 KB of float32): one call per chunk instead of two per step, and the chunk stays in cache.
TANH_GRAD_CHUNK = 2**16
# The recurrence runs on one BLAS thread while each step's product has at most this many
# multiply-adds (B*H*H): waking a second thread per product costs more than it gives there.
# Step time with one thread against two, B 64: 0.85 at H 128, 1.07 at H 192, 1.03-1.14 at H 256.
ONE_THREAD_MAX_PRODUCT = 2**20


def param_shapes(vocab_size: int, hidden_size: int) -> dict[str, tuple[int, ...]]:
    """The shape of each parameter for a vocabulary of V symbols and H hidden units."""
    V, H = vocab_size, hidden_size
    return {"W_xh": (V, H), "W_hh": (H, H), "b_h": (H,), "W_hy": (H, V), "b_y": (V,)}


def scatter_add_rows(ids: np.ndarray, rows: np.ndarray, num_ids: int) -> np.ndarray:
    """out[v] = sum of rows[i] where ids[i] == v: the gradient of a row gather, (num_ids, H)."""
    if num_ids <= 256:  # one GEMM with a (V, N) one-hot: cheap while V is small
        one_hot_t = np.zeros((num_ids, len(ids)), rows.dtype)  # (V, N)
        one_hot_t[ids, np.arange(len(ids))] = 1
        return one_hot_t @ rows  # (V, H)
    order = np.argsort(ids, kind="stable")  # sort rows by id, then sum each run of equal ids
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    out = np.zeros((num_ids, rows.shape[1]), rows.dtype)
    out[sorted_ids[starts]] = np.add.reduceat(rows[order], starts, axis=0)
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


class CharRNN:
    """A vanilla tanh RNN with a softmax output; `params` holds every weight by name."""

    cell = "rnn"

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int,
        seed: int = 0,
        dtype: np.dtype | type = np.float32,
    ) -> None:
        if vocab_size < 1 or hidden_size < 1:
            raise ValueError("vocab_size and hidden_size must be positive")
        self.vocab_size, self.hidden_size = int(vocab_size), int(hidden_size)
        self.dtype = np.dtype(dtype)
        rng = np.random.default_rng(seed)
        V, H = self.vocab_size, self.hidden_size
        scale = 1.0 / np.sqrt(H)
        # Orthogonal recurrence keeps early gradients from exploding or vanishing.
        q, r = np.linalg.qr(rng.standard_normal((H, H)))
        self.params: dict[str, np.ndarray] = {
            "W_xh": rng.uniform(-scale, scale, (V, H)),
            "W_hh": q * np.sign(np.diag(r)),
            "b_h": np.zeros(H),
            "W_hy": rng.uniform(-scale, scale, (H, V)),
            "b_y": np.zeros(V),
        }
        self.params = {k: v.astype(self.dtype) for k, v in self.params.items()}
        self._work: dict[tuple[int, int], dict[str, np.ndarray]] = {}

    @classmethod
    def from_params(cls, params: dict[str, np.ndarray]) -> CharRNN:
        """A model holding the given weights (shapes as `param_shapes`), without drawing a
        random initialisation first (a QR of H x H is slow for large H)."""
        model = cls.__new__(cls)
        V, H = params["W_xh"].shape
        model.vocab_size, model.hidden_size = int(V), int(H)
        model.dtype = params["W_xh"].dtype
        model.params = dict(params)
        model._work = {}
        return model

    def zero_state(self, batch: int) -> np.ndarray:
        """A fresh hidden state for `batch` streams, (B, H)."""
        return np.zeros((batch, self.hidden_size), self.dtype)

    def _buffers(self, T: int, B: int) -> dict[str, np.ndarray]:
        """Work buffers for a (B, T) chunk, allocated once and reused by every later call."""
        work = self._work.get((T, B))
        if work is None:
            H, V, N, dt = self.hidden_size, self.vocab_size, T * B, self.dtype
            hs = np.empty((T + 1, B, H), dt)  # h_0 .. h_T
            dz = np.empty((T, B, H), dt)  # dL/dh from the output, then dL/d(pre-tanh)
            tanh_grad = np.empty((max(1, min(T, TANH_GRAD_CHUNK // (B * H))), B, H), dt)
            work = {
                "hs": hs,
                "hs_steps": list(hs),  # (B, H) views made once: slicing in the loops costs
                "dz": dz,
                "dz_steps": list(dz),
                "tanh_grad": tanh_grad,
                "tanh_grad_steps": list(tanh_grad),
                # Symbols on rows, positions on columns: the per-position max and sum run
                # along long contiguous rows instead of T*B short ones.
                "logits_t": np.empty((V, N), dt),  # logits, then exp, then dL/dlogits
                "tmp": np.empty((B, H), dt),  # h W_hh in the forward recurrence
                "dnext": np.empty((B, H), dt),  # dL/dh_{t-1} through the recurrence
                "dropped": np.empty((N, H), dt),  # h_t * keep mask, input of the output layer
                "rows": np.arange(N),
                "ones_n": np.ones(N, dt),  # sums over positions as a GEMV, faster than .sum
                "ones_v": np.ones(V, dt),
            }
            if len(self._work) >= 4:  # training and evaluation use few shapes; cap the rest
                self._work.pop(next(iter(self._work)))
            self._work[(T, B)] = work
        return work

    def _forward(
        self,
        inputs: np.ndarray,
        targets: np.ndarray,
        h0: np.ndarray,
        keep: np.ndarray | None = None,
        hh_keep: np.ndarray | None = None,
    ):
        """Run the chunk; returns the summed nats, work buffers, the (T*B,) target ids and
        the (T*B,) softmax denominators (w["logits_t"] holds exp(logit - max) then).

        `keep` (T*B, H), when given, scales each h_t on its way to the output layer only
        (dropout: 0 for a dropped unit, 1/(1-rate) for a kept one); the recurrence sees h_t whole.
        `hh_keep` (H, H) scales W_hh for the whole chunk (DropConnect on the recurrence).
        """
        p = self.params
        B, T = inputs.shape
        w = self._buffers(T, B)
        hs, hs_steps, logits_t, tmp = w["hs"], w["hs_steps"], w["logits_t"], w["tmp"]
        H = self.hidden_size
        hs[0] = h0
        # x_t W_xh + b_h is a row gather from (W_xh + b_h), written straight into hs[1:].
        # Ids are < V by construction; mode="clip" skips a bounds check that costs 3x the copy.
        np.take(p["W_xh"] + p["b_h"], inputs.T, axis=0, out=hs[1:], mode="clip")  # (T, B, H)
        W_hh = p["W_hh"]  # (H, H)
        if hh_keep is not None:
            W_hh = W_hh * np.asarray(hh_keep, self.dtype)
        w["W_hh"] = W_hh  # the backward pass uses the same effective recurrence
        with blas.one_thread(B * H * H <= ONE_THREAD_MAX_PRODUCT):
            for t in range(T):
                np.matmul(hs_steps[t], W_hh, out=tmp)  # (B, H)
                tmp += hs_steps[t + 1]
                np.tanh(tmp, out=hs_steps[t + 1])  # h_{t+1} = tanh(x W_xh + b_h + h_t W_hh)
        h_flat = hs[1:].reshape(T * B, H)  # (TB, H)
        if keep is not None:
            h_flat = np.multiply(h_flat, keep, out=w["dropped"])  # (TB, H)
        np.matmul(p["W_hy"].T, h_flat.T, out=logits_t)  # (V, TB)
        logits_t += p["b_y"][:, None]
        target_ids = targets.T.reshape(-1)  # (TB,) time-major, matching h_flat's rows
        # Stable log-softmax: log p = y - max - log sum exp(y - max).
        logits_t -= logits_t.max(axis=0)
        target_logit = logits_t[target_ids, w["rows"]]  # (TB,)
        np.exp(logits_t, out=logits_t)
        total = w["ones_v"] @ logits_t  # (TB,)
        nats = float(np.log(total).sum(dtype=np.float64) - target_logit.sum(dtype=np.float64))
        return nats, w, target_ids, total

    def loss(
        self,
        inputs: np.ndarray,
        targets: np.ndarray,
        h0: np.ndarray,
        keep: np.ndarray | None = None,
        hh_keep: np.ndarray | None = None,
    ):
        """Forward only: (mean nats per symbol, h_T) for (B, T) inputs and targets."""
        if keep is not None:
            keep = np.asarray(keep, self.dtype).reshape(inputs.size, self.hidden_size)
        nats, w, _, _ = self._forward(inputs, targets, h0, keep, hh_keep)
        return nats / inputs.size, w["hs"][-1].copy()

    def loss_and_grads(
        self,
        inputs: np.ndarray,
        targets: np.ndarray,
        h0: np.ndarray,
        with_dh0: bool = False,
        keep: np.ndarray | None = None,
        hh_keep: np.ndarray | None = None,
    ):
        """Loss (mean nats), gradients of every parameter, and h_T to carry to the next chunk.

        inputs, targets: int (B, T); h0: (B, H). With `with_dh0` the gradients also hold
        "h0", dL/dh0, which training never needs but the gradient check does. `keep` is an
        optional (T*B, H) dropout scale on the output layer's input, `hh_keep` an optional
        (H, H) one on W_hh (see `dropout_keep`).
        """
        p = self.params
        B, T = inputs.shape
        H, V = self.hidden_size, self.vocab_size
        N = T * B
        if keep is not None:
            keep = np.asarray(keep, self.dtype).reshape(N, H)
        nats, w, target_ids, total = self._forward(inputs, targets, h0, keep, hh_keep)
        hs, dz, dz_steps, dnext = w["hs"], w["dz"], w["dz_steps"], w["dnext"]
        h_flat = hs[1:].reshape(N, H) if keep is None else w["dropped"]  # output input, (TB, H)

        # loss = mean -log softmax(y)[target]  ->  dL/dy = (exp / total - onehot(target)) / N
        dlogits_t = w["logits_t"]  # (V, TB), holds exp(y - max)
        scale = np.reciprocal(total, out=total)
        scale *= 1.0 / N
        dlogits_t *= scale  # probs / N
        dlogits_t[target_ids, w["rows"]] -= 1.0 / N
        # y = h W_hy + b_y
        grads = {
            "W_hy": np.ascontiguousarray((dlogits_t @ h_flat).T),  # (H, V); NN, faster than TN
            "b_y": dlogits_t @ w["ones_n"],  # (V,)
        }
        W_hy_T = np.ascontiguousarray(p["W_hy"].T)  # (V, H)
        np.matmul(dlogits_t.T, W_hy_T, out=dz.reshape(N, H))  # dL/dh from the output, (TB, H)
        if keep is not None:
            dz.reshape(N, H)[...] *= keep  # through the dropout scale

        # The effective recurrence of the forward pass, transposed into a contiguous copy:
        # OpenBLAS multiplies by it a quarter faster than by a transposed view.
        W_hh_T = np.ascontiguousarray(w["W_hh"].T)  # (H, H)
        # h_{t+1} = tanh(a_t), a_t = x_t W_xh + b_h + h_t W_hh:
        # dL/da_t = (dL/dh_{t+1} from output + from step t+1) * (1 - h_{t+1}^2).
        tanh_grad, tanh_grad_steps = w["tanh_grad"], w["tanh_grad_steps"]
        C = len(tanh_grad)
        with blas.one_thread(B * H * H <= ONE_THREAD_MAX_PRODUCT):
            for t in range(T - 1, -1, -1):
                lo = t - t % C
                if t == T - 1 or t % C == C - 1:  # entering a chunk of steps lo..t: their tanh'
                    g = tanh_grad[: t - lo + 1]  # (steps, B, H)
                    np.square(hs[lo + 1 : t + 2], out=g)
                    np.subtract(1, g, out=g)  # 1 - h^2
                dz_t = dz_steps[t]  # (B, H)
                if t < T - 1:
                    dz_t += dnext
                dz_t *= tanh_grad_steps[t - lo]  # dz[t] is now dL/da_t
                if t > 0 or with_dh0:
                    np.matmul(dz_t, W_hh_T, out=dnext)  # dL/dh_t through W_hh, (B, H)
        da_flat = dz.reshape(N, H)  # (TB, H)
        grads["W_hh"] = hs[:-1].reshape(N, H).T @ da_flat  # (H, H): one GEMM, all steps
        if hh_keep is not None:
            grads["W_hh"] *= hh_keep  # W_eff = W_hh * hh_keep
        grads["W_xh"] = scatter_add_rows(inputs.T.reshape(-1), da_flat, V)  # (V, H)
        # Every position adds its dL/da to exactly one row of dW_xh, so the rows sum to dL/db_h.
        grads["b_h"] = grads["W_xh"].sum(axis=0)  # (H,)
        if with_dh0:
            grads["h0"] = dnext.copy()  # (B, H)
        grads = {k: np.asarray(grads[k], self.dtype) for k in (*PARAM_NAMES, "h0") if k in grads}
        return nats / N, grads, hs[-1].copy()

    def step(self, ids: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One time step for sampling: ids (B,), h (B, H) -> logits (B, V), new h (B, H)."""
        p = self.params
        a = h @ p["W_hh"]  # (B, H)
        a += p["W_xh"][ids] + p["b_h"]  # rounded as in the training forward and in sampling
        np.tanh(a, out=a)
        logits = a @ p["W_hy"]  # (B, V)
        logits += p["b_y"]
        return logits, a
