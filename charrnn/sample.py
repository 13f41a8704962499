"""Generating text from a model: temperature, top-k, top-p, a priming text and a seed."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from charrnn import blas
from charrnn.errors import ConfigError, VocabError
from charrnn.model import CharRNN, suffix
from charrnn.parallel import stream_slices
from charrnn.stops import StopText
from charrnn.vocab import Vocab

# The smallest normal float64: exponential draws are raised to it before their log.
TINY = np.finfo(np.float64).tiny
# Draws of up to this many symbols (V times rows) use Gumbel-max, larger ones an inverse CDF.
# Per draw, Gumbel-max against inverse CDF: V 65: 4 vs 12 us (1 row), 35 vs 44 us (64 rows);
# V 256, 64 rows: 124 vs 126 us; V 1000, 64 rows: 755 vs 420 us; V 5000, 64 rows: 4.3 vs 2.0 ms.
GUMBEL_MAX_DRAWS = 2**14


def check_sampling(temperature: float, top_k: int | None, top_p: float | None) -> None:
    """Raise ConfigError for settings that have no meaning."""
    if not np.isfinite(temperature) or temperature < 0:
        raise ConfigError(f"temperature must be a number >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ConfigError(f"top-k must be an integer >= 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ConfigError(f"top-p must be in (0, 1], got {top_p}")


class Sampler:
    """Draws one id per row of logits (N, V) under fixed settings and a seeded generator."""

    def __init__(
        self,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
    ) -> None:
        check_sampling(temperature, top_k, top_p)
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        self.rng = np.random.default_rng(seed)

    def weights(self, logits: np.ndarray) -> np.ndarray:
        """Unnormalised probabilities after temperature, top-k and top-p, (N, V) float64."""
        return self._weights_t(logits).T

    def _weights_t(self, logits: np.ndarray) -> np.ndarray:
        """`weights` with symbols on rows, (V, N)."""
        z = self._scores_t(logits)
        z -= z.max(axis=0)
        return np.exp(z, out=z)

    def _scores_t(self, logits: np.ndarray) -> np.ndarray:
        """Scores whose softmax is the distribution drawn from, symbols on rows, (V, N) float64:
        logits over the temperature, -inf for the symbols top-k and top-p leave out."""
        z = np.array(np.asarray(logits).T, np.float64)  # (V, N)
        if self.temperature != 1:
            z /= self.temperature
        if self.top_k is not None and self.top_k < len(z):
            kth = np.partition(z, -self.top_k, axis=0)[-self.top_k]  # (N,)
            z[z < kth] = -np.inf
        if self.top_p is not None and self.top_p < 1:
            p = np.exp(z - z.max(axis=0))
            p /= p.sum(axis=0)
            order = np.argsort(-p, axis=0)
            sorted_p = np.take_along_axis(p, order, axis=0)
            # Keep the most likely symbols until their mass first reaches top_p.
            before = np.cumsum(sorted_p, axis=0) - sorted_p
            keep_sorted = before < self.top_p
            keep = np.empty_like(keep_sorted)
            np.put_along_axis(keep, order, keep_sorted, axis=0)
            z[~keep] = -np.inf
        return z

    def probs(self, logits: np.ndarray) -> np.ndarray:
        """The distribution each row is drawn from, after temperature, top-k and top-p, (N, V)."""
        w = self.weights(logits)
        return w / w.sum(axis=1, keepdims=True)

    def draw(self, logits: np.ndarray) -> np.ndarray:
        """One id per row of logits (N, V) -> (N,), exactly from the distribution of `probs`.

        Up to GUMBEL_MAX_DRAWS symbols in all: Gumbel-max, the argmax of score - ln E with
        E ~ Exp(1) per symbol, fewer passes than an inverse CDF. Beyond that, the V*N random
        draws cost more than the inverse CDF's exp and cumulative sum with one draw a row.
        """
        if self.temperature == 0:
            return np.argmax(logits, axis=1)
        if np.size(logits) <= GUMBEL_MAX_DRAWS:
            scores = self._scores_t(logits).T  # (N, V)
            return gumbel_max(scores, self.rng.standard_exponential(scores.shape))
        cdf = self._weights_t(logits)  # (V, N), unnormalised
        np.cumsum(cdf, axis=0, out=cdf)
        u = self.rng.random(cdf.shape[1])
        u *= cdf[-1]
        return np.minimum((cdf <= u).sum(axis=0), len(cdf) - 1)


def gumbel_max(scores: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """argmax of score - ln E per row, scores (N, V) and E ~ Exp(1) (N, V), overwritten."""
    np.maximum(noise, TINY, out=noise)  # ln 0 = -inf would meet a -inf score as nan
    np.log(noise, out=noise)
    np.subtract(scores, noise, out=noise)
    return noise.argmax(axis=1)  # along contiguous rows: across them is a strided crawl


def draw_together(samplers: Sequence[Sampler], logits: np.ndarray, counts: Sequence[int]):
    """One id per row of logits (N, V), rows in consecutive blocks of `counts`, each block drawn
    exactly as its own sampler's `draw` would (the same ids from the same generator state); the
    samplers share their settings. Many requests' streams in one pass, for a server."""
    first = samplers[0]
    if first.temperature == 0 or np.size(logits) > GUMBEL_MAX_DRAWS:
        ends = np.cumsum(counts)
        blocks = [s.draw(logits[e - n : e]) for s, n, e in zip(samplers, counts, ends, strict=True)]
        return np.concatenate(blocks)
    scores = first._scores_t(logits).T  # (N, V)
    V = scores.shape[1]
    noise = [s.rng.standard_exponential((n, V)) for s, n in zip(samplers, counts, strict=True)]
    return gumbel_max(scores, np.concatenate(noise))


