"""Truncated-BPTT batching: B contiguous streams, walked in consecutive chunks of T symbols."""

from __future__ import annotations

import numpy as np

from charrnn.errors import CorpusError


class Streams:
    """Inputs and targets as (B, L) streams; chunk k is columns [kT, (k+1)T) of both."""

    def __init__(self, ids: np.ndarray, batch: int, seq_len: int) -> None:
        length = (len(ids) - 1) // batch
        if length < seq_len:
            raise CorpusError(
                f"training text has {len(ids):,} symbols but batch {batch} x seq-len {seq_len} "
                f"needs at least {batch * seq_len + 1:,}; use a longer file or a smaller "
                "--batch or --seq-len"
            )
        self.batch, self.seq_len = batch, seq_len
        self.chunks_per_epoch = length // seq_len
        used = batch * self.chunks_per_epoch * seq_len
        self.inputs = ids[:used].reshape(batch, -1)  # (B, L)
        self.targets = ids[1 : used + 1].reshape(batch, -1)  # (B, L)

    def chunk(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and targets (B, T) of the chunk trained at `step` (epochs repeat the walk)."""
        k = step % self.chunks_per_epoch
        cols = slice(k * self.seq_len, (k + 1) * self.seq_len)
        return self.inputs[:, cols], self.targets[:, cols]

    def starts_epoch(self, step: int) -> bool:
        """True when `step` is the first chunk of an epoch, where the hidden state is reset."""
        return step % self.chunks_per_epoch == 0
