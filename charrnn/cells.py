"""Recurrent cells run over a whole chunk of T steps, forward and backward by hand in NumPy.

A layer's caller forms xw = x W_xh + b_h for all T steps at once (a row gather or one GEMM),
scales its columns by the cell's `x_scale`, and hands it to `forward`, which runs only the
sequential part: h_t from xw_t and h_{t-1} W_hh, one (B, H) @ (H, G*H) product per step.
`backward` returns dL/d(x W_xh + b_h) in true units, so dW_xh = x^T dxw and db_h = sum dxw.

    rnn   h' = tanh(a)                                      a = xw_t + h W_hh, G = 1
    lstm  i, f, o = sigmoid(a_i, a_f, a_o), g = tanh(a_g)   G = 4, blocks i, f, g, o
          c' = f c + i g,  h' = o tanh(c')
    gru   r, z = sigmoid(xw_r + h W_r, xw_z + h W_z)        G = 3, blocks r, z, n
          n = tanh(xw_n + r (h W_n + b_hn)),  h' = (1 - z) n + z h

W_hh is (H, G*H) and maps one to one onto torch.nn's weight_hh_l0.T; the state is (S, B, H)
with S = 2 for the LSTM (h, c) and 1 otherwise. Shapes: T steps, B streams, H hidden units.

Lifetimes: a cell instance serves one layer. Its work buffers are kept per (T, B), so `hs`
(a view into them) is valid until the next forward of the same (T, B). Between forward and
backward the caller leaves xw (the cell may write into it, and backward returns dxw in the
same array), W_hh and hs untouched and runs no other forward of that (T, B).
"""

from __future__ import annotations

import numpy as np

from charrnn import blas

# The backward pass forms the derivative factors of the nonlinearities for as many steps at
# once as fit in this many elements (256 KB of float32): one call per chunk instead of one or
# more per step, and the chunk stays in cache.
TANH_GRAD_CHUNK = 2**16
# The recurrence runs on one BLAS thread while each step's product has at most this many
# multiply-adds (B*H*G*H): waking a second thread per product costs more than it gives there.
# Vanilla step time with one thread against two, B 64: 0.85 at H 128, 1.07 at H 192.
ONE_THREAD_MAX_PRODUCT = 2**20