class Streams:
    """The recurrent state of B streams and the logits of their top layer, advanced one symbol
    at a time.

    One GEMM per layer a step: h^(l) [W_hh^(l) | W_xh^(l+1)] (for the top layer
    h [W_hh | W_hy]) gives the layer's share of its next pre-activation and the input of the
    layer above (or the logits) together: a narrow (H, V) product alone runs far below peak.
    Layer 1's input is a row of a table made once, (W_xh + b_h) scaled as the cell wants.
    """

    def __init__(self, model: CharRNN, state: np.ndarray) -> None:
        p, L = model.params, model.layers
        B = np.shape(state)[-2]
        self.cells = model.cells
        self.gate_width = model.gates * model.hidden_size  # G*H
        self.state = np.array(state, model.dtype).reshape(model.state_shape(B))  # (L, S, B, H)
        scales = [np.ones(1, model.dtype) if c.x_scale is None else c.x_scale for c in self.cells]
        self.b_hn = [p.get(f"b_hn{suffix(layer)}") for layer in range(L)]
        self.x_table = (p["W_xh"] + p["b_h"]) * scales[0]  # (V, GH)
        self.W_cat, self.b_next = [], []  # per layer (H, GH + width above), (width above,)
        for layer in range(L):
            W_hh = p[f"W_hh{suffix(layer)}"] * scales[layer]  # (H, GH)
            if layer + 1 < L:
                above = suffix(layer + 1)
                W_next = p[f"W_xh{above}"] * scales[layer + 1]  # (H, GH)
                self.b_next.append(p[f"b_h{above}"] * scales[layer + 1])
            else:
                W_next, b_y = p["W_hy"], p["b_y"]  # (H, V), (V,)
                self.b_next.append(b_y)
            self.W_cat.append(np.concatenate([W_hh, W_next], axis=1))
        self.dtype, self.vocab_size = model.dtype, model.vocab_size
        self.reset(self.state)

    def reset(self, state: np.ndarray) -> None:
        """Take another set of streams, their state (L, S, B, H), keeping the prepared weights:
        a server adds and drops streams between steps this way."""
        self.state = np.ascontiguousarray(state, self.dtype)  # (L, S, B, H)
        B = self.state.shape[2]
        self.out = [np.empty((B, W.shape[1]), self.dtype) for W in self.W_cat]
        self.xw = [np.empty((B, self.gate_width), self.dtype) for _ in self.cells]
        self.logits = np.empty((B, self.vocab_size), self.dtype)  # the logits of the top h
        for layer in range(len(self.cells)):
            self._project(layer)
        np.add(self.out[-1][:, self.gate_width :], self.b_next[-1], out=self.logits)

    def regroup(self, keep: Sequence[int], new: int) -> None:
        """Keep the streams `keep`, in that order, and add `new` fresh ones (zero state) after
        them, reusing what the kept ones have computed: a server's streams come and go."""

        def rows(a: np.ndarray, fresh: np.ndarray) -> np.ndarray:
            return np.concatenate([a[keep], np.broadcast_to(fresh, (new, *a.shape[1:]))])

        L, S, _, H = self.state.shape
        fresh = np.zeros((L, S, new, H), self.dtype)
        self.state = np.concatenate([self.state[:, :, keep], fresh], axis=2)  # (L, S, B, H)
        self.out = [rows(out, np.zeros((), self.dtype)) for out in self.out]  # 0 W = 0
        self.logits = rows(self.logits, self.b_next[-1])  # a zero state's logits: the bias
        B = self.state.shape[2]
        self.xw = [np.empty((B, self.gate_width), self.dtype) for _ in self.cells]

    def _project(self, layer: int) -> None:
        np.matmul(self.state[layer, 0], self.W_cat[layer], out=self.out[layer])

    def close(self) -> None:
        """Nothing to end: the streams run on the caller's thread (see WorkerStreams)."""

    def push(self, ids: np.ndarray) -> None:
        """Feed one symbol to each stream: every layer takes one step, bottom to top."""
        GH = self.gate_width
        for layer, cell in enumerate(self.cells):
            # The input's part of the pre-activation, contiguous: adding the strided share of
            # `out` into it, not the reverse, halves the add.
            xw = self.xw[layer]  # (B, GH)
            if layer == 0:
                # Ids come from a Vocab or a draw, so they are < V; mode="clip" skips a bounds
                # check that copies the output.
                np.take(self.x_table, ids, axis=0, out=xw, mode="clip")
            else:
                np.add(self.out[layer - 1][:, GH:], self.b_next[layer - 1], out=xw)
            cell.update(xw, self.out[layer][:, :GH], self.state[layer], self.b_hn[layer])
            self._project(layer)
        np.add(self.out[-1][:, GH:], self.b_next[-1], out=self.logits)

    def feed(self, ids: np.ndarray) -> None:
        """Push the same symbols, one after another, to every stream."""
        for i in ids:
            self.push(np.full(self.state.shape[2], i))


