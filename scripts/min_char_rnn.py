"""Karpathy's min-char-rnn algorithm, re-implemented as the peer for the algorithm.

Batch 1, column vectors, one time step at a time in forward and backward, float64,
elementwise clipping to [-5, 5] and Adagrad: the baseline that charrnn's batched,
GEMM-shaped version of the same computation is measured against.
"""

from __future__ import annotations

import numpy as np


class MinCharRNN:
    def __init__(self, vocab_size: int, hidden: int = 100, lr: float = 0.1, seed: int = 0):
        rng = np.random.default_rng(seed)
        V, H = vocab_size, hidden
        self.V, self.lr = V, lr
        self.params = {
            "Wxh": rng.standard_normal((H, V)) * 0.01,
            "Whh": rng.standard_normal((H, H)) * 0.01,
            "Why": rng.standard_normal((V, H)) * 0.01,
            "bh": np.zeros((H, 1)),
            "by": np.zeros((V, 1)),
        }
        self.memory = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.h = np.zeros((H, 1))

    def step(self, inputs, targets) -> float:
        """Forward and backward over one chunk, then one Adagrad update; returns mean loss."""
        Wxh, Whh, Why, bh, by = (self.params[k] for k in ("Wxh", "Whh", "Why", "bh", "by"))
        xs, hs, ps = {}, {-1: self.h}, {}
        loss = 0.0
        for t, (i, j) in enumerate(zip(inputs, targets, strict=True)):
            xs[t] = np.zeros((self.V, 1))
            xs[t][i] = 1
            hs[t] = np.tanh(Wxh @ xs[t] + Whh @ hs[t - 1] + bh)
            ys = Why @ hs[t] + by
            ps[t] = np.exp(ys - ys.max()) / np.sum(np.exp(ys - ys.max()))
            loss -= np.log(ps[t][j, 0])
        grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        dhnext = np.zeros_like(self.h)
        for t in reversed(range(len(inputs))):
            dy = ps[t].copy()
            dy[targets[t]] -= 1
            grads["Why"] += dy @ hs[t].T
            grads["by"] += dy
            dh = Why.T @ dy + dhnext
            dhraw = (1 - hs[t] * hs[t]) * dh
            grads["bh"] += dhraw
            grads["Wxh"] += dhraw @ xs[t].T
            grads["Whh"] += dhraw @ hs[t - 1].T
            dhnext = Whh.T @ dhraw
        for k, p in self.params.items():
            g = np.clip(grads[k], -5, 5)
            self.memory[k] += g * g
            p -= self.lr * g / np.sqrt(self.memory[k] + 1e-8)
        self.h = hs[len(inputs) - 1]
        return loss / len(inputs)
