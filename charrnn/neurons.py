"""Interpretable units: simple features of a text, and every unit ranked by its correlation
with each (after Karpathy, Johnson and Fei-Fei, "Visualizing and Understanding Recurrent
Networks", 2015, which found quote and line-length cells in LSTMs)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from charrnn.inspect import Trace

OPEN_CLOSE = {"paren_depth": "()", "bracket_depth": "[]", "brace_depth": "{}"}


def _depth(symbols: list[str], pair: str) -> np.ndarray:
    """Nesting depth after each symbol, never below 0: S_t - min(0, min_{s<=t} S_s)."""
    step = np.array([(s == pair[0]) - (s == pair[1]) for s in symbols], np.int64)
    walk = np.cumsum(step)
    return walk - np.minimum(np.minimum.accumulate(walk), 0)


def features(symbols: list[str]) -> dict[str, np.ndarray]:
    """Per symbol read (the state after it), each feature as float64 (n,)."""
    n = len(symbols)
    index = np.arange(n)
    newline = np.array(["\n" in s for s in symbols])
    last_newline = np.maximum.accumulate(np.where(newline, index, -1))
    next_newline = np.minimum.accumulate(np.where(newline, index, n)[::-1])[::-1]
    after = np.r_[next_newline[1:], n]  # the first newline after each position
    line_start = last_newline + 1
    leading = np.zeros(n, np.int64)  # spaces at the start of each position's line
    count, start = 0, 0
    for t, s in enumerate(symbols):
        if t == start:
            count, counting = 0, True
        if counting and s == " ":
            count += 1
        elif t >= start:
            counting = False
        if "\n" in s:
            start = t + 1
        leading[t] = count
    alpha = np.array([s.isalpha() for s in symbols])
    out = {
        "in_quotes": np.cumsum([s == '"' for s in symbols]) % 2,
        "in_parens": _depth(symbols, "()") > 0,
        **{name: _depth(symbols, pair) for name, pair in OPEN_CLOSE.items()},
        "line_position": index - line_start + 1,
        "to_line_end": after - index - 1,
        "word_start": alpha & ~np.r_[False, alpha[:-1]],
        "upper": np.array([s.isupper() for s in symbols]),
        "digit": np.array([s.isdigit() for s in symbols]),
        "indent": leading,
    }
    return {k: np.asarray(v, np.float64) for k, v in out.items()}


@dataclass
class Match:
    """A unit (`cell` is True for an LSTM's c) and its Pearson correlation with a feature."""

    feature: str
    layer: int
    unit: int
    correlation: float
    cell: bool = False


def _standardise(x: np.ndarray) -> np.ndarray:
    """Columns to zero mean and unit norm; constant columns become 0 (no correlation)."""
    x = x - x.mean(axis=0)
    norm = np.sqrt((x * x).sum(axis=0))
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 1e-12)


def rank_units(trace: Trace, top: int = 10) -> dict[str, list[Match]]:
    """For each feature that varies over the text, the `top` units of any layer (h, and c for
    an LSTM) with the largest |correlation|, largest first."""
    n = len(trace.bits)  # the activations cover the symbols read before each prediction
    feats = features(trace.symbols[:n])
    names = [k for k, v in feats.items() if v.std() > 0]
    if not names:
        return {}
    F = _standardise(np.stack([feats[k] for k in names], axis=1))  # (n, K)
    blocks = [(layer, False, h) for layer, h in enumerate(trace.hidden)]
    blocks += [(layer, True, c) for layer, c in enumerate(trace.cell or [])]
    corr = np.concatenate([F.T @ _standardise(np.asarray(a, np.float64)) for *_, a in blocks], 1)
    H = trace.hidden[0].shape[1]
    result = {}
    for k, name in enumerate(names):
        best = np.argsort(-np.abs(corr[k]), kind="stable")[:top]
        result[name] = [
            Match(name, blocks[j // H][0], int(j % H), float(corr[k, j]), blocks[j // H][1])
            for j in best
        ]
    return result