class WorkerStreams:
    """B streams split by stream over worker threads, each slice a `Streams` of its own that
    its worker advances on one core; `logits` (B, V) gathers theirs in stream order. The draws
    stay on the caller's thread, so the text does not depend on the number of workers."""

    def __init__(self, model: CharRNN, state: np.ndarray, workers: int) -> None:
        B = np.shape(state)[-2]
        first = Streams(model, model.zero_state(0))
        # The prepared weights are shared: `reset` gives each part its own state and buffers.
        self.parts = [first, *(copy.copy(first) for _ in range(workers - 1))]
        self.pool = ThreadPoolExecutor(workers - 1, thread_name_prefix="charrnn-worker")
        self.reset(np.asarray(state, model.dtype).reshape(model.state_shape(B)))

    @property
    def state(self) -> np.ndarray:
        """(L, S, B, H), every slice's state side by side."""
        return np.concatenate([part.state for part in self.parts], axis=2)

    def reset(self, state: np.ndarray) -> None:
        """Take another set of streams, their state (L, S, B, H), split anew over the workers
        (a worker left without streams holds none)."""
        B = state.shape[2]
        self.slices = stream_slices(B, len(self.parts)) if B else []
        for i, part in enumerate(self.parts):
            part.reset(state[:, :, self.slices[i]] if i < len(self.slices) else state[:, :, :0])
        self.logits = np.concatenate([part.logits for part in self.parts])  # (B, V)
        for part, s in zip(self.parts, self.slices, strict=False):
            part.logits = self.logits[s]  # a view: each part's push writes its rows in place

    def regroup(self, keep: Sequence[int], new: int) -> None:
        """Keep the streams `keep`, in that order, and add `new` fresh ones (zero state) after
        them, as `Streams.regroup` does."""
        state = self.state
        L, S, _, H = state.shape
        fresh = np.zeros((L, S, new, H), state.dtype)
        self.reset(np.concatenate([state[:, :, keep], fresh], axis=2))

    def push(self, ids: np.ndarray) -> None:
        """Feed one symbol to each stream, every slice on its worker."""
        if not self.slices:
            return
        (first, first_streams), *rest = zip(self.parts, self.slices, strict=False)
        with blas.pinned_one_thread():
            futures = [self.pool.submit(part.push, ids[s]) for part, s in rest]
            try:
                first.push(ids[first_streams])
            finally:
                for future in futures:
                    future.result()

    def feed(self, ids: np.ndarray) -> None:
        """Push the same symbols, one after another, to every stream."""
        for i in ids:
            self.push(np.full(len(self.logits), i))

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def open_streams(model: CharRNN, num: int, workers: int = 1) -> Streams | WorkerStreams:
    """`num` fresh streams, over `workers` threads when more than one and there are several
    streams (or none yet: a server's come later); `close` them when done."""
    if workers > 1 and num != 1:
        return WorkerStreams(model, model.zero_state(num), workers)
    return Streams(model, model.zero_state(num))