class _Cell:
    """Work buffers per (T, B) shared by the three cells; subclasses fill `_allocate`."""

    name: str
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
            work = {
                "hs": hs,
                "hs_steps": list(hs),  # (B, H) views made once: slicing in the loops costs
                "a": np.empty((B, G * H), dt),  # h W_hh of one step
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
        xw = np.ascontiguousarray(xw, self.dtype)  # (T, B, G*H), no copy when it already is
        T, B, _ = xw.shape
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
        """One step for sampling, the plain reference: xw_t (B, G*H) scaled by x_scale,
        state (S, B, H) -> the next state (S, B, H)."""
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

    name = "rnn"
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
        """dxw (T, B, H) written into forward's xw, dW_hh (H, H), dstate0 (1, B, H) or None."""
        dhs, w, W_hh_T = self._recall(dhs)
        T, B, H = dhs.shape
        hs, dxw, dnext = w["hs"], w["xw"], w["dnext"]
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
        return dxw, dW_hh, dstate0, {}

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

    name = "lstm"
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
        # Gates and factors block-major, so each gate is a contiguous (B, H) slab: NumPy runs a
        # pass over a strided (B, H) block of a (B, 4H) row up to half as fast.
        gates = np.empty((T, 4, B, H), dt)  # i, f, g, o of every step
        cs = np.empty((T + 1, B, H), dt)  # c_0 .. c_T
        tcs = np.empty((T, B, H), dt)  # tanh(c_1) .. tanh(c_T)
        q = np.empty((chunk, 4, B, H), dt)  # dL/da per unit of dc (i, f, g) or dh (o)
        oq = np.empty((chunk, B, H), dt)  # o (1 - tanh^2 c): dL/dc per unit of dh
        return {
            "gates": gates,
            "gates_steps": list(gates),
            "gates_rows": list(gates.transpose(0, 2, 1, 3)),  # (B, 4, H) views
            "cs": cs,
            "cs_steps": list(cs),
            "tcs": tcs,
            "tcs_steps": list(tcs),
            "q": q,
            "q_steps": list(q),
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

        xw (T, B, 4H) is overwritten with the pre-activations; backward writes dxw into it.
        """
        xw, w = self._start(xw, W_hh, state0)
        T, B, _ = xw.shape
        hs, hs_steps, cs, cs_steps = w["hs"], w["hs_steps"], w["cs"], w["cs_steps"]
        gates_steps, gates_rows = w["gates_steps"], w["gates_rows"]
        tcs_steps, a, ig, H = w["tcs_steps"], w["a"], w["ig"], self.hidden_size
        cs[0] = state0[1]
        W_half = W_hh * self.x_scale  # (H, 4H): i, f, o columns halved like xw's
        xw_rows = xw.reshape(T, B, 4, H)
        # Per step: one product and 19 elementwise passes over (B, H) in 11 calls.
        with self._one_thread(B):
            for t in range(T):
                np.matmul(hs_steps[t], W_half, out=a)  # (B, 4H)
                xw[t] += a  # a_i/2, a_f/2, a_g, a_o/2
                gate = gates_steps[t]  # (4, B, H)
                np.tanh(xw_rows[t], out=gates_rows[t])
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
                np.tanh(c, out=tcs_steps[t])
                np.multiply(o, tcs_steps[t], out=hs_steps[t + 1])  # h' = o tanh(c')
        return hs[1:], np.stack((hs[-1], cs[-1]))

    def backward(
        self, dhs: np.ndarray, with_dstate0: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict]:
        """dxw (T, B, 4H) written into forward's xw, dW_hh (H, 4H), dstate0 (2, B, H) or None.

        dhs is overwritten (it accumulates dL/dh_t).
        """
        dhs, w, W_hh_T = self._recall(dhs)
        T, B, H = dhs.shape
        dxw, gates, gates_steps = w["xw"], w["gates"], w["gates_steps"]
        hs, cs, tcs = w["hs"], w["cs"], w["tcs"]
        q, q_steps, oq, oq_steps = w["q"], w["q_steps"], w["oq"], w["oq_steps"]
        dc, dc_next, dnext, C = w["dc"], w["dc_next"], w["dnext"], w["chunk"]
        dxw_rows = dxw.reshape(T, B, 4, H)
        # Per step: one product, 8 elementwise passes over (B, H) in 8 calls, and 15 passes in
        # 11 calls per chunk of steps for the factors q and oq, which depend on the forward only.
        with self._one_thread(B):
            for t in range(T - 1, -1, -1):
                lo = t - t % C
                if t == T - 1 or t % C == C - 1:  # entering a chunk of steps lo..t: the factors
                    y, qc, oqc = gates[lo : t + 1], q[: t - lo + 1], oq[: t - lo + 1]  # (n, ...)
                    np.square(y, out=qc)  # (n, 4, B, H)
                    # sigmoid' = s (1 - s), tanh' = 1 - g^2
                    np.subtract(y[:, :2], qc[:, :2], out=qc[:, :2])
                    np.subtract(1, qc[:, 2], out=qc[:, 2])
                    np.subtract(y[:, 3], qc[:, 3], out=qc[:, 3])
                    # c' = f c + i g: dc' to da_i, da_f, da_g;  h' = o tanh(c'): dh' to da_o
                    qc[:, 0] *= y[:, 2]  # g i'
                    qc[:, 1] *= cs[lo : t + 1]  # c f'
                    qc[:, 2] *= y[:, 0]  # i g'
                    qc[:, 3] *= tcs[lo : t + 1]  # tanh(c') o'
                    # h' = o tanh(c'): dh' to dc'
                    np.square(tcs[lo : t + 1], out=oqc)  # (n, B, H)
                    np.subtract(1, oqc, out=oqc)
                    oqc *= y[:, 3]  # o (1 - tanh^2 c')
                k = t - lo
                dh = dhs[t]  # (B, H)
                if t < T - 1:
                    dh += dnext  # from above and from step t+1
                np.multiply(dh, oq_steps[k], out=dc)  # (B, H)
                if t < T - 1:
                    dc += dc_next  # c carries on into step t+1
                np.multiply(dc, gates_steps[t][1], out=dc_next)  # c' = f c: dL/dc_{t-1}
                da, qk = dxw_rows[t], q_steps[k]  # (B, 4, H), (4, B, H)
                np.multiply(dc, qk[0], out=da[:, 0])  # da_i
                np.multiply(dc, qk[1], out=da[:, 1])  # da_f
                np.multiply(dc, qk[2], out=da[:, 2])  # da_g
                np.multiply(dh, qk[3], out=da[:, 3])  # da_o
                if t > 0 or with_dstate0:
                    np.matmul(dxw[t], W_hh_T, out=dnext)  # a = xw + h W_hh: dL/dh_{t-1}, (B, H)
        N = T * B
        dW_hh = hs[:-1].reshape(N, H).T @ dxw.reshape(N, 4 * H)  # (H, 4H): one GEMM
        dstate0 = np.stack((dnext, dc_next)) if with_dstate0 else None  # (2, B, H)
        return dxw, dW_hh, dstate0, {}

    def recorded(self, T: int, B: int) -> tuple[np.ndarray, np.ndarray]:
        """After a forward of a (T, B) chunk: the gates i, f, g, o after their nonlinearity,
        (T, 4, B, H), and c_1..c_T, (T, B, H); views valid until the next forward of (T, B)."""
        w = self._work[(T, B)]
        return w["gates"], w["cs"][1:]

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

    name = "gru"
    gates = 3
    state_size = 1

    def __init__(self, hidden_size: int, dtype: np.dtype | type = np.float32) -> None:
        super().__init__(hidden_size, dtype)
        H = self.hidden_size
        self.x_scale = np.full(3 * H, 0.5, self.dtype)  # (3H,)
        self.x_scale[2 * H :] = 1

    def _allocate(self, T: int, B: int, chunk: int) -> dict:
        H, dt = self.hidden_size, self.dtype
        # The gates block-major, so each is a contiguous (B, H) slab: NumPy runs a pass over a
        # strided (B, H) block of a (B, 3H) row up to half as fast.
        gates = np.empty((T, 3, B, H), dt)  # r, z, n of every step
        hn = np.empty((T, B, H), dt)  # h W_hn + b_hn of every step
        dgh = np.empty((T, B, 3 * H), dt)  # dL/d(h W_hh): da_r, da_z, r da_n
        k = np.empty((3, chunk, B, H), dt)  # dL/da_r per da_n, dL/da_z and dL/da_n per dh
        return {
            "gates": gates,
            "gates_steps": list(gates),
            "rz_rows": list(gates[:, :2].transpose(0, 2, 1, 3)),  # (B, 2, H) views of r, z
            "hn": hn,
            "hn_steps": list(hn),
            "dgh": dgh,
            "dgh_steps": list(dgh),
            "k": k,
            "k_steps": [list(kk) for kk in k],
            "tmp": np.empty((B, H), dt),
        }

    def forward(
        self, xw: np.ndarray, W_hh: np.ndarray, state0: np.ndarray, b_hn: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """h_1..h_T (T, B, H), a view valid until the next forward of this (T, B), and h_T.

        xw (T, B, 3H) is only read here; backward writes dxw into it.
        """
        xw, w = self._start(xw, W_hh, state0)
        T, B, _ = xw.shape
        H = self.hidden_size
        hs, hs_steps, hn_steps, a, tmp = w["hs"], w["hs_steps"], w["hn_steps"], w["a"], w["tmp"]
        gates_steps, rz_rows = w["gates_steps"], w["rz_rows"]
        if b_hn is None:
            b_hn = np.zeros(H, self.dtype)
        W_half = W_hh * self.x_scale  # (H, 3H): r, z columns halved like xw's
        xw_rz = xw.reshape(T, B, 3, H)[:, :, :2]  # (T, B, 2, H)
        a_rz, a_n = a.reshape(B, 3, H)[:, :2], a[:, 2 * H :]  # (B, 2, H), (B, H)
        # Per step: one product and 15 elementwise passes over (B, H) in 11 calls.
        with self._one_thread(B):
            for t in range(T):
                rz = gates_steps[t][:2]  # (2, B, H)
                r, z, n = gates_steps[t]  # (B, H) each
                np.matmul(hs_steps[t], W_half, out=a)  # (B, 3H)
                np.add(xw_rz[t], a_rz, out=rz_rows[t])  # a_r/2, a_z/2
                np.tanh(rz, out=rz)
                rz *= 0.5
                rz += 0.5  # r, z = (1 + tanh(a/2)) / 2
                hn = hn_steps[t]  # (B, H)
                np.add(a_n, b_hn, out=hn)  # h W_hn + b_hn
                np.multiply(r, hn, out=tmp)
                np.add(xw[t, :, 2 * H :], tmp, out=n)
                np.tanh(n, out=n)  # n = tanh(xw_n + r (h W_hn + b_hn))
                np.subtract(hs_steps[t], n, out=tmp)
                tmp *= z
                np.add(n, tmp, out=hs_steps[t + 1])  # h' = n + z (h - n)
        return hs[1:], hs[-1:].copy()

    def backward(
        self, dhs: np.ndarray, with_dstate0: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict]:
        """dxw (T, B, 3H) written into forward's xw, dW_hh (H, 3H), dstate0 (1, B, H) or None,
        and {"b_hn": (H,)}. dhs is overwritten (it accumulates dL/dh_t)."""
        dhs, w, W_hh_T = self._recall(dhs)
        T, B, H = dhs.shape
        dxw, gates, gates_steps, hs, hn = w["xw"], w["gates"], w["gates_steps"], w["hs"], w["hn"]
        dgh, dgh_steps = w["dgh"], w["dgh_steps"]
        k, (kr_steps, kz_steps, kn_steps), C = w["k"], w["k_steps"], w["chunk"]
        dnext, tmp = w["dnext"], w["tmp"]
        # Per step: one product, 9 elementwise passes over (B, H) in 8 calls, and 10 passes in
        # 10 calls per chunk of steps for the factors k, which depend on the forward only.
        with self._one_thread(B):
            for t in range(T - 1, -1, -1):
                lo = t - t % C
                if t == T - 1 or t % C == C - 1:  # entering a chunk of steps lo..t: the factors
                    steps = t - lo + 1
                    r, z, n = gates[lo : t + 1].transpose(1, 0, 2, 3)  # (steps, B, H) each
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
                r, z, _ = gates_steps[t]  # (B, H) each
                y, d = dxw[t], dgh_steps[t]  # (B, 3H): dL/dxw, dL/d(h W_hh)
                np.multiply(dh, z, out=tmp)  # h' = z h: dL/dh_{t-1} directly
                np.multiply(dh, kn_steps[j], out=y[:, 2 * H :])  # da_n
                np.multiply(dh, kz_steps[j], out=d[:, H : 2 * H])  # da_z
                np.multiply(y[:, 2 * H :], kr_steps[j], out=d[:, :H])  # da_r
                np.multiply(y[:, 2 * H :], r, out=d[:, 2 * H :])  # dL/dhn = r da_n
                y[:, : 2 * H] = d[:, : 2 * H]  # xw_r, xw_z enter like h W_r, h W_z
                if t > 0 or with_dstate0:
                    np.matmul(d, W_hh_T, out=dnext)  # (B, H)
                    dnext += tmp
        N = T * B
        dgh_flat = dgh.reshape(N, 3 * H)  # (TB, 3H)
        dW_hh = hs[:-1].reshape(N, H).T @ dgh_flat  # (H, 3H): one GEMM, all steps
        db_hn = np.ones(N, self.dtype) @ dgh_flat[:, 2 * H :]  # (H,)
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


CELLS: dict[str, type[RNNCell] | type[LSTMCell] | type[GRUCell]] = {
    "rnn": RNNCell,
    "lstm": LSTMCell,
    "gru": GRUCell,
}
