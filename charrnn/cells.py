"""Recurrent cells run over a whole chunk of T steps, forward and backward by hand in NumPy.

A layer's caller forms xw = x W_xh + b_h for all T steps at once (a row gather or GEMMs),
scales its columns by the cell's `x_scale`, and hands it to `forward` gate-major, (G, T, B, H):
gate block k of every step is one contiguous (T*B, H) matrix. `forward` runs only the
sequential part: h_t from xw_t and h_{t-1} W_hh, one (B, H) @ (H, G*H) product per step.
`backward` returns dL/d(x W_xh + b_h) in true units, gate-major too, so dW_xh = x^T dxw_k and
db_h = sum dxw_k block by block.

    rnn   h' = tanh(a)                                      a = xw_t + h W_hh, G = 1
    lstm  i, f, o = sigmoid(a_i, a_f, a_o), g = tanh(a_g)   G = 4, blocks i, f, g, o
          c' = f c + i g,  h' = o tanh(c')
    gru   r, z = sigmoid(xw_r + h W_r, xw_z + h W_z)        G = 3, blocks r, z, n
          n = tanh(xw_n + r (h W_n + b_hn)),  h' = (1 - z) n + z h

W_hh is (H, G*H) and maps one to one onto torch.nn's weight_hh_l0.T; the state is (S, B, H)
with S = 2 for the LSTM (h, c) and 1 otherwise. Shapes: T steps, B streams, H hidden units.

One buffer serves three lives, which is what keeps training's memory low: xw's buffer holds
the input projections, then forward overwrites each step's with its gates (the LSTM's and
GRU's backward need the gates, not the pre-activations), then backward overwrites each
step's gates with dxw once it has read them. Gate-major keeps every gate of a step a
contiguous (B, H) slab for the elementwise passes and every block over the chunk one matrix
for the GEMMs.

Lifetimes: a cell instance serves one layer. Its work buffers are kept per (T, B), so `hs`
(a view into them) is valid until the next forward of the same (T, B). Between forward and
backward the caller leaves xw (the cell writes into it, and backward returns dxw in the
same array), W_hh and hs untouched and runs no other forward of that (T, B).
"""

from __future__ import annotations

import numpy as np

from charrnn import blas
from charrnn.choices import CELL_NAMES

# The backward pass forms the derivative factors of the nonlinearities for as many steps at
# once as fit in this many elements (256 KB of float32): one call per chunk instead of one or
# more per step, and the chunk stays in cache.
TANH_GRAD_CHUNK = 2**16
# The recurrence runs on one BLAS thread while each step's product has at most this many
# multiply-adds (B*H*G*H): waking a second thread per product costs more than it gives there.
# Vanilla step time with one thread against two, B 64: 0.85 at H 128, 1.07 at H 192.
ONE_THREAD_MAX_PRODUCT = 2**20


def to_blocks(rows: np.ndarray, gates: int) -> np.ndarray:
    """(..., G*H) with gate blocks side by side -> (G, ..., H) gate-major, a contiguous copy."""
    blocks = rows.reshape(*rows.shape[:-1], gates, -1)
    return np.ascontiguousarray(np.moveaxis(blocks, -2, 0))


def from_blocks(blocks: np.ndarray) -> np.ndarray:
    """(G, ..., H) gate-major -> (..., G*H) with the gate blocks side by side, a copy."""
    rows = np.moveaxis(blocks, 0, -2)
    return rows.reshape(*rows.shape[:-2], -1)


def block_products(left: np.ndarray, blocks) -> np.ndarray:
    """left (R, N) times each (N, H) block of blocks (G of them), side by side: (R, G*H).

    The gradient of a weight whose columns hold the G gate blocks: one GEMM per block."""
    G, H = len(blocks), blocks[0].shape[-1]
    out = np.empty((left.shape[0], G * H), left.dtype)  # (R, GH)
    for k, block in enumerate(blocks):
        out[:, k * H : (k + 1) * H] = left @ block
    return out