def _start(
    model: CharRNN, vocab: Vocab, prime: str, num: int, sampler: Sampler, workers: int = 1
) -> Streams | WorkerStreams:
    """Feed the priming text to `num` fresh streams (over `workers` threads when more than
    one); their logits give the first symbol."""
    if prime:
        try:
            prime_ids = vocab.encode(prime)
        except VocabError as exc:
            raise VocabError(f"prime {exc}") from None
    else:
        # No prime: start from a newline when the vocabulary has one (text usually follows
        # one), else from a random symbol; the start symbol itself is not emitted.
        start = vocab.index.get("\n", int(sampler.rng.integers(len(vocab))))
        prime_ids = np.array([start])
    streams = open_streams(model, num, workers)
    streams.feed(prime_ids)
    return streams


def generate_ids(
    model: CharRNN,
    vocab: Vocab,
    prime: str = "",
    length: int = 200,
    num: int = 1,
    sampler: Sampler | None = None,
    workers: int = 1,
) -> Iterator[np.ndarray]:
    """Yield `length` arrays of `num` ids: the next symbol of each of `num` streams, which
    `workers` threads advance side by side."""
    sampler = sampler or Sampler()
    streams = _start(model, vocab, prime, num, sampler, workers)
    try:
        for _ in range(length):
            ids = sampler.draw(streams.logits)
            yield ids
            streams.push(ids)
    finally:
        streams.close()


def generate(
    model: CharRNN,
    vocab: Vocab,
    prime: str = "",
    length: int = 200,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    stop: Sequence[str] = (),
    keep_stop: bool = False,
) -> Iterator[str]:
    """Yield the continuation of `prime` as it is made (temperature 0 is greedy), ending at
    the first of the `stop` strings (shown only with `keep_stop`); text that may begin one is
    held back until decided."""
    sampler = Sampler(temperature, top_k, top_p, seed)
    symbols = vocab.symbols
    cut = StopText(stop, keep_stop)
    for ids in generate_ids(model, vocab, prime, length, 1, sampler):
        shown = cut.push(symbols[ids[0]])
        if shown:
            yield shown
        if cut.stop is not None:
            return
    held = cut.flush()
    if held:
        yield held


@dataclass
class Sample:
    """A generated text, the stop string that ended it (None: it ran to its length) and the
    symbols generated, the stop string's included."""

    text: str
    stop: str | None
    symbols: int


def generate_samples(
    model: CharRNN,
    vocab: Vocab,
    num: int,
    prime: str = "",
    length: int = 200,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    stop: Sequence[str] = (),
    keep_stop: bool = False,
    workers: int = 1,
) -> list[Sample]:
    """`num` independent continuations of `prime`, generated side by side in one batch (over
    `workers` threads), each ending at its first stop string; generation ends when every one
    has stopped."""
    sampler = Sampler(temperature, top_k, top_p, seed)
    cuts = [StopText(stop, keep_stop) for _ in range(num)]
    shown: list[list[str]] = [[] for _ in range(num)]
    ended = [length] * num  # symbols generated by each stream when it stopped
    columns = []
    going = list(range(num)) if stop else []
    steps = generate_ids(model, vocab, prime, length, num, sampler, workers)
    for step, ids in enumerate(steps):
        if not stop:
            columns.append(ids)
        for row in going:
            shown[row].append(cuts[row].push(vocab.symbols[ids[row]]))
            if cuts[row].stop is not None:
                ended[row] = step + 1
        if stop:
            going = [row for row in going if cuts[row].stop is None]
            if not going:
                break
    if not stop:
        rows = np.array(columns, dtype=np.int64).reshape(len(columns), num).T
        return [Sample(vocab.decode(row), None, length) for row in rows]
    return [
        Sample("".join(shown[row]) + cuts[row].flush(), cuts[row].stop, ended[row])
        for row in range(num)
    ]


def generate_many(
    model: CharRNN,
    vocab: Vocab,
    num: int,
    prime: str = "",
    length: int = 200,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    stop: Sequence[str] = (),
    keep_stop: bool = False,
    workers: int = 1,
) -> list[str]:
    """`num` independent continuations of `prime`, generated side by side in one batch (over
    `workers` threads; the texts are the same for any number)."""
    samples = generate_samples(
        model, vocab, num, prime, length, temperature, top_k, top_p, seed, stop, keep_stop, workers
    )
    return [s.text for s in samples]
