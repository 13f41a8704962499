"""The PyTorch peer: the same model as charrnn (one-hot input, tanh RNN, linear, softmax).

`nn.RNN` on one-hot input holds exactly charrnn's parameters (W_ih is W_xh, plus a
second bias), so both do the same arithmetic; used for comparison only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class TorchCharRNN(nn.Module):
    def __init__(self, vocab_size: int, hidden_size: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.rnn = nn.RNN(vocab_size, hidden_size, nonlinearity="tanh")
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, inputs: torch.Tensor, h: torch.Tensor):
        """inputs (T, B) ids, h (1, B, H) -> logits (T, B, V), h_T (1, B, H)."""
        x = F.one_hot(inputs, self.vocab_size).to(torch.float32)  # (T, B, V)
        out, h = self.rnn(x, h)  # (T, B, H)
        return self.head(out), h


class TorchTrainer:
    """Truncated BPTT over B streams with Adam and global-norm clipping, like charrnn."""

    def __init__(self, vocab_size, hidden, batch, seq_len, lr=2e-3, clip=5.0, seed=0):
        torch.manual_seed(seed)
        self.model = TorchCharRNN(vocab_size, hidden)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.clip, self.batch, self.seq_len = clip, batch, seq_len
        self.h = torch.zeros(1, batch, hidden)

    def step(self, inputs, targets) -> float:
        """One step on (T, B) int64 tensors; carries the hidden state, cuts the gradient."""
        logits, h = self.model(inputs, self.h)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.opt.step()
        self.h = h.detach()
        return loss.item()

    @torch.no_grad()
    def evaluate(self, ids, streams: int = 64, seq_len: int = 100) -> float:
        """Mean nats/char over every position of ids, as charrnn.evaluate walks it."""
        ids = torch.as_tensor(ids, dtype=torch.int64)
        n = len(ids) - 1
        B = min(streams, n)
        L = n // B
        x, y = ids[: B * L].view(B, L).T, ids[1 : B * L + 1].view(B, L).T  # (L, B)
        h = torch.zeros(1, B, self.model.rnn.hidden_size)
        nats = 0.0
        for s in range(0, L, seq_len):
            logits, h = self.model(x[s : s + seq_len], h)
            nats += float(
                F.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]),
                    y[s : s + seq_len].reshape(-1),
                    reduction="sum",
                )
            )
        rest_x, rest_y = ids[B * L : n], ids[B * L + 1 :]
        if len(rest_x):
            logits, _ = self.model(rest_x[:, None], h[:, -1:])
            nats += float(
                F.cross_entropy(logits.reshape(-1, logits.shape[-1]), rest_y, reduction="sum")
            )
        return nats / n


def torch_sampler_loop(model: TorchCharRNN, num: int, length: int, temperature=1.0, seed=0):
    """The eager per-step sampling loop a PyTorch user would write: step, softmax, draw."""
    g = torch.Generator().manual_seed(seed)
    h = torch.zeros(1, num, model.rnn.hidden_size)
    ids = torch.zeros(num, dtype=torch.int64)
    with torch.no_grad():
        for _ in range(length):
            logits, h = model(ids[None], h)
            probs = torch.softmax(logits[0] / temperature, dim=-1)
            ids = torch.multinomial(probs, 1, generator=g)[:, 0]
    return ids


LN2 = math.log(2)
