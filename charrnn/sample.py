"""Generating text from a model: temperature, top-k, top-p, a priming text and a seed."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from charrnn.errors import ConfigError, VocabError
from charrnn.model import CharRNN
from charrnn.vocab import Vocab


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
        """Unnormalised probabilities after temperature, top-k and top-p, (N, V) float64:
        drawing needs no normalisation, which saves two passes a step."""
        z = np.asarray(logits, np.float64) / self.temperature
        if self.top_k is not None and self.top_k < z.shape[1]:
            kth = np.partition(z, -self.top_k, axis=1)[:, -self.top_k, None]
            z = np.where(z >= kth, z, -np.inf)
        z -= z.max(axis=1, keepdims=True)
        w = np.exp(z)
        if self.top_p is not None and self.top_p < 1:
            p = w / w.sum(axis=1, keepdims=True)
            order = np.argsort(-p, axis=1)
            sorted_p = np.take_along_axis(p, order, axis=1)
            # Keep the most likely symbols until their mass first reaches top_p.
            before = np.cumsum(sorted_p, axis=1) - sorted_p
            keep_sorted = before < self.top_p
            keep = np.empty_like(keep_sorted)
            np.put_along_axis(keep, order, keep_sorted, axis=1)
            w = np.where(keep, p, 0.0)
        return w

    def probs(self, logits: np.ndarray) -> np.ndarray:
        """The distribution each row is drawn from, after temperature, top-k and top-p, (N, V)."""
        w = self.weights(logits)
        return w / w.sum(axis=1, keepdims=True)

    def draw(self, logits: np.ndarray) -> np.ndarray:
        """One id per row of logits (N, V) -> (N,)."""
        if self.temperature == 0:
            return np.argmax(logits, axis=1)
        cdf = np.cumsum(self.weights(logits), axis=1)  # (N, V), unnormalised
        u = self.rng.random((len(cdf), 1)) * cdf[:, -1:]
        return np.minimum((cdf <= u).sum(axis=1), cdf.shape[1] - 1)


def _start(model: CharRNN, vocab: Vocab, prime: str, num: int, sampler: Sampler):
    """Feed the priming text; returns the logits for the first generated symbol and the state."""
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
    return feed(model, prime_ids, model.zero_state(num))


def feed(model: CharRNN, ids: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run ids through the model from state h (B, H); returns the last logits and state."""
    logits = None
    for i in ids:
        logits, h = model.step(np.full(len(h), i), h)
    return logits, h


def generate_ids(
    model: CharRNN,
    vocab: Vocab,
    prime: str = "",
    length: int = 200,
    num: int = 1,
    sampler: Sampler | None = None,
) -> Iterator[np.ndarray]:
    """Yield `length` arrays of `num` ids: the next symbol of each of `num` streams."""
    sampler = sampler or Sampler()
    logits, h = _start(model, vocab, prime, num, sampler)
    for _ in range(length):
        ids = sampler.draw(logits)
        yield ids
        logits, h = model.step(ids, h)


def generate(
    model: CharRNN,
    vocab: Vocab,
    prime: str = "",
    length: int = 200,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
) -> Iterator[str]:
    """Yield the continuation of `prime`, one symbol at a time (temperature 0 is greedy)."""
    sampler = Sampler(temperature, top_k, top_p, seed)
    symbols = vocab.symbols
    for ids in generate_ids(model, vocab, prime, length, 1, sampler):
        yield symbols[ids[0]]


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
) -> list[str]:
    """`num` independent continuations of `prime`, generated side by side in one batch."""
    sampler = Sampler(temperature, top_k, top_p, seed)
    columns = np.array(list(generate_ids(model, vocab, prime, length, num, sampler)))
    return [vocab.decode(row) for row in columns.reshape(length, num).T]
