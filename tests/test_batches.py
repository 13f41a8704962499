"""Truncated-BPTT batching: B contiguous streams walked in consecutive chunks of T."""

import numpy as np
import pytest

from charrnn import CorpusError, TrainConfig, train
from charrnn.batches import Streams
from charrnn.model import CharRNN


@pytest.mark.parametrize(("n", "batch", "seq_len"), [(101, 4, 5), (1000, 3, 7), (21, 1, 20)])
def test_shapes_and_targets(n, batch, seq_len):
    """Streams are (B, L) with L a multiple of T; targets are inputs shifted by one."""
    ids = np.arange(n)
    s = Streams(ids, batch, seq_len)
    chunks = (n - 1) // batch // seq_len
    assert s.chunks_per_epoch == chunks
    assert s.inputs.shape == s.targets.shape == (batch, chunks * seq_len)
    for k in range(chunks):
        x, y = s.chunk(k)
        assert x.shape == y.shape == (batch, seq_len)
        assert np.array_equal(y, x + 1)


def test_streams_are_contiguous_slices_of_the_text():
    """Stream b is one contiguous run of the text, following stream b-1."""
    ids = np.arange(1000)
    s = Streams(ids, 4, 10)
    L = s.inputs.shape[1]
    for b in range(4):
        assert np.array_equal(s.inputs[b], ids[b * L : (b + 1) * L])


def test_consecutive_chunks_continue_each_stream():
    """Chunk k+1 of every stream starts right after chunk k ends."""
    ids = np.random.default_rng(0).integers(0, 50, 2000)
    s = Streams(ids, 5, 13)
    walked = np.concatenate([s.chunk(k)[0] for k in range(s.chunks_per_epoch)], axis=1)
    assert np.array_equal(walked, s.inputs)
    for k in range(s.chunks_per_epoch - 1):
        _, y = s.chunk(k)
        x_next, _ = s.chunk(k + 1)
        assert np.array_equal(y[:, -1], x_next[:, 0])


def test_chunk_wraps_per_epoch_and_starts_epoch():
    """Step k and step k + chunks_per_epoch feed the same chunk; epochs start at multiples."""
    s = Streams(np.arange(500), 3, 8)
    n = s.chunks_per_epoch
    for k in range(n):
        for a, b in zip(s.chunk(k), s.chunk(k + 2 * n), strict=True):
            assert np.array_equal(a, b)
    starts = [k for k in range(3 * n) if s.starts_epoch(k)]
    assert starts == [0, n, 2 * n]


def test_exact_fit_uses_every_symbol():
    """B*T+1 symbols make exactly one chunk whose targets end at the last symbol."""
    ids = np.arange(4 * 6 + 1)
    s = Streams(ids, 4, 6)
    assert s.chunks_per_epoch == 1
    assert s.targets[-1, -1] == ids[-1]


@pytest.mark.parametrize(("n", "batch", "seq_len"), [(24, 4, 6), (5, 1, 5), (1, 1, 1)])
def test_too_short_corpus(n, batch, seq_len):
    """A text shorter than one chunk is a CorpusError pointing at --batch / --seq-len."""
    with pytest.raises(CorpusError) as info:
        Streams(np.arange(n), batch, seq_len)
    message = str(info.value)
    assert "--batch" in message and "--seq-len" in message
    assert f"{batch * seq_len + 1:,}" in message


def test_training_carries_state_and_resets_each_epoch(tmp_path, monkeypatch):
    """train() feeds each chunk the h_last of the previous one and zeros at every epoch start
    (one worker, so that the spied model sees the whole batch)."""
    calls = []
    real = CharRNN.loss_and_grads

    def spy(self, inputs, targets, h0, **options):
        loss, grads, h_last = real(self, inputs, targets, h0, **options)
        calls.append((inputs.copy(), h0.copy(), h_last.copy()))
        return loss, grads, h_last

    monkeypatch.setattr(CharRNN, "loss_and_grads", spy)
    text = "abcdefghij" * 13
    config = TrainConfig(
        hidden=8,
        seq_len=5,
        batch=2,
        steps=30,
        eval_every=1000,
        val_fraction=0,
        sample_length=0,
        workers=1,
    )
    train(text, config, tmp_path / "run")
    s = Streams(np.frombuffer(text.encode(), np.uint8) - ord("a"), 2, 5)
    assert len(calls) == 30
    for k, (inputs, h0, _) in enumerate(calls):
        assert np.array_equal(inputs, s.chunk(k)[0])
        if s.starts_epoch(k):
            assert not h0.any()
        else:
            assert np.array_equal(h0, calls[k - 1][2])
            assert h0.any()
