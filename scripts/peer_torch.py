"""The PyTorch peer: the same model as charrnn (one-hot input, L layers of a tanh RNN, LSTM or
GRU cell, linear, softmax), built from torch.nn's own modules as a PyTorch user would.

`nn.RNN`/`nn.LSTM`/`nn.GRU` on one-hot input hold exactly charrnn's parameters, plus one
redundant bias per layer (torch adds bias_ih and bias_hh where charrnn keeps their sum in b_h;
for the GRU only the n block of bias_hh is not redundant, charrnn's b_hn). So both do the same
arithmetic, and `load_charrnn` copies a charrnn model into a peer exactly; used for comparison
only.
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import nn

MODULES = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


class TorchCharRNN(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        hidden_size: int,
        cell: str = "rnn",
        layers: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if cell not in MODULES:
            raise ValueError(f"cell must be one of {', '.join(MODULES)}, got {cell!r}")
        self.vocab_size, self.cell, self.layers = vocab_size, cell, layers
        kwargs = {"nonlinearity": "tanh"} if cell == "rnn" else {}
        if layers > 1:
            kwargs["dropout"] = dropout  # on each layer's output but the last, as charrnn
        self.rnn = MODULES[cell](vocab_size, hidden_size, num_layers=layers, **kwargs)
        self.head = nn.Linear(hidden_size, vocab_size)

    def zero_state(self, batch: int):
        """A fresh state: (L, B, H), or for the LSTM the pair (h, c) of that shape."""
        h = torch.zeros(self.layers, batch, self.rnn.hidden_size)
        return (h, torch.zeros_like(h)) if self.cell == "lstm" else h

    def forward(self, inputs: torch.Tensor, state):
        """inputs (T, B) ids, state as `zero_state` -> logits (T, B, V), state_T."""
        x = F.one_hot(inputs, self.vocab_size).to(torch.float32)  # (T, B, V)
        out, state = self.rnn(x, state)  # (T, B, H)
        return self.head(out), state

    def redundant_params(self) -> int:
        """How many of the parameters only duplicate others: bias_hh beside bias_ih (for the
        GRU its r and z blocks). `parameter count - redundant_params()` is charrnn's count."""
        H = self.rnn.hidden_size
        per_layer = 2 * H if self.cell == "gru" else GATES[self.cell] * H
        return self.layers * per_layer

    @torch.no_grad()
    def load_charrnn(self, params: dict) -> None:
        """Copy a charrnn model's weights (`CharRNN.params`, NumPy arrays) into this model:
        W_xh{s} = weight_ih_l{l}.T, W_hh{s} = weight_hh_l{l}.T, b_h{s} = bias_ih_l{l},
        bias_hh_l{l} = 0 (GRU: [0, 0, b_hn{s}]), W_hy = head.weight.T, b_y = head.bias."""

        def copy(dst: torch.Tensor, src) -> None:
            dst.copy_(torch.as_tensor(src, dtype=dst.dtype).reshape(dst.shape))

        H = self.rnn.hidden_size
        for layer in range(self.layers):
            s = "" if layer == 0 else str(layer + 1)
            copy(getattr(self.rnn, f"weight_ih_l{layer}"), params[f"W_xh{s}"].T)
            copy(getattr(self.rnn, f"weight_hh_l{layer}"), params[f"W_hh{s}"].T)
            copy(getattr(self.rnn, f"bias_ih_l{layer}"), params[f"b_h{s}"])
            bias_hh = getattr(self.rnn, f"bias_hh_l{layer}")
            bias_hh.zero_()
            if self.cell == "gru":
                copy(bias_hh[2 * H :], params[f"b_hn{s}"])
        copy(self.head.weight, params["W_hy"].T)
        copy(self.head.bias, params["b_y"])

    def charrnn_grads(self) -> dict:
        """The gradients in charrnn's names and layouts (after a backward), as NumPy arrays;
        b_h's is bias_ih's, which equals bias_hh's wherever bias_hh is redundant."""
        H = self.rnn.hidden_size
        grads = {}
        for layer in range(self.layers):
            s = "" if layer == 0 else str(layer + 1)
            grads[f"W_xh{s}"] = getattr(self.rnn, f"weight_ih_l{layer}").grad.T
            grads[f"W_hh{s}"] = getattr(self.rnn, f"weight_hh_l{layer}").grad.T
            grads[f"b_h{s}"] = getattr(self.rnn, f"bias_ih_l{layer}").grad
            if self.cell == "gru":
                grads[f"b_hn{s}"] = getattr(self.rnn, f"bias_hh_l{layer}").grad[2 * H :]
        grads["W_hy"] = self.head.weight.grad.T
        grads["b_y"] = self.head.bias.grad
        return {k: v.detach().numpy() for k, v in grads.items()}


