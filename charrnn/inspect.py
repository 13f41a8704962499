"""What a model thinks at every position of a text: probabilities, surprisal and activations.

`trace` runs the text as ONE stream from the given (default zero) state with the state
carried across all of it, in the chunks `training.evaluate` uses, so `Trace.bits_per_char`
equals `evaluate(model, ids, streams=1)` and `charrnn eval RUN FILE --streams 1`. (`charrnn
eval`'s default cuts a text into 64 streams that each start from a zero state, which reads a
long file faster but costs each stream's first symbols some context.)

Memory is capped, not streamed: a trace holds every position's figures and activations, and
`trace` refuses a text whose trace would exceed MAX_TRACE_BYTES, naming how many symbols fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from charrnn.errors import ConfigError, CorpusError
from charrnn.model import CharRNN
from charrnn.vocab import Vocab

LN2 = math.log(2)
CHUNK = 100  # evaluate's default seq_len: the same chunks give the same float32 sums
MAX_TRACE_BYTES = 1 << 30
GATES = ("i", "f", "g", "o")


@dataclass
class Trace:
    """Per position t of n = len(symbols) - 1 predictions (predicting symbols[t + 1]) and per
    layer the activations after reading symbols[t]."""

    symbols: list[str]  # every symbol of the text, n + 1
    ids: np.ndarray  # (n + 1,)
    prob: np.ndarray  # (n,) probability given to symbols[t + 1]
    bits: np.ndarray  # (n,) surprisal, -log2 prob
    entropy: np.ndarray  # (n,) bits, of the whole prediction
    top_ids: np.ndarray  # (n, top) likeliest symbols, likeliest first
    top_probs: np.ndarray  # (n, top)
    hidden: list[np.ndarray]  # per layer (n, H)
    cell: list[np.ndarray] | None = None  # LSTM: per layer c, (n, H)
    gates: list[dict[str, np.ndarray]] | None = None  # LSTM: per layer i, f, g, o, (n, H) each
    state: np.ndarray | None = field(default=None, repr=False)  # (L, S, 1, H) after the text
    vocab: Vocab | None = field(default=None, repr=False)

    @property
    def nats_per_char(self) -> float:
        return float(self.bits.mean() * LN2)

    @property
    def bits_per_char(self) -> float:
        """Mean surprisal over every prediction, as `evaluate(..., streams=1)` reports it."""
        return float(self.bits.mean())

    def top(self, t: int) -> list[tuple[str, float]]:
        """The likeliest symbols at position t, with their probabilities."""
        symbols = self.vocab.symbols
        return [
            (symbols[i], float(p)) for i, p in zip(self.top_ids[t], self.top_probs[t], strict=False)
        ]

    def surprises(self, count: int = 10) -> list[int]:
        """The positions of the `count` most surprising symbols, most surprising first."""
        return [int(t) for t in np.argsort(-self.bits, kind="stable")[:count]]

    def _repr_html_(self) -> str:
        from charrnn.html import heatmap_fragment

        return heatmap_fragment(self)


def trace_bytes(model: CharRNN, n: int, top: int) -> int:
    """The memory a trace of n predictions holds: figures, top predictions, activations."""
    per_layer = model.hidden_size * model.dtype.itemsize * (6 if model.cell == "lstm" else 1)
    return n * (40 + 12 * top + model.layers * per_layer)


def trace(
    model: CharRNN, vocab: Vocab, text: str, state: np.ndarray | None = None, top: int = 5
) -> Trace:
    """Run `text` through the model as one stream and record every prediction and activation."""
    ids = vocab.encode(text)
    n = len(ids) - 1
    if n < 1:
        raise CorpusError("a trace needs at least 2 symbols")
    top = max(1, min(int(top), model.vocab_size))
    if trace_bytes(model, n, top) > MAX_TRACE_BYTES:
        fit = MAX_TRACE_BYTES // trace_bytes(model, 1, top)
        raise ConfigError(f"a trace of {n:,} symbols would not fit in memory; give at most {fit:,}")
    L, H, p = model.layers, model.hidden_size, model.params
    lstm = model.cell == "lstm"
    h = model.zero_state(1) if state is None else np.asarray(state, model.dtype).copy()
    out = Trace(
        symbols=[vocab.symbols[i] for i in ids],
        ids=ids,
        prob=np.empty(n),
        bits=np.empty(n),
        entropy=np.empty(n),
        top_ids=np.empty((n, top), np.int64),
        top_probs=np.empty((n, top)),
        hidden=[np.empty((n, H), model.dtype) for _ in range(L)],
        cell=[np.empty((n, H), model.dtype) for _ in range(L)] if lstm else None,
        gates=[{g: np.empty((n, H), model.dtype) for g in GATES} for _ in range(L)]
        if lstm
        else None,
        vocab=vocab,
    )
    with np.errstate(all="ignore"):
        for start in range(0, n, CHUNK):
            end = min(start + CHUNK, n)
            inputs, targets = ids[None, start:end], ids[None, start + 1 : end + 1]  # (1, T)
            _, w, target_ids, _, h = model._forward(inputs, targets, h, None, None)
            for layer in range(L):
                out.hidden[layer][start:end] = w["below"][layer]  # (T, H)
                if lstm:
                    gates, cs = model.cells[layer].recorded(end - start, 1)  # (T, 4, 1, H)
                    for k, g in enumerate(GATES):
                        out.gates[layer][g][start:end] = gates[:, k, 0]
                    out.cell[layer][start:end] = cs[:, 0]
            # The logits as _forward computes them, so the sums match evaluate's.
            logits = p["W_hy"].T @ w["below"][-1].T  # (V, T)
            logits += p["b_y"][:, None]
            logits -= logits.max(axis=0)
            columns = np.arange(end - start)
            target_logit = logits[target_ids, columns].astype(np.float64)  # (T,)
            exp = np.exp(logits)
            total = exp.sum(axis=0, dtype=np.float64)  # (T,)
            nats = np.log(total) - target_logit
            probs = exp / total  # (V, T), float64
            out.bits[start:end] = nats / LN2
            out.prob[start:end] = np.exp(-nats)
            logp = np.log(np.where(probs > 0, probs, 1.0))
            out.entropy[start:end] = -(probs * logp).sum(axis=0) / LN2
            best = np.argsort(-probs, axis=0, kind="stable")[:top].T  # (T, top)
            out.top_ids[start:end] = best
            out.top_probs[start:end] = np.take_along_axis(probs.T, best, axis=1)
    out.state = h
    return out
