"""A base model moved onto a larger vocabulary: weights follow their symbol, never their id.

Only three arrays touch the vocabulary: the rows of the first layer's `W_xh` (input), the
columns of `W_hy` and the entries of `b_y` (output). A symbol the base knows keeps its row,
column and bias bit for bit wherever it now sorts; a new symbol gets a fresh input row (drawn
as `CharRNN` draws them), a zero output column (so its logit starts as its bias alone) and a
bias chosen by the caller, `new_symbol_biases` below: the log of its frequency in the new text,
shifted to the base model's scale of logits.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from charrnn.errors import VocabError
from charrnn.model import CharRNN
from charrnn.vocab import Vocab, merge_vocab  # noqa: F401  (merge_vocab: part of the merge)

CALIBRATION_STREAMS, CALIBRATION_STEPS = 16, 64  # positions where the base's logits are read


def merge_params(
    params: Mapping[str, np.ndarray],
    old: Vocab,
    new: Vocab,
    new_bias: Mapping[str, float],
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """`params` of a model over `old` moved onto `new` (which holds every symbol of `old`):
    shared symbols keep their input row, output column and bias exactly; a symbol only `new`
    has gets a fresh row (uniform in +-1/sqrt(H)), a zero column and `new_bias[symbol]`."""
    if old.unit != new.unit:
        raise VocabError(f"cannot merge a {old.unit} vocabulary into a {new.unit} one")
    lost = [s for s in old.symbols if s not in new.index]
    if lost:
        raise VocabError(f"the new vocabulary lacks {len(lost)} of the base's symbols")
    added = [s for s in new.symbols if s not in old.index]
    missing = [s for s in added if s not in new_bias]
    if missing:
        raise VocabError(f"no starting bias for new symbols {missing[:5]}")
    W_xh, W_hy, b_y = params["W_xh"], params["W_hy"], params["b_y"]  # (V, GH), (H, V), (V,)
    H = W_hy.shape[0]
    where = np.array([new.index[s] for s in old.symbols], np.intp)  # old id -> new id
    fresh = np.array([new.index[s] for s in added], np.intp)
    rng = np.random.default_rng([seed, len(new)])
    scale = 1.0 / np.sqrt(H)

    merged = dict(params)
    merged["W_xh"] = np.empty((len(new), W_xh.shape[1]), W_xh.dtype)  # (V', GH)
    merged["W_xh"][where] = W_xh
    merged["W_xh"][fresh] = rng.uniform(-scale, scale, (len(fresh), W_xh.shape[1]))
    merged["W_hy"] = np.zeros((H, len(new)), W_hy.dtype)  # (H, V')
    merged["W_hy"][:, where] = W_hy
    merged["b_y"] = np.empty(len(new), b_y.dtype)  # (V',)
    merged["b_y"][where] = b_y
    merged["b_y"][fresh] = [new_bias[s] for s in added]
    return merged


def new_symbol_biases(
    model, old: Vocab, new: Vocab, ids: np.ndarray, counts: np.ndarray
) -> dict[str, float]:
    """Starting output biases of the symbols only `new` has: log of each one's frequency in
    the new text (`counts` per id of `new`), plus the base's mean log-partition over the old
    symbols, read on the first positions of `ids`. The new symbol then starts near its
    frequency instead of near exp(-log Z), which Adam would take thousands of steps to lift.

    `model` is already merged (any bias for the new symbols): only old symbols' logits are read.
    """
    added = [s for s in new.symbols if s not in old.index]
    if not added:
        return {}
    total = max(int(counts.sum()), 1)
    old_ids = np.array([new.index[s] for s in old.symbols], np.intp)
    B = min(CALIBRATION_STREAMS, max(len(ids) // CALIBRATION_STEPS, 1))
    T = min(CALIBRATION_STEPS, len(ids) // B)
    streams = np.asarray(ids[: B * T]).reshape(B, T)  # (B, T)
    state = model.zero_state(B)
    log_z = []
    for t in range(T):
        logits, state = model.step(streams[:, t], state)  # (B, V)
        kept = logits[:, old_ids].astype(np.float64)  # (B, V_old)
        top = kept.max(axis=1)
        log_z.append(top + np.log(np.exp(kept - top[:, None]).sum(axis=1)))
    offset = float(np.mean(log_z)) if log_z else 0.0
    return {s: float(np.log(max(int(counts[new.index[s]]), 1) / total)) + offset for s in added}


def start_from_base(
    base_params: Mapping[str, np.ndarray],
    old: Vocab,
    new: Vocab,
    ids: np.ndarray,
    cell: str,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """The weights a run over `new` starts from when its base was trained over `old`: merged
    by symbol, new symbols' biases from their frequency in `ids` (the new training ids)."""
    added = [s for s in new.symbols if s not in old.index]
    merged = merge_params(base_params, old, new, dict.fromkeys(added, 0.0), seed)
    if added:
        counts = np.bincount(np.asarray(ids), minlength=len(new))
        biases = new_symbol_biases(CharRNN.from_params(merged, cell), old, new, ids, counts)
        merged["b_y"][[new.index[s] for s in added]] = [biases[s] for s in added]
    return merged