class _Cell:
    """Work buffers per (T, B) shared by the three cells; subclasses fill `_allocate`."""

    gates: int
    state_size: int
    x_scale: np.ndarray | None = None

    def __init__(self, hidden_size: int, dtype: np.dtype | type = np.float32) -> None:
        if hidden_size < 1:
            raise ValueError("hidden_size must be positive")
        self.hidden_size = int(hidden_size)
        self.dtype = np.dtype(dtype)
        self._work: dict[tuple[int, int], dict] = {}

    def _buffers(self, T: int, B: int) -> dict:
        """Work buffers for a (T, B) chunk, allocated once and reused by every later call."""
        work = self._work.get((T, B))
        if work is None:
            H, G, dt = self.hidden_size, self.gates, self.dtype
            hs = np.empty((T + 1, B, H), dt)  # h_0 .. h_T
            chunk = max(1, min(T, TANH_GRAD_CHUNK // (B * G * H)))
            a = np.empty((B, G * H), dt)
            work = {
                "hs": hs,
                "hs_steps": list(hs),  # (B, H) views made once: slicing in the loops costs
                "a": a,  # h W_hh of one step
                "a_blocks": a.reshape(B, G, H).transpose(1, 0, 2),  # (G, B, H) view of a
                "dnext": np.empty((B, H), dt),  # dL/dh_{t-1} through the recurrence
                "chunk": chunk,
                **self._allocate(T, B, chunk),
            }
            if len(self._work) >= 4:  # training and evaluation use few shapes; cap the rest
                self._work.pop(next(iter(self._work)))
            self._work[(T, B)] = work
        return work

    def _allocate(self, T: int, B: int, chunk: int) -> dict:
        raise NotImplementedError

    def _start(self, xw: np.ndarray, W_hh: np.ndarray, state0: np.ndarray):
        """Buffers for xw's (T, B), with xw and W_hh kept for backward and h_0 set."""
        xw = np.ascontiguousarray(xw, self.dtype)  # (G, T, B, H), no copy when it already is
        G, T, B, H = xw.shape
        if (self.gates, self.hidden_size) != (G, H):
            raise ValueError(
                f"xw must be gate-major (G, T, B, H), G {self.gates}, H {self.hidden_size}"
            )
        w = self._buffers(T, B)
        w["xw"], w["W_hh"] = xw, W_hh
        w["hs"][0] = state0[0]
        return xw, w

    def _recall(self, dhs: np.ndarray):
        """dhs as a contiguous array of the cell's dtype, and the buffers of its forward."""
        dhs = np.ascontiguousarray(dhs, self.dtype)  # (T, B, H)
        T, B, _ = dhs.shape
        w = self._work.get((T, B))
        if w is None or "xw" not in w:
            raise RuntimeError(f"backward without a forward of shape (T, B) = {(T, B)}")
        return dhs, w, np.ascontiguousarray(w["W_hh"].T)  # W_hh^T: (G*H, H)

    def step(
        self, xw_t: np.ndarray, W_hh: np.ndarray, state: np.ndarray, b_hn: np.ndarray | None = None
    ) -> np.ndarray:
        """One step for sampling, the plain reference: xw_t (B, G*H), blocks side by side,
        scaled by x_scale, state (S, B, H) -> the next state (S, B, H)."""
        gh = state[0] @ W_hh  # (B, G*H)
        if self.x_scale is not None:
            gh *= self.x_scale  # exact: the same numbers as forward's product with W_hh scaled
        new = np.array(state, self.dtype)
        self.update(np.array(xw_t, self.dtype), gh, new, b_hn)
        return new

    def _one_thread(self, B: int):
        """One BLAS thread for the loops when each step's product is small."""
        H = self.hidden_size
        return blas.one_thread(B * H * self.gates * H <= ONE_THREAD_MAX_PRODUCT)


class RNNCell(_Cell):
    """The vanilla tanh recurrence h' = tanh(xw_t + h W_hh); x_scale is None (no scaling)."""

    gates = 1
    state_size = 1

    def _allocate(self, T: int, B: int, chunk: int) -> dict:
        tanh_grad = np.empty((chunk, B, self.hidden_size), self.dtype)
        return {"tanh_grad": tanh_grad, "tanh_grad_steps": list(tanh_grad)}

    def forward(
        self, xw: np.ndarray, W_hh: np.ndarray, state0: np.ndarray, b_hn: None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """h_1..h_T (T, B, H), a view valid until the next forward of this (T, B), and h_T."""
        xw, w = self._start(xw, W_hh, state0)
        xw = xw[0]  # (T, B, H): one gate block
        hs, hs_steps, a = w["hs"], w["hs_steps"], w["a"]
        with self._one_thread(xw.shape[1]):
            for t in range(len(xw)):
                np.matmul(hs_steps[t], W_hh, out=a)  # (B, H)
                a += xw[t]
                np.tanh(a, out=hs_steps[t + 1])  # h_{t+1} = tanh(xw_t + h_t W_hh)
        return hs[1:], hs[-1:].copy()

    def backward(
        self, dhs: np.ndarray, with_dstate0: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict]:
        """dxw (1, T, B, H) written into forward's xw, dW_hh (H, H), dstate0 (1, B, H) or None."""
        dhs, w, W_hh_T = self._recall(dhs)
        T, B, H = dhs.shape
        hs, dxw, dnext = w["hs"], w["xw"][0], w["dnext"]
        tanh_grad, tanh_grad_steps, C = w["tanh_grad"], w["tanh_grad_steps"], w["chunk"]
        # h_{t+1} = tanh(a_t): dL/da_t = (dL/dh_{t+1} from above + from step t+1) (1 - h_{t+1}^2)
        with self._one_thread(B):
            for t in range(T - 1, -1, -1):
                lo = t - t % C
                if t == T - 1 or t % C == C - 1:  # entering a chunk of steps lo..t: their tanh'
                    g = tanh_grad[: t - lo + 1]  # (steps, B, H)
                    np.square(hs[lo + 1 : t + 2], out=g)
                    np.subtract(1, g, out=g)  # 1 - h^2
                da = dxw[t]  # (B, H)
                if t < T - 1:
                    np.add(dhs[t], dnext, out=da)
                    da *= tanh_grad_steps[t - lo]
                else:
                    np.multiply(dhs[t], tanh_grad_steps[t - lo], out=da)
                if t > 0 or with_dstate0:
                    np.matmul(da, W_hh_T, out=dnext)  # dL/dh_t through W_hh, (B, H)
        N = T * B
        dW_hh = hs[:-1].reshape(N, H).T @ dxw.reshape(N, H)  # (H, H): one GEMM, all steps
        dstate0 = dnext[None].copy() if with_dstate0 else None  # (1, B, H)
        return dxw[None], dW_hh, dstate0, {}

    def update(self, xw_t: np.ndarray, gh: np.ndarray, state: np.ndarray, b_hn=None) -> None:
        """One step in place from both parts of the pre-activation: xw_t (B, H), overwritten,
        and gh = h W_hh (B, H); state (1, B, H) becomes the next state."""
        xw_t += gh
        np.tanh(xw_t, out=state[0])


class LSTMCell(_Cell):
    """torch.nn.LSTM's cell, gate blocks i, f, g, o; state (h, c).

    x_scale (4H,) is 1/2 on the i, f, o columns and 1 on g: sigmoid(a) = (1 + tanh(a/2)) / 2,
    so with halved inputs one np.tanh over all four blocks serves every gate.
    """

    gates = 4
    state_size = 2

    def __init__(self, hidden_size: int, dtype: np.dtype | type = np.float32) -> None:
        super().__init__(hidden_size, dtype)
        H = self.hidden_size
        self.x_scale = np.full(4 * H, 0.5, self.dtype)  # (4H,)
        self.x_scale[2 * H : 3 * H] = 1
        # tanh -> gate: (1 + t) / 2 on the sigmoid blocks, t itself on g, as one multiply-add
        self._half_sigmoid = self.x_scale.copy()
        self._half_sigmoid_shift = np.where(self.x_scale == 1, 0, 0.5).astype(self.dtype)

    def _allocate(self, T: int, B: int, chunk: int) -> dict:
        H, dt = self.hidden_size, self.dtype
        # The gates i, f, g, o live in xw's gate-major buffer; the factors are gate-major too,
        # so each is a contiguous (B, H) slab: NumPy runs a pass over a strided (B, H) block of
        # a (B, 4H) row up to half as fast.
        cs = np.empty((T + 1, B, H), dt)  # c_0 .. c_T
        # tanh(c) of a chunk of steps: forward's h' = o tanh(c') and backward's factors each
        # form it anew; keeping all T would cost a (T, B, H) buffer for one np.tanh a step.
        tcs = np.empty((chunk, B, H), dt)
        q = np.empty((4, chunk, B, H), dt)  # dL/da per unit of dc (i, f, g) or dh (o)
        oq = np.empty((chunk, B, H), dt)  # o (1 - tanh^2 c): dL/dc per unit of dh
        return {
            "cs": cs,
            "cs_steps": list(cs),
            "tcs": tcs,
            "q": q,
            "q_steps": list(q.transpose(1, 0, 2, 3)),  # (4, B, H) views
            "oq": oq,
            "oq_steps": list(oq),
            "ig": np.empty((B, H), dt),  # i g of one step
            "dc": np.empty((B, H), dt),  # dL/dc_t
            "dc_next": np.empty((B, H), dt),  # dL/dc_{t-1}
        }

    def forward(
        self, xw: np.ndarray, W_hh: np.ndarray, state0: np.ndarray, b_hn: None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """h_1..h_T (T, B, H), a view valid until the next forward of this (T, B), and (h_T, c_T).

        xw (4, T, B, H) is overwritten with the gates; backward writes dxw into it.
        """
        xw, w = self._start(xw, W_hh, state0)
        _, T, B, _ = xw.shape
        hs, hs_steps, cs, cs_steps = w["hs"], w["hs_steps"], w["cs"], w["cs_steps"]
        tc, a, a_blocks, ig = w["tcs"][0], w["a"], w["a_blocks"], w["ig"]
        gates_steps = list(xw.transpose(1, 0, 2, 3))  # (4, B, H) views, one a step
        cs[0] = state0[1]
        W_half = W_hh * self.x_scale  # (H, 4H): i, f, o columns halved like xw's
        # Per step: one product and 19 elementwise passes over (B, H) in 11 calls.
        with self._one_thread(B):
            for t in range(T):
                np.matmul(hs_steps[t], W_half, out=a)  # (B, 4H)
                gate = gates_steps[t]  # (4, B, H)
                np.add(gate, a_blocks, out=gate)  # a_i/2, a_f/2, a_g, a_o/2
                np.tanh(gate, out=gate)
                i, f, g, o = gate  # (B, H) each
                i_f = gate[:2]  # (2, B, H)
                i_f *= 0.5
                i_f += 0.5  # i, f = (1 + tanh(a/2)) / 2
                o *= 0.5
                o += 0.5
                c = cs_steps[t + 1]  # (B, H)
                np.multiply(f, cs_steps[t], out=c)
                np.multiply(i, g, out=ig)
                c += ig  # c' = f c + i g
                np.tanh(c, out=tc)
                np.multiply(o, tc, out=hs_steps[t + 1])  # h' = o tanh(c')
        return hs[1:], np.stack((hs[-1], cs[-1]))

    def backward(
        self, dhs: np.ndarray, with_dstate0: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict]:
        """dxw (4, T, B, H) written over the gates in forward's xw, dW_hh (H, 4H), dstate0
        (2, B, H) or None. dhs is overwritten (it accumulates dL/dh_t).
        """
        dhs, w, W_hh_T = self._recall(dhs)
        T, B, H = dhs.shape
        gates = dxw = w["xw"]  # (4, T, B, H): step t's gates until step t writes its dxw
        gates_steps = list(gates.transpose(1, 0, 2, 3))  # (4, B, H) views, one a step
        hs, cs, tcs, a, a_blocks = w["hs"], w["cs"], w["tcs"], w["a"], w["a_blocks"]
        q, q_steps, oq, oq_steps = w["q"], w["q_steps"], w["oq"], w["oq_steps"]
        dc, dc_next, dnext, C = w["dc"], w["dc_next"], w["dnext"], w["chunk"]
        # Per step: one product, 8 elementwise passes over (B, H) in 8 calls, a copy of dxw_t
        # into one (B, 4H) matrix for the product, and 16 passes in 12 calls per chunk of steps
        # for the factors q and oq, which depend on the forward only.
        with self._one_thread(B):
            for t in range(T - 1, -1, -1):
                lo = t - t % C
                if t == T - 1 or t % C == C - 1:  # entering a chunk of steps lo..t: the factors
                    n = t - lo + 1
                    y, qc, oqc = gates[:, lo : t + 1], q[:, :n], oq[:n]  # (4, n, B, H), (n, B, H)
                    tcc = np.tanh(cs[lo + 1 : t + 2], out=tcs[:n])  # tanh(c'), (n, B, H)
                    np.square(y, out=qc)
                    # sigmoid' = s (1 - s), tanh' = 1 - g^2
                    np.subtract(y[:2], qc[:2], out=qc[:2])
                    np.subtract(1, qc[2], out=qc[2])
                    np.subtract(y[3], qc[3], out=qc[3])
                    # c' = f c + i g: dc' to da_i, da_f, da_g;  h' = o tanh(c'): dh' to da_o
                    qc[0] *= y[2]  # g i'
                    qc[1] *= cs[lo : t + 1]  # c f'
                    qc[2] *= y[0]  # i g'
                    qc[3] *= tcc  # tanh(c') o'
                    # h' = o tanh(c'): dh' to dc'
                    np.square(tcc, out=oqc)  # (n, B, H)
                    np.subtract(1, oqc, out=oqc)
                    oqc *= y[3]  # o (1 - tanh^2 c')
                k = t - lo
                dh = dhs[t]  # (B, H)
                if t < T - 1:
                    dh += dnext  # from above and from step t+1
                np.multiply(dh, oq_steps[k], out=dc)  # (B, H)
                if t < T - 1:
                    dc += dc_next  # c carries on into step t+1
                da, qk = gates_steps[t], q_steps[k]  # (4, B, H) each
                np.multiply(dc, da[1], out=dc_next)  # c' = f c: dL/dc_{t-1}; f read, now free
                np.multiply(dc, qk[0], out=da[0])  # da_i
                np.multiply(dc, qk[1], out=da[1])  # da_f
                np.multiply(dc, qk[2], out=da[2])  # da_g
                np.multiply(dh, qk[3], out=da[3])  # da_o
                if t > 0 or with_dstate0:
                    np.copyto(a_blocks, da)  # (B, 4H): one product over all four blocks
                    np.matmul(a, W_hh_T, out=dnext)  # a = xw + h W_hh: dL/dh_{t-1}, (B, H)
        N = T * B
        dW_hh = block_products(hs[:-1].reshape(N, H).T, dxw.reshape(4, N, H))  # (H, 4H)
        dstate0 = np.stack((dnext, dc_next)) if with_dstate0 else None  # (2, B, H)
        return dxw, dW_hh, dstate0, {}

    def recorded(self, T: int, B: int) -> tuple[np.ndarray, np.ndarray]:
        """After a forward of a (T, B) chunk: the gates i, f, g, o after their nonlinearity,
        (T, 4, B, H), and c_1..c_T, (T, B, H); views valid until the next forward of (T, B)."""
        w = self._work[(T, B)]
        return w["xw"].transpose(1, 0, 2, 3), w["cs"][1:]

    def update(self, xw_t: np.ndarray, gh: np.ndarray, state: np.ndarray, b_hn=None) -> None:
        """One step in place from both parts of the pre-activation, each scaled by x_scale:
        xw_t (B, 4H), overwritten, and gh = h (W_hh x_scale) (B, 4H); state (2, B, H) becomes
        (h', c')."""
        H = self.hidden_size
        y = xw_t  # (B, 4H)
        y += gh  # a_i/2, a_f/2, a_g, a_o/2
        np.tanh(y, out=y)
        y *= self._half_sigmoid  # i, f, o: tanh/2; g: tanh
        y += self._half_sigmoid_shift  # i, f, o = (1 + tanh(a/2)) / 2
        i, f, g, o = y[:, :H], y[:, H : 2 * H], y[:, 2 * H : 3 * H], y[:, 3 * H :]
        h, c = state  # (B, H) each
        c *= f
        np.multiply(i, g, out=h)
        c += h  # c' = f c + i g
        np.tanh(c, out=h)
        h *= o  # h' = o tanh(c')


class GRUCell(_Cell):
    """torch.nn.GRU's cell, gate blocks r, z, n, with b_hn inside r's product; state (h,).

    x_scale (3H,) is 1/2 on the r, z columns and 1 on n: sigmoid(a) = (1 + tanh(a/2)) / 2,
    so one np.tanh serves both gates.
    """

    gates = 3
    state_size = 1

    def __init__(self, hidden_size: int, dtype: np.dtype | type = np.float32) -> None:
        super().__init__(hidden_size, dtype)
        H = self.hidden_size
        self.x_scale = np.full(3 * H, 0.5, self.dtype)  # (3H,)
        self.x_scale[2 * H :] = 1

    def _allocate(self, T: int, B: int, chunk: int) -> dict:
        H, dt = self.hidden_size, self.dtype
        # The gates r, z, n live in xw's gate-major buffer, each a contiguous (B, H) slab: NumPy
        # runs a pass over a strided (B, H) block of a (B, 3H) row up to half as fast.
        hn = np.empty((T, B, H), dt)  # h W_hn + b_hn of every step, then dL/dhn = r da_n
        k = np.empty((3, chunk, B, H), dt)  # dL/da_r per da_n, dL/da_z and dL/da_n per dh
        return {
            "hn": hn,
            "hn_steps": list(hn),
            "k": k,
            "k_steps": [list(kk) for kk in k],
            "tmp": np.empty((B, H), dt),
        }

    def forward(
        self, xw: np.ndarray, W_hh: np.ndarray, state0: np.ndarray, b_hn: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """h_1..h_T (T, B, H), a view valid until the next forward of this (T, B), and h_T.

        xw (3, T, B, H) is overwritten with the gates; backward writes dxw into it.
        """
        xw, w = self._start(xw, W_hh, state0)
        _, T, B, H = xw.shape
        hs, hs_steps, hn_steps, a, tmp = w["hs"], w["hs_steps"], w["hn_steps"], w["a"], w["tmp"]
        gates_steps = list(xw.transpose(1, 0, 2, 3))  # (3, B, H) views, one a step
        if b_hn is None:
            b_hn = np.zeros(H, self.dtype)
        W_half = W_hh * self.x_scale  # (H, 3H): r, z columns halved like xw's
        a_rz, a_n = w["a_blocks"][:2], a[:, 2 * H :]  # (2, B, H), (B, H) views of a
        # Per step: one product and 15 elementwise passes over (B, H) in 11 calls.
        with self._one_thread(B):
            for t in range(T):
                rz = gates_steps[t][:2]  # (2, B, H)
                r, z, n = gates_steps[t]  # (B, H) each
                np.matmul(hs_steps[t], W_half, out=a)  # (B, 3H)
                np.add(rz, a_rz, out=rz)  # a_r/2, a_z/2
                np.tanh(rz, out=rz)
                rz *= 0.5
                rz += 0.5  # r, z = (1 + tanh(a/2)) / 2
                hn = hn_steps[t]  # (B, H)
                np.add(a_n, b_hn, out=hn)  # h W_hn + b_hn
                np.multiply(r, hn, out=tmp)
                n += tmp
                np.tanh(n, out=n)  # n = tanh(xw_n + r (h W_hn + b_hn))
                np.subtract(hs_steps[t], n, out=tmp)
                tmp *= z
                np.add(n, tmp, out=hs_steps[t + 1])  # h' = n + z (h - n)
        return hs[1:], hs[-1:].copy()

    def backward(
        self, dhs: np.ndarray, with_dstate0: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict]:
        """dxw (3, T, B, H) written over the gates in forward's xw, dW_hh (H, 3H), dstate0
        (1, B, H) or None, and {"b_hn": (H,)}. dhs is overwritten (it accumulates dL/dh_t)."""
        dhs, w, W_hh_T = self._recall(dhs)
        T, B, H = dhs.shape
        gates = dxw = w["xw"]  # (3, T, B, H): step t's gates until step t writes its dxw
        gates_steps = list(gates.transpose(1, 0, 2, 3))  # (3, B, H) views, one a step
        hs, hn, hn_steps = w["hs"], w["hn"], w["hn_steps"]
        k, (kr_steps, kz_steps, kn_steps), C = w["k"], w["k_steps"], w["chunk"]
        dnext, tmp, dgh, dgh_blocks = w["dnext"], w["tmp"], w["a"], w["a_blocks"]
        # Per step: one product, 9 elementwise passes over (B, H) in 9 calls with the copy of
        # da_r, da_z into dxw, and 10 passes in 10 calls per chunk of steps for the factors k,
        # which depend on the forward only.
        with self._one_thread(B):
            for t in range(T - 1, -1, -1):
                lo = t - t % C
                if t == T - 1 or t % C == C - 1:  # entering a chunk of steps lo..t: the factors
                    steps = t - lo + 1
                    r, z, n = gates[:, lo : t + 1]  # (steps, B, H) each
                    kr, kz, kn = k[:, :steps]  # (steps, B, H) each
                    # h' = n + z (h - n): dh' to da_n = (1 - z)(1 - n^2) dh'
                    np.subtract(1, z, out=kz)
                    np.square(n, out=kn)
                    np.subtract(1, kn, out=kn)
                    kn *= kz
                    # dh' to da_z = (h - n) z (1 - z) dh'
                    kz *= z
                    np.subtract(hs[lo : t + 1], n, out=kr)
                    kz *= kr
                    # n = tanh(xw_n + r hn): da_n to da_r = hn r (1 - r) da_n
                    np.subtract(1, r, out=kr)
                    kr *= r
                    kr *= hn[lo : t + 1]
                j = t - lo
                dh = dhs[t]  # (B, H)
                if t < T - 1:
                    dh += dnext  # from above and from step t+1
                y = gates_steps[t]  # (3, B, H): r, z, n, then dL/dxw
                r, z, da_n = y
                np.multiply(dh, z, out=tmp)  # h' = z h: dL/dh_{t-1} directly
                np.multiply(dh, kn_steps[j], out=da_n)  # n read in the factors, now free
                # dL/d(h W_hh) of this step, (B, 3H): da_r, da_z, r da_n
                np.multiply(dh, kz_steps[j], out=dgh_blocks[1])  # da_z
                np.multiply(da_n, kr_steps[j], out=dgh_blocks[0])  # da_r
                np.multiply(da_n, r, out=hn_steps[t])  # dL/dhn = r da_n; hn read, now free
                np.copyto(dgh_blocks[2], hn_steps[t])
                np.copyto(y[:2], dgh_blocks[:2])  # xw_r, xw_z enter like h W_r, h W_z
                if t > 0 or with_dstate0:
                    np.matmul(dgh, W_hh_T, out=dnext)  # (B, H)
                    dnext += tmp
        N = T * B
        blocks = [dxw[0].reshape(N, H), dxw[1].reshape(N, H), hn.reshape(N, H)]
        dW_hh = block_products(hs[:-1].reshape(N, H).T, blocks)  # (H, 3H): da_r, da_z, r da_n
        db_hn = np.ones(N, self.dtype) @ hn.reshape(N, H)  # (H,)
        dstate0 = dnext[None].copy() if with_dstate0 else None  # (1, B, H)
        return dxw, dW_hh, dstate0, {"b_hn": db_hn}

    def update(self, xw_t: np.ndarray, gh: np.ndarray, state: np.ndarray, b_hn=None) -> None:
        """One step in place from both parts of the pre-activation, each scaled by x_scale:
        xw_t (B, 3H), overwritten, and gh = h (W_hh x_scale) (B, 3H), overwritten;
        state (1, B, H) becomes h'."""
        H = self.hidden_size
        rz, n = xw_t[:, : 2 * H], xw_t[:, 2 * H :]  # (B, 2H), (B, H)
        rz += gh[:, : 2 * H]  # a_r/2, a_z/2
        np.tanh(rz, out=rz)
        rz *= 0.5
        rz += 0.5  # r, z = (1 + tanh(a/2)) / 2
        r, z = rz[:, :H], rz[:, H:]
        hn = gh[:, 2 * H :]  # (B, H)
        if b_hn is not None:
            hn += b_hn  # h W_hn + b_hn
        hn *= r
        n += hn
        np.tanh(n, out=n)  # n = tanh(xw_n + r (h W_hn + b_hn))
        h = state[0]  # (B, H)
        h -= n
        h *= z
        h += n  # h' = n + z (h - n)


CELLS: dict[str, type[RNNCell] | type[LSTMCell] | type[GRUCell]] = dict(
    zip(CELL_NAMES, (RNNCell, LSTMCell, GRUCell), strict=True)
)