def corpus_streams(text: str, val_fraction: float, batch: int, seq_len: int):
    """The text split and walked as charrnn does (sorted symbols, the last val_fraction held
    out, B contiguous streams in chunks of T): vocab size, inputs and targets (L, B) int64
    tensors of whole chunks (L a multiple of T), validation ids."""
    import numpy as np

    symbols = sorted(set(text))
    index = {s: i for i, s in enumerate(symbols)}
    ids = np.array([index[c] for c in text], np.int64)
    n_val = round(len(ids) * val_fraction)
    train_ids, val_ids = ids[: len(ids) - n_val], ids[len(ids) - n_val :]
    chunks = (len(train_ids) - 1) // batch // seq_len
    used = batch * chunks * seq_len
    inputs = torch.as_tensor(train_ids[:used].reshape(batch, -1).T.copy())
    targets = torch.as_tensor(train_ids[1 : used + 1].reshape(batch, -1).T.copy())
    return len(symbols), inputs, targets, val_ids


def detach_state(state):
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def state_streams(state, streams: slice):
    """The state of some streams only (the B axis is 1 in torch's (L, B, H))."""
    return tuple(s[:, streams] for s in state) if isinstance(state, tuple) else state[:, streams]


class TorchTrainer:
    """Truncated BPTT over B streams with Adam and global-norm clipping, like charrnn."""

    def __init__(
        self,
        vocab_size,
        hidden,
        batch,
        seq_len,
        lr=2e-3,
        clip=5.0,
        seed=0,
        cell="rnn",
        layers=1,
        dropout=0.0,
    ):
        torch.manual_seed(seed)
        self.model = TorchCharRNN(vocab_size, hidden, cell, layers, dropout)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.clip, self.batch, self.seq_len = clip, batch, seq_len
        self.h = self.model.zero_state(batch)

    def reset_state(self) -> None:
        """Start every stream afresh (the state carried between chunks set to zero)."""
        self.h = self.model.zero_state(self.batch)

    def step(self, inputs, targets) -> float:
        """One step on (T, B) int64 tensors; carries the hidden state, cuts the gradient."""
        logits, h = self.model(inputs, self.h)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.opt.step()
        self.h = detach_state(h)
        return loss.item()

    def step_of_walk(self, inputs, targets, step: int) -> float:
        """Training step `step` of the walk over the streams of corpus_streams ((L, B) inputs
        and targets): the step's chunk of T, every stream started afresh at an epoch's start."""
        T = self.seq_len
        k = step % (len(inputs) // T)
        if k == 0:
            self.reset_state()
        return self.step(inputs[k * T : (k + 1) * T], targets[k * T : (k + 1) * T])

    @torch.no_grad()
    def evaluate(self, ids, streams: int = 64, seq_len: int = 100) -> float:
        """Mean nats/char over every position of ids, as charrnn.evaluate walks it (dropout
        off)."""
        was_training = self.model.training
        self.model.eval()
        ids = torch.as_tensor(ids, dtype=torch.int64)
        n = len(ids) - 1
        B = min(streams, n)
        L = n // B
        x, y = ids[: B * L].view(B, L).T, ids[1 : B * L + 1].view(B, L).T  # (L, B)
        h = self.model.zero_state(B)
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
            logits, _ = self.model(rest_x[:, None], state_streams(h, slice(-1, None)))
            nats += float(
                F.cross_entropy(logits.reshape(-1, logits.shape[-1]), rest_y, reduction="sum")
            )
        self.model.train(was_training)
        return nats / n


def torch_sampler_loop(model: TorchCharRNN, num: int, length: int, temperature=1.0, seed=0):
    """The eager per-step sampling loop a PyTorch user would write: step, softmax, draw."""
    g = torch.Generator().manual_seed(seed)
    h = model.zero_state(num)
    ids = torch.zeros(num, dtype=torch.int64)
    with torch.no_grad():
        for _ in range(length):
            logits, h = model(ids[None], h)
            probs = torch.softmax(logits[0] / temperature, dim=-1)
            ids = torch.multinomial(probs, 1, generator=g)[:, 0]
    return ids


def kernel_info() -> str:
    """Which BLAS and CPU kernels this torch runs: its BLAS, MKL's version, the ATen CPU
    capability (the SIMD level its kernels were dispatched for) and oneDNN."""
    config = torch.__config__.show()
    blas = re.search(r"BLAS_INFO=([^,\s]+)", config)
    blas = blas.group(1) if blas else "unknown"
    mkl = next((line.strip(" -") for line in config.splitlines() if "Math Kernel" in line), "")
    mkl_version = mkl.split("Version ")[-1].split("-")[0] if mkl else ""
    capability = torch.backends.cpu.get_cpu_capability()
    return (
        f"torch {torch.__version__}: BLAS {blas} {mkl_version}".rstrip()
        + f", CPU capability {capability}, oneDNN {torch.backends.mkldnn.is_available()}, "
        f"{torch.get_num_threads()} threads"
    )


LN2 = math.log(2)
